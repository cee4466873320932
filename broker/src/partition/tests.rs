use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use uuid::Uuid;
use weir_proto::batch::{self, EncodeOptions, Record};

use super::*;
use crate::clock::{Clock, ManualClock};
use crate::config::{LogConfig, StorageConfig};
use crate::controller::testing;
use crate::controller::{ClusterMetadata, MetadataDelta, MetadataRecord, PartitionChangeRecord};
use crate::storage::LogManager;

const ME: BrokerId = 1;

pub(super) fn records(count: usize) -> Bytes {
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from_static(b"value")),
            headers: Vec::new(),
            timestamp: 1_000 + i as i64,
            offset: i as i64,
        })
        .collect();
    batch::encode(&records, &EncodeOptions::default()).unwrap()
}

pub(super) fn manager(dir: &std::path::Path) -> (Arc<LogManager>, ReplicaManager) {
    let config = StorageConfig {
        data_dir: dir.to_path_buf(),
        log: LogConfig {
            segment_bytes: 64 * 1024,
            segment_index_bytes: 4096,
            ..LogConfig::default()
        },
        ..StorageConfig::default()
    };
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(1_000_000));
    let logs = Arc::new(LogManager::open(config, clock).unwrap());
    (
        Arc::clone(&logs),
        ReplicaManager::new(ME, logs, ProducePolicy::default()),
    )
}

pub(super) fn brokers(ids: &[BrokerId]) -> Vec<MetadataRecord> {
    ids.iter().map(|&id| testing::register(id, None)).collect()
}

pub(super) fn topic(name: &str, id: u128, replicas: &[&[BrokerId]]) -> Vec<MetadataRecord> {
    let configs = BTreeMap::from([("segment.bytes".into(), "32768".into())]);
    testing::topic(name, Uuid::from_u128(id), configs, replicas)
}

/// Applies `records` to `metadata` and hands the change to `manager`.
pub(super) fn change(
    manager: &ReplicaManager,
    metadata: &mut Arc<ClusterMetadata>,
    records: Vec<MetadataRecord>,
) {
    let mut next = ClusterMetadata::clone(metadata);
    next.apply_batch(&records).unwrap();
    let next = Arc::new(next);
    let index = metadata.topics().count() as u64 + metadata.brokers().count() as u64;
    manager.apply(&MetadataDelta {
        before: Arc::clone(metadata),
        after: Arc::clone(&next),
        applied_index: Some(index + 1),
    });
    *metadata = next;
}

#[tokio::test]
async fn a_sole_leader_takes_writes_serves_them_below_its_high_watermark_and_wakes_fetches() {
    let dir = tempfile::tempdir().unwrap();
    let (logs, manager) = manager(dir.path());
    let mut metadata = Arc::new(ClusterMetadata::default());
    change(&manager, &mut metadata, brokers(&[1, 2]));
    change(&manager, &mut metadata, topic("orders", 7, &[&[1], &[2]]));

    // Only the partition with a replica here exists, created with the topic's configs.
    let tp = TopicPartition::new("orders", 0);
    let partition = manager.partition(&tp).expect("a replica of partition 0");
    assert!(
        manager
            .partition(&TopicPartition::new("orders", 1))
            .is_none()
    );
    assert_eq!(partition.role(), Role::Leader);
    assert_eq!(partition.log().config().segment_bytes, 32768);
    assert_eq!(partition.high_watermark(), 0);

    // A waiting fetch is woken by the append that moves the high watermark.
    let waiting = {
        let partition = Arc::clone(&partition);
        tokio::spawn(async move { partition.wait_for_data(0, Duration::from_secs(30)).await })
    };
    tokio::task::yield_now().await;
    let info = partition.produce(records(3), 2_000).unwrap();
    assert_eq!((info.base_offset, info.last_offset), (0, 2));
    assert!(waiting.await.unwrap(), "woken, not timed out");
    assert_eq!(partition.high_watermark(), 3);

    // A corrupt batch is refused before the log sees it.
    let mut corrupt = records(2).to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    let error = partition.produce(Bytes::from(corrupt), 2_000).unwrap_err();
    assert!(
        matches!(
            error,
            PartitionError::Produce(ProduceError::CorruptMessage { .. })
        ),
        "{error}"
    );
    assert_eq!(partition.log().log_end_offset(), 3);
    assert!(!partition.wait_for_data(3, Duration::from_millis(10)).await);

    let read = partition.read(1, 1 << 20, Some(0)).unwrap();
    assert_eq!(read.high_watermark, 3);
    assert_eq!(read.log_start_offset, 0);
    let header = batch::BatchHeader::parse(&read.records).unwrap();
    assert_eq!(
        header.base_offset, 0,
        "whole batches, from the one holding offset 1"
    );
    assert!(partition.read(3, 1 << 20, None).unwrap().records.is_empty());
    let nothing = partition.read(0, 0, None).unwrap();
    assert!(nothing.records.is_empty(), "no bytes asked for, none read");
    assert_eq!(nothing.high_watermark, 3);
    let error = partition.read(4, 1 << 20, None).unwrap_err();
    assert!(
        matches!(
            error,
            PartitionError::OffsetOutOfRange {
                start: 0,
                end: 3,
                ..
            }
        ),
        "{error}"
    );
    assert!(matches!(
        partition.read(0, 1 << 20, Some(1)).unwrap_err(),
        PartitionError::UnknownLeaderEpoch {
            given: 1,
            current: 0,
            ..
        }
    ));

    // Leadership moves to broker 2: this replica refuses writes, and old epochs are fenced.
    change(
        &manager,
        &mut metadata,
        vec![
            MetadataRecord::PartitionChange(PartitionChangeRecord {
                topic_id: Uuid::from_u128(7),
                partition: 0,
                leader: None,
                isr: None,
                replicas: Some(vec![1, 2]),
            }),
            MetadataRecord::PartitionChange(PartitionChangeRecord {
                topic_id: Uuid::from_u128(7),
                partition: 0,
                leader: None,
                isr: Some(vec![1, 2]),
                replicas: None,
            }),
            MetadataRecord::PartitionChange(PartitionChangeRecord {
                topic_id: Uuid::from_u128(7),
                partition: 0,
                leader: Some(Some(2)),
                isr: None,
                replicas: None,
            }),
        ],
    );
    assert_eq!(partition.role(), Role::Follower { leader: Some(2) });
    assert_eq!(partition.leader_epoch(), 1);
    let error = partition.produce(records(1), 2_000).unwrap_err();
    assert!(
        matches!(
            error,
            PartitionError::NotLeader {
                leader: Some(2),
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(
        partition.high_watermark(),
        3,
        "a high watermark never moves back"
    );

    // The topic is deleted: the replica and its files go.
    let log_dir = partition.log().dir().to_path_buf();
    change(
        &manager,
        &mut metadata,
        vec![MetadataRecord::RemoveTopic {
            topic_id: Uuid::from_u128(7),
        }],
    );
    assert!(manager.partition(&tp).is_none());
    assert!(!log_dir.exists());
    assert!(logs.get(&tp).is_none());
}

#[test]
fn a_log_left_by_an_earlier_topic_of_the_same_name_is_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let tp = TopicPartition::new("orders", 0);
    {
        let (logs, manager) = manager(dir.path());
        let mut metadata = Arc::new(ClusterMetadata::default());
        change(&manager, &mut metadata, brokers(&[1]));
        change(&manager, &mut metadata, topic("orders", 7, &[&[1]]));
        manager
            .partition(&tp)
            .unwrap()
            .append_as_leader(&records(5))
            .unwrap();
        logs.shutdown().unwrap();
    }
    // While this broker was down, "orders" was deleted and created again with a new id.
    let (logs, manager) = manager(dir.path());
    assert_eq!(logs.get(&tp).unwrap().log_end_offset(), 5);
    let mut metadata = Arc::new(ClusterMetadata::default());
    change(&manager, &mut metadata, brokers(&[1]));
    change(&manager, &mut metadata, topic("orders", 8, &[&[1]]));
    let partition = manager.partition(&tp).unwrap();
    assert_eq!(partition.topic_id(), Uuid::from_u128(8));
    assert_eq!(
        partition.log().log_end_offset(),
        0,
        "the old topic's records are gone"
    );

    // A log of a topic that no longer exists at all is an orphan, removed on request.
    let stale = TopicPartition::new("gone", 0);
    logs.get_or_create(&stale, LogConfig::default()).unwrap();
    assert_eq!(
        manager.remove_orphans(1_000),
        None,
        "not caught up that far"
    );
    assert_eq!(manager.remove_orphans(2), Some(1));
    assert!(logs.get(&stale).is_none());
    assert!(manager.partition(&tp).is_some(), "a live replica is kept");
    logs.shutdown().unwrap();
}

#[test]
fn a_topic_config_change_reaches_its_partitions_produce_checks_and_logs() {
    let dir = tempfile::tempdir().unwrap();
    let (logs, manager) = manager(dir.path());
    let mut metadata = Arc::new(ClusterMetadata::default());
    change(&manager, &mut metadata, brokers(&[1]));
    change(&manager, &mut metadata, topic("orders", 7, &[&[1], &[1]]));
    let partitions: Vec<_> = (0..2)
        .map(|i| {
            manager
                .partition(&TopicPartition::new("orders", i))
                .unwrap()
        })
        .collect();
    assert!(partitions[0].produce(records(1), 0).is_ok());

    let configs = BTreeMap::from([
        ("max.message.bytes".to_string(), "64".to_string()),
        ("segment.bytes".to_string(), "65536".to_string()),
    ]);
    change(
        &manager,
        &mut metadata,
        vec![MetadataRecord::TopicConfigs {
            topic_id: Uuid::from_u128(7),
            configs,
        }],
    );
    for partition in &partitions {
        assert!(matches!(
            partition.produce(records(5), 0),
            Err(PartitionError::Produce(ProduceError::MessageTooLarge {
                limit: 64,
                ..
            }))
        ));
        assert_eq!(partition.log().config().segment_bytes, 65536);
    }
    logs.shutdown().unwrap();
}
