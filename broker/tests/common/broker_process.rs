//! A `weir-broker` process as a user runs it: started in a directory with every listener on a
//! free port (or on ports chosen beforehand, so that it can be started again on the same ones),
//! its log lines kept (and optionally written to a file), stopped with SIGTERM, killed with
//! SIGKILL, or paused with SIGSTOP and resumed with SIGCONT.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

const BINARY: &str = env!("CARGO_BIN_EXE_weir-broker");
/// The bound on every wait for the process.
const WAIT: Duration = Duration::from_secs(60);

/// The four listening ports of a node on 127.0.0.1, chosen before it starts so that other
/// nodes can be told its address and it can be started again on the same ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// `--kafka-addr`.
    pub kafka: u16,
    /// `--grpc-addr`.
    pub grpc: u16,
    /// `--internal-addr`: what the controller voter list names.
    pub internal: u16,
    /// `--http-addr`.
    pub http: u16,
}

impl Ports {
    /// Four ports that were free a moment ago: bound on 127.0.0.1:0 together, read and
    /// released. Another process may take one before the broker binds it; the broker then
    /// fails to start and says so ([`BrokerProcess::try_wait_until_serving`]), and the caller
    /// picks new ports.
    pub fn free() -> Ports {
        let listeners: Vec<TcpListener> = (0..4)
            .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
            .collect();
        let port = |i: usize| listeners[i].local_addr().expect("a bound address").port();
        Ports {
            kafka: port(0),
            grpc: port(1),
            internal: port(2),
            http: port(3),
        }
    }

    /// The Kafka address, `127.0.0.1:port`.
    pub fn kafka_addr(&self) -> String {
        format!("127.0.0.1:{}", self.kafka)
    }

    /// The HTTP endpoints' address, `127.0.0.1:port`.
    pub fn http_addr(&self) -> String {
        format!("127.0.0.1:{}", self.http)
    }

    /// The internal API's address, `127.0.0.1:port`.
    pub fn internal_addr(&self) -> String {
        format!("127.0.0.1:{}", self.internal)
    }

    fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for (flag, port) in [
            ("--kafka-addr", self.kafka),
            ("--internal-addr", self.internal),
            ("--grpc-addr", self.grpc),
            ("--http-addr", self.http),
        ] {
            args.push(flag.to_string());
            args.push(format!("127.0.0.1:{port}"));
        }
        args
    }
}

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
        let any_port = [
            "--kafka-addr",
            "127.0.0.1:0",
            "--internal-addr",
            "127.0.0.1:0",
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
        ]
        .map(String::from);
        Self::spawn(dir, &any_port, extra_args, env, None)
    }

    /// Starts a node in `dir` listening on `ports`, with `extra_args` after them and `env`
    /// set, appending every line it logs to `log_file` as well.
    pub fn start_on(
        dir: &Path,
        ports: &Ports,
        extra_args: &[&str],
        env: &[(&str, &str)],
        log_file: &Path,
    ) -> BrokerProcess {
        Self::spawn(dir, &ports.args(), extra_args, env, Some(log_file))
    }

    fn spawn(
        dir: &Path,
        listen_args: &[String],
        extra_args: &[&str],
        env: &[(&str, &str)],
        log_file: Option<&Path>,
    ) -> BrokerProcess {
        let mut log = log_file.map(|path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
        });
        let mut child = Command::new(BINARY)
            .current_dir(dir)
            .args(listen_args)
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
                if let Some(log) = log.as_mut() {
                    // The file is for reading after a failure; losing it is no reason to stop.
                    let _unwritten = writeln!(log, "{line}");
                }
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
        self.try_wait_for(&matches)
            .unwrap_or_else(|said| panic!("no log line {what}; the broker said:\n{said}"))
    }

    /// The first line logged that `matches`, or (after [`WAIT`], or once the process has
    /// exited) everything it logged.
    fn try_wait_for(&mut self, matches: &impl Fn(&str) -> bool) -> Result<String, String> {
        if let Some(line) = self.seen.iter().find(|l| matches(l)) {
            return Ok(line.clone());
        }
        let deadline = Instant::now() + WAIT;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if matches(&line) {
                        return Ok(line);
                    }
                }
                Err(_) => break,
            }
        }
        Err(self.seen.join("\n"))
    }

    /// The first line logged that contains `text`.
    pub fn wait_for_text(&mut self, text: &str) -> String {
        self.wait_for(&format!("with {text:?}"), |line| line.contains(text))
    }

    /// Waits until the node is a live broker and returns its Kafka address.
    pub fn wait_until_serving(&mut self) -> String {
        self.try_wait_until_serving()
            .unwrap_or_else(|said| panic!("the broker did not start serving; it said:\n{said}"))
    }

    /// Waits until the node is a live broker and returns its Kafka address, or everything it
    /// logged if it exits (say, because a port was taken) or is not live within [`WAIT`].
    pub fn try_wait_until_serving(&mut self) -> Result<String, String> {
        let line = self.try_wait_for(&|l: &str| l.contains("serving the Kafka protocol"))?;
        self.try_wait_for(&|l: &str| l.contains("broker is live"))?;
        let address = line
            .split_whitespace()
            .find_map(|field| field.strip_prefix("address="))
            .ok_or_else(|| format!("no address in {line:?}"))?;
        Ok(address.to_string())
    }

    /// The address of the HTTP endpoints (`/metrics`, `/healthz`, `/readyz`), from the line
    /// the node logs when it binds them (its first, before storage opens).
    pub fn http_addr(&mut self) -> String {
        let line = self.wait_for_text("serving /metrics, /healthz and /readyz");
        line.split_whitespace()
            .find_map(|field| field.strip_prefix("address="))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Pauses the process with SIGSTOP: it holds its sockets but answers nothing, as a node
    /// in a long garbage-collection pause or a frozen VM.
    pub fn pause(&self) {
        kill_process(Pid::from_child(&self.child), Signal::STOP).expect("SIGSTOP the broker");
    }

    /// Resumes a paused process with SIGCONT.
    pub fn resume(&self) {
        kill_process(Pid::from_child(&self.child), Signal::CONT).expect("SIGCONT the broker");
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
