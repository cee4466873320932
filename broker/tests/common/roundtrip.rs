//! The produce and consume scenario, written once against [`Client`] and run over the Kafka
//! protocol (librdkafka, `kafka_client.rs`) and over gRPC (`grpc_client.rs`): keyed records
//! with headers and explicit timestamps, produced with acks=all under a codec, then consumed
//! back and checked record by record, in order per partition.

use std::collections::BTreeMap;
use std::ops::Range;

use weir_proto::batch::Compression;

/// The number of partitions of each scenario topic.
pub const PARTITIONS: i32 = 3;

/// The configuration of a node for the scenario: a single node keeping its data in `dir`,
/// with 4 MiB segments, so that the topics of every codec do not preallocate gigabytes and
/// the scenario crosses segment rolls.
pub fn node_config(dir: &std::path::Path) -> weir_broker::config::NodeConfig {
    weir_broker::config::NodeConfig {
        log_segment_bytes: 4 * 1024 * 1024,
        ..super::node::single_node_config(dir)
    }
}

/// A record as produced: the partition it goes to and everything a consumer must get back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRecord {
    pub partition: i32,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub timestamp_ms: i64,
}

/// A record as consumed: what was produced, and the offset it was stored at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumed {
    pub offset: i64,
    pub record: TestRecord,
}

/// What the scenario needs of a client.
#[allow(async_fn_in_trait)]
pub trait Client {
    /// Creates topic `name` with `partitions` partitions of one replica, and returns once
    /// every partition takes records.
    async fn create_topic(&self, name: &str, partitions: i32);

    /// Produces `records` to `topic` (each to its own partition, in order) with acks=all,
    /// compressed with `codec`; returns once every one is acknowledged. Panics on a failure.
    async fn produce(&self, topic: &str, records: &[TestRecord], codec: Compression);

    /// Consumes `partitions` of `topic` from offset `from` until it has `count` records in all;
    /// returns them in the order each partition gave them. Panics if they do not come in time.
    async fn consume(
        &self,
        topic: &str,
        partitions: Range<i32>,
        from: i64,
        count: usize,
    ) -> Vec<Consumed>;
}

/// `count` keyed records for the scenario under `codec`: spread over the partitions, each
/// with two headers and its own timestamp.
pub fn records(count: usize, codec: Compression) -> Vec<TestRecord> {
    // An hour ago, so no timestamp check refuses them.
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 3_600_000;
    (0..count)
        .map(|i| TestRecord {
            partition: (i % PARTITIONS as usize) as i32,
            key: format!("key-{codec}-{i}").into_bytes(),
            value: format!("value {i} under {codec}: {}", "x".repeat(i % 50)).into_bytes(),
            headers: vec![
                ("index".to_string(), i.to_string().into_bytes()),
                ("codec".to_string(), codec.to_string().into_bytes()),
            ],
            timestamp_ms: base + i as i64,
        })
        .collect()
}

/// Produces `count` records to a new topic under `codec` with acks=all, consumes them all
/// back, and checks that each partition returned its records in the order produced, at
/// consecutive offsets from 0, with keys, values, headers and timestamps intact.
pub async fn round_trip(client: &impl Client, topic: &str, codec: Compression, count: usize) {
    client.create_topic(topic, PARTITIONS).await;
    let produced = records(count, codec);
    client.produce(topic, &produced, codec).await;
    let consumed = client.consume(topic, 0..PARTITIONS, 0, count).await;

    let mut expected: BTreeMap<i32, Vec<&TestRecord>> = BTreeMap::new();
    for record in &produced {
        expected.entry(record.partition).or_default().push(record);
    }
    let mut got: BTreeMap<i32, Vec<&Consumed>> = BTreeMap::new();
    for consumed in &consumed {
        got.entry(consumed.record.partition)
            .or_default()
            .push(consumed);
    }
    assert_eq!(consumed.len(), count, "{codec}: every record came back");
    for (partition, expected) in expected {
        let got = got.remove(&partition).unwrap_or_default();
        assert_eq!(
            got.len(),
            expected.len(),
            "{codec}: partition {partition} has every record once"
        );
        for (index, (got, expected)) in got.iter().zip(expected).enumerate() {
            assert_eq!(
                got.offset, index as i64,
                "{codec}: partition {partition}, consecutive offsets in order"
            );
            assert_eq!(
                &got.record, expected,
                "{codec}: partition {partition}, offset {index} is the record produced there"
            );
        }
    }
    assert!(got.is_empty(), "{codec}: no records in other partitions");
}

/// The scenario under every codec, `count` records each, a topic per codec named
/// `<prefix>-<codec>`.
pub async fn round_trip_every_codec(client: &impl Client, prefix: &str, count: usize) {
    for codec in Compression::ALL {
        round_trip(client, &format!("{prefix}-{codec}"), codec, count).await;
    }
}
