//! A compacted topic through the Kafka front end with librdkafka: keyed records (some
//! tombstones, lz4-compressed batches) are produced, a keyless record is refused with
//! INVALID_RECORD, the log cleaner runs, and a consumer reading from offset 0 gets exactly the
//! newest record of each key below the cleaned point and everything after it, in offset order,
//! with the offsets the records were given.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use weir_broker::server::Node;
use weir_broker::storage::TopicPartition;

const WAIT: Duration = Duration::from_secs(30);
const TOPIC: &str = "compacted";
const RECORDS: usize = 400;
const KEYS: usize = 12;

type Stored = (i64, Vec<u8>, Option<Vec<u8>>);

/// Produces the keyed records in rounds (each round at least one batch); returns each
/// record's offset, key and value (`None`: a tombstone).
async fn produce(bootstrap: &str) -> Vec<Stored> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("compression.codec", "lz4")
        .set("linger.ms", "20")
        .create()
        .unwrap();
    let mut stored = Vec::new();
    for round in 0..8 {
        let mut deliveries = Vec::new();
        for i in round * RECORDS / 8..(round + 1) * RECORDS / 8 {
            let key = format!("key-{:02}", i % KEYS).into_bytes();
            // Every 9th record deletes its key.
            let value =
                (i % 9 != 4).then(|| format!("value {i:04} {}", "x".repeat(80)).into_bytes());
            let mut record = FutureRecord::to(TOPIC).partition(0).key(&key);
            if let Some(value) = &value {
                record = record.payload(value);
            }
            let delivery = producer
                .send_result::<Vec<u8>, Vec<u8>>(record)
                .expect("queued");
            deliveries.push((key, value, delivery));
        }
        for (key, value, delivery) in deliveries {
            let offset = tokio::time::timeout(WAIT, delivery)
                .await
                .expect("delivered in time")
                .expect("not cancelled")
                .unwrap_or_else(|(e, _)| panic!("{e}"))
                .offset;
            stored.push((offset, key, value));
        }
    }
    stored.sort_by_key(|r| r.0);
    stored
}

/// Everything a consumer reads from offset 0 up to `end`, as (offset, key, value).
fn consume_all(bootstrap: &str, end: i64) -> Vec<Stored> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "compaction-test")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(TOPIC, 0, Offset::Offset(0))
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let deadline = Instant::now() + WAIT;
    let mut read: Vec<Stored> = Vec::new();
    while read.last().is_none_or(|r| r.0 + 1 < end) && Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.expect("a record, not an error");
            read.push((
                message.offset(),
                message.key().unwrap_or_default().to_vec(),
                message.payload().map(<[u8]>::to_vec),
            ));
        }
    }
    read
}

/// Creates the one-partition topic with `configs` and waits until the node holds it.
async fn create_topic(node: &Node, configs: &[(&str, &str)]) -> TopicPartition {
    let configs = configs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<BTreeMap<_, _>>();
    node.controller()
        .view()
        .create_topic(TOPIC, 1, 1, configs)
        .await
        .expect("the topic is created");
    let tp = TopicPartition::new(TOPIC, 0);
    let deadline = Instant::now() + WAIT;
    while node.replicas().partition(&tp).is_none() {
        assert!(Instant::now() < deadline, "{tp} opens in time");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_from_offset_zero_reads_the_newest_record_of_each_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::node::single_node_config(dir.path());
    // The test runs the cleaner itself.
    config.log_cleaner_enable = false;
    let node = common::node::start(config).await;
    let bootstrap = node.kafka_addr().to_string();
    let tp = create_topic(
        &node,
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", "4096"),
            ("min.cleanable.dirty.ratio", "0.01"),
        ],
    )
    .await;

    let stored = produce(&bootstrap).await;
    assert_eq!(stored.len(), RECORDS);

    // A record without a key is refused: INVALID_RECORD.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("message.send.max.retries", "0")
        .create()
        .unwrap();
    let keyless = FutureRecord::<(), _>::to(TOPIC)
        .partition(0)
        .payload("no key");
    let refused = tokio::time::timeout(WAIT, producer.send_result(keyless).expect("queued"))
        .await
        .expect("answered in time")
        .expect("not cancelled");
    match refused {
        Err((KafkaError::MessageProduction(code), _)) => {
            assert_eq!(code, RDKafkaErrorCode::InvalidRecord);
        }
        other => panic!("a keyless record must be refused, got {other:?}"),
    }

    let log = node.logs().get(&tp).unwrap();
    let active_base = *log.segment_base_offsets().last().unwrap();
    assert!(active_base > 0, "several segments were rolled");
    let logs = std::sync::Arc::clone(node.logs());
    let cleaned = tokio::task::spawn_blocking(move || logs.run_cleaner())
        .await
        .unwrap();
    assert_eq!(cleaned, 1, "the compacted topic's log is cleaned");
    let end = log.log_end_offset();
    assert_eq!(end, RECORDS as i64, "offsets are not renumbered");

    // Below the cleaned point the newest record of each key (tombstones too: their
    // delete.retention.ms has not passed), then everything.
    let mut newest: HashMap<&[u8], i64> = HashMap::new();
    for (offset, key, _) in stored.iter().filter(|r| r.0 < active_base) {
        newest.insert(key, *offset);
    }
    let expected: Vec<Stored> = stored
        .iter()
        .filter(|(offset, key, _)| *offset >= active_base || newest[key.as_slice()] == *offset)
        .cloned()
        .collect();
    assert!(expected.len() < stored.len(), "compaction removed records");
    let read = tokio::task::spawn_blocking(move || consume_all(&bootstrap, end))
        .await
        .unwrap();
    assert_eq!(read, expected);
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_compacts_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::node::single_node_config(dir.path());
    config.log_cleaner_backoff_ms = 100;
    let node = common::node::start(config).await;
    let bootstrap = node.kafka_addr().to_string();
    let tp = create_topic(
        &node,
        &[
            ("cleanup.policy", "compact,delete"),
            ("segment.bytes", "4096"),
        ],
    )
    .await;
    let stored = produce(&bootstrap).await;
    let log = node.logs().get(&tp).unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let dirtiness = log.dirtiness().unwrap().expect("a compacted log");
        if dirtiness.dirty_bytes == 0 && log.last_clean_ms().is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "the cleaner runs: {dirtiness:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let end = log.log_end_offset();
    assert_eq!(end, stored.len() as i64);
    let read = tokio::task::spawn_blocking(move || consume_all(&bootstrap, end))
        .await
        .unwrap();
    assert!(read.len() < stored.len(), "records were removed");
    assert_eq!(read.last().map(|r| r.0), Some(end - 1));
    node.shutdown().await.unwrap();
}
