//! `weir dev-cluster start`: a local cluster of `weir-broker` processes for development.
//!
//! Node `i` (1..=N) listens on 127.0.0.1, ports `base + 10*(i-1) + {0, 1, 2, 3}` for Kafka,
//! gRPC, internal (Raft, replication) and HTTP (`/readyz`), keeps its data in `DIR/node-i`
//! and appends its log to `DIR/node-i/broker.log`. The first three nodes are the controller
//! voters; any others are learners. With the default base port 9092, node 1 is where a single
//! default broker would be, so `weir` finds the cluster without `--bootstrap`.
//!
//! ```text
//!   start brokers ──▶ every /readyz 200 (bounded) ──▶ print addresses ──▶ wait
//!         │                   │ a broker exits or the wait ends: error      │
//!         └───────────────────┴──────── SIGINT / SIGTERM / a broker exits ◀─┘
//!                          stop: SIGTERM each broker, SIGKILL after a timeout
//! ```
//!
//! The brokers are stopped on every way out of `run` (a `Drop` guard), so an error while
//! starting leaves no process behind. A second Ctrl-C exits at once.

use std::env;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;
use rustix::process::{Pid, Signal, kill_process};
use serde::Serialize;

use crate::Global;
use crate::output::{self, Output};

/// The name of the broker binary.
const BROKER_BINARY: &str = "weir-broker";
/// How long the brokers may take to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the brokers may take to stop after SIGTERM before they are killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the processes and `/readyz` are looked at.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How many nodes vote in the controller quorum at most.
const VOTERS_MAX: usize = 3;
/// The start of the line written to a broker's log before each start (the log is appended
/// to, run after run).
const START_MARK: &str = "--- weir dev-cluster: starting";
/// How many nodes a dev cluster may have.
const NODES_MAX: u16 = 50;

/// Arguments of `weir dev-cluster`.
#[derive(Debug, clap::Args)]
pub(crate) struct DevClusterArgs {
    #[command(subcommand)]
    command: DevClusterCommand,
}

#[derive(Debug, Subcommand)]
enum DevClusterCommand {
    /// Start N brokers on this machine and run them until Ctrl-C.
    Start(StartArgs),
}

#[derive(Debug, clap::Args)]
struct StartArgs {
    /// How many brokers (node ids 1..=N; the first three are the controller voters).
    #[arg(long, default_value_t = 3, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=NODES_MAX as i64))]
    nodes: u16,
    /// Where the nodes keep their data and logs (`DIR/node-I`, `DIR/node-I/broker.log`).
    #[arg(long, default_value = "weir-dev-cluster", value_name = "PATH")]
    dir: PathBuf,
    /// Node I listens on BASE+10*(I-1) + 0 (Kafka), 1 (gRPC), 2 (internal), 3 (HTTP).
    #[arg(long, default_value_t = 9092, value_name = "BASE")]
    base_port: u16,
    /// The `weir-broker` binary [default: the one next to `weir`, else the one on PATH].
    #[arg(long, env = "WEIR_BROKER_BIN", value_name = "PATH")]
    broker_bin: Option<PathBuf>,
}

/// Runs `weir dev-cluster`.
pub(crate) fn run(args: &DevClusterArgs, global: &Global) -> Result<()> {
    match &args.command {
        DevClusterCommand::Start(start) => run_start(start, global.output),
    }
}

/// One node's id and ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NodePlan {
    id: u16,
    kafka: u16,
    grpc: u16,
    internal: u16,
    http: u16,
}

impl NodePlan {
    fn ports(&self) -> [(&'static str, u16); 4] {
        [
            ("Kafka", self.kafka),
            ("gRPC", self.grpc),
            ("internal", self.internal),
            ("HTTP", self.http),
        ]
    }
}

fn loopback(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// The nodes of a cluster of `nodes` brokers with ports from `base_port`.
fn plan(nodes: u16, base_port: u16) -> Result<Vec<NodePlan>> {
    let last = u32::from(base_port) + 10 * (u32::from(nodes) - 1) + 3;
    if last > u32::from(u16::MAX) {
        bail!(
            "--base-port {base_port} leaves no room for {nodes} nodes (the last port would be \
             {last}): pass a lower --base-port"
        );
    }
    Ok((1..=nodes)
        .map(|id| {
            let base = base_port + 10 * (id - 1);
            NodePlan {
                id,
                kafka: base,
                grpc: base + 1,
                internal: base + 2,
                http: base + 3,
            }
        })
        .collect())
}

/// `--controller-voters`: the first three nodes.
fn voters(nodes: &[NodePlan]) -> String {
    nodes
        .iter()
        .take(VOTERS_MAX)
        .map(|n| format!("{}@{}", n.id, loopback(n.internal)))
        .collect::<Vec<_>>()
        .join(",")
}

/// The command line of one broker.
fn broker_args(node: &NodePlan, data_dir: &Path, voters: &str) -> Vec<String> {
    vec![
        "--node-id".into(),
        node.id.to_string(),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--kafka-addr".into(),
        loopback(node.kafka),
        "--grpc-addr".into(),
        loopback(node.grpc),
        "--internal-addr".into(),
        loopback(node.internal),
        "--http-addr".into(),
        loopback(node.http),
        "--controller-voters".into(),
        voters.to_string(),
    ]
}

/// The broker binary: `explicit`, else the one next to the running `weir`, else on PATH.
fn broker_binary(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        if path.is_file() {
            return Ok(path.to_path_buf());
        }
        bail!(
            "the broker binary {} (--broker-bin or WEIR_BROKER_BIN) does not exist: build it \
             with `cargo build --bin weir-broker`, or name another",
            path.display()
        );
    }
    let name = format!("{BROKER_BINARY}{}", env::consts::EXE_SUFFIX);
    let beside = env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(&name)));
    if let Some(candidate) = &beside
        && candidate.is_file()
    {
        return Ok(candidate.clone());
    }
    if let Some(path) = env::var_os("PATH") {
        for dir in env::split_paths(&path) {
            let candidate = dir.join(&name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    let beside = beside.as_deref().and_then(Path::parent).map_or_else(
        || "the weir binary".to_string(),
        |d| d.display().to_string(),
    );
    bail!(
        "cannot find the {BROKER_BINARY} binary in {beside} or on PATH: build it with `cargo \
         build --bin weir-broker` (with --release for a release build of weir), or name it \
         with --broker-bin"
    )
}

/// Fails if a port of the plan is taken, so that a broker does not fail to bind it later.
fn check_ports_free(nodes: &[NodePlan]) -> Result<()> {
    for node in nodes {
        for (what, port) in node.ports() {
            TcpListener::bind(loopback(port)).with_context(|| {
                format!(
                    "port {port} (node {}'s {what} listener) is in use: stop what uses it, or \
                     pass another --base-port",
                    node.id
                )
            })?;
        }
    }
    Ok(())
}

/// A started broker.
#[derive(Debug)]
struct RunningNode {
    plan: NodePlan,
    child: Child,
    log: PathBuf,
}

impl RunningNode {
    fn pid(&self) -> Pid {
        Pid::from_child(&self.child)
    }

    /// The last line the broker logged, to say why it stopped.
    fn last_log_line(&self) -> Option<String> {
        let mut text = String::new();
        File::open(&self.log).ok()?.read_to_string(&mut text).ok()?;
        text.lines()
            .rev()
            .take_while(|l| !l.starts_with(START_MARK))
            .find(|l| !l.trim().is_empty())
            .map(|l| l.trim().to_string())
    }

    /// The error of a broker that exited `when` ("before it was ready", ...).
    fn exited(&self, status: ExitStatus, when: &str) -> anyhow::Error {
        let said = self
            .last_log_line()
            .map_or_else(String::new, |line| format!(" (its last log line: {line})"));
        anyhow!(
            "node {} exited {when} with {status}{said}; its log is {}",
            self.plan.id,
            self.log.display()
        )
    }
}

/// The running brokers; dropping it stops them.
#[derive(Debug)]
struct Cluster {
    nodes: Vec<RunningNode>,
}

impl Cluster {
    /// SIGTERM to every broker still running, SIGKILL to those still running after
    /// [`STOP_TIMEOUT`]. Returns the ids of those that had to be killed.
    fn stop(&mut self) -> Vec<u16> {
        for node in &mut self.nodes {
            if matches!(node.child.try_wait(), Ok(None)) {
                // It may exit between the check and the signal: nothing then to stop.
                let _ = kill_process(node.pid(), Signal::TERM);
            }
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline
            && self
                .nodes
                .iter_mut()
                .any(|n| matches!(n.child.try_wait(), Ok(None)))
        {
            std::thread::sleep(POLL_INTERVAL);
        }
        let mut killed = Vec::new();
        for node in &mut self.nodes {
            if matches!(node.child.try_wait(), Ok(None)) {
                killed.push(node.plan.id);
                let _ = node.child.kill();
            }
            let _ = node.child.wait();
        }
        killed
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether `GET /readyz` on `address` answers 200, or what it answered.
fn ready(address: &str) -> Result<(), String> {
    let socket = address
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or_else(|| format!("{address} names no address"))?;
    let mut stream = TcpStream::connect_timeout(&socket, Duration::from_secs(1))
        .map_err(|e| format!("cannot connect: {e}"))?;
    let timeout = Some(Duration::from_secs(2));
    stream
        .set_read_timeout(timeout)
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(timeout)
        .map_err(|e| e.to_string())?;
    // One request and its status line: no HTTP client library needed for that.
    write!(
        stream,
        "GET /readyz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("cannot send the request: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("cannot read the answer: {e}"))?;
    let status = response.split_whitespace().nth(1).unwrap_or("");
    if status == "200" {
        return Ok(());
    }
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body.trim());
    Err(format!("/readyz answered {status}: {body}"))
}

fn run_start(args: &StartArgs, output: Output) -> Result<()> {
    let binary = broker_binary(args.broker_bin.as_deref())?;
    let plans = plan(args.nodes, args.base_port)?;
    check_ports_free(&plans)?;
    fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create the directory {}", args.dir.display()))?;
    let dir = fs::canonicalize(&args.dir)
        .with_context(|| format!("cannot resolve the directory {}", args.dir.display()))?;

    // Listen for Ctrl-C and SIGTERM before any broker starts; a second one exits at once.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(signal, 128 + signal, Arc::clone(&stop))
            .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&stop)))
            .context("cannot listen for Ctrl-C and SIGTERM")?;
    }

    let voters = voters(&plans);
    let mut cluster = Cluster { nodes: Vec::new() };
    for node in &plans {
        cluster
            .nodes
            .push(start_node(&binary, &dir, node, &voters, plans.len())?);
    }
    if !wait_until_ready(&mut cluster, &stop)? {
        return stop_cluster(cluster);
    }
    print_ready(&cluster, &dir, output)?;

    while !stop.load(Ordering::SeqCst) {
        for node in &mut cluster.nodes {
            if let Some(status) = node.child.try_wait().context("cannot watch the brokers")? {
                eprintln!(
                    "weir dev-cluster: node {} exited; stopping the other brokers",
                    node.plan.id
                );
                // Dropping the cluster stops the others; then `main` prints the error.
                return Err(node.exited(status, "unexpectedly"));
            }
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    stop_cluster(cluster)
}

/// Starts one broker, its output appended to its log file.
fn start_node(
    binary: &Path,
    dir: &Path,
    node: &NodePlan,
    voters: &str,
    node_count: usize,
) -> Result<RunningNode> {
    let data_dir = dir.join(format!("node-{}", node.id));
    fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create the directory {}", data_dir.display()))?;
    let log = data_dir.join("broker.log");
    let mut log_file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .with_context(|| format!("cannot open the log file {}", log.display()))?;
    writeln!(
        log_file,
        "{START_MARK} node {} ({}) ---",
        node.id,
        binary.display()
    )
    .with_context(|| format!("cannot write the log file {}", log.display()))?;
    let stderr = log_file
        .try_clone()
        .with_context(|| format!("cannot share the log file {}", log.display()))?;
    let mut command = Command::new(binary);
    command
        .args(broker_args(node, &data_dir, voters))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(stderr);
    // Topics are replicated like a production cluster's unless the environment says
    // otherwise: three copies (or as many as there are nodes), two of them in sync.
    let replicas = node_count.min(3);
    for (variable, value) in [
        ("WEIR_DEFAULT_REPLICATION_FACTOR", replicas),
        ("WEIR_MIN_INSYNC_REPLICAS", replicas.min(2)),
    ] {
        if env::var_os(variable).is_none() {
            command.env(variable, value.to_string());
        }
    }
    let child = command
        .spawn()
        .with_context(|| format!("cannot start {} for node {}", binary.display(), node.id))?;
    Ok(RunningNode {
        plan: *node,
        child,
        log,
    })
}

/// Waits until every broker's `/readyz` says 200; `false` if a signal came first.
fn wait_until_ready(cluster: &mut Cluster, stop: &AtomicBool) -> Result<bool> {
    let deadline = Instant::now() + START_TIMEOUT;
    let mut ready_nodes = vec![false; cluster.nodes.len()];
    let mut last_answer = vec![String::from("no answer yet"); cluster.nodes.len()];
    while ready_nodes.iter().any(|r| !r) {
        if stop.load(Ordering::SeqCst) {
            return Ok(false);
        }
        for (i, node) in cluster.nodes.iter_mut().enumerate() {
            if ready_nodes[i] {
                continue;
            }
            if let Some(status) = node.child.try_wait().context("cannot watch the brokers")? {
                return Err(node.exited(status, "before it was ready"));
            }
            match ready(&loopback(node.plan.http)) {
                Ok(()) => ready_nodes[i] = true,
                Err(answer) => last_answer[i] = answer,
            }
        }
        if Instant::now() > deadline {
            let i = ready_nodes
                .iter()
                .position(|r| !r)
                .expect("a node is not ready");
            let node = &cluster.nodes[i];
            bail!(
                "node {} is not ready after {} s ({}): see its log {}",
                node.plan.id,
                START_TIMEOUT.as_secs(),
                last_answer[i],
                node.log.display()
            );
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    Ok(true)
}

/// Stops the brokers, saying so on standard error.
fn stop_cluster(mut cluster: Cluster) -> Result<()> {
    eprintln!(
        "weir dev-cluster: stopping {} brokers (SIGTERM)",
        cluster.nodes.len()
    );
    let killed = cluster.stop();
    if killed.is_empty() {
        eprintln!("weir dev-cluster: all brokers stopped");
        Ok(())
    } else {
        bail!(
            "nodes {} did not stop within {} s of SIGTERM and were killed; the next start \
             recovers their logs",
            output::list(&killed),
            STOP_TIMEOUT.as_secs()
        )
    }
}

/// What `--output json` prints once the cluster is ready (on one line, so a script can read
/// it as one).
#[derive(Debug, Serialize)]
struct ReadyJson {
    dir: String,
    bootstrap_grpc: String,
    bootstrap_kafka: String,
    nodes: Vec<NodeJson>,
}

#[derive(Debug, Serialize)]
struct NodeJson {
    node_id: u16,
    pid: i32,
    voter: bool,
    kafka_address: String,
    grpc_address: String,
    internal_address: String,
    http_address: String,
    log: String,
}

fn print_ready(cluster: &Cluster, dir: &Path, output: Output) -> Result<()> {
    let join = |port: fn(&NodePlan) -> u16| {
        cluster
            .nodes
            .iter()
            .map(|n| loopback(port(&n.plan)))
            .collect::<Vec<_>>()
            .join(",")
    };
    let ready = ReadyJson {
        dir: dir.display().to_string(),
        bootstrap_grpc: join(|p| p.grpc),
        bootstrap_kafka: join(|p| p.kafka),
        nodes: cluster
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| NodeJson {
                node_id: n.plan.id,
                pid: n.pid().as_raw_nonzero().get(),
                voter: i < VOTERS_MAX,
                kafka_address: loopback(n.plan.kafka),
                grpc_address: loopback(n.plan.grpc),
                internal_address: loopback(n.plan.internal),
                http_address: loopback(n.plan.http),
                log: n.log.display().to_string(),
            })
            .collect(),
    };
    let text = match output {
        Output::Json => serde_json::to_string(&ready).context("cannot write the answer as JSON")?,
        Output::Table => ready_text(&ready),
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .context("cannot write to standard output")
}

fn ready_text(ready: &ReadyJson) -> String {
    let mut table = output::table(
        &[
            "node", "pid", "role", "kafka", "grpc", "internal", "http", "log",
        ],
        &["node", "pid"],
    );
    for n in &ready.nodes {
        table.add_row(vec![
            n.node_id.to_string(),
            n.pid.to_string(),
            if n.voter { "voter" } else { "learner" }.to_string(),
            n.kafka_address.clone(),
            n.grpc_address.clone(),
            n.internal_address.clone(),
            n.http_address.clone(),
            n.log.clone(),
        ]);
    }
    let first_grpc = ready.nodes[0].grpc_address.as_str();
    let first_kafka = ready.nodes[0].kafka_address.as_str();
    format!(
        "weir dev cluster ready: {count} brokers serving, data and logs in {dir}\n\n\
         {table}\n\
         Bootstrap addresses:\n\
         \x20 gRPC, for weir and weir-client:  {grpc}\n\
         \x20 Kafka, for any Kafka client:     {kafka}\n\n\
         Try:\n\
         \x20 export WEIR_BOOTSTRAP={grpc}\n\
         \x20 weir --bootstrap {first_grpc} cluster brokers\n\
         \x20 weir --bootstrap {first_grpc} topic create demo --partitions 3\n\
         \x20 kcat -b {first_kafka} -L\n\n\
         Ctrl-C stops the cluster.",
        count = ready.nodes.len(),
        dir = ready.dir,
        table = output::render(&table),
        grpc = ready.bootstrap_grpc,
        kafka = ready.bootstrap_kafka,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_get_ten_ports_apart_and_the_first_three_vote() {
        let nodes = plan(4, 9092).unwrap();
        assert_eq!(
            nodes[0],
            NodePlan {
                id: 1,
                kafka: 9092,
                grpc: 9093,
                internal: 9094,
                http: 9095
            }
        );
        assert_eq!(
            nodes[3],
            NodePlan {
                id: 4,
                kafka: 9122,
                grpc: 9123,
                internal: 9124,
                http: 9125
            }
        );
        assert_eq!(
            voters(&nodes),
            "1@127.0.0.1:9094,2@127.0.0.1:9104,3@127.0.0.1:9114"
        );
        assert_eq!(voters(&nodes[..1]), "1@127.0.0.1:9094");
    }

    #[test]
    fn a_base_port_too_high_is_refused() {
        assert!(plan(1, 65532).is_ok());
        let err = plan(2, 65530).unwrap_err().to_string();
        assert!(err.contains("pass a lower --base-port"), "{err}");
    }

    #[test]
    fn a_broker_gets_every_listener_and_the_voters() {
        let node = plan(2, 20000).unwrap()[1];
        let args = broker_args(&node, Path::new("/d/node-2"), "1@127.0.0.1:20002");
        assert_eq!(
            args.join(" "),
            "--node-id 2 --data-dir /d/node-2 --kafka-addr 127.0.0.1:20010 --grpc-addr \
             127.0.0.1:20011 --internal-addr 127.0.0.1:20012 --http-addr 127.0.0.1:20013 \
             --controller-voters 1@127.0.0.1:20002"
        );
    }

    #[test]
    fn a_missing_broker_binary_says_how_to_build_it() {
        let err = broker_binary(Some(Path::new("/nonexistent/weir-broker")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cargo build --bin weir-broker"), "{err}");
    }
}
