//! Offset queries a leader answers for consumers: the offset at the start, at the end, at a
//! time, or of the latest timestamp (Kafka's ListOffsets).
//!
//! Invariant: no answer names an offset at or above the high watermark other than the high
//! watermark itself, so a consumer is never pointed at records it may not read yet.

use super::{Partition, PartitionError};

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
        let found = match spec {
            OffsetSpec::Earliest => {
                let offset = self.log.log_start_offset();
                return Ok(Some(ListedOffset {
                    offset,
                    timestamp: -1,
                    leader_epoch: None,
                }));
            }
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
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use weir_proto::batch::{self, EncodeOptions, Record};

    use super::*;
    use crate::controller::ClusterMetadata;
    use crate::partition::tests::{brokers, change, manager, topic};
    use crate::storage::TopicPartition;

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

        // An empty log: start and end are 0, and no record is found.
        let empty = Some(ListedOffset {
            offset: 0,
            timestamp: -1,
            leader_epoch: None,
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
}
