//! Replication through faults, with three real `weir-broker` processes (all three controller
//! voters and brokers) on loopback.
//!
//! An idempotent librdkafka producer (acks=all) writes numbered records to every partition of a
//! topic with replication factor 3 and `min.insync.replicas=2`, without pause, while a consumer
//! reads every partition; meanwhile, for a minute, the leader of one partition after another is
//! killed with SIGKILL and started again on its data directory, or paused with SIGSTOP for
//! twice the broker session timeout (so the controller fences it and another replica takes
//! over) and resumed with SIGCONT (so it finds it no longer leads and truncates what was never
//! committed). Between two faults every partition's ISR is all three brokers again, so only a
//! minority is ever down.
//!
//! Afterwards the brokers stop cleanly and every replica's log is opened with
//! `storage::Log` and checked (DESIGN section 11): every acknowledged record is in every
//! replica exactly once, at the offset it was acknowledged at, in the order it was sent; no
//! record is there twice; the replicas' logs are identical, batch for batch; and every record
//! the consumer read is in the final log at the offset it was read at (no consumer saw a record
//! that later disappeared), with no offset skipped.
//!
//! The test prints the records acknowledged, the sends librdkafka retried, the longest time
//! without an acknowledged write, and the faults injected. When it fails, the brokers' data
//! directories and log files are kept, and their paths printed.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use tokio::net::TcpStream;
use weir_broker::clock::{Clock, SystemClock};
use weir_broker::config::LogConfig;
use weir_broker::storage::{Log, OpenState};
use weir_proto::batch;

use common::broker_process::{BrokerProcess, Ports};

const TOPIC: &str = "faults";
const PARTITIONS: i32 = 4;
const NODES: i32 = 3;
/// The cluster's `broker_session_timeout_ms`.
const SESSION_TIMEOUT: Duration = Duration::from_millis(3000);
/// The cluster's `broker_heartbeat_interval_ms`.
const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);
/// Faults are injected for at least this long.
const FAULT_TIME: Duration = Duration::from_secs(60);
/// How long a killed broker stays down.
const DOWN_TIME: Duration = Duration::from_secs(3);
/// Records sent per second, over all partitions.
const SEND_RATE: u64 = 2_000;
/// Small segments, so that logs roll (and do not preallocate a GiB each).
const SEGMENT_BYTES: u64 = 4 << 20;
/// The bound on each wait: a start, a full ISR, a flush, the consumer catching up.
const WAIT: Duration = Duration::from_secs(60);

/// One node of the cluster: its directory (data in `data/`, its log lines in `broker.log`),
/// ports and process (none while it is down).
struct Node {
    id: i32,
    dir: PathBuf,
    ports: Ports,
    process: Option<BrokerProcess>,
    paused: bool,
}

impl Node {
    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.join("broker.log")
    }
}

/// Three nodes, every one a controller voter and a broker. Dropped in a panic, it keeps its
/// directory (the brokers' data and logs) and prints where it is.
struct Cluster {
    root: Option<tempfile::TempDir>,
    nodes: Vec<Node>,
}

impl Cluster {
    /// Starts the three nodes on ports chosen beforehand, choosing again if a port was taken
    /// between choosing and binding.
    fn start() -> Cluster {
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
    fn bootstrap(&self) -> String {
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

    fn kill(&mut self, id: i32) {
        let process = self.node_mut(id).process.take().expect("a running node");
        process.kill();
    }

    /// Starts node `id` again on the same ports and data directory and waits until it
    /// serves.
    fn restart(&mut self, id: i32) {
        self.spawn(id);
        let process = self.node_mut(id).process.as_mut().expect("just started");
        process.wait_until_serving();
    }

    fn pause(&mut self, id: i32) {
        let node = self.node_mut(id);
        node.process.as_ref().expect("a running node").pause();
        node.paused = true;
    }

    fn resume(&mut self, id: i32) {
        let node = self.node_mut(id);
        node.process.as_ref().expect("a running node").resume();
        node.paused = false;
    }

    /// The nodes that are running and not paused: the ones that answer.
    fn answering(&self) -> Vec<&Node> {
        self.nodes
            .iter()
            .filter(|n| n.process.is_some() && !n.paused)
            .collect()
    }

    /// Stops every node with SIGTERM, checking each exits cleanly.
    fn stop_all(&mut self) {
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
struct PartitionView {
    leader: i32,
    isr: Vec<i32>,
}

/// Node `address`'s view of the topic's partitions (by index), or why there is none.
async fn describe(address: &str) -> Result<Vec<PartitionView>, String> {
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

/// Waits until every answering node says every partition has a leader and all three brokers
/// in its ISR; panics after [`WAIT`], naming the last view.
fn wait_full_isr(cluster: &Cluster, runtime: &tokio::runtime::Runtime, when: &str) {
    let deadline = Instant::now() + WAIT;
    let all: Vec<i32> = (1..=NODES).collect();
    loop {
        let view = agreed_view(cluster, runtime);
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
fn leader_of(cluster: &Cluster, runtime: &tokio::runtime::Runtime, partition: i32) -> i32 {
    let deadline = Instant::now() + WAIT;
    loop {
        let view = agreed_view(cluster, runtime);
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

/// What the producer's delivery reports and statistics said.
#[derive(Debug, Default)]
struct Deliveries {
    /// Acknowledged records: (partition, sequence number) → offset.
    acked: Mutex<BTreeMap<(i32, u64), i64>>,
    /// Records that failed, with librdkafka's reason.
    failed: Mutex<Vec<(i32, u64, String)>>,
    /// Sends librdkafka retried (its statistics: each broker's `txretries`, summed).
    retries: AtomicU64,
    /// Errors librdkafka reported (connections lost, requests timed out, ...).
    client_errors: AtomicU64,
    /// When the last acknowledgement arrived, and the longest time between two.
    last_ack: Mutex<Option<Instant>>,
    longest_gap: Mutex<Duration>,
}

/// The producer's context: reports into the shared [`Deliveries`].
struct Reporter(Arc<Deliveries>);

impl ClientContext for Reporter {
    fn stats(&self, statistics: Statistics) {
        let retries: u64 = statistics.brokers.values().map(|b| b.txretries).sum();
        self.0.retries.fetch_max(retries, Ordering::Relaxed);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.0.client_errors.fetch_add(1, Ordering::Relaxed);
        eprintln!("producer: {error}: {reason}");
    }
}

impl ProducerContext for Reporter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        self.0.record(result);
    }
}

impl Deliveries {
    fn record(&self, result: &DeliveryResult<'_>) {
        let (message, error) = match result {
            Ok(message) => (message, None),
            Err((error, message)) => (message, Some(error.to_string())),
        };
        let value = std::str::from_utf8(message.payload().unwrap_or_default()).unwrap_or("");
        let (partition, sequence) = parse_value(value).expect("the test's own value");
        match error {
            None => {
                self.acked
                    .lock()
                    .unwrap()
                    .insert((partition, sequence), message.offset());
                let now = Instant::now();
                let mut last = self.last_ack.lock().unwrap();
                if let Some(last) = *last {
                    let mut longest = self.longest_gap.lock().unwrap();
                    *longest = (*longest).max(now - last);
                }
                *last = Some(now);
            }
            Some(error) => self
                .failed
                .lock()
                .unwrap()
                .push((partition, sequence, error)),
        }
    }
}

/// `p{partition}-{sequence}` → (partition, sequence).
fn parse_value(value: &str) -> Option<(i32, u64)> {
    let (partition, sequence) = value.strip_prefix('p')?.split_once('-')?;
    Some((partition.parse().ok()?, sequence.parse().ok()?))
}

/// The producer thread: sends `p{partition}-{sequence}` to each partition in turn at
/// [`SEND_RATE`] until `stop`, then flushes. Returns how many records it sent per partition.
fn produce(
    bootstrap: String,
    deliveries: Arc<Deliveries>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<Vec<u64>> {
    std::thread::spawn(move || {
        let producer: BaseProducer<Reporter> = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            // A request to a paused broker is given up after 5 s (and retried: the
            // idempotent producer's sequence numbers make the retry safe), not 30.
            .set("request.timeout.ms", "5000")
            .set("message.timeout.ms", "120000")
            .set("statistics.interval.ms", "500")
            .create_with_context(Reporter(deliveries))
            .expect("a librdkafka producer");
        let mut sent = vec![0u64; PARTITIONS as usize];
        let start = Instant::now();
        let mut total = 0u64;
        while !stop.load(Ordering::Relaxed) {
            if let Some((code, reason)) = producer.client().fatal_error() {
                panic!("the idempotent producer failed fatally: {code}: {reason}");
            }
            let partition = (total % PARTITIONS as u64) as i32;
            let sequence = sent[partition as usize];
            let value = format!("p{partition}-{sequence}");
            let mut record: BaseRecord<'_, (), str> =
                BaseRecord::to(TOPIC).partition(partition).payload(&value);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        producer.poll(Duration::from_millis(10));
                    }
                    Err((error, _)) => panic!("librdkafka refused a record: {error}"),
                }
            }
            sent[partition as usize] += 1;
            total += 1;
            producer.poll(Duration::ZERO);
            let due = start + Duration::from_micros(total * 1_000_000 / SEND_RATE);
            if let Some(early) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(early);
            }
        }
        producer
            .flush(WAIT)
            .expect("every record acknowledged or failed in time");
        if let Some((code, reason)) = producer.client().fatal_error() {
            panic!("the idempotent producer failed fatally: {code}: {reason}");
        }
        sent
    })
}

/// What the consumer read: (partition, offset, value), in the order read.
type Reads = Vec<(i32, i64, String)>;

/// The consumer thread: reads every partition from offset 0 until `stop`.
fn consume(bootstrap: String, stop: Arc<AtomicBool>, reads: Arc<Mutex<Reads>>) -> JoinHandle<u64> {
    std::thread::spawn(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "faults-check")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("a librdkafka consumer");
        let mut assignment = TopicPartitionList::new();
        for partition in 0..PARTITIONS {
            assignment
                .add_partition_offset(TOPIC, partition, Offset::Offset(0))
                .unwrap();
        }
        consumer.assign(&assignment).unwrap();
        let mut errors = 0u64;
        while !stop.load(Ordering::Relaxed) {
            match consumer.poll(Duration::from_millis(100)) {
                None => {}
                Some(Ok(message)) => {
                    let value = String::from_utf8_lossy(message.payload().unwrap_or_default());
                    let read = (message.partition(), message.offset(), value.into_owned());
                    reads.lock().unwrap().push(read);
                }
                Some(Err(_)) => errors += 1,
            }
        }
        errors
    })
}

/// Waits until the consumer has read every partition up to `ends`.
fn wait_consumed(reads: &Mutex<Reads>, ends: &[i64]) {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut next = vec![0i64; ends.len()];
        for (partition, offset, _) in reads.lock().unwrap().iter() {
            let next = &mut next[*partition as usize];
            *next = (*next).max(offset + 1);
        }
        if next.iter().zip(ends).all(|(read, end)| read >= end) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the consumer read up to {next:?}, not {ends:?}, within {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Kills or pauses the leader of one partition after another for [`FAULT_TIME`], waiting for
/// full ISRs after each; returns a line per fault.
fn inject_faults(cluster: &mut Cluster, runtime: &tokio::runtime::Runtime) -> Vec<String> {
    let start = Instant::now();
    let mut faults = Vec::new();
    let mut round = 0;
    while start.elapsed() < FAULT_TIME {
        let partition = round % PARTITIONS;
        let leader = leader_of(cluster, runtime, partition);
        let at = start.elapsed().as_secs_f64();
        if round % 2 == 0 {
            cluster.kill(leader);
            std::thread::sleep(DOWN_TIME);
            cluster.restart(leader);
            faults.push(format!(
                "{at:5.1} s: SIGKILL node {leader} (leading partition {partition}), \
                 restarted {} s later",
                DOWN_TIME.as_secs()
            ));
        } else {
            cluster.pause(leader);
            std::thread::sleep(2 * SESSION_TIMEOUT);
            // By now the controller has fenced it and the others agree on a new leader.
            let new_leader = leader_of(cluster, runtime, partition);
            assert_ne!(
                new_leader,
                leader,
                "node {leader} was paused for {:?} and still leads partition {partition}",
                2 * SESSION_TIMEOUT
            );
            cluster.resume(leader);
            faults.push(format!(
                "{at:5.1} s: SIGSTOP node {leader} (leading partition {partition}) for {} s, \
                 node {new_leader} took over; SIGCONT",
                (2 * SESSION_TIMEOUT).as_secs()
            ));
        }
        wait_full_isr(cluster, runtime, &format!("after fault {}", round + 1));
        round += 1;
    }
    faults
}

/// One replica of one partition, read from its log directory after the brokers stopped.
struct Replica {
    node: i32,
    batches: Vec<common::StoredBatch>,
    /// Every record: offset and value, in log order.
    records: Vec<(i64, String)>,
}

impl Replica {
    fn open(node: i32, data_dir: &Path, partition: i32) -> Replica {
        let dir = data_dir.join("topics").join(format!("{TOPIC}-{partition}"));
        assert!(dir.is_dir(), "node {node} has no log {}", dir.display());
        let config = LogConfig {
            segment_bytes: SEGMENT_BYTES,
            ..LogConfig::default()
        };
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let log = Log::open(&dir, config, clock, OpenState::default())
            .unwrap_or_else(|e| panic!("node {node}'s log of partition {partition}: {e}"));
        let batches = common::read_all(&log);
        log.close().expect("the log closes");
        let mut records = Vec::new();
        for (_, _, bytes) in &batches {
            for record in batch::decode(bytes).expect("stored batches decode") {
                let value = record.value.as_deref().unwrap_or_default();
                records.push((record.offset, String::from_utf8_lossy(value).into_owned()));
            }
        }
        Replica {
            node,
            batches,
            records,
        }
    }

    fn end_offset(&self) -> i64 {
        self.batches.last().map_or(0, |b| b.1 + 1)
    }
}

/// The replicas of `partition` are identical up to their common end: the same batches, byte
/// for byte (offsets and leader epochs included).
fn check_identical(partition: i32, replicas: &[Replica]) {
    let common_end = replicas.iter().map(Replica::end_offset).min().unwrap_or(0);
    let first = &replicas[0];
    for other in &replicas[1..] {
        let upto = |r: &Replica| -> Vec<(i64, i64, Vec<u8>)> {
            r.batches
                .iter()
                .filter(|b| b.1 < common_end)
                .cloned()
                .collect()
        };
        let (a, b) = (upto(first), upto(other));
        if let Some(i) = (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i)) {
            let describe = |batch: Option<&(i64, i64, Vec<u8>)>| {
                batch.map(|(base, last, bytes)| {
                    let epoch = batch::BatchHeader::parse(bytes).map(|h| h.partition_leader_epoch);
                    format!("offsets {base}..={last}, leader epoch {epoch:?}")
                })
            };
            panic!(
                "partition {partition}: nodes {} and {} differ below their common end \
                 {common_end}, at batch {i}: {:?} against {:?}",
                first.node,
                other.node,
                describe(a.get(i)),
                describe(b.get(i))
            );
        }
    }
}

/// Every acknowledged record of `partition` is in `replica` exactly once, at the offset it
/// was acknowledged at; no record is there twice; records are in the order they were sent.
fn check_acknowledged(partition: i32, replica: &Replica, acked: &BTreeMap<(i32, u64), i64>) {
    let node = replica.node;
    let mut by_offset = HashMap::new();
    let mut last_sequence = None;
    let mut seen = HashMap::new();
    for (offset, value) in &replica.records {
        let (p, sequence) = parse_value(value)
            .unwrap_or_else(|| panic!("node {node}: a foreign value {value:?} at {offset}"));
        assert_eq!(
            p, partition,
            "node {node}: {value:?} at {offset} is in the wrong partition"
        );
        if let Some(earlier) = seen.insert(sequence, *offset) {
            panic!(
                "node {node}, partition {partition}: {value:?} is stored twice, at {earlier} and {offset}"
            );
        }
        assert!(
            last_sequence.is_none_or(|last| sequence > last),
            "node {node}, partition {partition}: {value:?} at {offset} follows sequence {last_sequence:?}"
        );
        last_sequence = Some(sequence);
        by_offset.insert(*offset, value.as_str());
    }
    for (&(p, sequence), &offset) in acked.range((partition, 0)..(partition + 1, 0)) {
        let expected = format!("p{p}-{sequence}");
        assert_eq!(
            by_offset.get(&offset).copied(),
            Some(expected.as_str()),
            "node {node}, partition {partition}: the record acknowledged at offset {offset} \
             (end {})",
            replica.end_offset()
        );
    }
}

/// Every record the consumer read of `partition` is in `replica` at the offset it was read
/// at, and the consumer skipped no offset.
fn check_reads(partition: i32, replica: &Replica, reads: &Reads) {
    let by_offset: HashMap<i64, &str> = replica
        .records
        .iter()
        .map(|(offset, value)| (*offset, value.as_str()))
        .collect();
    let mut next = 0;
    for (_, offset, value) in reads.iter().filter(|r| r.0 == partition) {
        assert_eq!(
            by_offset.get(offset).copied(),
            Some(value.as_str()),
            "partition {partition}: the consumer read {value:?} at {offset}; node {}'s final \
             log has something else there",
            replica.node
        );
        assert!(
            *offset <= next,
            "partition {partition}: the consumer skipped from {next} to {offset}"
        );
        next = next.max(offset + 1);
    }
}

/// The high watermark of every partition, as librdkafka reads it.
fn high_watermarks(bootstrap: &str) -> Vec<i64> {
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

fn create_topic(bootstrap: &str, runtime: &tokio::runtime::Runtime) {
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

#[test]
fn acknowledged_records_survive_killed_and_paused_leaders() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut cluster = Cluster::start();
    let bootstrap = cluster.bootstrap();
    create_topic(&bootstrap, &runtime);
    wait_full_isr(&cluster, &runtime, "the new topic");

    let deliveries = Arc::new(Deliveries::default());
    let stop_producing = Arc::new(AtomicBool::new(false));
    let stop_consuming = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(Mutex::new(Reads::new()));
    let consumer = consume(
        bootstrap.clone(),
        Arc::clone(&stop_consuming),
        Arc::clone(&reads),
    );
    let producer = produce(
        bootstrap.clone(),
        Arc::clone(&deliveries),
        Arc::clone(&stop_producing),
    );
    std::thread::sleep(Duration::from_secs(2));

    let faults = inject_faults(&mut cluster, &runtime);

    std::thread::sleep(Duration::from_secs(1));
    stop_producing.store(true, Ordering::Relaxed);
    let sent = producer.join().expect("the producer thread");
    wait_full_isr(&cluster, &runtime, "after the faults");
    wait_consumed(&reads, &high_watermarks(&bootstrap));
    stop_consuming.store(true, Ordering::Relaxed);
    let consumer_errors = consumer.join().expect("the consumer thread");
    cluster.stop_all();

    let acked = deliveries.acked.lock().unwrap().clone();
    let reads = reads.lock().unwrap().clone();
    let mut ends = Vec::new();
    for partition in 0..PARTITIONS {
        let replicas: Vec<Replica> = cluster
            .nodes
            .iter()
            .map(|node| Replica::open(node.id, &node.data_dir(), partition))
            .collect();
        check_identical(partition, &replicas);
        for replica in &replicas {
            check_acknowledged(partition, replica, &acked);
            check_reads(partition, replica, &reads);
        }
        ends.push(replicas.iter().map(Replica::end_offset).collect::<Vec<_>>());
    }

    let failed = deliveries.failed.lock().unwrap();
    println!("faults injected: {}", faults.len());
    for fault in &faults {
        println!("  {fault}");
    }
    println!(
        "records sent: {} ({sent:?} per partition)",
        sent.iter().sum::<u64>()
    );
    println!("records acknowledged: {}", acked.len());
    println!(
        "records failed: {} (first: {:?})",
        failed.len(),
        failed.first()
    );
    println!(
        "sends retried: {} (librdkafka txretries); client errors reported: {}",
        deliveries.retries.load(Ordering::Relaxed),
        deliveries.client_errors.load(Ordering::Relaxed)
    );
    println!(
        "longest window with no acknowledged write: {:.2} s",
        deliveries.longest_gap.lock().unwrap().as_secs_f64()
    );
    println!(
        "records read by the consumer: {} ({consumer_errors} errors); log ends per \
         partition and node: {ends:?}",
        reads.len()
    );
    assert!(!acked.is_empty(), "some records were acknowledged");
}
