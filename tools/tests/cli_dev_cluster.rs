//! `weir dev-cluster start --nodes 3` as a user runs it: three `weir-broker` processes on a
//! free port range, ready, answering `weir cluster controller` with three voters, and all
//! gone after SIGTERM. Also its refusals: ports in use, a broker binary that does not exist,
//! and a broker that exits before it is ready.
//!
//! The `weir-broker` binary is the one next to `weir` in the target directory: Cargo gives a
//! package's tests only its own binaries (`CARGO_BIN_EXE_weir`), and builds `weir-broker`
//! there for the broker's own tests, so `cargo test --workspace` (the README's test command)
//! has it. `cargo test -p weir-tools` alone does not build it: the test then fails saying to
//! run `cargo build -p weir-broker --bin weir-broker` first. (Building it from the test would
//! wait on the lock of the target directory that the running `cargo test` holds.)

mod cli_common;

use std::fs::File;
use std::hash::{BuildHasher, RandomState};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cli_common::{WAIT, rows, run, weir};
use rustix::process::{Pid, Signal, kill_process, kill_process_group, test_kill_process};

/// The `weir-broker` next to the `weir` under test.
fn broker_binary() -> PathBuf {
    let weir = Path::new(env!("CARGO_BIN_EXE_weir"));
    let broker = weir.with_file_name("weir-broker");
    assert!(
        broker.is_file(),
        "{} is missing: build it with `cargo build -p weir-broker --bin weir-broker` \
         (`cargo test --workspace` builds it)",
        broker.display()
    );
    broker
}

/// A `weir dev-cluster` process in a process group of its own, which dropping kills with
/// every broker it started (also when the test fails).
struct DevCluster {
    child: Child,
    stdout: mpsc::Receiver<String>,
    stderr_path: PathBuf,
}

impl DevCluster {
    fn start(dir: &Path, base_port: u16) -> DevCluster {
        let stderr_path = dir.join("weir-dev-cluster.stderr");
        let stderr = File::create(&stderr_path).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["dev-cluster", "start", "--nodes", "3", "--dir"])
            .arg(dir.join("cluster"))
            .args(["--base-port", &base_port.to_string()])
            .env_remove("WEIR_BROKER_BIN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .expect("weir dev-cluster starts");
        let stdout = child.stdout.take().expect("piped");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        DevCluster {
            child,
            stdout: lines,
            stderr_path,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// What it printed up to "Ctrl-C stops the cluster.", or `Err` with what it printed
    /// if it exited first.
    fn wait_until_ready(&mut self) -> Result<Vec<String>, String> {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut printed = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => {
                    let done = line.contains("Ctrl-C stops the cluster");
                    printed.push(line);
                    if done {
                        return Ok(printed);
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = self.child.wait();
                    return Err(format!(
                        "stdout:\n{}\nstderr:\n{}",
                        printed.join("\n"),
                        self.stderr()
                    ));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "weir dev-cluster is not ready within 120 s; it printed:\n{}\nstderr:\n{}",
                    printed.join("\n"),
                    self.stderr()
                ),
            }
        }
    }
}

impl Drop for DevCluster {
    fn drop(&mut self) {
        // Everything still running in its group: weir and the brokers.
        let _ = kill_process_group(Pid::from_child(&self.child), Signal::KILL);
        let _ = self.child.wait();
    }
}

/// A base port in 20000..32000 (below Linux's ephemeral ports), a different one each call.
fn random_base_port() -> u16 {
    let random = RandomState::new().hash_one(std::process::id());
    20_000 + u16::try_from(random % 12_000).unwrap()
}

#[test]
fn a_three_node_dev_cluster_starts_answers_and_stops_on_sigterm() {
    broker_binary();
    let dir = tempfile::tempdir().unwrap();
    let mut attempt = 0;
    let (mut cluster, printed, base) = loop {
        attempt += 1;
        let base = random_base_port();
        let attempt_dir = dir.path().join(format!("attempt-{attempt}"));
        std::fs::create_dir_all(&attempt_dir).unwrap();
        let mut cluster = DevCluster::start(&attempt_dir, base);
        match cluster.wait_until_ready() {
            Ok(printed) => break (cluster, printed, base),
            // Another process took a port: try another range.
            Err(said) if said.contains("is in use") && attempt < 5 => continue,
            Err(said) => panic!("weir dev-cluster exited before it was ready:\n{said}"),
        }
    };
    let text = printed.join("\n");
    assert!(
        text.starts_with("weir dev cluster ready: 3 brokers serving"),
        "{text}"
    );
    let nodes: Vec<Vec<&str>> = ["1", "2", "3"]
        .iter()
        .flat_map(|id| rows(&text, id))
        .collect();
    assert_eq!(nodes.len(), 3, "{text}");
    let mut pids = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        // node, pid, role, kafka, grpc, internal, http, log
        let port = |offset: usize| format!("127.0.0.1:{}", usize::from(base) + 10 * i + offset);
        assert_eq!(node[2], "voter", "{text}");
        assert_eq!(node[3..7], [port(0), port(1), port(2), port(3)], "{text}");
        assert!(Path::new(node[7]).is_file(), "the log {} exists", node[7]);
        pids.push(node[1].parse::<i32>().expect("a pid"));
    }
    let grpc: Vec<&str> = nodes.iter().map(|n| n[4]).collect();
    assert!(
        text.contains(&format!(
            "gRPC, for weir and weir-client:  {}",
            grpc.join(",")
        )),
        "{text}"
    );

    // The quorum, through the first node.
    let quorum = weir(grpc[0], &["--output", "json", "cluster", "controller"]).json();
    let voters: Vec<(i64, String)> = quorum["voters"]
        .as_array()
        .expect("voters")
        .iter()
        .map(|v| {
            (
                v["node_id"].as_i64().unwrap(),
                v["internal_address"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: Vec<(i64, String)> = (0..3)
        .map(|i| (i + 1, nodes[i as usize][5].to_string()))
        .collect();
    assert_eq!(voters, expected, "{quorum}");
    assert_eq!(quorum["learners"], serde_json::json!([]));
    // Every node is a live broker (bounded: registrations reach the asked node's metadata).
    let deadline = Instant::now() + WAIT;
    loop {
        let brokers = weir(grpc[1], &["--output", "json", "cluster", "brokers"]).json();
        if brokers["brokers"].as_array().expect("brokers").len() == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "3 live brokers: {brokers}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // SIGTERM stops weir and every broker.
    kill_process(Pid::from_child(&cluster.child), Signal::TERM).unwrap();
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = cluster.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "weir dev-cluster stops within {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = cluster.stderr();
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("stopping 3 brokers (SIGTERM)"), "{stderr}");
    assert!(stderr.contains("all brokers stopped"), "{stderr}");
    for pid in pids {
        let pid = Pid::from_raw(pid).expect("a pid");
        let deadline = Instant::now() + Duration::from_secs(10);
        while test_kill_process(pid).is_ok() {
            assert!(Instant::now() < deadline, "broker {pid:?} exited");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn dev_cluster_start_refuses_ports_in_use_and_a_missing_binary() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    // The taken port is node 1's Kafka port, the first one looked at.
    let base = port.to_string();
    let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
    command
        .args([
            "dev-cluster",
            "start",
            "--nodes",
            "1",
            "--base-port",
            &base,
            "--dir",
        ])
        .arg(dir.path())
        .arg("--broker-bin")
        .arg(broker_binary());
    run(&mut command).one_line_failure(&format!(
        "port {port} (node 1's Kafka listener) is in use: stop what uses it, or pass another \
         --base-port"
    ));

    let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
    command
        .args(["dev-cluster", "start", "--dir"])
        .arg(dir.path())
        .env("WEIR_BROKER_BIN", dir.path().join("no-such-broker"));
    run(&mut command).one_line_failure("build it with `cargo build --bin weir-broker`");
}

#[test]
fn a_broker_that_exits_before_it_is_ready_is_named_with_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let missing_config = dir.path().join("missing.toml");
    let mut attempt = 0;
    loop {
        attempt += 1;
        let base = random_base_port().to_string();
        let mut command = Command::new(env!("CARGO_BIN_EXE_weir"));
        command
            .args([
                "dev-cluster",
                "start",
                "--nodes",
                "1",
                "--base-port",
                &base,
                "--dir",
            ])
            .arg(dir.path())
            .arg("--broker-bin")
            .arg(broker_binary())
            // The broker refuses to start: its config file does not exist.
            .env("WEIR_CONFIG", &missing_config);
        let failed = run(&mut command);
        if failed.stderr.contains("is in use") && attempt < 5 {
            continue;
        }
        let log = dir.path().join("node-1").join("broker.log");
        let message = failed.one_line_failure(&format!(
            "node 1 exited before it was ready with exit status: 1 (its last log line: error: \
             the configuration is not usable: cannot read the config file {}",
            missing_config.display()
        ));
        assert!(
            message.ends_with(&format!("; its log is {}", log.display())),
            "{message}"
        );
        assert!(failed.stdout.is_empty(), "{failed:?}");
        break;
    }
}
