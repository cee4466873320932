//! The records of `__consumer_offsets`: what a coordinator writes about its groups, and reads
//! back when it loads a partition. Keys and values are the protobuf messages of
//! `proto/weir/internal/v1/groups.proto`; this is the one place they meet the group types.
//!
//! A key names one thing (a group's metadata, or one committed offset), so compaction keeps
//! the newest record of each; a null value (a tombstone) says the thing is gone.

use bytes::Bytes;
use prost::Message;
use weir_proto::internal::v1 as pb;

use super::classic::{ClassicMemberValue, ClassicValue};

/// A committed offset of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommittedOffset {
    /// The next offset the group reads.
    pub(crate) offset: i64,
    /// The leader epoch of the record before it, or -1.
    pub(crate) leader_epoch: i32,
    /// The client's metadata string (null stays null).
    pub(crate) metadata: Option<String>,
    /// When it was committed (ms).
    pub(crate) commit_timestamp_ms: i64,
}

/// One record of `__consumer_offsets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GroupRecord {
    /// A committed offset, or `None` once deleted.
    Offset {
        group: String,
        topic: String,
        partition: i32,
        value: Option<CommittedOffset>,
    },
    /// A classic group as of its last rebalance, or `None` once deleted.
    Classic {
        group: String,
        value: Option<ClassicValue>,
    },
}

/// Why a record of `__consumer_offsets` could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RecordError {
    /// The record has no key.
    #[error("a record without a key")]
    NoKey,
    /// The key or value is not the protobuf message it should be.
    #[error("an undecodable {what}: {source}")]
    Decode {
        what: &'static str,
        source: prost::DecodeError,
    },
    /// The key names nothing this version knows.
    #[error("a key of an unknown kind for group {0:?}")]
    UnknownKind(String),
}

impl GroupRecord {
    /// The group the record belongs to.
    pub(crate) fn group(&self) -> &str {
        match self {
            GroupRecord::Offset { group, .. } | GroupRecord::Classic { group, .. } => group,
        }
    }

    /// The record's key and value (`None`: a tombstone).
    pub(crate) fn encode(&self) -> (Bytes, Option<Bytes>) {
        match self {
            GroupRecord::Offset {
                group,
                topic,
                partition,
                value,
            } => {
                let key = pb::GroupRecordKey {
                    group: group.clone(),
                    kind: Some(pb::group_record_key::Kind::Offset(pb::OffsetKey {
                        topic: topic.clone(),
                        partition: *partition,
                    })),
                };
                let value = value.as_ref().map(|v| {
                    pb::CommittedOffsetValue {
                        offset: v.offset,
                        leader_epoch: v.leader_epoch,
                        metadata: v.metadata.clone(),
                        commit_timestamp_ms: v.commit_timestamp_ms,
                    }
                    .encode_to_vec()
                    .into()
                });
                (key.encode_to_vec().into(), value)
            }
            GroupRecord::Classic { group, value } => {
                let key = pb::GroupRecordKey {
                    group: group.clone(),
                    kind: Some(pb::group_record_key::Kind::Classic(pb::ClassicGroupKey {})),
                };
                let value = value
                    .as_ref()
                    .map(|v| classic_to_proto(v).encode_to_vec().into());
                (key.encode_to_vec().into(), value)
            }
        }
    }

    /// Reads a record from its key and value.
    pub(crate) fn decode(key: Option<&[u8]>, value: Option<&[u8]>) -> Result<Self, RecordError> {
        let key = key.ok_or(RecordError::NoKey)?;
        let key = pb::GroupRecordKey::decode(key).map_err(|source| RecordError::Decode {
            what: "key",
            source,
        })?;
        let value_error = |source| RecordError::Decode {
            what: "value",
            source,
        };
        match key.kind {
            Some(pb::group_record_key::Kind::Offset(offset)) => {
                let value = value
                    .map(|v| pb::CommittedOffsetValue::decode(v).map_err(value_error))
                    .transpose()?
                    .map(|v| CommittedOffset {
                        offset: v.offset,
                        leader_epoch: v.leader_epoch,
                        metadata: v.metadata,
                        commit_timestamp_ms: v.commit_timestamp_ms,
                    });
                Ok(GroupRecord::Offset {
                    group: key.group,
                    topic: offset.topic,
                    partition: offset.partition,
                    value,
                })
            }
            Some(pb::group_record_key::Kind::Classic(_)) => {
                let value = value
                    .map(|v| pb::ClassicGroupValue::decode(v).map_err(value_error))
                    .transpose()?
                    .map(classic_from_proto);
                Ok(GroupRecord::Classic {
                    group: key.group,
                    value,
                })
            }
            None => Err(RecordError::UnknownKind(key.group)),
        }
    }
}

fn classic_to_proto(value: &ClassicValue) -> pb::ClassicGroupValue {
    pb::ClassicGroupValue {
        protocol_type: value.protocol_type.clone(),
        generation: value.generation,
        protocol: value.protocol.clone(),
        leader: value.leader.clone(),
        state_timestamp_ms: value.state_timestamp_ms,
        members: value
            .members
            .iter()
            .map(|m| pb::ClassicMemberValue {
                member_id: m.member_id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                session_timeout_ms: m.session_timeout_ms,
                subscription: m.subscription.clone(),
                assignment: m.assignment.clone(),
            })
            .collect(),
    }
}

fn classic_from_proto(value: pb::ClassicGroupValue) -> ClassicValue {
    ClassicValue {
        protocol_type: value.protocol_type,
        generation: value.generation,
        protocol: value.protocol,
        leader: value.leader,
        state_timestamp_ms: value.state_timestamp_ms,
        members: value
            .members
            .into_iter()
            .map(|m| ClassicMemberValue {
                member_id: m.member_id,
                instance_id: m.instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                session_timeout_ms: m.session_timeout_ms,
                subscription: m.subscription,
                assignment: m.assignment,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_record_reads_back_as_written() {
        let records = [
            GroupRecord::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 3,
                value: Some(CommittedOffset {
                    offset: 42,
                    leader_epoch: 7,
                    metadata: None,
                    commit_timestamp_ms: 1000,
                }),
            },
            GroupRecord::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 3,
                value: None,
            },
            GroupRecord::Classic {
                group: "g".into(),
                value: Some(ClassicValue {
                    protocol_type: "consumer".into(),
                    generation: 4,
                    protocol: Some("range".into()),
                    leader: Some("m-1".into()),
                    state_timestamp_ms: 5,
                    members: vec![ClassicMemberValue {
                        member_id: "m-1".into(),
                        instance_id: Some("i".into()),
                        client_id: "c".into(),
                        client_host: "/127.0.0.1".into(),
                        rebalance_timeout_ms: 300_000,
                        session_timeout_ms: 45_000,
                        subscription: Bytes::from_static(b"sub"),
                        assignment: Bytes::from_static(b"assigned"),
                    }],
                }),
            },
            GroupRecord::Classic {
                group: "g".into(),
                value: None,
            },
        ];
        for record in records {
            let (key, value) = record.encode();
            let read = GroupRecord::decode(Some(&key), value.as_deref()).unwrap();
            assert_eq!(read, record);
        }
    }

    #[test]
    fn keys_of_one_thing_are_equal_and_of_different_things_differ() {
        let offset = |partition, offset| GroupRecord::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition,
            value: Some(CommittedOffset {
                offset,
                leader_epoch: -1,
                metadata: Some(String::new()),
                commit_timestamp_ms: 0,
            }),
        };
        assert_eq!(offset(0, 1).encode().0, offset(0, 2).encode().0);
        assert_ne!(offset(0, 1).encode().0, offset(1, 1).encode().0);
    }

    #[test]
    fn damaged_records_are_refused() {
        assert!(matches!(
            GroupRecord::decode(None, None),
            Err(RecordError::NoKey)
        ));
        assert!(GroupRecord::decode(Some(&[0xff, 0xff]), None).is_err());
    }
}
