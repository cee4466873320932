//! The encoding of metadata records and snapshots: the protobuf messages of
//! `proto/weir/internal/v1/metadata.proto`, converted to and from the domain types here and
//! nowhere else.
//!
//! A snapshot is decoded by replaying it as records into empty metadata, so the checks of
//! [`ClusterMetadata::apply`] guard snapshots too.

use prost::Message;
use uuid::Uuid;
use weir_proto::internal::v1 as pb;

use super::metadata::{ApplyError, ClusterMetadata};
use super::records::{
    BrokerRecord, Endpoints, MetadataRecord, PartitionChangeRecord, PartitionRecord,
    ProducerIdsRecord, TopicRecord,
};

/// Bytes that are not a valid encoded record or snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// Not a protobuf message of the expected type.
    #[error("undecodable metadata message: {0}")]
    Decode(#[from] prost::DecodeError),
    /// A field the domain type needs is absent.
    #[error("metadata message lacks its {0}")]
    Missing(&'static str),
    /// A UUID field is not 16 bytes.
    #[error("metadata message field {field} is not a 16-byte UUID")]
    BadUuid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        #[source]
        source: uuid::Error,
    },
    /// A snapshot whose content does not fit together.
    #[error("inconsistent metadata snapshot: {0}")]
    Inconsistent(#[source] ApplyError),
}

/// Encodes one record.
pub fn encode_record(record: &MetadataRecord) -> Vec<u8> {
    record_to_pb(record).encode_to_vec()
}

/// Decodes one record.
pub fn decode_record(bytes: &[u8]) -> Result<MetadataRecord, CodecError> {
    record_from_pb(pb::MetadataRecord::decode(bytes)?)
}

/// Encodes the whole metadata as a snapshot. The same metadata always gives the same bytes.
pub fn encode_snapshot(metadata: &ClusterMetadata) -> Vec<u8> {
    snapshot_to_pb(metadata).encode_to_vec()
}

/// Decodes a snapshot into metadata.
pub fn decode_snapshot(bytes: &[u8]) -> Result<ClusterMetadata, CodecError> {
    snapshot_from_pb(pb::MetadataSnapshot::decode(bytes)?)
}

/// The whole metadata as its snapshot message.
pub(crate) fn snapshot_to_pb(metadata: &ClusterMetadata) -> pb::MetadataSnapshot {
    let brokers = metadata
        .brokers()
        .map(|broker| pb::BrokerState {
            registration: Some(broker_to_pb(&BrokerRecord {
                broker_id: broker.id,
                incarnation: broker.incarnation,
                endpoints: broker.endpoints.clone(),
                rack: broker.rack.clone(),
            })),
            fenced: broker.fenced,
        })
        .collect();
    let topics = metadata
        .topics()
        .map(|topic| pb::TopicState {
            topic: Some(topic_to_pb(&TopicRecord {
                name: topic.name.clone(),
                topic_id: topic.id,
                configs: topic.configs.clone(),
            })),
            partitions: topic
                .partitions
                .iter()
                .enumerate()
                .map(|(index, p)| {
                    partition_to_pb(&PartitionRecord {
                        topic_id: topic.id,
                        partition: i32::try_from(index).expect("partition count is an i32"),
                        replicas: p.replicas.clone(),
                        isr: p.isr.clone(),
                        leader: p.leader,
                        leader_epoch: p.leader_epoch,
                        partition_epoch: p.partition_epoch,
                    })
                })
                .collect(),
        })
        .collect();
    pb::MetadataSnapshot {
        brokers,
        topics,
        producer_ids: metadata.producer_ids().map(producer_ids_to_pb),
    }
}

/// Metadata from its snapshot message, replayed as records so that `apply` checks it.
pub(crate) fn snapshot_from_pb(
    snapshot: pb::MetadataSnapshot,
) -> Result<ClusterMetadata, CodecError> {
    let mut records = Vec::new();
    for broker in snapshot.brokers {
        let registration = broker
            .registration
            .ok_or(CodecError::Missing("registration"))?;
        let record = broker_from_pb(registration)?;
        let (broker_id, incarnation) = (record.broker_id, record.incarnation);
        records.push(MetadataRecord::RegisterBroker(record));
        if !broker.fenced {
            records.push(MetadataRecord::UnfenceBroker {
                broker_id,
                incarnation,
            });
        }
    }
    for topic in snapshot.topics {
        let record = topic.topic.ok_or(CodecError::Missing("topic"))?;
        records.push(MetadataRecord::Topic(topic_from_pb(record)?));
        for partition in topic.partitions {
            records.push(MetadataRecord::Partition(partition_from_pb(partition)?));
        }
    }
    if let Some(producer_ids) = snapshot.producer_ids {
        records.push(MetadataRecord::ProducerIds(producer_ids_from_pb(
            producer_ids,
        )?));
    }
    let mut metadata = ClusterMetadata::default();
    for record in &records {
        metadata.apply(record).map_err(CodecError::Inconsistent)?;
    }
    Ok(metadata)
}

pub(crate) fn record_to_pb(record: &MetadataRecord) -> pb::MetadataRecord {
    use pb::metadata_record::Record;
    let fence = |broker_id, incarnation: &Uuid| pb::BrokerFenceRecord {
        broker_id,
        incarnation: uuid_to_pb(incarnation),
    };
    let record = match record {
        MetadataRecord::RegisterBroker(broker) => Record::RegisterBroker(broker_to_pb(broker)),
        MetadataRecord::UnfenceBroker {
            broker_id,
            incarnation,
        } => Record::UnfenceBroker(fence(*broker_id, incarnation)),
        MetadataRecord::FenceBroker {
            broker_id,
            incarnation,
        } => Record::FenceBroker(fence(*broker_id, incarnation)),
        MetadataRecord::Topic(topic) => Record::Topic(topic_to_pb(topic)),
        MetadataRecord::Partition(partition) => Record::Partition(partition_to_pb(partition)),
        MetadataRecord::PartitionChange(change) => {
            Record::PartitionChange(pb::PartitionChangeRecord {
                topic_id: uuid_to_pb(&change.topic_id),
                partition: change.partition,
                leader: change.leader.map(|leader| pb::LeaderChange { leader }),
                isr: change.isr.clone().map(|ids| pb::BrokerIds { ids }),
                replicas: change.replicas.clone().map(|ids| pb::BrokerIds { ids }),
            })
        }
        MetadataRecord::RemoveTopic { topic_id } => Record::RemoveTopic(pb::RemoveTopicRecord {
            topic_id: uuid_to_pb(topic_id),
        }),
        MetadataRecord::TopicConfigs { topic_id, configs } => {
            Record::TopicConfigs(pb::TopicConfigsRecord {
                topic_id: uuid_to_pb(topic_id),
                configs: configs.clone(),
            })
        }
        MetadataRecord::ProducerIds(record) => Record::ProducerIds(producer_ids_to_pb(record)),
    };
    pb::MetadataRecord {
        record: Some(record),
    }
}

pub(crate) fn record_from_pb(record: pb::MetadataRecord) -> Result<MetadataRecord, CodecError> {
    use pb::metadata_record::Record;
    let record = record.record.ok_or(CodecError::Missing("record"))?;
    Ok(match record {
        Record::RegisterBroker(broker) => MetadataRecord::RegisterBroker(broker_from_pb(broker)?),
        Record::UnfenceBroker(fence) => MetadataRecord::UnfenceBroker {
            broker_id: fence.broker_id,
            incarnation: uuid_from_pb("incarnation", &fence.incarnation)?,
        },
        Record::FenceBroker(fence) => MetadataRecord::FenceBroker {
            broker_id: fence.broker_id,
            incarnation: uuid_from_pb("incarnation", &fence.incarnation)?,
        },
        Record::Topic(topic) => MetadataRecord::Topic(topic_from_pb(topic)?),
        Record::Partition(partition) => MetadataRecord::Partition(partition_from_pb(partition)?),
        Record::PartitionChange(change) => MetadataRecord::PartitionChange(PartitionChangeRecord {
            topic_id: uuid_from_pb("topic_id", &change.topic_id)?,
            partition: change.partition,
            leader: change.leader.map(|l| l.leader),
            isr: change.isr.map(|l| l.ids),
            replicas: change.replicas.map(|l| l.ids),
        }),
        Record::RemoveTopic(remove) => MetadataRecord::RemoveTopic {
            topic_id: uuid_from_pb("topic_id", &remove.topic_id)?,
        },
        Record::TopicConfigs(configs) => MetadataRecord::TopicConfigs {
            topic_id: uuid_from_pb("topic_id", &configs.topic_id)?,
            configs: configs.configs,
        },
        Record::ProducerIds(record) => MetadataRecord::ProducerIds(producer_ids_from_pb(record)?),
    })
}

fn producer_ids_to_pb(record: &ProducerIdsRecord) -> pb::ProducerIdsRecord {
    pb::ProducerIdsRecord {
        broker_id: record.broker_id,
        incarnation: uuid_to_pb(&record.incarnation),
        next_producer_id: record.next_producer_id,
    }
}

fn producer_ids_from_pb(record: pb::ProducerIdsRecord) -> Result<ProducerIdsRecord, CodecError> {
    Ok(ProducerIdsRecord {
        broker_id: record.broker_id,
        incarnation: uuid_from_pb("incarnation", &record.incarnation)?,
        next_producer_id: record.next_producer_id,
    })
}

pub(crate) fn broker_to_pb(broker: &BrokerRecord) -> pb::BrokerRecord {
    pb::BrokerRecord {
        broker_id: broker.broker_id,
        incarnation: uuid_to_pb(&broker.incarnation),
        endpoints: Some(pb::Endpoints {
            kafka: broker.endpoints.kafka.clone(),
            grpc: broker.endpoints.grpc.clone(),
            internal: broker.endpoints.internal.clone(),
        }),
        rack: broker.rack.clone(),
    }
}

pub(crate) fn broker_from_pb(broker: pb::BrokerRecord) -> Result<BrokerRecord, CodecError> {
    let endpoints = broker.endpoints.ok_or(CodecError::Missing("endpoints"))?;
    Ok(BrokerRecord {
        broker_id: broker.broker_id,
        incarnation: uuid_from_pb("incarnation", &broker.incarnation)?,
        endpoints: Endpoints {
            kafka: endpoints.kafka,
            grpc: endpoints.grpc,
            internal: endpoints.internal,
        },
        rack: broker.rack,
    })
}

fn topic_to_pb(topic: &TopicRecord) -> pb::TopicRecord {
    pb::TopicRecord {
        name: topic.name.clone(),
        topic_id: uuid_to_pb(&topic.topic_id),
        configs: topic.configs.clone(),
    }
}

fn topic_from_pb(topic: pb::TopicRecord) -> Result<TopicRecord, CodecError> {
    Ok(TopicRecord {
        topic_id: uuid_from_pb("topic_id", &topic.topic_id)?,
        name: topic.name,
        configs: topic.configs,
    })
}

fn partition_to_pb(partition: &PartitionRecord) -> pb::PartitionRecord {
    pb::PartitionRecord {
        topic_id: uuid_to_pb(&partition.topic_id),
        partition: partition.partition,
        replicas: partition.replicas.clone(),
        isr: partition.isr.clone(),
        leader: partition.leader,
        leader_epoch: partition.leader_epoch,
        partition_epoch: partition.partition_epoch,
    }
}

fn partition_from_pb(partition: pb::PartitionRecord) -> Result<PartitionRecord, CodecError> {
    Ok(PartitionRecord {
        topic_id: uuid_from_pb("topic_id", &partition.topic_id)?,
        partition: partition.partition,
        replicas: partition.replicas,
        isr: partition.isr,
        leader: partition.leader,
        leader_epoch: partition.leader_epoch,
        partition_epoch: partition.partition_epoch,
    })
}

pub(crate) fn uuid_to_pb(id: &Uuid) -> bytes::Bytes {
    bytes::Bytes::copy_from_slice(id.as_bytes())
}

pub(crate) fn uuid_from_pb(field: &'static str, bytes: &[u8]) -> Result<Uuid, CodecError> {
    Uuid::from_slice(bytes).map_err(|source| CodecError::BadUuid { field, source })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    /// One record of every kind, with optional fields both set and unset.
    fn every_kind() -> Vec<MetadataRecord> {
        let broker = |broker_id, rack: Option<&str>| {
            MetadataRecord::RegisterBroker(BrokerRecord {
                broker_id,
                incarnation: id(100 + broker_id as u128),
                endpoints: Endpoints {
                    kafka: format!("b{broker_id}:9092"),
                    grpc: format!("b{broker_id}:9093"),
                    internal: format!("b{broker_id}:9094"),
                },
                rack: rack.map(str::to_string),
            })
        };
        let change = |leader, isr: Option<Vec<i32>>, replicas: Option<Vec<i32>>| {
            MetadataRecord::PartitionChange(PartitionChangeRecord {
                topic_id: id(7),
                partition: 0,
                leader,
                isr,
                replicas,
            })
        };
        vec![
            broker(1, Some("rack-a")),
            broker(2, None),
            MetadataRecord::UnfenceBroker {
                broker_id: 1,
                incarnation: id(101),
            },
            MetadataRecord::UnfenceBroker {
                broker_id: 2,
                incarnation: id(102),
            },
            MetadataRecord::Topic(TopicRecord {
                name: "orders".into(),
                topic_id: id(7),
                configs: BTreeMap::from([("retention.ms".into(), "1000".into())]),
            }),
            MetadataRecord::Partition(PartitionRecord {
                topic_id: id(7),
                partition: 0,
                replicas: vec![1, 2],
                isr: vec![1, 2],
                leader: Some(1),
                leader_epoch: 3,
                partition_epoch: 4,
            }),
            change(Some(Some(2)), Some(vec![2]), None),
            change(None, Some(vec![2, 1]), Some(vec![2, 1])),
            MetadataRecord::FenceBroker {
                broker_id: 1,
                incarnation: id(101),
            },
            change(Some(None), None, None),
            MetadataRecord::TopicConfigs {
                topic_id: id(7),
                configs: BTreeMap::from([("cleanup.policy".into(), "compact".into())]),
            },
            MetadataRecord::Topic(TopicRecord {
                name: "gone".into(),
                topic_id: id(8),
                configs: BTreeMap::new(),
            }),
            MetadataRecord::RemoveTopic { topic_id: id(8) },
            MetadataRecord::ProducerIds(ProducerIdsRecord {
                broker_id: 2,
                incarnation: id(102),
                next_producer_id: 1000,
            }),
            MetadataRecord::ProducerIds(ProducerIdsRecord {
                broker_id: 1,
                incarnation: id(101),
                next_producer_id: 2000,
            }),
        ]
    }

    #[test]
    fn every_record_kind_round_trips() {
        for record in every_kind() {
            assert_eq!(
                decode_record(&encode_record(&record)),
                Ok(record.clone()),
                "{record:?}"
            );
        }
    }

    #[test]
    fn a_snapshot_holds_the_metadata_the_records_built() {
        let mut metadata = ClusterMetadata::default();
        for record in every_kind() {
            metadata.apply(&record).unwrap();
        }
        let bytes = encode_snapshot(&metadata);
        assert_eq!(decode_snapshot(&bytes), Ok(metadata.clone()));
        assert_eq!(
            decode_snapshot(&bytes).unwrap().next_producer_id(),
            2000,
            "producer ids handed out survive a snapshot"
        );
        assert_eq!(
            encode_snapshot(&decode_snapshot(&bytes).unwrap()),
            bytes,
            "deterministic"
        );
        assert_eq!(decode_snapshot(&[]), Ok(ClusterMetadata::default()));
    }

    #[test]
    fn bad_bytes_are_errors() {
        assert!(matches!(
            decode_record(&[0xff, 0xff]),
            Err(CodecError::Decode(_))
        ));
        assert_eq!(decode_record(&[]), Err(CodecError::Missing("record")));
        let short_id = pb::MetadataRecord {
            record: Some(pb::metadata_record::Record::RemoveTopic(
                pb::RemoveTopicRecord {
                    topic_id: bytes::Bytes::from_static(&[1, 2, 3]),
                },
            )),
        };
        let error = decode_record(&short_id.encode_to_vec()).unwrap_err();
        assert!(
            matches!(
                error,
                CodecError::BadUuid {
                    field: "topic_id",
                    ..
                }
            ),
            "{error}"
        );
        // A snapshot whose partition names a topic it does not hold.
        let orphan = pb::MetadataSnapshot {
            producer_ids: None,
            brokers: vec![],
            topics: vec![pb::TopicState {
                topic: Some(topic_to_pb(&TopicRecord {
                    name: "t".into(),
                    topic_id: id(1),
                    configs: BTreeMap::new(),
                })),
                partitions: vec![pb::PartitionRecord {
                    topic_id: uuid_to_pb(&id(2)),
                    partition: 0,
                    replicas: vec![1],
                    isr: vec![1],
                    leader: None,
                    leader_epoch: 0,
                    partition_epoch: 0,
                }],
            }],
        };
        let error = decode_snapshot(&orphan.encode_to_vec()).unwrap_err();
        assert_eq!(
            error,
            CodecError::Inconsistent(ApplyError::UnknownTopic(id(2)))
        );
    }
}
