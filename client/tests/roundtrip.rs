//! The client end to end: its producer writes 100,000 keyed records while a group of three of
//! its consumers reads them; every record arrives exactly once, in offset order within its
//! partition, on the partition its key hashes to.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use weir_client::{
    AutoOffsetReset, Client, ConsumerConfig, ConsumerRecord, NewTopic, Producer, ProducerConfig,
    ProducerRecord, murmur2_partition,
};

const RECORDS: usize = 100_000;
const PARTITIONS: i32 = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_producer_and_a_group_of_three_consumers_round_trip_100_000_records() {
    let node = common::start().await;
    let client = Client::connect(&node.bootstrap()).await.unwrap();
    client
        .admin()
        .create_topic(NewTopic::new("roundtrip").partitions(PARTITIONS))
        .await
        .unwrap();

    // Three members, each reading on its own task until told to stop.
    let (arrived, mut arrivals) = mpsc::channel::<(usize, ConsumerRecord)>(10_000);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut members = Vec::new();
    for member in 0..3 {
        let mut consumer = client
            .consumer(ConsumerConfig {
                auto_offset_reset: AutoOffsetReset::Earliest,
                ..ConsumerConfig::new("roundtrip-readers")
            })
            .unwrap();
        consumer.subscribe(&["roundtrip"]).await.unwrap();
        let arrived = arrived.clone();
        let mut stopped = stopped.clone();
        members.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    record = consumer.recv() => {
                        let record = record.expect("a consumer reads");
                        if arrived.send((member, record)).await.is_err() {
                            break;
                        }
                    }
                    _ = stopped.changed() => break,
                }
            }
            consumer
                .close()
                .await
                .expect("the consumer commits and leaves");
        }));
    }
    drop(arrived);

    let producer = Producer::new(&client, ProducerConfig::default()).unwrap();
    let sending = tokio::spawn(async move {
        let mut deliveries = Vec::with_capacity(RECORDS);
        for i in 0..RECORDS {
            let record = ProducerRecord::new("roundtrip")
                .key(Bytes::from(format!("key-{i}")))
                .value(Bytes::from(format!("value-{i}")));
            deliveries.push(producer.send(record).await.expect("the record is accepted"));
        }
        let mut delivered = Vec::with_capacity(RECORDS);
        for delivery in deliveries {
            delivered.push(delivery.await.expect("the record is acknowledged"));
        }
        producer.close().await.unwrap();
        delivered
    });

    let mut seen = HashSet::new();
    let mut next_offset: BTreeMap<i32, i64> = BTreeMap::new();
    let mut per_member = [0usize; 3];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    while seen.len() < RECORDS {
        let (member, record) = tokio::time::timeout_at(deadline, arrivals.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {RECORDS} records arrived", seen.len()))
            .expect("the consumers read");
        let key = record.key.clone().expect("every record has a key");
        assert!(
            seen.insert(key.clone()),
            "record {key:?} arrived twice (partition {}, offset {})",
            record.partition,
            record.offset
        );
        assert_eq!(
            record.partition,
            murmur2_partition(&key, PARTITIONS as usize),
            "a key's partition is its murmur2 hash"
        );
        let expected = next_offset.entry(record.partition).or_insert(0);
        assert_eq!(
            record.offset, *expected,
            "partition {} is read in order without gaps",
            record.partition
        );
        *expected += 1;
        let i = key
            .strip_prefix(b"key-")
            .and_then(|n| std::str::from_utf8(n).ok())
            .unwrap();
        assert_eq!(
            record.value.as_deref(),
            Some(format!("value-{i}").as_bytes())
        );
        per_member[member] += 1;
    }

    let delivered = sending.await.unwrap();
    assert_eq!(delivered.len(), RECORDS);
    let mut acked: BTreeMap<i32, usize> = BTreeMap::new();
    for metadata in &delivered {
        *acked.entry(metadata.partition).or_default() += 1;
    }
    let read: BTreeMap<i32, usize> = next_offset
        .iter()
        .map(|(p, next)| (*p, usize::try_from(*next).unwrap()))
        .collect();
    assert_eq!(
        read, acked,
        "each partition read up to what was acknowledged"
    );

    stop.send(true).unwrap();
    for member in members {
        member.await.unwrap();
    }
    assert!(
        per_member.iter().all(|&n| n > 0),
        "every member read records: {per_member:?}"
    );
    node.shutdown().await;
}
