//! Offset queries and changes a leader answers: the offset at the start, at the end, at a
//! time, or of the latest timestamp (Kafka's ListOffsets); where a leader epoch ends
//! (OffsetForLeaderEpoch); and moving the log start up (DeleteRecords).
//!
//! Invariants:
//! - No answer names an offset at or above the high watermark other than the high watermark
//!   itself, so a consumer is never pointed at records it may not read yet.
//! - DeleteRecords never moves the log start back nor past the high watermark, and a moved
//!   start is durable (in the recovery checkpoint) before the request is answered.

use std::collections::BTreeMap;

use super::{Partition, PartitionError, ReplicaManager};
use crate::storage::EpochEndOffset;

/// Which offset a ListOffsets query asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset: the first offset a consumer can read (Kafka's -2, and -4 "the
    /// earliest local offset", which is the same without tiered storage).
    Earliest,
    /// The high watermark: the offset of the next record a consumer will see (Kafka's -1).
    Latest,
    /// The first record with the largest timestamp (Kafka's -3).
    MaxTimestamp,
    /// The first record whose timestamp is at least this many milliseconds.
    Timestamp(i64),
}

/// What a ListOffsets query found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    /// The offset.
    pub offset: i64,
    /// The record's timestamp, for queries that found a record; -1 for the start and end.
    pub timestamp: i64,
    /// The leader epoch of the offset, when known: the epoch of the record's batch, the
    /// current epoch for the end, the epoch of the first record for the start.
    pub leader_epoch: Option<i32>,
}

impl Partition {
    /// Answers a consumer's ListOffsets query as the leader (at `leader_epoch`, if the client
    /// gave one). `None` means no record qualifies: every record is older than the timestamp,
    /// the log is empty, or the record found is not below the high watermark yet.
    pub fn list_offset(
        &self,
        spec: OffsetSpec,
        leader_epoch: Option<i32>,
    ) -> Result<Option<ListedOffset>, PartitionError> {
        let current_epoch = self.check_leader(leader_epoch)?;
        let high_watermark = self.high_watermark();
        if spec == OffsetSpec::Earliest {
            let offset = self.log.log_start_offset();
            return Ok(Some(ListedOffset {
                offset,
                timestamp: -1,
                leader_epoch: self.log.epoch_for_offset(offset),
            }));
        }
        // A new leader whose high watermark has not caught up with its own log cannot say
        // where a consumer's view ends, as Kafka answers then.
        if let Some(epoch_start) = self.log.epoch_start_offset(current_epoch)
            && epoch_start > high_watermark
        {
            return Err(PartitionError::OffsetNotAvailable {
                tp: self.tp.clone(),
                epoch_start,
                high_watermark,
            });
        }
        let found = match spec {
            OffsetSpec::Earliest => unreachable!("answered above"),
            OffsetSpec::Latest => {
                return Ok(Some(ListedOffset {
                    offset: high_watermark,
                    timestamp: -1,
                    leader_epoch: Some(current_epoch),
                }));
            }
            OffsetSpec::MaxTimestamp => self.log.max_timestamp_offset()?,
            OffsetSpec::Timestamp(timestamp) => self.log.offset_for_timestamp(timestamp)?,
        };
        // As Kafka does: a record not yet below the high watermark is not found.
        Ok(found
            .filter(|found| found.offset < high_watermark)
            .map(|found| ListedOffset {
                offset: found.offset,
                timestamp: found.timestamp,
                leader_epoch: (found.leader_epoch >= 0).then_some(found.leader_epoch),
            }))
    }

    /// Where the records of `epoch` end in the leader's log (OffsetForLeaderEpoch), as the
    /// leader at `current_leader_epoch` if the client gave one. The latest epoch ends at the
    /// log end offset, as in Kafka (not the high watermark: a follower truncates to it).
    pub fn end_offset_for_epoch(
        &self,
        current_leader_epoch: Option<i32>,
        epoch: i32,
    ) -> Result<EpochEndOffset, PartitionError> {
        self.check_leader(current_leader_epoch)?;
        Ok(self.log.end_offset_for_epoch(epoch))
    }

    /// Moves the log start offset up to `offset` (-1: the high watermark) as the leader, and
    /// returns the new log start (the low watermark). An offset above the high watermark, or
    /// negative other than -1, is OFFSET_OUT_OF_RANGE; one at or below the start changes
    /// nothing. The caller makes the new start durable ([`ReplicaManager::delete_records`]).
    fn delete_records_before(&self, offset: i64) -> Result<i64, PartitionError> {
        self.check_leader(None)?;
        let high_watermark = self.high_watermark();
        let offset = if offset == -1 { high_watermark } else { offset };
        if !(0..=high_watermark).contains(&offset) {
            return Err(PartitionError::OffsetOutOfRange {
                tp: self.tp.clone(),
                offset,
                start: self.log.log_start_offset(),
                end: high_watermark,
            });
        }
        Ok(self.log.delete_records_before(offset)?)
    }

    /// Records that this replica now leads at `epoch`, from its log end, so OffsetForLeaderEpoch
    /// and ListOffsets know the epoch before its first append. A failure is logged: the log
    /// then refuses writes, which clients see.
    pub(super) fn start_leader_epoch(&self, epoch: i32) {
        if let Err(error) = self.log.assign_leader_epoch(epoch) {
            tracing::error!(tp = %self.tp, epoch, %error, "could not record the leader epoch");
        }
    }
}

impl ReplicaManager {
    /// DeleteRecords on `partition`: refused if its topic only compacts (POLICY_VIOLATION),
    /// otherwise the log start moves up to `offset` (-1: the high watermark; see
    /// [`Partition`]'s rules) and the recovery checkpoint records it before this returns, so
    /// the deletion survives a crash. Returns the new log start offset (the low watermark).
    /// Blocks on disk writes.
    pub fn delete_records(
        &self,
        partition: &Partition,
        offset: i64,
    ) -> Result<i64, PartitionError> {
        let configs = self.topic_configs(&partition.tp.topic);
        if let Some(reason) = deletion_forbidden(&configs) {
            return Err(PartitionError::PolicyViolation {
                tp: partition.tp.clone(),
                reason,
            });
        }
        let before = partition.log.log_start_offset();
        let low_watermark = partition.delete_records_before(offset)?;
        if low_watermark != before {
            self.logs().write_checkpoint()?;
        }
        Ok(low_watermark)
    }
}

/// Why a topic with `configs` does not allow DeleteRecords, if it does not: as in Kafka, a
/// topic whose `cleanup.policy` compacts and does not delete.
fn deletion_forbidden(configs: &BTreeMap<String, String>) -> Option<String> {
    let policy = configs.get("cleanup.policy")?;
    let policies: Vec<&str> = policy.split(',').map(str::trim).collect();
    (policies.contains(&"compact") && !policies.contains(&"delete"))
        .then(|| format!("records cannot be deleted from a topic with cleanup.policy={policy}"))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use weir_proto::batch::{self, EncodeOptions, Record};

    use uuid::Uuid;

    use super::*;
    use crate::controller::{ClusterMetadata, MetadataRecord, PartitionChangeRecord, testing};
    use crate::partition::tests::{brokers, change, manager, records, topic};
    use crate::storage::{LogManager, TopicPartition};

    /// A change of partition 0 of topic 7: its leader, its ISR.
    fn move_partition(leader: Option<Option<i32>>, isr: Option<Vec<i32>>) -> Vec<MetadataRecord> {
        vec![MetadataRecord::PartitionChange(PartitionChangeRecord {
            topic_id: Uuid::from_u128(7),
            partition: 0,
            leader,
            isr,
            replicas: None,
        })]
    }

    /// A batch of records with these timestamps.
    fn stamped(timestamps: &[i64]) -> Bytes {
        let records: Vec<Record> = timestamps
            .iter()
            .enumerate()
            .map(|(i, &timestamp)| Record {
                key: None,
                value: Some(Bytes::from_static(b"v")),
                headers: Vec::new(),
                timestamp,
                offset: i as i64,
            })
            .collect();
        batch::encode(&records, &EncodeOptions::default()).unwrap()
    }

    fn found(offset: i64, timestamp: i64, leader_epoch: i32) -> Option<ListedOffset> {
        Some(ListedOffset {
            offset,
            timestamp,
            leader_epoch: Some(leader_epoch),
        })
    }

    #[test]
    fn a_leader_lists_its_start_end_and_offsets_by_time() {
        let dir = tempfile::tempdir().unwrap();
        let (logs, manager) = manager(dir.path());
        let mut metadata = Arc::new(ClusterMetadata::default());
        change(&manager, &mut metadata, brokers(&[1, 2]));
        change(&manager, &mut metadata, topic("t", 7, &[&[1], &[2, 1]]));
        let partition = manager.partition(&TopicPartition::new("t", 0)).unwrap();
        let list = |spec| partition.list_offset(spec, None).unwrap();

        // An empty log: start and end are 0 (epoch 0 began there), and no record is found.
        let empty = Some(ListedOffset {
            offset: 0,
            timestamp: -1,
            leader_epoch: Some(0),
        });
        assert_eq!(list(OffsetSpec::Earliest), empty);
        assert_eq!(list(OffsetSpec::Timestamp(0)), None);
        assert_eq!(list(OffsetSpec::MaxTimestamp), None);

        // Offsets 0-2, 3-5 and 6-7; timestamps out of order inside a batch.
        partition.produce(stamped(&[100, 300, 200]), 0).unwrap();
        partition.produce(stamped(&[400, 900, 500]), 0).unwrap();
        partition.produce(stamped(&[600, 900]), 0).unwrap();
        assert_eq!(list(OffsetSpec::Earliest).unwrap().offset, 0);
        assert_eq!(
            list(OffsetSpec::Latest),
            Some(ListedOffset {
                offset: 8,
                timestamp: -1,
                leader_epoch: Some(0),
            })
        );
        assert_eq!(list(OffsetSpec::Timestamp(-50)), found(0, 100, 0));
        assert_eq!(list(OffsetSpec::Timestamp(150)), found(1, 300, 0));
        assert_eq!(list(OffsetSpec::Timestamp(301)), found(3, 400, 0));
        assert_eq!(list(OffsetSpec::Timestamp(550)), found(4, 900, 0));
        assert_eq!(list(OffsetSpec::Timestamp(901)), None);
        assert_eq!(
            list(OffsetSpec::MaxTimestamp),
            found(4, 900, 0),
            "the first record with the largest timestamp"
        );

        // A client with a stale or future epoch, and a replica that does not lead, refuse.
        assert!(matches!(
            partition.list_offset(OffsetSpec::Latest, Some(1)),
            Err(PartitionError::UnknownLeaderEpoch { .. })
        ));
        let follower = manager.partition(&TopicPartition::new("t", 1)).unwrap();
        assert!(matches!(
            follower.list_offset(OffsetSpec::Earliest, None),
            Err(PartitionError::NotLeader { .. })
        ));
        logs.shutdown().unwrap();
    }

    #[test]
    fn records_at_or_above_the_high_watermark_are_not_listed() {
        let dir = tempfile::tempdir().unwrap();
        let (logs, manager) = manager(dir.path());
        let mut metadata = Arc::new(ClusterMetadata::default());
        change(&manager, &mut metadata, brokers(&[1, 2]));
        // Broker 2 is in the ISR, so nothing this leader appends is replicated yet.
        change(&manager, &mut metadata, topic("t", 7, &[&[1, 2]]));
        let partition = manager.partition(&TopicPartition::new("t", 0)).unwrap();
        partition.append_as_leader(&stamped(&[100, 200])).unwrap();
        assert_eq!(partition.log().log_end_offset(), 2);
        assert_eq!(partition.high_watermark(), 0);
        let list = |spec| partition.list_offset(spec, None).unwrap();
        assert_eq!(list(OffsetSpec::Latest).unwrap().offset, 0);
        assert_eq!(list(OffsetSpec::Timestamp(0)), None);
        assert_eq!(list(OffsetSpec::MaxTimestamp), None);

        partition.advance_high_watermark(1);
        assert_eq!(list(OffsetSpec::Timestamp(0)), found(0, 100, 0));
        assert_eq!(list(OffsetSpec::Timestamp(150)), None);
        assert_eq!(list(OffsetSpec::Latest).unwrap().offset, 1);
        logs.shutdown().unwrap();
    }

    #[test]
    fn epochs_end_where_the_next_one_starts_and_a_new_leader_records_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let (logs, manager) = manager(dir.path());
        let mut metadata = Arc::new(ClusterMetadata::default());
        change(&manager, &mut metadata, brokers(&[1, 2]));
        change(&manager, &mut metadata, topic("t", 7, &[&[1, 2]]));
        let partition = manager.partition(&TopicPartition::new("t", 0)).unwrap();
        let end = |current, epoch| {
            let found = partition.end_offset_for_epoch(current, epoch).unwrap();
            (found.leader_epoch, found.end_offset)
        };
        assert_eq!(end(None, 0), (0, 0), "epoch 0 was recorded when it began");
        partition.append_as_leader(&records(3)).unwrap();
        assert_eq!(end(Some(0), 0), (0, 3));

        // Broker 2 leads at epoch 1 (writing nothing here), then this broker at epoch 2.
        change(&manager, &mut metadata, move_partition(Some(Some(2)), None));
        assert!(matches!(
            partition.end_offset_for_epoch(None, 0),
            Err(PartitionError::NotLeader { .. })
        ));
        change(&manager, &mut metadata, move_partition(Some(Some(1)), None));
        assert_eq!(partition.leader_epoch(), 2);
        assert_eq!(end(None, 2), (2, 3), "known before its first append");
        partition.append_as_leader(&records(2)).unwrap();
        assert_eq!(end(None, 0), (0, 3));
        assert_eq!(end(None, 1), (0, 3), "epoch 1 wrote nothing here");
        assert_eq!(end(Some(2), 2), (2, 5));
        assert_eq!(end(None, 3), (-1, -1));
        assert!(matches!(
            partition.end_offset_for_epoch(Some(1), 0),
            Err(PartitionError::FencedLeaderEpoch {
                given: 1,
                current: 2,
                ..
            })
        ));
        assert!(matches!(
            partition.end_offset_for_epoch(Some(3), 0),
            Err(PartitionError::UnknownLeaderEpoch { .. })
        ));
        let earliest = partition.list_offset(OffsetSpec::Earliest, None).unwrap();
        assert_eq!(earliest.unwrap().leader_epoch, Some(0));
        logs.shutdown().unwrap();
    }

    #[test]
    fn a_new_leader_lists_no_end_until_its_high_watermark_reaches_its_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let (logs, manager) = manager(dir.path());
        let mut metadata = Arc::new(ClusterMetadata::default());
        change(&manager, &mut metadata, brokers(&[1, 2]));
        change(&manager, &mut metadata, topic("t", 7, &[&[2, 1]]));
        let partition = manager.partition(&TopicPartition::new("t", 0)).unwrap();
        // As a follower it copied 3 records of epoch 0; its high watermark is still 0.
        let mut copied = records(3).to_vec();
        weir_proto::batch::set_partition_leader_epoch(&mut copied, 0);
        partition.log().append_replicated(&copied).unwrap();
        change(&manager, &mut metadata, move_partition(Some(Some(1)), None));
        assert_eq!(partition.high_watermark(), 0);
        for spec in [OffsetSpec::Latest, OffsetSpec::Timestamp(0)] {
            assert!(matches!(
                partition.list_offset(spec, None),
                Err(PartitionError::OffsetNotAvailable {
                    epoch_start: 3,
                    high_watermark: 0,
                    ..
                })
            ));
        }
        assert_eq!(
            partition
                .list_offset(OffsetSpec::Earliest, None)
                .unwrap()
                .unwrap()
                .offset,
            0
        );
        // Alone in the ISR, its log end is the high watermark.
        change(&manager, &mut metadata, move_partition(None, Some(vec![1])));
        let latest = partition.list_offset(OffsetSpec::Latest, None).unwrap();
        assert_eq!(latest.unwrap().offset, 3);
        logs.shutdown().unwrap();
    }

    #[test]
    fn delete_records_moves_the_start_durably_within_the_high_watermark() {
        let dir = tempfile::tempdir().unwrap();
        let tp = TopicPartition::new("t", 0);
        {
            let (logs, manager) = manager(dir.path());
            let mut metadata = Arc::new(ClusterMetadata::default());
            change(&manager, &mut metadata, brokers(&[1, 2]));
            change(&manager, &mut metadata, topic("t", 7, &[&[1], &[2, 1]]));
            let compacted = BTreeMap::from([("cleanup.policy".into(), "compact".into())]);
            let compacted = testing::topic("c", Uuid::from_u128(8), compacted, &[&[1]]);
            change(&manager, &mut metadata, compacted);
            let partition = manager.partition(&tp).unwrap();
            for _ in 0..3 {
                partition.produce(records(3), 0).unwrap();
            }
            let delete = |offset| manager.delete_records(&partition, offset);
            assert_eq!(delete(4).unwrap(), 4);
            assert_eq!(partition.log().log_start_offset(), 4);
            assert!(matches!(
                partition.read(3, 1 << 20, None),
                Err(PartitionError::OffsetOutOfRange { start: 4, .. })
            ));
            let earliest = partition.list_offset(OffsetSpec::Earliest, None).unwrap();
            assert_eq!(earliest.unwrap().offset, 4);
            assert_eq!(delete(2).unwrap(), 4, "never back");
            for bad in [10, -2] {
                assert!(matches!(
                    delete(bad),
                    Err(PartitionError::OffsetOutOfRange { end: 9, .. })
                ));
            }
            assert!(matches!(
                manager
                    .delete_records(&manager.partition(&TopicPartition::new("t", 1)).unwrap(), 0),
                Err(PartitionError::NotLeader { .. })
            ));
            let compacted = manager.partition(&TopicPartition::new("c", 0)).unwrap();
            let error = manager.delete_records(&compacted, 0).unwrap_err();
            assert!(
                matches!(error, PartitionError::PolicyViolation { .. }),
                "{error}"
            );
            assert_eq!(delete(-1).unwrap(), 9, "-1 is the high watermark");
            assert_eq!(delete(6).unwrap(), 9);
            // The broker dies without shutting down.
            drop(partition);
            drop(manager);
            drop(logs);
        }
        let config = crate::config::StorageConfig {
            data_dir: dir.path().to_path_buf(),
            log: crate::config::LogConfig {
                segment_bytes: 64 * 1024,
                segment_index_bytes: 4096,
                ..crate::config::LogConfig::default()
            },
            ..crate::config::StorageConfig::default()
        };
        let clock: Arc<dyn crate::clock::Clock> = Arc::new(crate::clock::ManualClock::new(0));
        let logs = LogManager::open(config, clock).unwrap();
        assert_eq!(logs.get(&tp).unwrap().log_start_offset(), 9);
        logs.shutdown().unwrap();
    }
}
