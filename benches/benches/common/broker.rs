//! The `weir-broker` binary as a child process: built (or named by `WEIR_BROKER_BIN`),
//! started with the flags a bench gives it, its log lines kept with the time each arrived,
//! stopped with SIGTERM or killed with SIGKILL, and killed however the bench ends.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

use super::cpu::ProcessCpu;

/// How long a broker may take to start serving, or to stop.
pub(crate) const WAIT: Duration = Duration::from_secs(60);
/// How many of a broker's last log lines are kept in memory.
const LOG_LINES_KEPT: usize = 10_000;
/// How many of them an error message shows.
const LOG_TAIL_LINES: usize = 40;

/// The `weir-broker` to run: `WEIR_BROKER_BIN` if set; otherwise the bench profile's build,
/// which is brought up to date first by `cargo build --profile bench -p weir-broker` (a no-op
/// when nothing changed), so the broker is always built from the same source and with the
/// same profile as the bench itself.
pub(crate) fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("WEIR_BROKER_BIN") {
        return PathBuf::from(path);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches/ is inside the workspace");
    eprintln!("building weir-broker with the bench profile (WEIR_BROKER_BIN skips this)");
    let status = Command::new(env!("CARGO"))
        .current_dir(workspace)
        .args(["build", "--profile", "bench", "-p", "weir-broker"])
        .args(["--bin", "weir-broker"])
        .status()
        .expect("run cargo to build weir-broker");
    assert!(status.success(), "building weir-broker failed: {status}");
    // A bench runs as <target>/release/deps/<name>-<hash>; the bench profile puts binaries in
    // <target>/release/.
    let exe = std::env::current_exe().expect("the bench's own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the bench runs from <target>/<profile>/deps");
    let broker = profile_dir.join("weir-broker");
    assert!(
        broker.is_file(),
        "{} was not built; set WEIR_BROKER_BIN to a weir-broker binary",
        broker.display()
    );
    broker
}

/// The four listening ports of a node on 127.0.0.1, chosen before it starts so that other
/// nodes can be told its address and it can be started again on the same ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ports {
    pub(crate) kafka: u16,
    pub(crate) grpc: u16,
    pub(crate) internal: u16,
    pub(crate) http: u16,
}

impl Ports {
    /// Four ports that were free a moment ago: bound on 127.0.0.1:0 together, read and
    /// released. Another process may take one before the broker binds it; the broker then
    /// fails to start and says so, and the caller picks new ports.
    pub(crate) fn free() -> Ports {
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

    /// Port 0 for every listener: the broker picks free ones and logs its Kafka address.
    pub(crate) fn any() -> Ports {
        Ports {
            kafka: 0,
            grpc: 0,
            internal: 0,
            http: 0,
        }
    }

    /// The internal API's address, `127.0.0.1:port`: what the controller voter list names.
    pub(crate) fn internal_addr(&self) -> String {
        format!("127.0.0.1:{}", self.internal)
    }

    /// The flags that put the listeners on these ports of 127.0.0.1.
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

/// How to start one broker process.
#[derive(Debug, Clone)]
pub(crate) struct BrokerSpec {
    pub(crate) binary: PathBuf,
    pub(crate) data_dir: PathBuf,
    pub(crate) ports: Ports,
    /// Flags after the data directory and the listeners.
    pub(crate) args: Vec<String>,
    /// Environment variables set for it (`WEIR_*`, `RUST_LOG`).
    pub(crate) env: Vec<(String, String)>,
    /// A file every line it logs is appended to as well, if any.
    pub(crate) log_file: Option<PathBuf>,
}

/// A running broker. Dropping it kills the process, so a panicking bench leaves none behind.
#[derive(Debug)]
pub(crate) struct Broker {
    child: Child,
    kafka_addr: String,
    log: Arc<LogLines>,
}

impl Broker {
    /// Starts a broker as `spec` says and waits until it is a live broker serving Kafka; if it
    /// is not within [`WAIT`] (say, a port was taken), kills it and returns its last lines.
    pub(crate) fn start(spec: &BrokerSpec) -> Result<Broker, String> {
        let log_file = spec.log_file.as_ref().map(|path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()))
        });
        let mut child = Command::new(&spec.binary)
            .arg("--data-dir")
            .arg(&spec.data_dir)
            .args(spec.ports.args())
            .args(&spec.args)
            .env("NO_COLOR", "1")
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", spec.binary.display()));
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(LogLines::new(log_file));
        drain(stderr, Arc::clone(&log));
        let mut broker = Broker {
            child,
            kafka_addr: String::new(),
            log,
        };
        let serving = broker.wait_for_line(0, "serving the Kafka protocol")?;
        broker.kafka_addr = serving
            .split_whitespace()
            .find_map(|field| field.strip_prefix("address="))
            .ok_or_else(|| format!("no address in the broker's line {serving:?}"))?
            .to_string();
        broker.wait_for_line(0, "broker is live")?;
        Ok(broker)
    }

    /// The Kafka listener, `host:port`.
    pub(crate) fn kafka_addr(&self) -> &str {
        &self.kafka_addr
    }

    /// The broker's CPU time so far.
    pub(crate) fn cpu(&self) -> ProcessCpu {
        ProcessCpu::of(self.child.id())
    }

    /// The log lines kept, with the time each arrived.
    pub(crate) fn log(&self) -> &LogLines {
        &self.log
    }

    /// Waits for a log line numbered `from` or later containing `text` and returns it; after
    /// [`WAIT`], or once the process has exited, the last lines it logged.
    fn wait_for_line(&mut self, from: u64, text: &str) -> Result<String, String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let wait =
                Duration::from_millis(100).min(deadline.saturating_duration_since(Instant::now()));
            if let Some((_, line)) = self.log.wait_for(from, wait, |line| line.contains(text)) {
                return Ok(line);
            }
            let status = self.child.try_wait().ok().flatten();
            if status.is_some() || Instant::now() >= deadline {
                return Err(format!(
                    "the broker did not log {text:?} within {WAIT:?} (exit status: {status:?}); \
                     it said:\n{}",
                    self.log.tail(LOG_TAIL_LINES)
                ));
            }
        }
    }

    /// Stops the broker with SIGTERM and checks that it shut down cleanly.
    pub(crate) fn stop(mut self) {
        let pid = Pid::from_child(&self.child);
        kill_process(pid, Signal::TERM).expect("signal the broker");
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the broker") {
                assert!(
                    status.success(),
                    "weir-broker exited with {status}; it said:\n{}",
                    self.log.tail(LOG_TAIL_LINES)
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "weir-broker did not stop within {WAIT:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the broker with SIGKILL (no shutdown, no final flush) and reaps it.
    pub(crate) fn kill(mut self) {
        self.child.kill().expect("SIGKILL the broker");
        let status = self.child.wait().expect("reap the broker");
        assert!(!status.success(), "killed, not exited: {status}");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "broker pid {}'s last log lines:\n{}",
                self.child.id(),
                self.log.tail(LOG_TAIL_LINES)
            );
        }
        // After a clean stop or a kill these find the process already reaped.
        let _already_gone = self.child.kill();
        let _reaped = self.child.wait();
    }
}

/// A broker's log lines as they arrive: the last [`LOG_LINES_KEPT`] in memory, each numbered
/// from 0 and stamped with the time it was read, and every one in a file if asked.
#[derive(Debug)]
pub(crate) struct LogLines {
    kept: Mutex<Kept>,
    arrived: Condvar,
    file: Mutex<Option<File>>,
}

#[derive(Debug, Default)]
struct Kept {
    /// The number of the first line in `lines`.
    first: u64,
    lines: VecDeque<(Instant, String)>,
}

impl LogLines {
    fn new(file: Option<File>) -> LogLines {
        LogLines {
            kept: Mutex::new(Kept::default()),
            arrived: Condvar::new(),
            file: Mutex::new(file),
        }
    }

    fn kept(&self) -> MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, line: String) {
        if let Some(file) = self.file.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            // The file is for reading afterwards; losing a line is no reason to stop.
            let _unwritten = writeln!(file, "{line}");
        }
        let mut kept = self.kept();
        if kept.lines.len() == LOG_LINES_KEPT {
            kept.lines.pop_front();
            kept.first += 1;
        }
        kept.lines.push_back((Instant::now(), line));
        self.arrived.notify_all();
    }

    /// Appends `text` to the log file (if any) as a line of its own, to mark what the bench
    /// did in the broker's log.
    pub(crate) fn mark(&self, text: &str) {
        if let Some(file) = self.file.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            let _unwritten = writeln!(file, "---- bench: {text}");
        }
    }

    /// The number the next line will have.
    pub(crate) fn next_number(&self) -> u64 {
        let kept = self.kept();
        kept.first + kept.lines.len() as u64
    }

    /// The first kept line numbered `from` or later that `matches`, with its arrival time.
    pub(crate) fn find(
        &self,
        from: u64,
        matches: impl Fn(&str) -> bool,
    ) -> Option<(Instant, String)> {
        let kept = self.kept();
        let skip = usize::try_from(from.saturating_sub(kept.first)).unwrap_or(usize::MAX);
        kept.lines
            .iter()
            .skip(skip)
            .find(|(_, line)| matches(line))
            .cloned()
    }

    /// Like [`LogLines::find`], waiting at most `wait` for such a line to arrive.
    fn wait_for(
        &self,
        from: u64,
        wait: Duration,
        matches: impl Fn(&str) -> bool,
    ) -> Option<(Instant, String)> {
        let deadline = Instant::now() + wait;
        let mut kept = self.kept();
        loop {
            let skip = usize::try_from(from.saturating_sub(kept.first)).unwrap_or(usize::MAX);
            if let Some(found) = kept.lines.iter().skip(skip).find(|(_, l)| matches(l)) {
                return Some(found.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            kept = self
                .arrived
                .wait_timeout(kept, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// The last `count` lines, one a line.
    fn tail(&self, count: usize) -> String {
        let kept = self.kept();
        let skip = kept.lines.len().saturating_sub(count);
        let lines: Vec<&str> = kept
            .lines
            .iter()
            .skip(skip)
            .map(|(_, l)| l.as_str())
            .collect();
        lines.join("\n")
    }
}

/// Reads the broker's stderr to its end on a thread, so the broker never blocks on a full
/// pipe.
fn drain(stderr: std::process::ChildStderr, log: Arc<LogLines>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            log.push(line);
        }
    });
}
