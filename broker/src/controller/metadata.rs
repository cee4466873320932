//! [`ClusterMetadata`]: the state machine of the metadata log.
//!
//! Applying a record is pure and deterministic: the same records in the same order give the
//! same metadata on every node. A record that does not fit the metadata (a partition of an
//! unknown topic, say) is refused with an [`ApplyError`] and changes nothing; the active
//! controller only appends records it checked against the same metadata, so a refusal means
//! a bug or a damaged log.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::records::{
    BrokerId, BrokerRecord, Endpoints, MetadataRecord, PartitionChangeRecord, PartitionRecord,
    ProducerIdsRecord, TopicRecord,
};

/// A registered broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    /// The broker's node id.
    pub id: BrokerId,
    /// Its current incarnation (new at every start).
    pub incarnation: Uuid,
    /// Where clients and peers reach it.
    pub endpoints: Endpoints,
    /// Its rack, if it named one.
    pub rack: Option<String>,
    /// A fenced broker leads no partition and is not added to any ISR.
    pub fenced: bool,
}

/// A partition's replica state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// In preference order: the first is the preferred leader.
    pub replicas: Vec<BrokerId>,
    /// The in-sync replicas, in replica order.
    pub isr: Vec<BrokerId>,
    /// `None` while offline.
    pub leader: Option<BrokerId>,
    /// Bumped at every change of leader.
    pub leader_epoch: i32,
    /// Bumped at every change of the partition.
    pub partition_epoch: i32,
}

/// A topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    /// The topic's name.
    pub name: String,
    /// The topic's id.
    pub id: Uuid,
    /// Per-topic configs, by Kafka name.
    pub configs: BTreeMap<String, String>,
    /// Indexed by partition number.
    pub partitions: Vec<Partition>,
}

/// Everything the metadata log says about the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterMetadata {
    brokers: BTreeMap<BrokerId, Broker>,
    topics: BTreeMap<Uuid, Topic>,
    topic_ids: BTreeMap<String, Uuid>,
    /// The last block of producer ids handed out, if any.
    producer_ids: Option<ProducerIdsRecord>,
}

/// A record that does not fit the metadata it is applied to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The record names a broker that never registered.
    #[error("broker {0} is not registered")]
    UnknownBroker(BrokerId),
    /// The record is for another incarnation of the broker.
    #[error("broker {broker_id} has incarnation {current}, not {given}")]
    StaleIncarnation {
        broker_id: BrokerId,
        current: Uuid,
        given: Uuid,
    },
    /// The record names a topic that does not exist.
    #[error("topic {0} does not exist")]
    UnknownTopic(Uuid),
    /// A topic of that name exists.
    #[error("a topic named {0:?} already exists")]
    DuplicateTopicName(String),
    /// A topic with that id exists.
    #[error("topic id {0} is already in use")]
    DuplicateTopicId(Uuid),
    /// The partition does not exist, is created out of order, or would be left impossible.
    #[error("partition {partition} of topic {topic_id} {problem}")]
    BadPartition {
        topic_id: Uuid,
        partition: i32,
        problem: &'static str,
    },
    /// A block of producer ids that does not start after the blocks already handed out.
    #[error(
        "producer ids up to {given} were handed out, but ids below {current} already were: \
         producer ids only grow"
    )]
    ProducerIdsNotGrowing { current: i64, given: i64 },
}

impl ClusterMetadata {
    /// Applies one record, or refuses it and changes nothing.
    pub fn apply(&mut self, record: &MetadataRecord) -> Result<(), ApplyError> {
        match record {
            MetadataRecord::RegisterBroker(broker) => {
                self.register_broker(broker);
                Ok(())
            }
            MetadataRecord::UnfenceBroker {
                broker_id,
                incarnation,
            } => {
                self.broker_mut(*broker_id, *incarnation)?.fenced = false;
                Ok(())
            }
            MetadataRecord::FenceBroker {
                broker_id,
                incarnation,
            } => {
                self.broker_mut(*broker_id, *incarnation)?.fenced = true;
                Ok(())
            }
            MetadataRecord::Topic(topic) => self.create_topic(topic),
            MetadataRecord::Partition(partition) => self.create_partition(partition),
            MetadataRecord::PartitionChange(change) => self.change_partition(change),
            MetadataRecord::RemoveTopic { topic_id } => {
                let topic = self
                    .topics
                    .remove(topic_id)
                    .ok_or(ApplyError::UnknownTopic(*topic_id))?;
                self.topic_ids.remove(&topic.name);
                Ok(())
            }
            MetadataRecord::TopicConfigs { topic_id, configs } => {
                let topic = self
                    .topics
                    .get_mut(topic_id)
                    .ok_or(ApplyError::UnknownTopic(*topic_id))?;
                topic.configs = configs.clone();
                Ok(())
            }
            MetadataRecord::ProducerIds(record) => {
                let current = self.next_producer_id();
                if record.next_producer_id <= current {
                    return Err(ApplyError::ProducerIdsNotGrowing {
                        current,
                        given: record.next_producer_id,
                    });
                }
                self.producer_ids = Some(record.clone());
                Ok(())
            }
        }
    }

    /// Applies `records` together: all of them, or (if one is refused) none.
    pub fn apply_batch(&mut self, records: &[MetadataRecord]) -> Result<(), ApplyError> {
        if let [record] = records {
            return self.apply(record);
        }
        let mut next = self.clone();
        for record in records {
            next.apply(record)?;
        }
        *self = next;
        Ok(())
    }

    fn register_broker(&mut self, record: &BrokerRecord) {
        let broker = Broker {
            id: record.broker_id,
            incarnation: record.incarnation,
            endpoints: record.endpoints.clone(),
            rack: record.rack.clone(),
            fenced: true,
        };
        self.brokers.insert(record.broker_id, broker);
    }

    fn broker_mut(&mut self, id: BrokerId, incarnation: Uuid) -> Result<&mut Broker, ApplyError> {
        let broker = self
            .brokers
            .get_mut(&id)
            .ok_or(ApplyError::UnknownBroker(id))?;
        if broker.incarnation != incarnation {
            return Err(ApplyError::StaleIncarnation {
                broker_id: id,
                current: broker.incarnation,
                given: incarnation,
            });
        }
        Ok(broker)
    }

    fn create_topic(&mut self, record: &TopicRecord) -> Result<(), ApplyError> {
        if self.topic_ids.contains_key(&record.name) {
            return Err(ApplyError::DuplicateTopicName(record.name.clone()));
        }
        if self.topics.contains_key(&record.topic_id) {
            return Err(ApplyError::DuplicateTopicId(record.topic_id));
        }
        let topic = Topic {
            name: record.name.clone(),
            id: record.topic_id,
            configs: record.configs.clone(),
            partitions: Vec::new(),
        };
        self.topic_ids.insert(topic.name.clone(), topic.id);
        self.topics.insert(topic.id, topic);
        Ok(())
    }

    fn create_partition(&mut self, record: &PartitionRecord) -> Result<(), ApplyError> {
        let topic = self
            .topics
            .get_mut(&record.topic_id)
            .ok_or(ApplyError::UnknownTopic(record.topic_id))?;
        let bad = |problem| ApplyError::BadPartition {
            topic_id: record.topic_id,
            partition: record.partition,
            problem,
        };
        if usize::try_from(record.partition).ok() != Some(topic.partitions.len()) {
            return Err(bad("is not the next partition of its topic"));
        }
        let partition = Partition {
            replicas: record.replicas.clone(),
            isr: record.isr.clone(),
            leader: record.leader,
            leader_epoch: record.leader_epoch,
            partition_epoch: record.partition_epoch,
        };
        if let Some(problem) = partition.problem() {
            return Err(bad(problem));
        }
        topic.partitions.push(partition);
        Ok(())
    }

    fn change_partition(&mut self, change: &PartitionChangeRecord) -> Result<(), ApplyError> {
        let bad = |problem| ApplyError::BadPartition {
            topic_id: change.topic_id,
            partition: change.partition,
            problem,
        };
        let topic = self
            .topics
            .get_mut(&change.topic_id)
            .ok_or(ApplyError::UnknownTopic(change.topic_id))?;
        let current = usize::try_from(change.partition)
            .ok()
            .and_then(|i| topic.partitions.get_mut(i))
            .ok_or_else(|| bad("does not exist"))?;
        let mut next = current.clone();
        if let Some(replicas) = &change.replicas {
            next.replicas = replicas.clone();
        }
        if let Some(isr) = &change.isr {
            next.isr = isr.clone();
        }
        if let Some(leader) = change.leader {
            if leader != next.leader {
                next.leader_epoch += 1;
            }
            next.leader = leader;
        }
        if let Some(problem) = next.problem() {
            return Err(bad(problem));
        }
        next.partition_epoch += 1;
        *current = next;
        Ok(())
    }

    /// The broker with `id`, if registered.
    pub fn broker(&self, id: BrokerId) -> Option<&Broker> {
        self.brokers.get(&id)
    }

    /// Every registered broker, by id.
    pub fn brokers(&self) -> impl Iterator<Item = &Broker> {
        self.brokers.values()
    }

    /// Whether `id` is registered and not fenced.
    pub fn is_live(&self, id: BrokerId) -> bool {
        self.brokers.get(&id).is_some_and(|b| !b.fenced)
    }

    /// The topic named `name`.
    pub fn topic_by_name(&self, name: &str) -> Option<&Topic> {
        self.topic_ids.get(name).and_then(|id| self.topics.get(id))
    }

    /// The topic with `id`.
    pub fn topic(&self, id: Uuid) -> Option<&Topic> {
        self.topics.get(&id)
    }

    /// Every topic, by id.
    pub fn topics(&self) -> impl Iterator<Item = &Topic> {
        self.topics.values()
    }

    /// The first producer id not yet handed to any broker (0 before the first block).
    pub fn next_producer_id(&self) -> i64 {
        self.producer_ids
            .as_ref()
            .map_or(0, |record| record.next_producer_id)
    }

    /// The last block of producer ids handed out, if any.
    pub fn producer_ids(&self) -> Option<&ProducerIdsRecord> {
        self.producer_ids.as_ref()
    }
}

impl Partition {
    /// What makes this state impossible, if anything: an empty or repeated replica list, an
    /// ISR member or leader that is not a replica, a leader outside the ISR, an empty ISR.
    fn problem(&self) -> Option<&'static str> {
        let repeats = |list: &[BrokerId]| (1..list.len()).any(|i| list[..i].contains(&list[i]));
        if self.replicas.is_empty() {
            return Some("has no replicas");
        }
        if repeats(&self.replicas) || repeats(&self.isr) {
            return Some("lists a broker twice");
        }
        if self.isr.is_empty() {
            return Some("has an empty ISR");
        }
        if self.isr.iter().any(|b| !self.replicas.contains(b)) {
            return Some("has an ISR member that is not a replica");
        }
        if self
            .leader
            .is_some_and(|leader| !self.isr.contains(&leader))
        {
            return Some("has a leader outside its ISR");
        }
        None
    }
}
