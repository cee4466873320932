//! The `weir-broker` process killed with SIGKILL while it holds acknowledged records and
//! idempotent producer state: started again on the same data directory, it still has every
//! record acknowledged with acks=1, and it still recognises a retried idempotent batch (its
//! producer state comes back from a snapshot and the log after it).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::{InitProducerIdRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::net::TcpStream;
use weir_proto::batch::{self, EncodeOptions, Record};

use common::broker_process::BrokerProcess;

const WAIT: Duration = Duration::from_secs(60);
const TOPIC: &str = "orders";
const PARTITIONS: i32 = 3;
const RECORDS: usize = 3_000;

/// Starts a node keeping its data in `dir/data`, with fast producer state snapshots.
fn start(dir: &Path) -> BrokerProcess {
    BrokerProcess::start(
        dir,
        &["--data-dir", "data"],
        &[("WEIR_PRODUCER_SNAPSHOT_CHECK_INTERVAL_MS", "50")],
    )
}

/// The offsets of partition 0's producer state snapshots.
fn snapshots(data: &Path) -> Vec<i64> {
    let dir = data.join("topics").join(format!("{TOPIC}-0"));
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut offsets: Vec<i64> = entries
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".snapshot")?.parse().ok()
        })
        .collect();
    offsets.sort_unstable();
    offsets
}

/// The time now, as record timestamps: a producer whose last batch is older than
/// `producer_id_expiration_ms` is forgotten, and old segments are removed by retention.
fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(since_epoch.as_millis()).unwrap()
}

/// One batch of `count` records of producer `producer_id` (epoch 0) from `sequence`.
fn idempotent_batch(producer_id: i64, sequence: i32, count: usize) -> Bytes {
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            key: None,
            value: Some(Bytes::from(format!("idempotent {}", sequence + i as i32))),
            headers: Vec::new(),
            timestamp: now_ms(),
            offset: i as i64,
        })
        .collect();
    let options = EncodeOptions {
        producer_id,
        producer_epoch: 0,
        base_sequence: sequence,
        ..EncodeOptions::default()
    };
    batch::encode(&records, &options).unwrap()
}

/// One record from a producer without idempotence.
fn plain_batch() -> Bytes {
    let record = Record {
        key: None,
        value: Some(Bytes::from_static(b"plain")),
        headers: Vec::new(),
        timestamp: now_ms(),
        offset: 0,
    };
    batch::encode(&[record], &EncodeOptions::default()).unwrap()
}

/// Produces `records` to partition 0 with acks=1 on the bare protocol, retrying while the
/// partition is not open yet (a new topic, or a restart).
async fn produce(address: &str, records: Bytes) -> PartitionProduceResponse {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let request = ProduceRequest::default()
        .with_transactional_id(None)
        .with_acks(1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records)),
                ]),
        ]);
    let deadline = Instant::now() + WAIT;
    loop {
        let response = common::wire::call(&mut stream, &request, 9).await;
        let partition = response.responses[0].partition_responses[0].clone();
        let not_yet = partition.error_code == ResponseError::NotLeaderOrFollower.code();
        if !not_yet || Instant::now() > deadline {
            assert_eq!(partition.error_code, 0, "{:?}", partition.error_message);
            return partition;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends `RECORDS` records with acks=1 through librdkafka and returns each acknowledged
/// record's partition, offset and value.
async fn produce_acked(address: &str) -> Vec<(i32, i64, String)> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", address)
        .set("acks", "1")
        .set("linger.ms", "2")
        .create()
        .unwrap();
    let mut deliveries = Vec::new();
    for i in 0..RECORDS {
        let value = format!("record {i:05} {}", "x".repeat(100));
        let key = format!("{i}");
        let record = FutureRecord::to(TOPIC)
            .key(&key)
            .payload(&value)
            .partition(i32::try_from(i).unwrap() % PARTITIONS);
        deliveries.push((value.clone(), producer.send_result(record).expect("queued")));
    }
    let mut acked = Vec::with_capacity(RECORDS);
    for (value, delivery) in deliveries {
        let delivered = tokio::time::timeout(WAIT, delivery)
            .await
            .expect("acknowledged in time")
            .expect("not cancelled")
            .unwrap_or_else(|(e, _)| panic!("{e}"));
        acked.push((delivered.partition, delivered.offset, value));
    }
    acked
}

/// Every record of the topic, read back by a consumer from offset 0: partition, offset and
/// value.
fn consume_all(address: &str, expected: usize) -> Vec<(i32, i64, String)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", address)
        .set("group.id", "crash-check")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment
            .add_partition_offset(TOPIC, partition, Offset::Offset(0))
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let deadline = Instant::now() + WAIT;
    let mut records = Vec::new();
    while records.len() < expected && Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.expect("a record, not an error");
        let value = String::from_utf8(message.payload().unwrap().to_vec()).unwrap();
        records.push((message.partition(), message.offset(), value));
    }
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_and_producer_state_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data: PathBuf = dir.path().join("data");
    let mut broker = start(dir.path());
    let address = broker.wait_until_serving();

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &address)
        .create()
        .unwrap();
    let topic =
        NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(1)).set("segment.bytes", "16384");
    let created = admin
        .create_topics([&topic], &AdminOptions::new().operation_timeout(Some(WAIT)))
        .await
        .unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");

    // An idempotent batch, then enough records to roll segments, so that a snapshot holds
    // the producer; then a second batch of the producer, after the snapshot.
    let mut stream = TcpStream::connect(&address).await.unwrap();
    let init = InitProducerIdRequest::default().with_transactional_id(None);
    let producer_id = common::wire::call(&mut stream, &init, 4)
        .await
        .producer_id
        .0;
    let first = idempotent_batch(producer_id, 0, 4);
    let first_offset = produce(&address, first.clone()).await.base_offset;
    let mut acked = produce_acked(&address).await;
    let deadline = Instant::now() + WAIT;
    while !snapshots(&data).iter().any(|&o| o > first_offset) {
        assert!(
            Instant::now() < deadline,
            "no producer state snapshot was written"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = idempotent_batch(producer_id, 4, 2);
    let second_offset = produce(&address, second.clone()).await.base_offset;
    assert!(second_offset > first_offset);
    acked.push((0, first_offset, "idempotent 0".into()));
    acked.push((0, second_offset, "idempotent 4".into()));

    broker.kill();

    let mut broker = start(dir.path());
    let address = broker.wait_until_serving();
    let loaded = broker.wait_for("loading partition 0's producer state", |l| {
        l.contains("producer state loaded") && l.contains(&format!("tp={TOPIC}-0 "))
    });
    let field = |name: &str| -> i64 {
        loaded
            .split_whitespace()
            .find_map(|f| f.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {loaded:?}"))
    };
    assert!(loaded.contains("from_snapshot=true"), "{loaded}");
    let snapshot_offset = field("snapshot_offset");
    assert!(snapshot_offset > first_offset, "{loaded}");
    if snapshot_offset <= second_offset {
        assert!(
            field("batches_scanned") >= 1,
            "the batches after it: {loaded}"
        );
    }

    // Every acknowledged record is there, at its offset.
    let total = RECORDS + 4 + 2;
    let records = {
        let address = address.clone();
        tokio::task::spawn_blocking(move || consume_all(&address, total))
            .await
            .unwrap()
    };
    assert_eq!(records.len(), total, "every record read back");
    let stored: std::collections::BTreeMap<(i32, i64), String> = records
        .into_iter()
        .map(|(partition, offset, value)| ((partition, offset), value))
        .collect();
    for (partition, offset, value) in &acked {
        assert_eq!(
            stored.get(&(*partition, *offset)),
            Some(value),
            "the record acknowledged at {partition}/{offset}"
        );
    }

    // Both idempotent batches sent again are recognised: their offsets, nothing appended.
    let end = second_offset + 2;
    assert_eq!(produce(&address, first).await.base_offset, first_offset);
    assert_eq!(produce(&address, second).await.base_offset, second_offset);
    let plain = produce(&address, plain_batch()).await;
    assert_eq!(plain.base_offset, end, "the retries appended nothing");
}
