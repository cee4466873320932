//! The controller's Raft (openraft): its type configuration, durable log store and state
//! machine. The rest of Weir never sees an openraft type.
//!
//! ```text
//!  <dir>/raft-log       framed entries: length u32 | CRC-32 u32 | RaftEntry (protobuf)
//!  <dir>/raft-meta      vote, committed and last purged log ids (a framed checkpoint)
//!  <dir>/raft-snapshot  the last snapshot of the state machine (a framed checkpoint)
//! ```
//!
//! Invariants:
//! - An entry is fsynced before openraft is told it is stored; the vote before it is
//!   acknowledged.
//! - On open, the log is read up to its first damaged frame (a torn write) and cut there.
//! - Purged entries are gone from the file: purging rewrites it atomically.

mod encoding;
mod log_store;
mod network;
mod state_machine;

pub use log_store::LogStore;
pub use network::{NetworkFactory, RaftClient, RaftService};
pub use state_machine::StateMachine;

use super::metadata::ApplyError;
use super::records::MetadataRecord;

/// The metadata records one request appends; applied together or not at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataBatch(pub Vec<MetadataRecord>);

/// What applying a [`MetadataBatch`] gave: refused batches change nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataResponse {
    /// Why the batch was refused, if it was.
    pub refused: Option<ApplyError>,
}

openraft::declare_raft_types!(
    /// The controller quorum's openraft types.
    pub TypeConfig:
        D = MetadataBatch,
        R = MetadataResponse,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = std::io::Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A storage error as openraft takes it.
pub type StorageError = openraft::StorageError<u64>;

#[cfg(test)]
mod tests;
