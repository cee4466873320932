//! Idempotent producers through a partition: retries are answered, not appended; the state
//! survives a restart and a follower builds the same; idle producers are forgotten.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use uuid::Uuid;
use weir_proto::batch::{self, EncodeOptions, Record};

use super::*;
use crate::clock::{Clock, ManualClock};
use crate::config::{LogConfig, StorageConfig};
use crate::controller::testing;
use crate::controller::{ClusterMetadata, MetadataDelta};
use crate::storage::LogManager;

const NOW: i64 = 1_000_000;
const EXPIRATION_MS: i64 = 60_000;

/// A batch of `count` records of producer `producer_id` at `epoch` from `sequence`.
fn idempotent(producer_id: i64, epoch: i16, sequence: i32, count: usize) -> Bytes {
    idempotent_at(producer_id, epoch, sequence, count, NOW)
}

/// As [`idempotent`], with the records stamped `timestamp`.
fn idempotent_at(
    producer_id: i64,
    epoch: i16,
    sequence: i32,
    count: usize,
    timestamp: i64,
) -> Bytes {
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            key: None,
            value: Some(Bytes::from(format!("value-{sequence}-{i}-{:0>200}", 0))),
            headers: Vec::new(),
            timestamp,
            offset: i as i64,
        })
        .collect();
    let options = EncodeOptions {
        producer_id,
        producer_epoch: epoch,
        base_sequence: sequence,
        ..EncodeOptions::default()
    };
    batch::encode(&records, &options).unwrap()
}

struct Broker {
    clock: Arc<ManualClock>,
    logs: Arc<LogManager>,
    replicas: Arc<ReplicaManager>,
}

/// Broker 1 with its data in `dir`, leading partition 0 of topic "orders" alone.
fn start(dir: &std::path::Path) -> Broker {
    start_as(dir, 1, &[1])
}

/// Broker `id` holding partition 0 of `orders`, whose replicas are `replicas` (the first
/// leads).
fn start_as(dir: &std::path::Path, id: BrokerId, assigned: &[BrokerId]) -> Broker {
    let config = StorageConfig {
        data_dir: dir.to_path_buf(),
        log: LogConfig {
            segment_bytes: 16 * 1024,
            segment_index_bytes: 4096,
            ..LogConfig::default()
        },
        ..StorageConfig::default()
    };
    let clock = Arc::new(ManualClock::new(NOW));
    let logs = Arc::new(LogManager::open(config, Arc::clone(&clock) as Arc<dyn Clock>).unwrap());
    let producer_state = ProducerStateConfig {
        expiration_ms: EXPIRATION_MS,
        ..ProducerStateConfig::default()
    };
    let replicas = Arc::new(
        ReplicaManager::new(id, Arc::clone(&logs), ProducePolicy::default())
            .with_producer_state(producer_state),
    );
    let mut records: Vec<_> = assigned
        .iter()
        .map(|&id| testing::register(id, None))
        .collect();
    records.extend(testing::topic(
        "orders",
        Uuid::from_u128(7),
        BTreeMap::new(),
        &[assigned],
    ));
    let mut metadata = ClusterMetadata::default();
    metadata.apply_batch(&records).unwrap();
    replicas.apply(&MetadataDelta {
        before: Arc::new(ClusterMetadata::default()),
        after: Arc::new(metadata),
        applied_index: Some(1),
    });
    Broker {
        clock,
        logs,
        replicas,
    }
}

impl Broker {
    fn partition(&self) -> Arc<Partition> {
        self.replicas
            .partition(&TopicPartition::new("orders", 0))
            .expect("partition 0 is held")
    }
}

#[test]
fn a_retried_batch_is_answered_with_its_offsets_and_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    let partition = broker.partition();
    partition
        .append_as_leader(&idempotent(-1, -1, -1, 2))
        .unwrap();
    let first = partition.produce(idempotent(9, 0, 0, 3), NOW).unwrap();
    assert_eq!(
        (first.base_offset, first.last_offset, first.batch_count),
        (2, 4, 1)
    );
    let second = partition.produce(idempotent(9, 0, 3, 2), NOW).unwrap();
    assert_eq!(second.base_offset, 5);

    let retried = partition.produce(idempotent(9, 0, 0, 3), NOW).unwrap();
    assert_eq!(
        retried,
        AppendInfo {
            base_offset: 2,
            last_offset: 4,
            max_timestamp: NOW,
            batch_count: 0,
            bytes: 0,
        }
    );
    assert_eq!(partition.log().log_end_offset(), 7, "nothing appended");

    let error = partition.produce(idempotent(9, 0, 9, 1), NOW).unwrap_err();
    assert!(
        matches!(
            error,
            PartitionError::Producer(ProducerStateError::OutOfOrderSequence {
                given: 9,
                expected: 5,
                ..
            })
        ),
        "{error}"
    );
    let error = partition.produce(idempotent(9, 1, 4, 1), NOW).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("a new epoch starts at sequence 0"),
        "{error}"
    );
    assert_eq!(partition.log().log_end_offset(), 7);
    broker.logs.shutdown().unwrap();
}

#[test]
fn concurrent_sends_of_one_batch_are_appended_once() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path());
    let partition = broker.partition();
    for round in 0..20 {
        let batch = idempotent(5, 0, round * 2, 2);
        let offsets: Vec<i64> = std::thread::scope(|scope| {
            let senders: Vec<_> = (0..4)
                .map(|_| {
                    let batch = batch.clone();
                    let partition = &partition;
                    scope.spawn(move || partition.produce(batch, NOW).unwrap().base_offset)
                })
                .collect();
            senders.into_iter().map(|s| s.join().unwrap()).collect()
        });
        assert_eq!(offsets, [i64::from(round) * 2; 4], "round {round}");
    }
    assert_eq!(partition.log().log_end_offset(), 40);
    broker.logs.shutdown().unwrap();
}

#[test]
fn the_state_survives_a_restart_and_idle_producers_are_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    {
        let broker = start(dir.path());
        let partition = broker.partition();
        for sequence in 0..40 {
            partition
                .produce(idempotent(3, 0, sequence, 1), NOW)
                .unwrap();
            partition
                .produce(idempotent(4, 2, sequence, 1), NOW)
                .unwrap();
        }
        assert!(partition.log().segment_count() > 1);
        // A snapshot at the first roll's check, then more batches after it.
        assert_eq!(
            broker.replicas.snapshot_producers(SnapshotWhen::AfterRoll),
            1
        );
        partition.produce(idempotent(3, 0, 40, 1), NOW).unwrap();
        broker.logs.shutdown().unwrap();
    }
    let broker = start(dir.path());
    let partition = broker.partition();
    let state = partition.producer_state(3).unwrap();
    assert_eq!((state.epoch, state.last_sequence()), (0, 40));
    assert_eq!(partition.producer_state(4).unwrap().epoch, 2);
    let retried = partition.produce(idempotent(3, 0, 40, 1), NOW).unwrap();
    assert_eq!((retried.base_offset, retried.batch_count), (80, 0));
    assert!(
        partition.produce(idempotent(4, 2, 41, 1), NOW).is_err(),
        "40 is next"
    );

    // At shutdown every moved partition is snapshotted; the next start reads no log.
    assert_eq!(broker.replicas.shutdown(), 1);
    broker.logs.shutdown().unwrap();
    drop((partition, broker));
    let broker = start(dir.path());
    let partition = broker.partition();
    assert_eq!(partition.producer_state(3).unwrap().last_sequence(), 40);

    // Producer 3 writes again later; producer 4 stays idle past the expiration time.
    broker.clock.advance_ms(EXPIRATION_MS - 1);
    let later = NOW + EXPIRATION_MS - 1;
    partition
        .produce(idempotent_at(3, 0, 41, 1, later), later)
        .unwrap();
    assert_eq!(broker.replicas.remove_expired_producers(), 0);
    broker.clock.advance_ms(1);
    assert_eq!(broker.replicas.remove_expired_producers(), 1);
    assert!(partition.producer_state(4).is_none());
    assert!(partition.producer_state(3).is_some());
    broker.logs.shutdown().unwrap();
}

#[test]
fn a_follower_builds_the_state_from_replicated_batches() {
    let leader_dir = tempfile::tempdir().unwrap();
    let follower_dir = tempfile::tempdir().unwrap();
    let leader = start(leader_dir.path());
    let follower = start_as(follower_dir.path(), 2, &[1, 2]);
    let source = leader.partition();
    for sequence in 0..3 {
        source
            .produce(idempotent(8, 1, sequence * 2, 2), NOW)
            .unwrap();
    }
    let copied = source.log().read(0, 1 << 20).unwrap();
    let replica = follower.partition();
    let epoch = replica.leader_epoch();
    replica.append_as_follower(epoch, &copied, 0, 0).unwrap();
    assert_eq!(replica.producer_state(8), source.producer_state(8));
    leader.logs.shutdown().unwrap();
    follower.logs.shutdown().unwrap();
}
