//! Errors of the RecordBatch helpers.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

use super::{Compression, HEADER_LEN, MIN_BATCH_LENGTH};

/// What is wrong with a record batch, or why records could not be encoded into one.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// The buffer ends before the header or the whole batch does.
    #[error("record batch is truncated: it needs {needed} bytes but only {available} are there")]
    Truncated {
        /// Bytes the header or batch needs.
        needed: usize,
        /// Bytes present in the buffer.
        available: usize,
    },
    /// `batchLength` is too small to hold a batch header.
    #[error(
        "record batch length {0} is invalid: a RecordBatch v2 needs a length of at least \
         {MIN_BATCH_LENGTH} (header of {HEADER_LEN} bytes with no records)"
    )]
    BadLength(i32),
    /// The magic byte is not 2.
    #[error(
        "record batch has magic byte {0}, but only RecordBatch v2 (magic 2) is supported \
         (old message formats or not a record batch at all)"
    )]
    BadMagic(i8),
    /// The stored CRC-32C does not match the batch's bytes.
    #[error(
        "record batch CRC-32C mismatch: stored {stored:#010x}, computed {computed:#010x} \
         (the batch is corrupt)"
    )]
    CrcMismatch {
        /// The CRC in the batch header.
        stored: u32,
        /// The CRC computed over attributes..end.
        computed: u32,
    },
    /// The compression bits of the attributes name no known codec.
    #[error(
        "record batch uses unknown compression codec {0} \
         (known: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd)"
    )]
    UnknownCompression(u8),
    /// `lastOffsetDelta` is negative.
    #[error("record batch has a negative last offset delta ({0})")]
    NegativeLastOffsetDelta(i32),
    /// `recordCount` is negative.
    #[error("record batch has a negative record count ({0})")]
    NegativeRecordCount(i32),
    /// The batch's last offset, or the offset after it, does not fit in an i64.
    #[error(
        "record batch offsets overflow: base offset {base_offset} plus last offset delta \
         {last_offset_delta} goes past the largest possible offset"
    )]
    OffsetOverflow {
        /// The batch's base offset.
        base_offset: i64,
        /// The batch's last offset delta.
        last_offset_delta: i32,
    },
    /// `encode` was given no records.
    #[error("cannot encode a record batch without records: give at least one record")]
    NoRecords,
    /// `encode` was given records whose offsets do not increase.
    #[error(
        "record {index} has offset {offset}, which is not above the previous record's offset \
         {previous}: offsets within a batch must increase"
    )]
    OffsetsNotIncreasing {
        /// Index of the offending record in the input.
        index: usize,
        /// Offset of the record before it.
        previous: i64,
        /// Its offset.
        offset: i64,
    },
    /// `encode` was given records whose offsets are too far apart for an i32 offset delta.
    #[error(
        "record offsets {base_offset} and {offset} are too far apart for one record batch \
         (the offset delta must fit in an i32)"
    )]
    OffsetDeltaTooLarge {
        /// Offset of the first record.
        base_offset: i64,
        /// Offset of the record too far from it.
        offset: i64,
    },
    /// `encode` was given timestamps whose difference does not fit in an i64.
    #[error("record timestamps {min} and {max} are too far apart for one record batch")]
    TimestampsTooFarApart {
        /// The smallest timestamp.
        min: i64,
        /// The largest timestamp.
        max: i64,
    },
    /// `encode` was given a record with a repeated header key.
    #[error(
        "record {index} has header key {key:?} more than once; the batch encoder keeps one \
         value per header key, so repeated header keys cannot be encoded"
    )]
    DuplicateHeaderKey {
        /// Index of the offending record in the input.
        index: usize,
        /// The repeated key.
        key: String,
    },
    /// The record encoder failed.
    #[error("cannot encode records into a record batch")]
    Encode {
        /// What the encoder reported.
        #[source]
        source: CodecError,
    },
    /// The records section of a batch could not be decompressed.
    #[error(
        "cannot decompress the {compression} records of the batch with base offset {base_offset}"
    )]
    Decompress {
        /// The batch's base offset.
        base_offset: i64,
        /// The batch's compression codec.
        compression: Compression,
        /// What the decompressor reported.
        #[source]
        source: CodecError,
    },
    /// The header claims more records than the (decompressed) records section can hold.
    #[error(
        "record batch with base offset {base_offset} claims {record_count} records, but its \
         {records_bytes} bytes of records can hold at most {max} (the batch is corrupt)",
        max = records_bytes / super::codec::MIN_RECORD_LEN
    )]
    RecordCountTooLarge {
        /// The batch's base offset.
        base_offset: i64,
        /// The record count in the header.
        record_count: i32,
        /// Size of the records section after decompression.
        records_bytes: usize,
    },
    /// The records of a batch could not be decoded.
    #[error("cannot decode the records of the batch with base offset {base_offset}")]
    Decode {
        /// The batch's base offset.
        base_offset: i64,
        /// What the decoder reported.
        #[source]
        source: CodecError,
    },
    /// A record's offset delta, added to the batch's base offset, overflows.
    #[error(
        "a record of the batch with base offset {base_offset} has offset delta {offset_delta}, \
         which overflows the largest possible offset (the batch is corrupt)"
    )]
    RecordOffsetOverflow {
        /// The batch's base offset.
        base_offset: i64,
        /// The record's offset delta.
        offset_delta: i64,
    },
    /// A record's timestamp delta, added to the batch's first timestamp, overflows.
    #[error(
        "a record of the batch with base offset {base_offset} has timestamp delta \
         {timestamp_delta}, which overflows the batch's first timestamp {first_timestamp} \
         (the batch is corrupt)"
    )]
    RecordTimestampOverflow {
        /// The batch's base offset.
        base_offset: i64,
        /// The batch's first timestamp.
        first_timestamp: i64,
        /// The record's timestamp delta.
        timestamp_delta: i64,
    },
    /// A batch inside a buffer of several batches is invalid (returned by `decode`).
    #[error(transparent)]
    Invalid(Box<InvalidBatch>),
}

/// An invalid batch found while walking a buffer of batches, and where it starts.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("invalid record batch at byte position {position}")]
pub struct InvalidBatch {
    /// Byte position of the invalid batch in the buffer walked.
    pub position: usize,
    /// What is wrong with it.
    #[source]
    pub error: BatchError,
}

impl From<InvalidBatch> for BatchError {
    fn from(invalid: InvalidBatch) -> Self {
        BatchError::Invalid(Box::new(invalid))
    }
}

/// An error reported by the `kafka-protocol` record codec (or a compression library under it).
///
/// Cheap to clone. Two are equal when their messages are equal.
#[derive(Debug, Clone)]
pub struct CodecError(Arc<dyn Error + Send + Sync + 'static>);

impl CodecError {
    pub(super) fn new(error: impl Into<Box<dyn Error + Send + Sync + 'static>>) -> Self {
        CodecError(Arc::from(error.into()))
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Error for CodecError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.0.source()
    }
}

impl PartialEq for CodecError {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for CodecError {}
