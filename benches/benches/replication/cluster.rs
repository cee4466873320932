//! Three `weir-broker` processes on 127.0.0.1, every one a controller voter and a broker, as
//! `weir dev-cluster start` runs them: a node can be killed and started again on the same
//! ports and data directory.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::common::broker::{Broker, BrokerSpec, Ports, WAIT};
use crate::wire::{KafkaConnection, NodeView};

/// The nodes, with ids 1 to 3.
pub(crate) const NODES: i32 = 3;
/// Each partition's segment size: 256 MiB rather than the default 1 GiB, because each
/// replica's first segment is preallocated (eleven of 1 GiB would take 11 GiB of disk), and at
/// the default counts no phase fills one, so no segment rolls either way.
const SEGMENT_BYTES: u64 = 256 << 20;
/// What the brokers log unless `RUST_LOG` says otherwise: the binary's own default, which
/// includes the lines the bench reads (a node serving and live, a broker fenced, a follower
/// following a new leader) and nothing per request.
const DEFAULT_LOG_FILTER: &str = "info,openraft=warn";

/// One node: how it is started, and its process while it runs.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) id: i32,
    spec: BrokerSpec,
    process: Option<Broker>,
}

impl Node {
    /// The Kafka address, `127.0.0.1:port`.
    pub(crate) fn kafka_addr(&self) -> String {
        format!("127.0.0.1:{}", self.spec.ports.kafka)
    }

    /// The running process, if the node is up.
    pub(crate) fn process(&self) -> Option<&Broker> {
        self.process.as_ref()
    }
}

/// The three nodes. Dropping it kills every process and removes their data.
#[derive(Debug)]
pub(crate) struct Cluster {
    pub(crate) nodes: Vec<Node>,
    _root: TempDir,
}

impl Cluster {
    /// Starts the three nodes with their data in a new directory under `scratch`, each
    /// appending what it logs to `logs/node-N.log` if `logs` is given; chooses new ports if
    /// one was taken between choosing and binding.
    pub(crate) fn start(binary: &Path, scratch: &Path, logs: Option<&Path>) -> Cluster {
        let mut root = tempfile::Builder::new()
            .prefix("replication-")
            .tempdir_in(scratch)
            .expect("create the cluster's directory");
        if let Some(logs) = logs {
            std::fs::create_dir_all(logs)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", logs.display()));
        }
        let mut attempt = 1;
        loop {
            let ports: Vec<Ports> = (0..NODES).map(|_| Ports::free()).collect();
            let voters: Vec<String> = (1..=NODES)
                .zip(&ports)
                .map(|(id, p)| format!("{id}@{}", p.internal_addr()))
                .collect();
            let voters = voters.join(",");
            let mut cluster = Cluster {
                nodes: Vec::new(),
                _root: root,
            };
            for (id, ports) in (1..=NODES).zip(ports) {
                let data_dir = cluster._root.path().join(format!("node-{id}"));
                std::fs::create_dir_all(&data_dir)
                    .unwrap_or_else(|e| panic!("cannot create {}: {e}", data_dir.display()));
                let log_file = logs.map(|dir| dir.join(format!("node-{id}.log")));
                if let Some(file) = &log_file {
                    // A new run starts the file afresh; a restart in this run appends.
                    let _absent = std::fs::remove_file(file);
                }
                cluster.nodes.push(Node {
                    id,
                    spec: node_spec(binary, data_dir, ports, id, &voters, log_file),
                    process: None,
                });
            }
            match cluster.start_all() {
                Ok(()) => return cluster,
                Err(said) if said.contains("in use") && attempt < 3 => {
                    eprintln!("a chosen port was taken; choosing new ports");
                    attempt += 1;
                    for node in &mut cluster.nodes {
                        drop(node.process.take());
                        std::fs::remove_dir_all(&node.spec.data_dir).unwrap_or_else(|e| {
                            panic!("cannot remove {}: {e}", node.spec.data_dir.display())
                        });
                    }
                    root = cluster._root;
                }
                Err(said) => panic!("the cluster did not start: {said}"),
            }
        }
    }

    /// Starts every node at once (each waits for the others to form the quorum), then waits
    /// until each is a live broker.
    fn start_all(&mut self) -> Result<(), String> {
        let results: Vec<Result<Broker, String>> = std::thread::scope(|scope| {
            let starting: Vec<_> = self
                .nodes
                .iter()
                .map(|node| scope.spawn(move || Broker::start(&node.spec)))
                .collect();
            starting
                .into_iter()
                .map(|handle| handle.join().expect("a thread starting a node"))
                .collect()
        });
        let mut failed = Vec::new();
        for (node, result) in self.nodes.iter_mut().zip(results) {
            match result {
                Ok(process) => node.process = Some(process),
                Err(said) => failed.push(format!("node {}: {said}", node.id)),
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed.join("\n"))
        }
    }

    /// Every node's Kafka address, for a client's bootstrap list.
    pub(crate) fn bootstrap(&self) -> String {
        let addresses: Vec<String> = self.nodes.iter().map(Node::kafka_addr).collect();
        addresses.join(",")
    }

    pub(crate) fn node(&self, id: i32) -> &Node {
        &self.nodes[usize::try_from(id - 1).expect("node ids start at 1")]
    }

    fn node_mut(&mut self, id: i32) -> &mut Node {
        &mut self.nodes[usize::try_from(id - 1).expect("node ids start at 1")]
    }

    /// The processes of the nodes that are up.
    pub(crate) fn running(&self) -> Vec<&Broker> {
        self.nodes.iter().filter_map(Node::process).collect()
    }

    /// Writes `text` into the log file of every node that is up (if logs are kept), to mark
    /// what the bench did.
    pub(crate) fn mark(&self, text: &str) {
        for broker in self.running() {
            broker.log().mark(text);
        }
    }

    /// Kills node `id` with SIGKILL.
    pub(crate) fn kill(&mut self, id: i32) {
        let process = self.node_mut(id).process.take().expect("a running node");
        process.kill();
    }

    /// Starts node `id` again on its ports and data directory and waits until it is a live
    /// broker.
    pub(crate) fn restart(&mut self, id: i32) {
        let node = self.node_mut(id);
        assert!(node.process.is_none(), "node {id} is still running");
        let process = Broker::start(&node.spec)
            .unwrap_or_else(|said| panic!("node {id} did not start again: {said}"));
        node.process = Some(process);
    }

    /// Stops every node with SIGTERM, checking each exits cleanly.
    pub(crate) fn stop_all(&mut self) {
        for node in &mut self.nodes {
            if let Some(process) = node.process.take() {
                process.stop();
            }
        }
    }

    /// What each running node says about `topic`, by node id.
    pub(crate) fn views(
        &self,
        probes: &mut Probes,
        topic: &str,
    ) -> Vec<(i32, Result<NodeView, String>)> {
        self.nodes
            .iter()
            .filter(|node| node.process.is_some())
            .map(|node| (node.id, probes.of(node).describe(topic)))
            .collect()
    }

    /// Waits until every running node says partition 0 of `topic` has a leader and all three
    /// nodes in its ISR, and that one node is the active controller; returns the view they
    /// agree on. Panics after [`WAIT`], naming the last views.
    pub(crate) fn wait_full_isr(&self, probes: &mut Probes, topic: &str) -> NodeView {
        let deadline = Instant::now() + WAIT;
        let all: Vec<i32> = (1..=NODES).collect();
        loop {
            let views = self.views(probes, topic);
            let agreed = views
                .first()
                .and_then(|(_, first)| first.as_ref().ok())
                .filter(|first| views.iter().all(|(_, v)| v.as_ref().ok() == Some(*first)));
            if let Some(view) = agreed
                && view.controller > 0
                && let Some(p) = &view.partition
                && p.leader > 0
                && p.isr == all
            {
                return view.clone();
            }
            assert!(
                Instant::now() < deadline,
                "the ISR of {topic} was not full within {WAIT:?}; the nodes say {views:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A [`KafkaConnection`] per node, kept across calls.
#[derive(Debug, Default)]
pub(crate) struct Probes {
    by_node: Vec<(i32, KafkaConnection)>,
}

impl Probes {
    pub(crate) fn of(&mut self, node: &Node) -> &mut KafkaConnection {
        let index = match self.by_node.iter().position(|(id, _)| *id == node.id) {
            Some(index) => index,
            None => {
                self.by_node
                    .push((node.id, KafkaConnection::new(&node.kafka_addr())));
                self.by_node.len() - 1
            }
        };
        &mut self.by_node[index].1
    }
}

/// How node `id` is started: its data directory and listeners, the voter list, 256 MiB
/// segments, and otherwise the defaults.
fn node_spec(
    binary: &Path,
    data_dir: PathBuf,
    ports: Ports,
    id: i32,
    voters: &str,
    log_file: Option<PathBuf>,
) -> BrokerSpec {
    let log_filter = std::env::var("RUST_LOG").unwrap_or_else(|_| DEFAULT_LOG_FILTER.to_string());
    BrokerSpec {
        binary: binary.to_path_buf(),
        data_dir,
        ports,
        args: vec![
            "--node-id".to_string(),
            id.to_string(),
            "--controller-voters".to_string(),
            voters.to_string(),
        ],
        env: vec![
            (
                "WEIR_LOG_SEGMENT_BYTES".to_string(),
                SEGMENT_BYTES.to_string(),
            ),
            ("RUST_LOG".to_string(), log_filter),
        ],
        log_file,
    }
}
