//! The append-only partition log: memory-mapped segment files of Kafka RecordBatch v2.
//!
//! Knows nothing of networks, Raft or protobuf. A partition's directory
//! `<data>/topics/<topic>-<partition>/` holds its segments, named by base offset:
//!
//! ```text
//! 00000000000000000000.log        batches, exactly as produced (offsets stamped in)
//! 00000000000000000000.index      sparse offset index: relative offset -> file position
//! 00000000000000000000.timeindex  time index: max timestamp so far -> relative offset
//! 00000000000000004711.log        the next segment, from offset 4711
//! ...
//! leader-epoch-checkpoint         where each leader epoch starts (see `leader_epoch`)
//! cleaner-checkpoint              what compaction did (see `cleaner`); compacted topics only
//! ```
//!
//! Invariants:
//! - Offsets only grow: each batch's base offset is above the previous batch's last offset,
//!   and a segment's base offset is at most its first batch's base offset.
//! - A batch is validated (length, magic, CRC-32C) before it is written, and recovery
//!   validates again every batch that was not flushed before an unclean stop.
//! - Readers see only published bytes: whole batches, never a partial one. Reads return
//!   `Bytes` that share the map; retention may delete a segment's files while a reader holds
//!   its bytes, and the map stays valid.
//! - Past the recovery point, the log's batches have contiguous offsets (replicated gaps are
//!   flushed at once), so recovery can check each base offset, which the CRC does not cover.
//! - Bytes past a segment's end are zero: preallocation writes zeros, truncation zeroes what it
//!   removes, so recovery cannot bring back a truncated batch. A write that fails part way may
//!   leave bytes there, so it takes the log offline.
//! - Every segment and index file is preallocated before it is mapped: a full disk is an
//!   error when a segment is rolled, never a SIGBUS while copying into a map.
//! - Leader epochs never decrease along the log; the leader-epoch checkpoint names where each
//!   starts, is written before the log end moves past a new epoch, and is checked against the
//!   log (and repaired from its batch headers) at open.
//! - Compaction (`compaction`, `cleaner`) never changes an offset and never touches the active
//!   segment or anything at or above the high watermark; a crash during its segment swap
//!   leaves every segment either original or compacted (compacted ones oldest first).

mod checkpoint;
mod cleaner;
mod compaction;
mod error;
mod files;
mod headers;
mod index;
mod leader_epoch;
mod load;
mod log;
mod manager;
mod mmap;
mod recovery;
mod segment;

pub use checkpoint::{read_checkpoint, write_checkpoint};
pub use cleaner::{CleanStats, Throttle};
pub use compaction::Dirtiness;
pub use error::{Error, Result};
pub(crate) use files::sync_directory;
pub use headers::BatchHeaders;
pub use leader_epoch::{EpochEndOffset, EpochEntry, UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET};
pub use log::{AppendInfo, Log, LogCheckpoint, OpenState, TimestampOffset};
pub use manager::{LogManager, TopicPartition};

/// Registers the storage metrics' descriptions (the log cleaner's), once per process.
pub fn describe_metrics() {
    manager::probe::describe();
}
