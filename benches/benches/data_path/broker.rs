//! The `weir-broker` binary as a child process: built (or named by `WEIR_BROKER_BIN`),
//! started on free ports with a scratch data directory, and killed however the bench ends.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};
use tempfile::TempDir;

use crate::cpu::ProcessCpu;

/// How long the broker may take to start serving, or to stop.
const WAIT: Duration = Duration::from_secs(60);
/// How many of the broker's last log lines are kept for an error message.
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
    // This bench runs as <target>/release/deps/data_path-<hash>; the bench profile puts
    // binaries in <target>/release/.
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

/// A running broker. Dropping it kills the process (a panicking bench leaves none behind)
/// and removes its data directory.
#[derive(Debug)]
pub(crate) struct Broker {
    child: Child,
    kafka_addr: String,
    log_tail: Arc<Mutex<VecDeque<String>>>,
    _data: TempDir,
}

impl Broker {
    /// Starts `binary` as a single node with every listener on a free port and its data in a
    /// new directory under `scratch`, and waits until it is a live broker serving Kafka.
    pub(crate) fn start(binary: &Path, scratch: &Path) -> Broker {
        let data = tempfile::Builder::new()
            .prefix("data-path-")
            .tempdir_in(scratch)
            .expect("create the broker's data directory");
        let mut child = Command::new(binary)
            .arg("--data-dir")
            .arg(data.path())
            .args([
                "--kafka-addr",
                "127.0.0.1:0",
                "--internal-addr",
                "127.0.0.1:0",
            ])
            .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
            // Each topic's first segment is preallocated: 256 MiB rather than the default
            // 1 GiB keeps the four topics to 1 GiB of disk, and at the default counts no
            // phase fills one, so no segment rolls either way.
            .env("WEIR_LOG_SEGMENT_BYTES", (256u64 << 20).to_string())
            // Only the lines the bench waits for; nothing logged per request.
            .env("RUST_LOG", "warn,weir_broker::server=info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let stderr = child.stderr.take().expect("piped stderr");
        let log_tail = Arc::new(Mutex::new(VecDeque::new()));
        let lines = drain(stderr, Arc::clone(&log_tail));
        let mut broker = Broker {
            child,
            kafka_addr: String::new(),
            log_tail,
            _data: data,
        };
        let serving = broker.wait_for(&lines, "serving the Kafka protocol");
        broker.kafka_addr = serving
            .split_whitespace()
            .find_map(|field| field.strip_prefix("address="))
            .unwrap_or_else(|| panic!("no address in the broker's line {serving:?}"))
            .to_string();
        broker.wait_for(&lines, "broker is live");
        broker
    }

    /// The Kafka listener, `host:port`.
    pub(crate) fn kafka_addr(&self) -> &str {
        &self.kafka_addr
    }

    /// The broker's CPU time so far.
    pub(crate) fn cpu(&self) -> ProcessCpu {
        ProcessCpu::of(self.child.id())
    }

    /// Waits for a log line containing `text` and returns it.
    fn wait_for(&mut self, lines: &mpsc::Receiver<String>, text: &str) -> String {
        let deadline = Instant::now() + WAIT;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match lines.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let status = self.child.try_wait().ok().flatten();
        panic!(
            "the broker did not log {text:?} within {WAIT:?} (exit status: {status:?}); \
             it said:\n{}",
            self.log_tail()
        );
    }

    fn log_tail(&self) -> String {
        let tail = self.log_tail.lock().unwrap_or_else(|p| p.into_inner());
        tail.iter().cloned().collect::<Vec<_>>().join("\n")
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
                    self.log_tail()
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
}

impl Drop for Broker {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("the broker's last log lines:\n{}", self.log_tail());
        }
        // After a clean stop these find the process already reaped.
        let _already_gone = self.child.kill();
        let _reaped = self.child.wait();
    }
}

/// Reads the broker's stderr to its end on a thread (so the broker never blocks on a full
/// pipe), keeping the last lines in `tail` and sending each one on the returned channel while
/// anyone listens.
fn drain(
    stderr: std::process::ChildStderr,
    tail: Arc<Mutex<VecDeque<String>>>,
) -> mpsc::Receiver<String> {
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            {
                let mut tail = tail.lock().unwrap_or_else(|p| p.into_inner());
                if tail.len() == LOG_TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line.clone());
            }
            // Nobody listens once the broker is up; the lines still go to the tail.
            let _unheard = sender.send(line);
        }
    });
    lines
}
