//! The cluster metadata every node holds, and the active controller's decisions about it.
//!
//! ```text
//!  controller decides ──records──▶ metadata log (Raft) ──apply──▶ ClusterMetadata on every node
//!  (decisions.rs: pure)                                            (metadata.rs: pure)
//! ```
//!
//! Invariants:
//! - [`ClusterMetadata::apply`] is pure and deterministic, and refuses (changing nothing) a
//!   record that does not fit: every node that applies the same records holds the same
//!   metadata.
//! - Every partition has replicas, a non-empty ISR of replicas, and a leader (if any) in its
//!   ISR. A change of leader bumps the leader epoch; every change bumps the partition epoch.
//! - The decisions in [`decisions`] only read metadata and return records; an ISR proposal
//!   made at stale epochs is refused.
//! - Producer id blocks only move forward: `apply` refuses a block that does not start after
//!   the last one, so no two brokers give out the same producer id.
//!
//! - Only the active controller (the Raft leader) decides and writes; a request reaching any
//!   other node is sent on to it ([`Controller`] routes it, the `rpc` service forwards it
//!   once).

mod active;
pub mod codec;
pub mod decisions;
mod error;
mod metadata;
mod metrics;
mod node;
mod producer_ids;
pub mod raft;
mod records;
mod rpc;
mod session;
mod subscription;
#[cfg(test)]
pub(crate) mod testing;

pub use decisions::{ConfigChange, LeadershipMoves, ProducerIdBlock};
pub use error::{ControllerError, ErrorKind};
pub use metadata::{ApplyError, Broker, ClusterMetadata, Partition, Topic};
pub use node::{BrokerStatus, Controller, ControllerConfig, ControllerView, QuorumStatus};
pub use records::{
    BrokerId, BrokerRecord, Endpoints, MetadataRecord, PartitionChangeRecord, PartitionRecord,
    ProducerIdsRecord, TopicRecord,
};
pub use rpc::AlteredPartition;
pub use subscription::{
    MetadataDelta, MetadataImage, MetadataSubscription, ReplicaChange, ReplicaRole,
};

#[cfg(test)]
mod tests;
