//! The records of the metadata log: facts the active controller decided, in the order the Raft
//! quorum committed them. Every node replays the same records into the same
//! [`ClusterMetadata`](super::ClusterMetadata).

use std::collections::BTreeMap;

use uuid::Uuid;

/// A broker's node id.
pub type BrokerId = i32;

/// The addresses a broker advertises to clients and to its peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// Kafka wire protocol, `host:port`.
    pub kafka: String,
    /// Public gRPC API, `host:port`.
    pub grpc: String,
    /// Internal gRPC API (Raft, replication), `host:port`.
    pub internal: String,
}

/// A broker (re)registering: a new incarnation replaces any earlier one and starts fenced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerRecord {
    /// The broker's node id.
    pub broker_id: BrokerId,
    /// New at every start of the broker process.
    pub incarnation: Uuid,
    /// Where clients and peers reach it.
    pub endpoints: Endpoints,
    /// Its rack (or zone), for spreading replicas.
    pub rack: Option<String>,
}

/// A topic and its configuration (Kafka's per-topic config names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRecord {
    /// The topic's name (checked by Kafka's rules before the record is written).
    pub name: String,
    /// The topic.
    pub topic_id: Uuid,
    /// Per-topic configs that differ from the broker defaults, by Kafka name.
    pub configs: BTreeMap<String, String>,
}

/// One partition as created: all of its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRecord {
    /// The topic.
    pub topic_id: Uuid,
    /// The partition's index within its topic.
    pub partition: i32,
    /// In preference order: the first is the preferred leader.
    pub replicas: Vec<BrokerId>,
    /// The in-sync replicas.
    pub isr: Vec<BrokerId>,
    /// `None` while the partition is offline.
    pub leader: Option<BrokerId>,
    /// The leader epoch it starts at.
    pub leader_epoch: i32,
    /// The partition epoch it starts at.
    pub partition_epoch: i32,
}

/// A change to an existing partition. Fields left `None` keep their value. Any change bumps
/// the partition epoch; a change of leader also bumps the leader epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionChangeRecord {
    /// The topic.
    pub topic_id: Uuid,
    /// The partition's index within its topic.
    pub partition: i32,
    /// `Some(None)` takes the partition offline.
    pub leader: Option<Option<BrokerId>>,
    /// The new ISR.
    pub isr: Option<Vec<BrokerId>>,
    /// The new replica list.
    pub replicas: Option<Vec<BrokerId>>,
}

/// A block of producer ids handed to a broker (Kafka's ProducerIdsRecord, KIP-730). The ids
/// from the previous record's `next_producer_id` (0 before the first) up to this one's,
/// exclusive, are that broker's to give to idempotent producers; no other broker gets them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerIdsRecord {
    /// The broker the block was given to.
    pub broker_id: BrokerId,
    /// The incarnation of that broker that asked.
    pub incarnation: Uuid,
    /// The first id of the next block.
    pub next_producer_id: i64,
}

/// One record of the metadata log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataRecord {
    /// A broker registered (fenced until it has caught up).
    RegisterBroker(BrokerRecord),
    /// A registered broker caught up with the metadata log and may lead partitions.
    UnfenceBroker {
        /// The broker.
        broker_id: BrokerId,
        /// The incarnation that caught up; a record for an older one is refused.
        incarnation: Uuid,
    },
    /// A broker stopped heartbeating (or shut down): it leads nothing until unfenced.
    FenceBroker {
        /// The broker.
        broker_id: BrokerId,
        /// The incarnation fenced; a record for an older one is refused.
        incarnation: Uuid,
    },
    /// A topic was created; its partitions follow as [`MetadataRecord::Partition`] records.
    Topic(TopicRecord),
    /// A partition was created.
    Partition(PartitionRecord),
    /// A partition's leader, ISR or replicas changed.
    PartitionChange(PartitionChangeRecord),
    /// A topic and all its partitions were deleted.
    RemoveTopic {
        /// The topic.
        topic_id: Uuid,
    },
    /// A topic's per-topic configs were replaced: afterwards they are exactly `configs`.
    TopicConfigs {
        /// The topic.
        topic_id: Uuid,
        /// Every per-topic config that differs from the broker defaults, by Kafka name.
        configs: BTreeMap<String, String>,
    },
    /// A block of producer ids was handed to a broker.
    ProducerIds(ProducerIdsRecord),
}
