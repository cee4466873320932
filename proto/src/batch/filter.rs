//! Removing records from a stored batch, as log compaction does.
//!
//! The batch keeps everything that names it: its base offset, its last offset delta (so it
//! still covers its original last offset, and an idempotent producer's last sequence number
//! stays where it was), its producer id, epoch and base sequence, its partition leader epoch,
//! attributes and first timestamp. The kept records are copied byte for byte: each one's
//! offset and timestamp deltas are relative to the base offset and first timestamp, which do
//! not change. Only the records section (recompressed with the batch's own codec), the batch
//! length, the record count, the max timestamp (CreateTime: the largest kept record's) and
//! the CRC are new.

use bytes::{Bytes, BytesMut};
use kafka_protocol::compression::{self as codecs, Compressor};

use super::codec::{decode_batch, decompress};
use super::header::{rewrite_crc, set_record_fields};
use super::{
    BatchError, CodecError, Compression, HEADER_LEN, LOG_OVERHEAD, Record, TimestampType, validate,
};

/// What [`filter`] made of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filtered {
    /// Every record was kept: use the batch as it is.
    Unchanged,
    /// Some records were removed: the rewritten batch (it may hold no record at all) and how
    /// many records were removed.
    Rewritten {
        /// The new batch, valid (CRC included).
        batch: Bytes,
        /// Records removed.
        removed: usize,
    },
}

/// Keeps the records of the single batch `batch` for which `keep` is true. `batch` must be one
/// whole batch; it is validated first (an invalid one is an error, never a panic).
pub fn filter(batch: &[u8], mut keep: impl FnMut(&Record) -> bool) -> Result<Filtered, BatchError> {
    let header = validate(batch)?;
    if header.size() != batch.len() {
        return Err(BatchError::Truncated {
            needed: header.size(),
            available: batch.len(),
        });
    }
    let mut records = Vec::new();
    decode_batch(batch, &header, &mut records)?;
    let kept: Vec<bool> = records.iter().map(&mut keep).collect();
    if kept.iter().all(|&k| k) {
        return Ok(Filtered::Unchanged);
    }
    let compression = header.compression()?;
    let section = decompress(Bytes::copy_from_slice(&batch[HEADER_LEN..]), compression).map_err(
        |source| BatchError::Decompress {
            base_offset: header.base_offset,
            compression,
            source,
        },
    )?;
    let slices = record_slices(&section, header.base_offset)?;
    if slices.len() != records.len() {
        return Err(framing(
            header.base_offset,
            "the records do not match the record count",
        ));
    }
    let mut plain = BytesMut::new();
    let mut max_timestamp = None;
    for ((range, record), _) in slices.iter().zip(&records).zip(&kept).filter(|(_, k)| **k) {
        plain.extend_from_slice(&section[range.clone()]);
        max_timestamp = max_timestamp.max(Some(record.timestamp));
    }
    let kept_count = kept.iter().filter(|&&k| k).count();
    let compressed =
        compress(plain, compression).map_err(|source| BatchError::Encode { source })?;

    let mut out = BytesMut::with_capacity(HEADER_LEN + compressed.len());
    out.extend_from_slice(&batch[..HEADER_LEN]);
    out.extend_from_slice(&compressed);
    let batch_length = i32::try_from(out.len() - LOG_OVERHEAD)
        .map_err(|_| framing(header.base_offset, "the rewritten batch is too large"))?;
    // Under LogAppendTime the max timestamp is the append time every record shows; keep it.
    let max_timestamp = match header.timestamp_type() {
        TimestampType::LogAppendTime => header.max_timestamp,
        TimestampType::CreateTime => max_timestamp.unwrap_or(header.max_timestamp),
    };
    let record_count = i32::try_from(kept_count).expect("fewer than the original count");
    set_record_fields(&mut out, batch_length, record_count, max_timestamp);
    rewrite_crc(&mut out)?;
    debug_assert!(validate(&out).is_ok());
    Ok(Filtered::Rewritten {
        batch: out.freeze(),
        removed: records.len() - kept_count,
    })
}

/// The byte range of each record in a decompressed records section. Each record starts with
/// its length as a zigzag varint.
fn record_slices(
    section: &[u8],
    base_offset: i64,
) -> Result<Vec<std::ops::Range<usize>>, BatchError> {
    let mut slices = Vec::new();
    let mut position = 0;
    while position < section.len() {
        let (length, width) = read_varint(&section[position..])
            .ok_or_else(|| framing(base_offset, "a record length is not a valid varint"))?;
        let length = usize::try_from(length)
            .map_err(|_| framing(base_offset, "a record has a negative length"))?;
        let end = position + width + length;
        if end > section.len() {
            return Err(framing(
                base_offset,
                "a record runs past the end of the batch",
            ));
        }
        slices.push(position..end);
        position = end;
    }
    Ok(slices)
}

/// A zigzag-encoded varint of at most 5 bytes (a 32-bit value) and its width.
fn read_varint(buf: &[u8]) -> Option<(i32, usize)> {
    let mut raw: u32 = 0;
    for (i, &byte) in buf.iter().take(5).enumerate() {
        raw |= u32::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            let value = ((raw >> 1) as i32) ^ -((raw & 1) as i32);
            return Some((value, i + 1));
        }
    }
    None
}

fn framing(base_offset: i64, reason: &str) -> BatchError {
    BatchError::Decode {
        base_offset,
        source: CodecError::new(reason.to_string()),
    }
}

/// Compresses a records section with `compression`, as a producer would have.
fn compress(plain: BytesMut, compression: Compression) -> Result<Bytes, CodecError> {
    let fill = |buf: &mut BytesMut| {
        buf.extend_from_slice(&plain);
        Ok(())
    };
    let mut out = BytesMut::new();
    let result = match compression {
        Compression::None => return Ok(plain.freeze()),
        Compression::Gzip => codecs::Gzip::compress(&mut out, fill),
        Compression::Snappy => codecs::Snappy::compress(&mut out, fill),
        Compression::Lz4 => codecs::Lz4::compress(&mut out, fill),
        Compression::Zstd => codecs::Zstd::compress(&mut out, fill),
    };
    result.map_err(CodecError::new)?;
    Ok(out.freeze())
}
