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
//!
//! The Raft quorum that orders the records (openraft) and the controller's runtime come next.

pub mod codec;
pub mod decisions;
mod metadata;
mod node;
pub mod raft;
mod records;

pub use metadata::{ApplyError, Broker, ClusterMetadata, Partition, Topic};
pub use node::{Controller, ControllerConfig, ControllerError};
pub use records::{
    BrokerId, BrokerRecord, Endpoints, MetadataRecord, PartitionChangeRecord, PartitionRecord,
    TopicRecord,
};

#[cfg(test)]
mod tests;
