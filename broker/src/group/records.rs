//! The records of `__consumer_offsets`: what a coordinator writes about its groups, and reads
//! back when it loads a partition. Keys and values are the protobuf messages of
//! `proto/weir/internal/v1/groups.proto`; this is the one place they meet the group types.
//!
//! A key names one thing (a group's metadata, or one committed offset), so compaction keeps
//! the newest record of each; a null value (a tombstone) says the thing is gone.

use bytes::Bytes;
use prost::Message;
use weir_proto::internal::v1 as pb;

use super::assignor::Assignment;
use super::classic::{ClassicMemberValue, ClassicValue};
use super::consumer::{
    ConsumerGroupRecord, CurrentAssignment, MemberMetadata, MemberState, TopicMetadata,
};

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
    /// A change of a consumer-protocol group. `MemberRemoved` and `GroupDeleted` are the
    /// tombstones of a member's metadata and of the group epoch.
    Consumer {
        group: String,
        record: ConsumerGroupRecord,
    },
    /// The tombstone of another part of a consumer-protocol group (a removed member's
    /// assignments, a deleted group's subscription and target epoch): compaction then drops
    /// the part; replay has nothing to do.
    ConsumerTombstone {
        group: String,
        member: String,
        part: pb::ConsumerPart,
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
    /// A field holds what it cannot.
    #[error("{0}")]
    Invalid(&'static str),
}

impl GroupRecord {
    /// The group the record belongs to.
    pub(crate) fn group(&self) -> &str {
        match self {
            GroupRecord::Offset { group, .. }
            | GroupRecord::Classic { group, .. }
            | GroupRecord::Consumer { group, .. }
            | GroupRecord::ConsumerTombstone { group, .. } => group,
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
            GroupRecord::Consumer { group, record } => {
                let (member, part, value) = consumer_to_proto(record);
                (consumer_key(group, member, part), value)
            }
            GroupRecord::ConsumerTombstone {
                group,
                member,
                part,
            } => (consumer_key(group, member.clone(), *part), None),
        }
    }

    /// The log records of a consumer group's change: a removed member's or a deleted group's
    /// other parts are tombstoned first, so compaction drops them too.
    pub(crate) fn consumer(group: &str, record: ConsumerGroupRecord) -> Vec<GroupRecord> {
        let tombstone = |member: &str, part| GroupRecord::ConsumerTombstone {
            group: group.to_string(),
            member: member.to_string(),
            part,
        };
        let mut records = match &record {
            ConsumerGroupRecord::MemberRemoved { member_id } => vec![
                tombstone(member_id, pb::ConsumerPart::Current),
                tombstone(member_id, pb::ConsumerPart::Target),
            ],
            ConsumerGroupRecord::GroupDeleted => vec![
                tombstone("", pb::ConsumerPart::TargetEpoch),
                tombstone("", pb::ConsumerPart::Subscription),
            ],
            _ => Vec::new(),
        };
        records.push(GroupRecord::Consumer {
            group: group.to_string(),
            record,
        });
        records
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
            Some(pb::group_record_key::Kind::Consumer(part)) => {
                consumer_from_proto(key.group, part, value)
            }
            None => Err(RecordError::UnknownKind(key.group)),
        }
    }
}

fn consumer_key(group: &str, member: String, part: pb::ConsumerPart) -> Bytes {
    pb::GroupRecordKey {
        group: group.to_string(),
        kind: Some(pb::group_record_key::Kind::Consumer(pb::ConsumerGroupKey {
            member,
            part: part.into(),
        })),
    }
    .encode_to_vec()
    .into()
}

fn partitions_to_proto(assignment: &Assignment) -> Vec<pb::TopicPartitions> {
    assignment
        .iter()
        .map(|(topic, partitions)| pb::TopicPartitions {
            topic_id: Bytes::copy_from_slice(topic.as_bytes()),
            partitions: partitions.iter().copied().collect(),
        })
        .collect()
}

fn partitions_from_proto(partitions: Vec<pb::TopicPartitions>) -> Result<Assignment, RecordError> {
    partitions
        .into_iter()
        .map(|t| Ok((topic_id(&t.topic_id)?, t.partitions.into_iter().collect())))
        .collect()
}

fn topic_id(bytes: &[u8]) -> Result<uuid::Uuid, RecordError> {
    uuid::Uuid::from_slice(bytes).map_err(|_| RecordError::Invalid("a topic id not of 16 bytes"))
}

/// The member, part and value (`None`: a tombstone) of a consumer group's record.
fn consumer_to_proto(record: &ConsumerGroupRecord) -> (String, pb::ConsumerPart, Option<Bytes>) {
    let bytes = |m: &dyn Fn() -> Vec<u8>| Some(Bytes::from(m()));
    match record {
        ConsumerGroupRecord::GroupMetadata { group_epoch } => (
            String::new(),
            pb::ConsumerPart::GroupEpoch,
            bytes(&|| {
                pb::ConsumerEpochValue {
                    epoch: *group_epoch,
                }
                .encode_to_vec()
            }),
        ),
        ConsumerGroupRecord::SubscriptionMetadata { topics } => (
            String::new(),
            pb::ConsumerPart::Subscription,
            bytes(&|| {
                pb::ConsumerSubscriptionValue {
                    topics: topics
                        .iter()
                        .map(|(name, t)| pb::SubscribedTopic {
                            name: name.clone(),
                            id: Bytes::copy_from_slice(t.id.as_bytes()),
                            partition_count: t.partition_count,
                        })
                        .collect(),
                }
                .encode_to_vec()
            }),
        ),
        ConsumerGroupRecord::TargetAssignmentMetadata { assignment_epoch } => (
            String::new(),
            pb::ConsumerPart::TargetEpoch,
            bytes(&|| {
                pb::ConsumerEpochValue {
                    epoch: *assignment_epoch,
                }
                .encode_to_vec()
            }),
        ),
        ConsumerGroupRecord::MemberMetadata(m) => (
            m.member_id.clone(),
            pb::ConsumerPart::Member,
            bytes(&|| {
                pb::ConsumerMemberValue {
                    instance_id: m.instance_id.clone(),
                    rack_id: m.rack_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    subscribed_topic_names: m.subscribed_topic_names.iter().cloned().collect(),
                    server_assignor: m.server_assignor.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                }
                .encode_to_vec()
            }),
        ),
        ConsumerGroupRecord::TargetAssignmentMember {
            member_id,
            partitions,
        } => (
            member_id.clone(),
            pb::ConsumerPart::Target,
            bytes(&|| {
                pb::ConsumerAssignmentValue {
                    partitions: partitions_to_proto(partitions),
                }
                .encode_to_vec()
            }),
        ),
        ConsumerGroupRecord::CurrentAssignment(c) => (
            c.member_id.clone(),
            pb::ConsumerPart::Current,
            bytes(&|| {
                pb::ConsumerCurrentValue {
                    member_epoch: c.member_epoch,
                    previous_member_epoch: c.previous_member_epoch,
                    state: match c.state {
                        MemberState::Stable => 0,
                        MemberState::UnrevokedPartitions => 1,
                        MemberState::UnreleasedPartitions => 2,
                    },
                    assigned: partitions_to_proto(&c.assigned),
                    pending_revocation: partitions_to_proto(&c.pending_revocation),
                }
                .encode_to_vec()
            }),
        ),
        ConsumerGroupRecord::MemberRemoved { member_id } => {
            (member_id.clone(), pb::ConsumerPart::Member, None)
        }
        ConsumerGroupRecord::GroupDeleted => (String::new(), pb::ConsumerPart::GroupEpoch, None),
    }
}

fn consumer_from_proto(
    group: String,
    key: pb::ConsumerGroupKey,
    value: Option<&[u8]>,
) -> Result<GroupRecord, RecordError> {
    let part = pb::ConsumerPart::try_from(key.part)
        .map_err(|_| RecordError::Invalid("an unknown part of a consumer group"))?;
    let decoded = |source| RecordError::Decode {
        what: "value",
        source,
    };
    let member = key.member;
    let Some(value) = value else {
        let record = match part {
            pb::ConsumerPart::GroupEpoch => ConsumerGroupRecord::GroupDeleted,
            pb::ConsumerPart::Member => ConsumerGroupRecord::MemberRemoved { member_id: member },
            _ => {
                return Ok(GroupRecord::ConsumerTombstone {
                    group,
                    member,
                    part,
                });
            }
        };
        return Ok(GroupRecord::Consumer { group, record });
    };
    let record = match part {
        pb::ConsumerPart::GroupEpoch => ConsumerGroupRecord::GroupMetadata {
            group_epoch: pb::ConsumerEpochValue::decode(value)
                .map_err(decoded)?
                .epoch,
        },
        pb::ConsumerPart::TargetEpoch => ConsumerGroupRecord::TargetAssignmentMetadata {
            assignment_epoch: pb::ConsumerEpochValue::decode(value)
                .map_err(decoded)?
                .epoch,
        },
        pb::ConsumerPart::Subscription => ConsumerGroupRecord::SubscriptionMetadata {
            topics: pb::ConsumerSubscriptionValue::decode(value)
                .map_err(decoded)?
                .topics
                .into_iter()
                .map(|t| {
                    let metadata = TopicMetadata {
                        id: topic_id(&t.id)?,
                        partition_count: t.partition_count,
                    };
                    Ok((t.name, metadata))
                })
                .collect::<Result<_, RecordError>>()?,
        },
        pb::ConsumerPart::Member => {
            let m = pb::ConsumerMemberValue::decode(value).map_err(decoded)?;
            ConsumerGroupRecord::MemberMetadata(MemberMetadata {
                member_id: member,
                instance_id: m.instance_id,
                rack_id: m.rack_id,
                client_id: m.client_id,
                client_host: m.client_host,
                subscribed_topic_names: m.subscribed_topic_names.into_iter().collect(),
                server_assignor: m.server_assignor,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
            })
        }
        pb::ConsumerPart::Target => ConsumerGroupRecord::TargetAssignmentMember {
            member_id: member,
            partitions: partitions_from_proto(
                pb::ConsumerAssignmentValue::decode(value)
                    .map_err(decoded)?
                    .partitions,
            )?,
        },
        pb::ConsumerPart::Current => {
            let c = pb::ConsumerCurrentValue::decode(value).map_err(decoded)?;
            ConsumerGroupRecord::CurrentAssignment(CurrentAssignment {
                member_id: member,
                member_epoch: c.member_epoch,
                previous_member_epoch: c.previous_member_epoch,
                state: match c.state {
                    1 => MemberState::UnrevokedPartitions,
                    2 => MemberState::UnreleasedPartitions,
                    _ => MemberState::Stable,
                },
                assigned: partitions_from_proto(c.assigned)?,
                pending_revocation: partitions_from_proto(c.pending_revocation)?,
            })
        }
    };
    Ok(GroupRecord::Consumer { group, record })
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
    fn consumer_group_records_read_back_as_written() {
        let topic = uuid::Uuid::from_u128(7);
        let assignment: Assignment = [(topic, [0, 2].into_iter().collect())].into();
        let records = [
            ConsumerGroupRecord::GroupMetadata { group_epoch: 3 },
            ConsumerGroupRecord::SubscriptionMetadata {
                topics: [(
                    "t".to_string(),
                    TopicMetadata {
                        id: topic,
                        partition_count: 4,
                    },
                )]
                .into(),
            },
            ConsumerGroupRecord::TargetAssignmentMetadata {
                assignment_epoch: 3,
            },
            ConsumerGroupRecord::MemberMetadata(MemberMetadata {
                member_id: "m".into(),
                instance_id: Some("i".into()),
                rack_id: None,
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                subscribed_topic_names: ["t".to_string()].into(),
                server_assignor: Some("range".into()),
                rebalance_timeout_ms: 300_000,
            }),
            ConsumerGroupRecord::TargetAssignmentMember {
                member_id: "m".into(),
                partitions: assignment.clone(),
            },
            ConsumerGroupRecord::CurrentAssignment(CurrentAssignment {
                member_id: "m".into(),
                member_epoch: 3,
                previous_member_epoch: 2,
                state: MemberState::UnrevokedPartitions,
                assigned: assignment.clone(),
                pending_revocation: [(topic, [1].into_iter().collect())].into(),
            }),
            ConsumerGroupRecord::MemberRemoved {
                member_id: "m".into(),
            },
            ConsumerGroupRecord::GroupDeleted,
        ];
        for record in records {
            for logged in GroupRecord::consumer("g", record.clone()) {
                let (key, value) = logged.encode();
                let read = GroupRecord::decode(Some(&key), value.as_deref()).unwrap();
                assert_eq!(read, logged);
            }
        }
        // A removed member's assignments are tombstoned under their own keys.
        let removed = GroupRecord::consumer(
            "g",
            ConsumerGroupRecord::MemberRemoved {
                member_id: "m".into(),
            },
        );
        assert_eq!(removed.len(), 3);
        assert!(removed.iter().all(|r| r.encode().1.is_none()));
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
