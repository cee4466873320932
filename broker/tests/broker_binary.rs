//! The `weir-broker` binary as a user runs it: a single node with no configuration joins its
//! own quorum and becomes a live broker, stops cleanly on SIGTERM and starts again from its
//! data directory; a bad configuration is refused before anything is touched.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process};

const BINARY: &str = env!("CARGO_BIN_EXE_weir-broker");
const WAIT: Duration = Duration::from_secs(60);

/// A running `weir-broker` whose log lines arrive on a channel.
struct Broker {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Broker {
    /// Starts a node in `dir` with its listeners on free ports (so tests never collide with
    /// each other or a real broker on 9092-9094).
    fn start(dir: &Path) -> Broker {
        let mut child = Command::new(BINARY)
            .current_dir(dir)
            .args([
                "--internal-addr",
                "127.0.0.1:0",
                "--kafka-addr",
                "127.0.0.1:0",
                "--grpc-addr",
                "127.0.0.1:0",
            ])
            .env("RUST_LOG", "info")
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
        Broker { child, lines }
    }

    /// Waits for a log line containing `text`, for at most [`WAIT`].
    fn wait_for(&self, text: &str) {
        let deadline = std::time::Instant::now() + WAIT;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(text) => return,
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        panic!(
            "no log line with {text:?}; the broker said:\n{}",
            seen.join("\n")
        );
    }

    /// Sends SIGTERM and waits for a clean exit.
    fn stop(mut self) {
        let pid = Pid::from_child(&self.child);
        kill_process(pid, Signal::TERM).expect("signal the broker");
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the broker") {
                assert!(status.success(), "weir-broker exited with {status}");
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "weir-broker did not stop within {WAIT:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        // A failed test must not leave a broker running.
        let _already_gone = self.child.kill();
        let _reaped = self.child.wait();
    }
}

#[test]
fn a_node_with_no_configuration_becomes_a_live_broker_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    broker.wait_for("joined the controller quorum");
    broker.wait_for("broker is live");
    broker.stop();
    assert!(dir.path().join("weir-data/metadata/raft-log").exists());
    assert!(dir.path().join("weir-data/topics").is_dir());

    let broker = Broker::start(dir.path());
    broker.wait_for("broker is live");
    broker.stop();
}

#[test]
fn a_malformed_voter_list_is_refused_before_anything_is_touched() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(BINARY)
        .current_dir(dir.path())
        .args(["--controller-voters", "1@127.0.0.1:9094,2@"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with(
            "error: the configuration is not usable: invalid configuration: controller_voters = "
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("entry 2 (\"2@\") has an address that is not HOST:PORT"),
        "{stderr}"
    );
    assert!(stderr.contains("--controller-voters"), "{stderr}");
    assert_eq!(
        stderr.matches("NODE_ID").count() + stderr.matches("HOST:PORT").count(),
        1
    );
    assert!(
        !dir.path().join("weir-data").exists(),
        "nothing was created"
    );
}
