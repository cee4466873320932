//! The three `weir-broker` processes, and what each says about the topic's partitions.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::net::TcpStream;

use crate::common;
use crate::common::broker_process::{BrokerProcess, Ports};
use crate::{HEARTBEAT_INTERVAL, NODES, PARTITIONS, SEGMENT_BYTES, SESSION_TIMEOUT, TOPIC, WAIT};

/// One node of the cluster: its directory (data in `data/`, its log lines in `broker.log`),
/// ports and process (none while it is down).
pub(crate) struct Node {
    pub(crate) id: i32,
    dir: PathBuf,
    pub(crate) ports: Ports,
    process: Option<BrokerProcess>,
    paused: bool,
}

impl Node {
    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub(crate) fn log_file(&self) -> PathBuf {
        self.dir.join("broker.log")
    }
}

/// Three nodes, every one a controller voter and a broker. Dropped in a panic, it keeps its
/// directory (the brokers' data and logs) and prints where it is.
pub(crate) struct Cluster {
    root: Option<tempfile::TempDir>,
    pub(crate) nodes: Vec<Node>,
}

impl Cluster {
    /// Starts the three nodes on ports chosen beforehand, choosing again if a port was taken
    /// between choosing and binding.
    pub(crate) fn start() -> Cluster {
        let root = tempfile::tempdir().unwrap();
        let mut cluster = Cluster {
            nodes: Vec::new(),
            root: Some(root),
        };
        for attempt in 1..=3 {
            cluster.nodes = (1..=NODES)
                .map(|id| {
                    let dir = cluster.root().join(format!("node-{id}"));
                    std::fs::create_dir_all(&dir).unwrap();
                    Node {
                        id,
                        dir,
                        ports: Ports::free(),
                        process: None,
                        paused: false,
                    }
                })
                .collect();
            for id in 1..=NODES {
                cluster.spawn(id);
            }
            match cluster.wait_all_serving() {
                Ok(()) => return cluster,
                Err(said) if said.contains("in use") && attempt < 3 => {
                    eprintln!("a chosen port was taken; choosing new ports");
                    for node in &mut cluster.nodes {
                        drop(node.process.take());
                    }
                }
                Err(said) => panic!("the cluster did not start: {said}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    fn root(&self) -> &Path {
        self.root
            .as_ref()
            .expect("the directory is kept until drop")
            .path()
    }

    fn node_mut(&mut self, id: i32) -> &mut Node {
        &mut self.nodes[usize::try_from(id - 1).unwrap()]
    }

    fn voters(&self) -> String {
        let voters: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("{}@{}", n.id, n.ports.internal_addr()))
            .collect();
        voters.join(",")
    }

    /// Every node's Kafka address, for a client's bootstrap list.
    pub(crate) fn bootstrap(&self) -> String {
        let addresses: Vec<String> = self.nodes.iter().map(|n| n.ports.kafka_addr()).collect();
        addresses.join(",")
    }

    /// Starts node `id`'s process on its ports and data directory.
    fn spawn(&mut self, id: i32) {
        let voters = self.voters();
        let node = self.node_mut(id);
        let node_id = id.to_string();
        let session = SESSION_TIMEOUT.as_millis().to_string();
        let heartbeat = HEARTBEAT_INTERVAL.as_millis().to_string();
        let segment = SEGMENT_BYTES.to_string();
        let args = [
            "--node-id",
            &node_id,
            "--data-dir",
            "data",
            "--controller-voters",
            &voters,
        ];
        let env = [
            ("WEIR_BROKER_SESSION_TIMEOUT_MS", session.as_str()),
            ("WEIR_BROKER_HEARTBEAT_INTERVAL_MS", heartbeat.as_str()),
            ("WEIR_LOG_SEGMENT_BYTES", segment.as_str()),
            ("WEIR_REPLICA_LAG_TIME_MAX_MS", "10000"),
        ];
        let log = node.log_file();
        node.process = Some(BrokerProcess::start_on(
            &node.dir,
            &node.ports,
            &args,
            &env,
            &log,
        ));
    }

    /// Waits until every running node is a live broker; what one said if it is not.
    fn wait_all_serving(&mut self) -> Result<(), String> {
        for node in &mut self.nodes {
            if let Some(process) = node.process.as_mut() {
                process
                    .try_wait_until_serving()
                    .map_err(|said| format!("node {}:\n{said}", node.id))?;
            }
        }
        Ok(())
    }

    pub(crate) fn kill(&mut self, id: i32) {
        let process = self.node_mut(id).process.take().expect("a running node");
        process.kill();
    }

    /// Starts node `id` again on the same ports and data directory and waits until it
    /// serves.
    pub(crate) fn restart(&mut self, id: i32) {
        self.spawn(id);
        let process = self.node_mut(id).process.as_mut().expect("just started");
        process.wait_until_serving();
    }

    pub(crate) fn pause(&mut self, id: i32) {
        let node = self.node_mut(id);
        node.process.as_ref().expect("a running node").pause();
        node.paused = true;
    }

    pub(crate) fn resume(&mut self, id: i32) {
        let node = self.node_mut(id);
        node.process.as_ref().expect("a running node").resume();
        node.paused = false;
    }

    /// The nodes that are running and not paused: the ones that answer.
    pub(crate) fn answering(&self) -> Vec<&Node> {
        self.nodes
            .iter()
            .filter(|n| n.process.is_some() && !n.paused)
            .collect()
    }

    /// Stops every node with SIGTERM, checking each exits cleanly.
    pub(crate) fn stop_all(&mut self) {
        for node in &mut self.nodes {
            if let Some(process) = node.process.take() {
                process.stop();
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(root) = self.root.take()
        {
            let kept = root.keep();
            eprintln!(
                "the brokers' data and logs are kept in {} (node-N/data, node-N/broker.log)",
                kept.display()
            );
        }
        // The nodes' processes are killed as they drop.
    }
}

/// One partition as a node's Metadata answer describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartitionView {
    leader: i32,
    isr: Vec<i32>,
}

/// Node `address`'s view of the topic's partitions (by index), or why there is none.
pub(crate) async fn describe(address: &str) -> Result<Vec<PartitionView>, String> {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default()
                .with_name(Some(TopicName(StrBytes::from_static_str(TOPIC)))),
        ]))
        .with_allow_auto_topic_creation(false);
    let ask = async {
        let mut stream = TcpStream::connect(address)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<MetadataResponse, String>(common::wire::call(&mut stream, &request, 9).await)
    };
    let response = tokio::time::timeout(Duration::from_secs(5), ask)
        .await
        .map_err(|_| format!("{address} did not answer Metadata in 5 s"))??;
    let topic = response.topics.first().ok_or("no topic in the answer")?;
    if topic.error_code != 0 {
        return Err(format!("topic error {}", topic.error_code));
    }
    let mut partitions: Vec<(i32, PartitionView)> = topic
        .partitions
        .iter()
        .map(|p| {
            let mut isr: Vec<i32> = p.isr_nodes.iter().map(|b| b.0).collect();
            isr.sort_unstable();
            let view = PartitionView {
                leader: p.leader_id.0,
                isr,
            };
            (p.partition_index, view)
        })
        .collect();
    partitions.sort_by_key(|(index, _)| *index);
    Ok(partitions.into_iter().map(|(_, view)| view).collect())
}

/// The partitions as every answering node describes them, if they all agree.
fn agreed_view(
    cluster: &Cluster,
    runtime: &tokio::runtime::Runtime,
) -> Result<Vec<PartitionView>, String> {
    let mut agreed: Option<Vec<PartitionView>> = None;
    for node in cluster.answering() {
        let view = runtime.block_on(describe(&node.ports.kafka_addr()))?;
        match &agreed {
            Some(other) if *other != view => {
                return Err(format!(
                    "nodes disagree: {other:?} and node {}: {view:?}",
                    node.id
                ));
            }
            _ => agreed = Some(view),
        }
    }
    agreed.ok_or_else(|| "no node answers".to_string())
}

impl Cluster {
    /// Waits until every answering node says every partition has a leader and all three brokers
    /// in its ISR; panics after [`WAIT`], naming the last view.
    pub(crate) fn wait_full_isr(&self, runtime: &tokio::runtime::Runtime, when: &str) {
        let deadline = Instant::now() + WAIT;
        let all: Vec<i32> = (1..=NODES).collect();
        loop {
            let view = agreed_view(self, runtime);
            if let Ok(partitions) = &view
                && partitions.len() == PARTITIONS as usize
                && partitions.iter().all(|p| p.leader > 0 && p.isr == all)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{when}: the ISRs were not full within {WAIT:?}; last view: {view:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The leader of `partition`, as the answering nodes agree.
    pub(crate) fn leader_of(&self, runtime: &tokio::runtime::Runtime, partition: i32) -> i32 {
        let deadline = Instant::now() + WAIT;
        loop {
            let view = agreed_view(self, runtime);
            if let Ok(partitions) = &view
                && let Some(p) = partitions.get(partition as usize)
                && p.leader > 0
            {
                return p.leader;
            }
            assert!(
                Instant::now() < deadline,
                "no leader of partition {partition} within {WAIT:?}: {view:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The high watermark of every partition, as librdkafka reads it.
pub(crate) fn high_watermarks(bootstrap: &str) -> Vec<i64> {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("a librdkafka client");
    (0..PARTITIONS)
        .map(|p| {
            client
                .fetch_watermarks(TOPIC, p, WAIT)
                .unwrap_or_else(|e| panic!("partition {p}'s watermarks: {e}"))
                .1
        })
        .collect()
}

pub(crate) fn create_topic(bootstrap: &str, runtime: &tokio::runtime::Runtime) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let topic = NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(NODES))
        .set("min.insync.replicas", "2");
    let options = AdminOptions::new().operation_timeout(Some(WAIT));
    let created = runtime
        .block_on(admin.create_topics([&topic], &options))
        .unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
}
