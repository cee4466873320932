//! The active controller's decisions, as pure functions of the metadata: each returns the
//! records to append (or why it refuses), and changes nothing itself. Time and randomness come
//! in as arguments, so a seeded simulation can drive them.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::metadata::{ClusterMetadata, Partition};
use super::records::{
    BrokerId, MetadataRecord, PartitionChangeRecord, PartitionRecord, ProducerIdsRecord,
    TopicRecord,
};
use crate::topic_config::{self, TopicConfigError};

/// The longest topic name Kafka accepts.
pub const TOPIC_NAME_MAX_CHARS: usize = 249;

/// The most partitions one request may create: each is a log with its files on every replica,
/// so a typo of a few zeros should not make a million of them.
pub const PARTITIONS_PER_REQUEST_MAX: i32 = 10_000;

/// The topic config that lets an out-of-sync replica lead when no ISR member is live.
pub const UNCLEAN_LEADER_ELECTION: &str = "unclean.leader.election.enable";

/// How many producer ids a broker gets at a time (Kafka's block size, KIP-730).
pub const PRODUCER_ID_BLOCK_SIZE: i32 = 1000;

/// Why the controller refuses a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecisionError {
    /// The name breaks Kafka's topic name rules.
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName { name: String, reason: &'static str },
    /// A topic of that name exists.
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    /// Fewer than one partition.
    #[error("a topic needs at least 1 partition, not {0}")]
    InvalidPartitionCount(i32),
    /// More partitions than one request may create.
    #[error(
        "{0} partitions are more than one request may create ({PARTITIONS_PER_REQUEST_MAX}); \
         create them in steps"
    )]
    TooManyPartitions(i32),
    /// More replicas than live brokers to hold them.
    #[error("replication factor {requested} is above the {live} live brokers")]
    ReplicationFactorTooHigh { requested: i32, live: usize },
    /// Fewer than one replica.
    #[error("replication factor must be at least 1, not {0}")]
    InvalidReplicationFactor(i32),
    /// An ISR proposal that is stale or impossible.
    #[error("ISR change refused: {0}")]
    IsrChange(&'static str),
    /// A per-topic config with an unknown name or an invalid value.
    #[error(transparent)]
    InvalidConfig(#[from] TopicConfigError),
    /// No topic of that name exists.
    #[error("topic {0:?} does not exist")]
    UnknownTopic(String),
    /// APPEND or SUBTRACT on a config that is not a list.
    #[error("{0} is not a list config: APPEND and SUBTRACT apply to lists only; use SET")]
    NotAList(&'static str),
    /// A partition count that does not grow the topic (Kafka's INVALID_PARTITIONS).
    #[error(
        "topic {topic:?} has {current} partitions and cannot have {requested}: the count can \
         only grow"
    )]
    PartitionCountNotGrowing {
        /// The topic.
        topic: String,
        /// Its partition count now.
        current: i32,
        /// The total asked for.
        requested: i32,
    },
    /// A broker that is not registered (or not with this incarnation) asked for producer ids
    /// (Kafka's STALE_BROKER_EPOCH).
    #[error(
        "broker {broker_id} is not registered with incarnation {incarnation}; it gets producer \
         ids once it has registered"
    )]
    UnregisteredBroker {
        /// The broker.
        broker_id: BrokerId,
        /// The incarnation it asked as.
        incarnation: Uuid,
    },
    /// Every producer id up to `i64::MAX` was handed out.
    #[error(
        "producer ids are exhausted: the next block would start at {next} and pass {}",
        i64::MAX
    )]
    ProducerIdsExhausted {
        /// The first id not handed out.
        next: i64,
    },
}

/// Checks a topic name by Kafka's rules.
pub fn validate_topic_name(name: &str) -> Result<(), DecisionError> {
    let invalid = |reason| {
        Err(DecisionError::InvalidTopicName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("it is empty");
    }
    if name == "." || name == ".." {
        return invalid("'.' and '..' are not allowed");
    }
    if name.chars().count() > TOPIC_NAME_MAX_CHARS {
        return invalid("it is longer than 249 characters");
    }
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if !name.chars().all(legal) {
        return invalid("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// Places `partitions` partitions of `replication_factor` replicas each on the live brokers:
/// leaders (first replicas) rotate over the brokers starting at `start`, and each partition's
/// replicas go to as many different racks as there are.
pub fn place_replicas(
    metadata: &ClusterMetadata,
    partitions: i32,
    replication_factor: i32,
    start: usize,
) -> Result<Vec<Vec<BrokerId>>, DecisionError> {
    if partitions < 1 {
        return Err(DecisionError::InvalidPartitionCount(partitions));
    }
    if partitions > PARTITIONS_PER_REQUEST_MAX {
        return Err(DecisionError::TooManyPartitions(partitions));
    }
    if replication_factor < 1 {
        return Err(DecisionError::InvalidReplicationFactor(replication_factor));
    }
    let order = rack_alternating_brokers(metadata);
    let factor = usize::try_from(replication_factor).expect("checked positive");
    if factor > order.len() {
        return Err(DecisionError::ReplicationFactorTooHigh {
            requested: replication_factor,
            live: order.len(),
        });
    }
    let placement = (0..usize::try_from(partitions).expect("checked positive"))
        .map(|p| {
            let first = (start + p) % order.len();
            let mut replicas: Vec<(BrokerId, &str)> = Vec::with_capacity(factor);
            let candidates = (0..order.len()).map(|i| order[(first + i) % order.len()]);
            // First pass: a new rack each time; second pass: fill from the rest.
            for (id, rack) in candidates.clone() {
                if replicas.len() < factor && !replicas.iter().any(|r| r.1 == rack) {
                    replicas.push((id, rack));
                }
            }
            for (id, rack) in candidates {
                if replicas.len() < factor && !replicas.iter().any(|r| r.0 == id) {
                    replicas.push((id, rack));
                }
            }
            replicas.into_iter().map(|(id, _)| id).collect()
        })
        .collect();
    Ok(placement)
}

/// The live brokers by id, reordered so that consecutive brokers are on different racks where
/// possible: one broker of each rack in turn.
fn rack_alternating_brokers(metadata: &ClusterMetadata) -> Vec<(BrokerId, &str)> {
    let mut by_rack: BTreeMap<&str, Vec<BrokerId>> = BTreeMap::new();
    for broker in metadata.brokers().filter(|b| !b.fenced) {
        by_rack
            .entry(broker.rack.as_deref().unwrap_or(""))
            .or_default()
            .push(broker.id);
    }
    let longest = by_rack.values().map(Vec::len).max().unwrap_or(0);
    let mut order = Vec::new();
    for i in 0..longest {
        for (rack, ids) in &by_rack {
            if let Some(&id) = ids.get(i) {
                order.push((id, *rack));
            }
        }
    }
    order
}

/// The records that create topic `name`: its id, configs and partitions with their replicas
/// placed, every replica in the ISR, and the first live replica leading. Configs are checked
/// by Kafka's per-topic rules ([`topic_config::validate`]).
pub fn create_topic(
    metadata: &ClusterMetadata,
    name: &str,
    topic_id: Uuid,
    partitions: i32,
    replication_factor: i32,
    configs: BTreeMap<String, String>,
    placement_start: usize,
) -> Result<Vec<MetadataRecord>, DecisionError> {
    validate_topic_name(name)?;
    if metadata.topic_by_name(name).is_some() {
        return Err(DecisionError::TopicExists(name.to_string()));
    }
    topic_config::validate(&configs)?;
    let placement = place_replicas(metadata, partitions, replication_factor, placement_start)?;
    let mut records = vec![MetadataRecord::Topic(TopicRecord {
        name: name.to_string(),
        topic_id,
        configs,
    })];
    records.extend(new_partitions(topic_id, 0, placement));
    Ok(records)
}

/// The records that grow topic `name` to `total` partitions (Kafka's CreatePartitions). The
/// new partitions get the replication factor of partition 0 and are placed over the live
/// brokers as [`create_topic`] places them: partition `i` starts its rotation at
/// `placement_start + i`, so leaders keep spreading after the existing partitions. Every
/// replica is in the ISR and the first one leads.
pub fn create_partitions(
    metadata: &ClusterMetadata,
    name: &str,
    total: i32,
    placement_start: usize,
) -> Result<Vec<MetadataRecord>, DecisionError> {
    let topic = metadata
        .topic_by_name(name)
        .ok_or_else(|| DecisionError::UnknownTopic(name.to_string()))?;
    let current = i32::try_from(topic.partitions.len()).expect("partition count is an i32");
    if total <= current {
        return Err(DecisionError::PartitionCountNotGrowing {
            topic: name.to_string(),
            current,
            requested: total,
        });
    }
    let replication_factor = topic
        .partitions
        .first()
        .map(|p| i32::try_from(p.replicas.len()).expect("replica count is an i32"))
        .expect("a topic is created with its partitions, at least one");
    let start = placement_start + topic.partitions.len();
    let placement = place_replicas(metadata, total - current, replication_factor, start)?;
    Ok(new_partitions(topic.id, current, placement).collect())
}

/// One change to one per-topic config, as Kafka's IncrementalAlterConfigs names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigChange {
    /// The config becomes the value.
    Set(String, String),
    /// The config returns to its default.
    Delete(String),
    /// A list config gains the comma-separated items of the value it lacks.
    Append(String, String),
    /// A list config loses the comma-separated items of the value.
    Subtract(String, String),
}

impl ConfigChange {
    /// The config the change is about.
    pub fn name(&self) -> &str {
        match self {
            ConfigChange::Set(name, _)
            | ConfigChange::Delete(name)
            | ConfigChange::Append(name, _)
            | ConfigChange::Subtract(name, _) => name,
        }
    }
}

/// The record that makes `changes` to topic `name`'s configs, all of them or none: the
/// configs that result are validated as CreateTopics validates them. Appending to or
/// subtracting from a config the topic does not set starts from Kafka's default.
pub fn alter_topic_configs(
    metadata: &ClusterMetadata,
    name: &str,
    changes: &[ConfigChange],
) -> Result<MetadataRecord, DecisionError> {
    let topic = metadata
        .topic_by_name(name)
        .ok_or_else(|| DecisionError::UnknownTopic(name.to_string()))?;
    let mut configs = topic.configs.clone();
    for change in changes {
        let config = change.name();
        let def = topic_config::definition(config)?;
        let items = |value: &str| -> Vec<String> {
            value
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_string)
                .collect()
        };
        let current = configs
            .get(config)
            .map_or_else(|| items(def.default), |value| items(value));
        match change {
            ConfigChange::Set(_, value) => {
                configs.insert(config.to_string(), value.clone());
            }
            ConfigChange::Delete(_) => {
                configs.remove(config);
            }
            ConfigChange::Append(_, value) | ConfigChange::Subtract(_, value) => {
                if def.config_type() != topic_config::ConfigType::List {
                    return Err(DecisionError::NotAList(def.name));
                }
                let given = items(value);
                let list: Vec<String> = if matches!(change, ConfigChange::Append(..)) {
                    let added = given.iter().filter(|item| !current.contains(item));
                    current.iter().chain(added).cloned().collect()
                } else {
                    current
                        .into_iter()
                        .filter(|item| !given.contains(item))
                        .collect()
                };
                configs.insert(config.to_string(), list.join(","));
            }
        }
    }
    topic_config::validate(&configs)?;
    Ok(MetadataRecord::TopicConfigs {
        topic_id: topic.id,
        configs,
    })
}

/// A block of producer ids a broker may hand to idempotent producers: `first` up to
/// `first + size`, exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdBlock {
    /// The first id of the block.
    pub first: i64,
    /// How many ids it holds.
    pub size: i32,
}

impl ProducerIdBlock {
    /// The first id after the block.
    pub fn end(&self) -> i64 {
        self.first + i64::from(self.size)
    }
}

/// The next block of producer ids for broker `broker_id`, and the record that hands it out
/// (Kafka's ProducerIdControlManager): blocks follow each other, so no id is given twice,
/// through any change of active controller. Only a registered incarnation gets one.
pub fn allocate_producer_ids(
    metadata: &ClusterMetadata,
    broker_id: BrokerId,
    incarnation: Uuid,
) -> Result<(MetadataRecord, ProducerIdBlock), DecisionError> {
    if metadata
        .broker(broker_id)
        .is_none_or(|b| b.incarnation != incarnation)
    {
        return Err(DecisionError::UnregisteredBroker {
            broker_id,
            incarnation,
        });
    }
    let block = ProducerIdBlock {
        first: metadata.next_producer_id(),
        size: PRODUCER_ID_BLOCK_SIZE,
    };
    let next_producer_id = block
        .first
        .checked_add(i64::from(block.size))
        .ok_or(DecisionError::ProducerIdsExhausted { next: block.first })?;
    let record = MetadataRecord::ProducerIds(ProducerIdsRecord {
        broker_id,
        incarnation,
        next_producer_id,
    });
    Ok((record, block))
}

/// Partition records for `placement`, numbered from `first`: every replica in the ISR, the
/// first one leading, epochs 0.
fn new_partitions(
    topic_id: Uuid,
    first: i32,
    placement: Vec<Vec<BrokerId>>,
) -> impl Iterator<Item = MetadataRecord> {
    // The placement first: zip then stops before asking the range past the last index.
    placement
        .into_iter()
        .zip(first..)
        .map(move |(replicas, partition)| {
            MetadataRecord::Partition(PartitionRecord {
                topic_id,
                partition,
                leader: replicas.first().copied(),
                isr: replicas.clone(),
                replicas,
                leader_epoch: 0,
                partition_epoch: 0,
            })
        })
}

/// The leader a partition should have: the first replica, in replica order, that is in the
/// ISR and live. `None` if there is none (the partition is offline).
pub fn elect_leader(partition: &Partition, is_live: impl Fn(BrokerId) -> bool) -> Option<BrokerId> {
    partition
        .replicas
        .iter()
        .copied()
        .find(|id| partition.isr.contains(id) && is_live(*id))
}

/// The records that fence broker `broker_id`: the fence itself, then for every partition whose
/// ISR holds it, its removal from the ISR (unless it is the last member, which stays so that
/// it can lead again) and, where it led, a new leader elected from the rest of the ISR, or
/// none (offline) unless the topic allows unclean election.
pub fn fence_broker(metadata: &ClusterMetadata, broker_id: BrokerId) -> Vec<MetadataRecord> {
    let Some(broker) = metadata.broker(broker_id) else {
        return Vec::new();
    };
    let mut records = vec![MetadataRecord::FenceBroker {
        broker_id,
        incarnation: broker.incarnation,
    }];
    let is_live = |id: BrokerId| id != broker_id && metadata.is_live(id);
    for topic in metadata.topics() {
        // Read as Kafka reads booleans ("TRUE" too), as validation accepted it.
        let unclean = topic
            .configs
            .get(UNCLEAN_LEADER_ELECTION)
            .and_then(|v| topic_config::parse_boolean(v))
            .unwrap_or(false);
        for (index, partition) in topic.partitions.iter().enumerate() {
            if !partition.isr.contains(&broker_id) {
                continue;
            }
            let mut next = partition.clone();
            if next.isr.len() > 1 {
                next.isr.retain(|&id| id != broker_id);
            }
            if next.leader == Some(broker_id) {
                next.leader = elect_leader(&next, is_live);
                if next.leader.is_none() && unclean {
                    next.leader = next.replicas.iter().copied().find(|&id| is_live(id));
                    if let Some(leader) = next.leader {
                        next.isr = vec![leader];
                    }
                }
            }
            if let Some(change) = change_record(topic.id, index, partition, &next) {
                records.push(MetadataRecord::PartitionChange(change));
            }
        }
    }
    records
}

/// How a fence (or a controlled shutdown) changes leadership, counted from its records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeadershipMoves {
    /// Partitions whose leadership moved to another in-sync replica.
    pub moved: u32,
    /// Partitions left without a leader: no other in-sync replica was live.
    pub offline: u32,
}

impl LeadershipMoves {
    /// Counts the leader changes in `records`.
    pub fn of(records: &[MetadataRecord]) -> Self {
        let mut moves = LeadershipMoves::default();
        for record in records {
            match record {
                MetadataRecord::PartitionChange(PartitionChangeRecord {
                    leader: Some(Some(_)),
                    ..
                }) => moves.moved += 1,
                MetadataRecord::PartitionChange(PartitionChangeRecord {
                    leader: Some(None),
                    ..
                }) => moves.offline += 1,
                _ => {}
            }
        }
        moves
    }
}

/// Whether fencing broker `broker_id` now would change anything besides the fence: it is in
/// the ISR of a partition that another live broker is also in sync for (so it leads something
/// another replica can take over, or holds up acks=all somewhere until it leaves the ISR).
pub fn has_shared_partitions(metadata: &ClusterMetadata, broker_id: BrokerId) -> bool {
    metadata.topics().any(|topic| {
        topic.partitions.iter().any(|partition| {
            partition.isr.contains(&broker_id)
                && partition
                    .isr
                    .iter()
                    .any(|&id| id != broker_id && metadata.is_live(id))
        })
    })
}

/// The most partitions one round of preferred-leader balancing moves, so one round's Raft
/// entry and the leader changes brokers then make stay bounded.
pub const PREFERRED_ELECTIONS_PER_ROUND: usize = 1000;

/// The records that give partitions back to their preferred leader (the first replica) where
/// another replica leads and the preferred one is live and in the ISR, so leadership spreads
/// over the brokers as placement spread it (Kafka's `auto.leader.rebalance.enable`). At most
/// [`PREFERRED_ELECTIONS_PER_ROUND`] partitions.
pub fn preferred_leader_elections(metadata: &ClusterMetadata) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for topic in metadata.topics() {
        for (index, partition) in topic.partitions.iter().enumerate() {
            let Some(&preferred) = partition.replicas.first() else {
                continue;
            };
            let eligible = partition.leader != Some(preferred)
                && partition.isr.contains(&preferred)
                && metadata.is_live(preferred);
            if !eligible {
                continue;
            }
            let next = Partition {
                leader: Some(preferred),
                ..partition.clone()
            };
            if let Some(change) = change_record(topic.id, index, partition, &next) {
                records.push(MetadataRecord::PartitionChange(change));
                if records.len() == PREFERRED_ELECTIONS_PER_ROUND {
                    return records;
                }
            }
        }
    }
    records
}

/// The records that unfence broker `broker_id`: the unfence itself, then leadership of every
/// offline partition whose ISR holds it.
pub fn unfence_broker(metadata: &ClusterMetadata, broker_id: BrokerId) -> Vec<MetadataRecord> {
    let Some(broker) = metadata.broker(broker_id) else {
        return Vec::new();
    };
    let mut records = vec![MetadataRecord::UnfenceBroker {
        broker_id,
        incarnation: broker.incarnation,
    }];
    let is_live = |id: BrokerId| id == broker_id || metadata.is_live(id);
    for topic in metadata.topics() {
        for (index, partition) in topic.partitions.iter().enumerate() {
            if partition.leader.is_some() || !partition.isr.contains(&broker_id) {
                continue;
            }
            let next = Partition {
                leader: elect_leader(partition, is_live),
                ..partition.clone()
            };
            if let Some(change) = change_record(topic.id, index, partition, &next) {
                records.push(MetadataRecord::PartitionChange(change));
            }
        }
    }
    records
}

/// The live brokers whose last heartbeat is more than `session_timeout_ms` before `now_ms`.
/// Brokers missing from `last_heartbeat_ms` have not started a session and are left alone.
pub fn expired_sessions(
    metadata: &ClusterMetadata,
    last_heartbeat_ms: &BTreeMap<BrokerId, i64>,
    now_ms: i64,
    session_timeout_ms: i64,
) -> Vec<BrokerId> {
    metadata
        .brokers()
        .filter(|b| !b.fenced)
        .filter(|b| {
            last_heartbeat_ms
                .get(&b.id)
                .is_some_and(|&last| now_ms - last > session_timeout_ms)
        })
        .map(|b| b.id)
        .collect()
}

/// An ISR change a partition leader proposes, stamped with the epochs it saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrProposal {
    /// The partition's topic.
    pub topic_id: Uuid,
    /// The partition's index.
    pub partition: i32,
    /// The broker proposing: it must be the leader.
    pub proposer: BrokerId,
    /// The leader epoch the proposer leads at.
    pub leader_epoch: i32,
    /// The partition epoch the proposer last saw.
    pub partition_epoch: i32,
    /// The ISR it proposes.
    pub isr: Vec<BrokerId>,
}

/// The record for an ISR change, or why it is refused: the proposer must be the current
/// leader at the current epochs (a stale proposal is refused), the new ISR must hold the
/// leader and only replicas, and a member it adds must be live.
pub fn change_isr(
    metadata: &ClusterMetadata,
    proposal: &IsrProposal,
) -> Result<MetadataRecord, DecisionError> {
    let refuse = |reason| Err(DecisionError::IsrChange(reason));
    let Some(topic) = metadata.topic(proposal.topic_id) else {
        return refuse("unknown topic");
    };
    let Some(partition) = usize::try_from(proposal.partition)
        .ok()
        .and_then(|i| topic.partitions.get(i))
    else {
        return refuse("unknown partition");
    };
    if partition.leader != Some(proposal.proposer)
        || partition.leader_epoch != proposal.leader_epoch
    {
        return refuse("the proposer is not the leader at this leader epoch (fenced leader epoch)");
    }
    if partition.partition_epoch != proposal.partition_epoch {
        return refuse("the partition changed since the proposal was made (stale partition epoch)");
    }
    if !proposal.isr.contains(&proposal.proposer) {
        return refuse("the new ISR must hold the leader");
    }
    if proposal
        .isr
        .iter()
        .any(|id| !partition.replicas.contains(id))
    {
        return refuse("the new ISR holds a broker that is not a replica");
    }
    let added_fenced = proposal
        .isr
        .iter()
        .any(|id| !partition.isr.contains(id) && !metadata.is_live(*id));
    if added_fenced {
        return refuse("the new ISR adds a fenced broker");
    }
    let mut isr: Vec<BrokerId> = partition
        .replicas
        .iter()
        .copied()
        .filter(|id| proposal.isr.contains(id))
        .collect();
    isr.dedup();
    Ok(MetadataRecord::PartitionChange(PartitionChangeRecord {
        topic_id: proposal.topic_id,
        partition: proposal.partition,
        leader: None,
        isr: Some(isr),
        replicas: None,
    }))
}

/// The change record that takes `current` to `next`, or `None` if nothing changes.
fn change_record(
    topic_id: Uuid,
    index: usize,
    current: &Partition,
    next: &Partition,
) -> Option<PartitionChangeRecord> {
    let leader = (next.leader != current.leader).then_some(next.leader);
    let isr = (next.isr != current.isr).then(|| next.isr.clone());
    if leader.is_none() && isr.is_none() {
        return None;
    }
    Some(PartitionChangeRecord {
        topic_id,
        partition: i32::try_from(index).expect("partition count is an i32"),
        leader,
        isr,
        replicas: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::{BrokerRecord, Endpoints};

    fn apply_all(metadata: &mut ClusterMetadata, records: &[MetadataRecord]) {
        for record in records {
            metadata
                .apply(record)
                .unwrap_or_else(|e| panic!("{record:?}: {e}"));
        }
    }

    /// Metadata with live brokers 1..=n, no racks.
    fn cluster(n: BrokerId) -> ClusterMetadata {
        let mut metadata = ClusterMetadata::default();
        for broker_id in 1..=n {
            let incarnation = Uuid::from_u128(1000 + broker_id as u128);
            let register = MetadataRecord::RegisterBroker(BrokerRecord {
                broker_id,
                incarnation,
                endpoints: Endpoints {
                    kafka: format!("b{broker_id}:9092"),
                    grpc: format!("b{broker_id}:9093"),
                    internal: format!("b{broker_id}:9094"),
                },
                rack: None,
            });
            let unfence = MetadataRecord::UnfenceBroker {
                broker_id,
                incarnation,
            };
            apply_all(&mut metadata, &[register, unfence]);
        }
        metadata
    }

    fn configs(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const TOPIC_ID: Uuid = Uuid::from_u128(7);

    /// `cluster(brokers)` holding topic "events" with `partitions` partitions of
    /// `replication_factor` replicas, placed from 1.
    fn with_events(brokers: BrokerId, partitions: i32, replication_factor: i32) -> ClusterMetadata {
        let mut metadata = cluster(brokers);
        let records = create_topic(
            &metadata,
            "events",
            TOPIC_ID,
            partitions,
            replication_factor,
            BTreeMap::new(),
            1,
        )
        .unwrap();
        apply_all(&mut metadata, &records);
        metadata
    }

    fn partition_record(partition: i32, replicas: &[BrokerId]) -> MetadataRecord {
        MetadataRecord::Partition(PartitionRecord {
            topic_id: TOPIC_ID,
            partition,
            replicas: replicas.to_vec(),
            isr: replicas.to_vec(),
            leader: replicas.first().copied(),
            leader_epoch: 0,
            partition_epoch: 0,
        })
    }

    #[test]
    fn growing_a_topic_continues_its_numbering_and_leader_rotation() {
        let mut metadata = with_events(4, 2, 2);
        let records = create_partitions(&metadata, "events", 5, 1).unwrap();
        // Placed from 1, partitions 0 and 1 are led by brokers 2 and 3; the rotation goes on.
        assert_eq!(
            records,
            [
                partition_record(2, &[4, 1]),
                partition_record(3, &[1, 2]),
                partition_record(4, &[2, 3]),
            ]
        );
        // The same as creating the topic with 5 partitions from the start.
        let created =
            create_topic(&cluster(4), "events", TOPIC_ID, 5, 2, BTreeMap::new(), 1).unwrap();
        assert_eq!(records, created[3..]);

        apply_all(&mut metadata, &records);
        let topic = metadata.topic_by_name("events").unwrap();
        assert_eq!(topic.partitions.len(), 5);
        assert!(topic.partitions.iter().all(|p| p.replicas.len() == 2));
    }

    #[test]
    fn growing_a_topic_is_refused_for_an_unknown_topic_or_a_count_that_does_not_grow() {
        let metadata = with_events(3, 3, 1);
        let refused = |name: &str, total| {
            create_partitions(&metadata, name, total, 0)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(refused("other", 4), "topic \"other\" does not exist");
        assert_eq!(
            refused("events", 3),
            "topic \"events\" has 3 partitions and cannot have 3: the count can only grow"
        );
        assert_eq!(
            create_partitions(&metadata, "events", 2, 0),
            Err(DecisionError::PartitionCountNotGrowing {
                topic: "events".into(),
                current: 3,
                requested: 2,
            })
        );
        assert!(create_partitions(&metadata, "events", -1, 0).is_err());
    }

    #[test]
    fn growing_a_topic_needs_as_many_live_brokers_as_its_replication_factor() {
        let mut metadata = with_events(3, 1, 3);
        let broker = metadata.broker(3).unwrap();
        let fence = MetadataRecord::FenceBroker {
            broker_id: 3,
            incarnation: broker.incarnation,
        };
        apply_all(&mut metadata, &[fence]);
        assert_eq!(
            create_partitions(&metadata, "events", 2, 0),
            Err(DecisionError::ReplicationFactorTooHigh {
                requested: 3,
                live: 2
            })
        );
    }

    #[test]
    fn topic_creation_refuses_invalid_configs() {
        let metadata = cluster(3);
        let create = |entries: &[(&str, &str)]| {
            create_topic(&metadata, "events", TOPIC_ID, 1, 1, configs(entries), 0)
        };
        assert_eq!(
            create(&[("retention.ms", "abc")]).unwrap_err().to_string(),
            "invalid topic config retention.ms = \"abc\": must be a whole number of \
             milliseconds, -1 for no limit"
        );
        assert!(matches!(
            create(&[("retention_ms", "1000")]),
            Err(DecisionError::InvalidConfig(
                TopicConfigError::UnknownName { .. }
            ))
        ));
        let records = create(&[("retention.ms", "1000"), ("cleanup.policy", "compact")]).unwrap();
        let MetadataRecord::Topic(topic) = &records[0] else {
            panic!("{records:?}");
        };
        assert_eq!(topic.configs.len(), 2);
    }

    #[test]
    fn unclean_election_reads_the_config_as_kafka_does() {
        assert!(topic_config::lookup(UNCLEAN_LEADER_ELECTION).is_some());
        let mut metadata = cluster(2);
        let topic = MetadataRecord::Topic(TopicRecord {
            name: "events".into(),
            topic_id: TOPIC_ID,
            configs: configs(&[(UNCLEAN_LEADER_ELECTION, "TRUE")]),
        });
        // Only broker 1 is in sync; broker 2 is a replica that may lead uncleanly.
        let partition = MetadataRecord::Partition(PartitionRecord {
            topic_id: TOPIC_ID,
            partition: 0,
            replicas: vec![1, 2],
            isr: vec![1],
            leader: Some(1),
            leader_epoch: 0,
            partition_epoch: 0,
        });
        apply_all(&mut metadata, &[topic, partition]);
        let records = fence_broker(&metadata, 1);
        assert_eq!(
            records[1..],
            [MetadataRecord::PartitionChange(PartitionChangeRecord {
                topic_id: TOPIC_ID,
                partition: 0,
                leader: Some(Some(2)),
                isr: Some(vec![2]),
                replicas: None,
            })]
        );
    }

    #[test]
    fn config_changes_are_applied_in_order_and_validated_as_a_whole() {
        let mut metadata = with_events(1, 1, 1);
        let set = |name: &str, value: &str| ConfigChange::Set(name.into(), value.into());
        let record = alter_topic_configs(
            &metadata,
            "events",
            &[
                set("retention.ms", "1000"),
                set("segment.ms", "60000"),
                ConfigChange::Delete("segment.ms".into()),
                ConfigChange::Append("cleanup.policy".into(), "compact, delete".into()),
            ],
        )
        .unwrap();
        let expected = configs(&[
            ("cleanup.policy", "delete,compact"),
            ("retention.ms", "1000"),
        ]);
        assert_eq!(
            record,
            MetadataRecord::TopicConfigs {
                topic_id: TOPIC_ID,
                configs: expected.clone(),
            }
        );
        apply_all(&mut metadata, &[record]);
        assert_eq!(metadata.topic(TOPIC_ID).unwrap().configs, expected);

        let record = alter_topic_configs(
            &metadata,
            "events",
            &[ConfigChange::Subtract(
                "cleanup.policy".into(),
                "delete".into(),
            )],
        )
        .unwrap();
        let MetadataRecord::TopicConfigs { configs: after, .. } = record else {
            panic!("{record:?}");
        };
        assert_eq!(after["cleanup.policy"], "compact");

        let refused = |changes: &[ConfigChange]| {
            alter_topic_configs(&metadata, "events", changes)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            refused(&[set("retention.ms", "5"), set("retentoin.ms", "5")]),
            "unknown topic config \"retentoin.ms\": it is not a topic config Weir knows \
             (did you mean retention.ms?)"
        );
        assert_eq!(
            refused(&[set("min.insync.replicas", "0")]),
            "invalid topic config min.insync.replicas = \"0\": must be a whole number of \
             replicas, at least 1"
        );
        assert_eq!(
            refused(&[ConfigChange::Append("retention.ms".into(), "5".into())]),
            "retention.ms is not a list config: APPEND and SUBTRACT apply to lists only; use SET"
        );
        assert_eq!(
            alter_topic_configs(&metadata, "missing", &[]).unwrap_err(),
            DecisionError::UnknownTopic("missing".into())
        );
    }

    #[test]
    fn producer_id_blocks_follow_each_other_and_go_to_registered_brokers_only() {
        let mut metadata = cluster(2);
        let incarnation = |id: BrokerId| Uuid::from_u128(1000 + id as u128);
        let (record, block) = allocate_producer_ids(&metadata, 2, incarnation(2)).unwrap();
        assert_eq!(
            block,
            ProducerIdBlock {
                first: 0,
                size: 1000
            }
        );
        assert_eq!(
            record,
            MetadataRecord::ProducerIds(ProducerIdsRecord {
                broker_id: 2,
                incarnation: incarnation(2),
                next_producer_id: 1000,
            })
        );
        apply_all(&mut metadata, &[record]);
        let (record, block) = allocate_producer_ids(&metadata, 1, incarnation(1)).unwrap();
        assert_eq!(
            block,
            ProducerIdBlock {
                first: 1000,
                size: 1000
            }
        );
        assert_eq!(block.end(), 2000);
        apply_all(&mut metadata, std::slice::from_ref(&record));
        assert_eq!(metadata.next_producer_id(), 2000);
        // The same record again would hand the block out twice: refused.
        assert_eq!(
            metadata.apply(&record),
            Err(crate::controller::ApplyError::ProducerIdsNotGrowing {
                current: 2000,
                given: 2000,
            })
        );

        // An earlier incarnation, or a broker never registered, gets nothing.
        assert_eq!(
            allocate_producer_ids(&metadata, 1, Uuid::from_u128(5)),
            Err(DecisionError::UnregisteredBroker {
                broker_id: 1,
                incarnation: Uuid::from_u128(5),
            })
        );
        assert!(matches!(
            allocate_producer_ids(&metadata, 9, incarnation(9)),
            Err(DecisionError::UnregisteredBroker { broker_id: 9, .. })
        ));

        // The last ids below i64::MAX are never passed.
        apply_all(
            &mut metadata,
            &[MetadataRecord::ProducerIds(ProducerIdsRecord {
                broker_id: 1,
                incarnation: incarnation(1),
                next_producer_id: i64::MAX - 10,
            })],
        );
        assert_eq!(
            allocate_producer_ids(&metadata, 1, incarnation(1)),
            Err(DecisionError::ProducerIdsExhausted {
                next: i64::MAX - 10
            })
        );
    }

    fn fence(metadata: &mut ClusterMetadata, broker_id: BrokerId) -> Vec<MetadataRecord> {
        let records = fence_broker(metadata, broker_id);
        apply_all(metadata, &records);
        records
    }

    fn leaders(metadata: &ClusterMetadata) -> Vec<Option<BrokerId>> {
        let topic = metadata.topic(TOPIC_ID).unwrap();
        topic.partitions.iter().map(|p| p.leader).collect()
    }

    #[test]
    fn a_fence_counts_the_leaderships_it_moves_and_the_partitions_it_takes_offline() {
        // Partitions 0..3 of three replicas, placed from 1: led by 2, 3, 1.
        let mut metadata = with_events(3, 3, 3);
        assert!(has_shared_partitions(&metadata, 1));
        let moves = LeadershipMoves::of(&fence(&mut metadata, 2));
        assert_eq!(
            moves,
            LeadershipMoves {
                moved: 1,
                offline: 0
            }
        );
        assert_eq!(leaders(&metadata), [Some(3), Some(3), Some(1)]);
        fence(&mut metadata, 3);
        // Broker 1 is the last live member of every ISR: fencing it moves nothing.
        assert!(!has_shared_partitions(&metadata, 1));
        let moves = LeadershipMoves::of(&fence(&mut metadata, 1));
        assert_eq!(
            moves,
            LeadershipMoves {
                moved: 0,
                offline: 3
            }
        );
        assert_eq!(leaders(&metadata), [None, None, None]);
    }

    #[test]
    fn preferred_leaders_return_once_live_and_in_sync() {
        let mut metadata = with_events(3, 3, 3);
        let preferred = leaders(&metadata);
        assert_eq!(preferred, [Some(2), Some(3), Some(1)]);
        assert_eq!(preferred_leader_elections(&metadata), []);

        fence(&mut metadata, 2);
        assert_eq!(leaders(&metadata), [Some(3), Some(3), Some(1)]);
        // Broker 2 is fenced and out of the ISR: nothing moves to it.
        assert_eq!(preferred_leader_elections(&metadata), []);
        let incarnation = metadata.broker(2).unwrap().incarnation;
        let unfence = unfence_broker(&metadata, 2);
        apply_all(&mut metadata, &unfence);
        assert!(metadata.is_live(2));
        // Live again, but not yet back in the ISR of partition 0.
        assert_eq!(preferred_leader_elections(&metadata), []);
        let back_in_sync = change_isr(
            &metadata,
            &IsrProposal {
                topic_id: TOPIC_ID,
                partition: 0,
                proposer: 3,
                leader_epoch: metadata.topic(TOPIC_ID).unwrap().partitions[0].leader_epoch,
                partition_epoch: metadata.topic(TOPIC_ID).unwrap().partitions[0].partition_epoch,
                isr: vec![1, 2, 3],
            },
        )
        .unwrap();
        apply_all(&mut metadata, &[back_in_sync]);

        let records = preferred_leader_elections(&metadata);
        assert_eq!(
            records,
            [MetadataRecord::PartitionChange(PartitionChangeRecord {
                topic_id: TOPIC_ID,
                partition: 0,
                leader: Some(Some(2)),
                isr: None,
                replicas: None,
            })]
        );
        let epoch_before = metadata.topic(TOPIC_ID).unwrap().partitions[0].leader_epoch;
        apply_all(&mut metadata, &records);
        assert_eq!(leaders(&metadata), preferred);
        // A new leader is a new leader epoch, so the deposed one is fenced by it.
        assert!(metadata.topic(TOPIC_ID).unwrap().partitions[0].leader_epoch > epoch_before);
        assert_eq!(preferred_leader_elections(&metadata), []);
        assert_eq!(metadata.broker(2).unwrap().incarnation, incarnation);
    }

    #[test]
    fn one_round_of_preferred_elections_is_bounded() {
        let per_round = i32::try_from(PREFERRED_ELECTIONS_PER_ROUND).unwrap();
        let mut metadata = with_events(2, per_round + 1, 2);
        // Every partition led by its second replica.
        let seconds: Vec<MetadataRecord> = metadata
            .topic(TOPIC_ID)
            .unwrap()
            .partitions
            .iter()
            .enumerate()
            .map(|(index, partition)| {
                MetadataRecord::PartitionChange(PartitionChangeRecord {
                    topic_id: TOPIC_ID,
                    partition: i32::try_from(index).unwrap(),
                    leader: Some(Some(partition.replicas[1])),
                    isr: None,
                    replicas: None,
                })
            })
            .collect();
        apply_all(&mut metadata, &seconds);
        let first = preferred_leader_elections(&metadata);
        assert_eq!(first.len(), PREFERRED_ELECTIONS_PER_ROUND);
        apply_all(&mut metadata, &first);
        assert_eq!(preferred_leader_elections(&metadata).len(), 1);
    }
}
