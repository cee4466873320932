//! Kafka RecordBatch v2 (magic 2): the unit Weir stores on disk and sends on the wire.
//!
//! ```text
//!  byte  field                  covered by CRC
//!     0  baseOffset      i64    no   rewritten by the leader (set_base_offset)
//!     8  batchLength     i32    no   bytes after this field; size = batchLength + 12
//!    12  partitionLeaderEpoch   no   rewritten by the leader (set_partition_leader_epoch)
//!    16  magic           i8     no   always 2
//!    17  crc             u32    no   CRC-32C of bytes 21..size
//!    21  attributes      i16    yes  bits 0-2 compression, 3 timestamp type,
//!                                    4 transactional, 5 control
//!    23  lastOffsetDelta i32    yes
//!    27  firstTimestamp  i64    yes
//!    35  maxTimestamp    i64    yes
//!    43  producerId      i64    yes
//!    51  producerEpoch   i16    yes
//!    53  baseSequence    i32    yes
//!    57  recordCount     i32    yes
//!    61  records ...            yes  compressed as a whole when compression != none
//! ```
//!
//! All integers are big-endian.
//!
//! Two layers:
//!
//! - Header helpers ([`BatchHeader::parse`], [`validate`], [`batches`], [`set_base_offset`],
//!   [`set_partition_leader_epoch`]) read and patch the fixed header without decoding a single
//!   record. They are what the produce, fetch and recovery paths use; no batch is re-encoded
//!   there.
//! - [`encode`] and [`decode`] turn whole batches into [`Record`]s and back, with any compression,
//!   through the `kafka-protocol` crate. They are for tools, tests and the gRPC API's
//!   structured records.
//! - [`filter`] removes records from a stored batch (what log compaction does): the kept
//!   records' bytes are copied unchanged, recompressed with the batch's codec, and the batch
//!   keeps its base offset, last offset delta, producer fields and timestamps' base.
//!
//! Invariants the helpers keep:
//!
//! - [`validate`] accepts a batch only if its header is sane (magic 2, batch length at least
//!   [`MIN_BATCH_LENGTH`], non-negative last offset delta and record count, no offset
//!   overflow), the whole batch is in the buffer, and its CRC-32C matches.
//! - [`set_base_offset`] and [`set_partition_leader_epoch`] only touch bytes outside the CRC, so
//!   a valid batch stays valid.
//! - Malformed input is always an `Err`, never a panic.

mod codec;
mod error;
mod filter;
mod header;
mod iter;
#[cfg(test)]
mod tests;

pub use codec::{EncodeOptions, Record, decode, encode};
pub use error::{BatchError, CodecError, InvalidBatch};
pub use filter::{Filtered, filter};
pub use header::{
    BatchHeader, Compression, TimestampType, compute_crc, set_base_offset, set_log_append_time,
    set_partition_leader_epoch, stamped_prefix, validate,
};
pub use iter::{Batches, batches};

/// The magic byte (format version) of a RecordBatch v2; the only version Weir accepts.
pub const MAGIC: i8 = 2;

/// The number of bytes before the first record: the fixed header of a batch.
pub const HEADER_LEN: usize = 61;

/// The bytes not counted by `batchLength`: `baseOffset` (8) and `batchLength` itself (4).
pub const LOG_OVERHEAD: usize = 12;

/// The bytes at the start of a batch that hold the fields a log stamps when it appends:
/// `baseOffset`, `batchLength` and `partitionLeaderEpoch`, all outside the CRC.
pub const STAMPED_PREFIX_LEN: usize = 16;

/// The smallest valid `batchLength`: a header with zero records.
pub const MIN_BATCH_LENGTH: i32 = (HEADER_LEN - LOG_OVERHEAD) as i32;
