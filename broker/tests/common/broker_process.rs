//! A `weir-broker` process as a user runs it: started in a directory with every listener on a
//! free port, its log lines kept, stopped with SIGTERM or killed with SIGKILL.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

const BINARY: &str = env!("CARGO_BIN_EXE_weir-broker");
/// The bound on every wait for the process.
const WAIT: Duration = Duration::from_secs(60);

/// A running `weir-broker`; every line it logs is kept.
pub struct BrokerProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl BrokerProcess {
    /// Starts a node in `dir` with its listeners on free ports (so tests never collide with
    /// each other or a real broker on 9092-9094), `extra_args` after them and `env` set.
    pub fn start(dir: &Path, extra_args: &[&str], env: &[(&str, &str)]) -> BrokerProcess {
        let mut child = Command::new(BINARY)
            .current_dir(dir)
            .args(["--kafka-addr", "127.0.0.1:0"])
            .args(["--internal-addr", "127.0.0.1:0"])
            .args(["--grpc-addr", "127.0.0.1:0"])
            .args(["--http-addr", "127.0.0.1:0"])
            .args(extra_args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info,openraft=warn")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("weir-broker starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        BrokerProcess {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first line logged (before or after this call) that `matches`, waiting at most
    /// [`WAIT`]; `what` names it if none comes.
    pub fn wait_for(&mut self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        if let Some(line) = self.seen.iter().find(|l| matches(l)) {
            return line.clone();
        }
        let deadline = Instant::now() + WAIT;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if matches(&line) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "no log line {what}; the broker said:\n{}",
            self.seen.join("\n")
        );
    }

    /// The first line logged that contains `text`.
    pub fn wait_for_text(&mut self, text: &str) -> String {
        self.wait_for(&format!("with {text:?}"), |line| line.contains(text))
    }

    /// Waits until the node is a live broker and returns its Kafka address.
    pub fn wait_until_serving(&mut self) -> String {
        let line = self.wait_for_text("serving the Kafka protocol");
        self.wait_for_text("broker is live");
        let address = line
            .split_whitespace()
            .find_map(|field| field.strip_prefix("address="))
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        address.to_string()
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(mut self) {
        let pid = Pid::from_child(&self.child);
        kill_process(pid, Signal::TERM).expect("signal the broker");
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the broker") {
                assert!(status.success(), "weir-broker exited with {status}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "weir-broker did not stop within {WAIT:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process with SIGKILL: no shutdown, no final snapshot or flush.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL the broker");
        let status = self.child.wait().expect("reap the broker");
        assert!(!status.success(), "killed, not exited: {status}");
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        // A failed test must not leave a broker running.
        let _already_gone = self.child.kill();
        let _reaped = self.child.wait();
    }
}
