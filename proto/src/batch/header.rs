//! The fixed header of a RecordBatch v2: parse, validate, patch.

use std::fmt;

use super::{BatchError, HEADER_LEN, LOG_OVERHEAD, MAGIC, MIN_BATCH_LENGTH};

// Byte positions of the header fields.
const BASE_OFFSET: usize = 0;
const BATCH_LENGTH: usize = 8;
const PARTITION_LEADER_EPOCH: usize = 12;
const MAGIC_POS: usize = 16;
const CRC: usize = 17;
pub(super) const ATTRIBUTES: usize = 21;
const LAST_OFFSET_DELTA: usize = 23;
const FIRST_TIMESTAMP: usize = 27;
const MAX_TIMESTAMP: usize = 35;
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
const RECORD_COUNT: usize = 57;

// Bits of the attributes.
const COMPRESSION_MASK: i16 = 0x07;
pub(super) const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;
pub(super) const TRANSACTIONAL_BIT: i16 = 1 << 4;
pub(super) const CONTROL_BIT: i16 = 1 << 5;

/// The compression codec of a batch's records (attributes bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Records are stored as they are (codec 0).
    None,
    /// gzip (codec 1).
    Gzip,
    /// Snappy, in Kafka's xerial framing (codec 2).
    Snappy,
    /// LZ4 frame format (codec 3).
    Lz4,
    /// Zstandard (codec 4).
    Zstd,
}

impl Compression {
    /// Every codec, in codec-number order.
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// The codec's number in the attributes.
    pub fn code(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// The codec with number `code`, if there is one.
    pub fn from_code(code: u8) -> Result<Compression, BatchError> {
        match code {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            _ => Err(BatchError::UnknownCompression(code)),
        }
    }
}

impl fmt::Display for Compression {
    /// Kafka's name for the codec (`compression.type`): none, gzip, snappy, lz4, zstd.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        })
    }
}

/// What a batch's timestamps mean (attributes bit 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    /// Set by the producer when it created each record.
    CreateTime,
    /// Set by the broker when it appended the batch; the batch's `max_timestamp` is that time
    /// and applies to every record.
    LogAppendTime,
}

impl fmt::Display for TimestampType {
    /// Kafka's name: CreateTime or LogAppendTime.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimestampType::CreateTime => "CreateTime",
            TimestampType::LogAppendTime => "LogAppendTime",
        })
    }
}

/// The fixed header of a RecordBatch v2, field by field as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the batch's first record.
    pub base_offset: i64,
    /// Bytes after the `batch_length` field; the batch is `batch_length + 12` bytes long.
    pub batch_length: i32,
    /// Leader epoch of the leader that appended the batch (-1 when sent by a producer).
    pub partition_leader_epoch: i32,
    /// Format version; always [`MAGIC`] once parsed.
    pub magic: i8,
    /// CRC-32C of the bytes from the attributes to the end of the batch.
    pub crc: u32,
    /// Compression, timestamp type, transactional and control flags.
    pub attributes: i16,
    /// Offset of the last record minus `base_offset`.
    pub last_offset_delta: i32,
    /// The base timestamp the records' timestamp deltas are relative to.
    pub first_timestamp: i64,
    /// The largest record timestamp (the append time under LogAppendTime).
    pub max_timestamp: i64,
    /// Idempotent or transactional producer's id, or -1.
    pub producer_id: i64,
    /// The producer's epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence number of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records in the batch.
    pub record_count: i32,
}

impl BatchHeader {
    /// Parses the fixed header at the start of `buf`, which needs at least [`HEADER_LEN`] bytes.
    ///
    /// Checks that the batch length is at least [`MIN_BATCH_LENGTH`], the magic byte is
    /// [`MAGIC`], the last offset delta and record count are not negative, and the batch's
    /// offsets do not overflow. Does NOT check the CRC or that the whole batch is in `buf`; use
    /// [`validate`] for that.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() < HEADER_LEN {
            return Err(BatchError::Truncated {
                needed: HEADER_LEN,
                available: buf.len(),
            });
        }
        let header = BatchHeader {
            base_offset: i64::from_be_bytes(field(buf, BASE_OFFSET)),
            batch_length: i32::from_be_bytes(field(buf, BATCH_LENGTH)),
            partition_leader_epoch: i32::from_be_bytes(field(buf, PARTITION_LEADER_EPOCH)),
            magic: i8::from_be_bytes(field(buf, MAGIC_POS)),
            crc: u32::from_be_bytes(field(buf, CRC)),
            attributes: i16::from_be_bytes(field(buf, ATTRIBUTES)),
            last_offset_delta: i32::from_be_bytes(field(buf, LAST_OFFSET_DELTA)),
            first_timestamp: i64::from_be_bytes(field(buf, FIRST_TIMESTAMP)),
            max_timestamp: i64::from_be_bytes(field(buf, MAX_TIMESTAMP)),
            producer_id: i64::from_be_bytes(field(buf, PRODUCER_ID)),
            producer_epoch: i16::from_be_bytes(field(buf, PRODUCER_EPOCH)),
            base_sequence: i32::from_be_bytes(field(buf, BASE_SEQUENCE)),
            record_count: i32::from_be_bytes(field(buf, RECORD_COUNT)),
        };
        if header.batch_length < MIN_BATCH_LENGTH {
            return Err(BatchError::BadLength(header.batch_length));
        }
        if header.magic != MAGIC {
            return Err(BatchError::BadMagic(header.magic));
        }
        if header.last_offset_delta < 0 {
            return Err(BatchError::NegativeLastOffsetDelta(
                header.last_offset_delta,
            ));
        }
        if header.record_count < 0 {
            return Err(BatchError::NegativeRecordCount(header.record_count));
        }
        // next_offset() must not overflow.
        if header
            .base_offset
            .checked_add(i64::from(header.last_offset_delta) + 1)
            .is_none()
        {
            return Err(BatchError::OffsetOverflow {
                base_offset: header.base_offset,
                last_offset_delta: header.last_offset_delta,
            });
        }
        Ok(header)
    }

    /// The batch's size in bytes: `batch_length` + [`LOG_OVERHEAD`].
    ///
    /// # Panics
    ///
    /// If `batch_length` is negative, which [`parse`](Self::parse) never returns.
    pub fn size(&self) -> usize {
        let batch_length = usize::try_from(self.batch_length).expect("batch_length is negative");
        batch_length + LOG_OVERHEAD
    }

    /// Offset of the batch's last record: `base_offset + last_offset_delta`.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// The offset after the batch: `last_offset() + 1`.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    /// The records' compression codec; codecs 5 to 7 are an error.
    pub fn compression(&self) -> Result<Compression, BatchError> {
        let code = u8::try_from(self.attributes & COMPRESSION_MASK).expect("masked to 3 bits");
        Compression::from_code(code)
    }

    /// What the batch's timestamps mean.
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & TIMESTAMP_TYPE_BIT == 0 {
            TimestampType::CreateTime
        } else {
            TimestampType::LogAppendTime
        }
    }

    /// Whether the batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    /// Whether the batch holds control records (transaction markers), not user data.
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }
}

/// Validates the batch at the start of `buf`: its header as in [`BatchHeader::parse`], the whole
/// batch present (`buf.len() >= size`), and its CRC-32C correct. Returns the header.
///
/// `buf` may hold more bytes after the batch.
pub fn validate(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(buf)?;
    let computed = crc_of(buf, &header)?;
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    Ok(header)
}

/// Computes the CRC-32C of the batch at the start of `batch`, over its attributes..end.
///
/// The header must parse (see [`BatchHeader::parse`]) and the whole batch be present; the stored
/// CRC is not checked. For tools and tests that build or repair batches.
pub fn compute_crc(batch: &[u8]) -> Result<u32, BatchError> {
    let header = BatchHeader::parse(batch)?;
    crc_of(batch, &header)
}

/// Overwrites the batch's base offset (outside the CRC, so a valid batch stays valid).
///
/// # Panics
///
/// If `batch` is shorter than [`HEADER_LEN`]: the caller should have validated it.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    put(batch, BASE_OFFSET, base_offset.to_be_bytes());
}

/// Overwrites the batch's partition leader epoch (outside the CRC, so a valid batch stays valid).
///
/// # Panics
///
/// If `batch` is shorter than [`HEADER_LEN`]: the caller should have validated it.
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    put(batch, PARTITION_LEADER_EPOCH, epoch.to_be_bytes());
}

/// The first [`STAMPED_PREFIX_LEN`](super::STAMPED_PREFIX_LEN) bytes of `batch` with
/// `base_offset` and, if given, `epoch` stamped in: what a log writes in place of the batch's
/// own prefix when it appends the batch without modifying the caller's buffer.
///
/// # Panics
///
/// If `batch` is shorter than [`HEADER_LEN`]: the caller should have validated it.
pub fn stamped_prefix(
    batch: &[u8],
    base_offset: i64,
    epoch: Option<i32>,
) -> [u8; super::STAMPED_PREFIX_LEN] {
    assert!(
        batch.len() >= HEADER_LEN,
        "a validated batch is at least a header long"
    );
    let mut prefix = [0; super::STAMPED_PREFIX_LEN];
    prefix.copy_from_slice(&batch[..super::STAMPED_PREFIX_LEN]);
    prefix[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
    if let Some(epoch) = epoch {
        let at = PARTITION_LEADER_EPOCH;
        prefix[at..at + 4].copy_from_slice(&epoch.to_be_bytes());
    }
    prefix
}

/// Marks a validated batch as stamped by the broker at `append_time_ms` (Kafka's
/// `LogAppendTime`): sets the timestamp type bit and the max timestamp, which consumers then
/// read as every record's timestamp, and rewrites the CRC they are under.
pub fn set_log_append_time(batch: &mut [u8], append_time_ms: i64) -> Result<(), BatchError> {
    let header = BatchHeader::parse(batch)?;
    let attributes = header.attributes | TIMESTAMP_TYPE_BIT;
    put(batch, ATTRIBUTES, attributes.to_be_bytes());
    put(batch, MAX_TIMESTAMP, append_time_ms.to_be_bytes());
    rewrite_crc(batch)
}

/// Overwrites the batch's first timestamp. It is inside the CRC: call [`rewrite_crc`] after.
pub(super) fn set_first_timestamp(batch: &mut [u8], timestamp: i64) {
    put(batch, FIRST_TIMESTAMP, timestamp.to_be_bytes());
}

/// Sets the fields that describe a batch's records after some were removed from it (batch
/// length, record count, max timestamp). They are inside the CRC but for the length: call
/// [`rewrite_crc`] after.
pub(super) fn set_record_fields(
    batch: &mut [u8],
    batch_length: i32,
    record_count: i32,
    max_timestamp: i64,
) {
    put(batch, BATCH_LENGTH, batch_length.to_be_bytes());
    put(batch, RECORD_COUNT, record_count.to_be_bytes());
    put(batch, MAX_TIMESTAMP, max_timestamp.to_be_bytes());
}

/// Rewrites the stored CRC of a batch whose header parses and that is wholly in `batch`.
pub(super) fn rewrite_crc(batch: &mut [u8]) -> Result<(), BatchError> {
    let crc = compute_crc(batch)?;
    put(batch, CRC, crc.to_be_bytes());
    Ok(())
}

/// CRC-32C of attributes..end of the batch `header` describes, checking it is all in `buf`.
fn crc_of(buf: &[u8], header: &BatchHeader) -> Result<u32, BatchError> {
    let size = header.size();
    if buf.len() < size {
        return Err(BatchError::Truncated {
            needed: size,
            available: buf.len(),
        });
    }
    Ok(crc32c::crc32c(&buf[ATTRIBUTES..size]))
}

/// The `N` bytes of `buf` at `at`; `buf` must be long enough (parse checked HEADER_LEN).
fn field<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    buf[at..at + N].try_into().expect("slice has N bytes")
}

/// Writes `bytes` into a batch header at `at`.
fn put<const N: usize>(batch: &mut [u8], at: usize, bytes: [u8; N]) {
    assert!(
        batch.len() >= HEADER_LEN,
        "record batch of {} bytes is shorter than its {HEADER_LEN}-byte header",
        batch.len()
    );
    batch[at..at + N].copy_from_slice(&bytes);
}
