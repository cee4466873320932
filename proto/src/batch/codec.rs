//! Whole-batch encoding and decoding, built on the `kafka-protocol` crate's record codec.

use std::collections::HashSet;
use std::mem;

use bytes::{Bytes, BytesMut};
use kafka_protocol::compression::{self as codecs, Decompressor};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    self as kafka, NO_PARTITION_LEADER_EPOCH, RecordBatchDecoder, RecordBatchEncoder,
    RecordEncodeOptions,
};

use super::header::{ATTRIBUTES, TIMESTAMP_TYPE_BIT, rewrite_crc, set_first_timestamp};
use super::{
    BatchError, BatchHeader, CodecError, Compression, HEADER_LEN, MAGIC, TimestampType, batches,
    set_base_offset,
};

/// The smallest encoded record: length, attributes, timestamp delta, offset delta, key length,
/// value length and header count, one byte each.
pub(super) const MIN_RECORD_LEN: usize = 7;

/// One record of a batch, with its absolute offset and timestamp.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// The key; `None` is a null key (not the same as an empty one).
    pub key: Option<Bytes>,
    /// The value; `None` is a null value (a tombstone on a compacted topic).
    pub value: Option<Bytes>,
    /// Headers in order: a UTF-8 key and a value that may be null. [`encode`] rejects a key that
    /// appears twice, because the underlying codec keeps one value per key.
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Milliseconds since the Unix epoch (what it means depends on the batch's timestamp type).
    pub timestamp: i64,
    /// The record's offset in its partition.
    pub offset: i64,
}

/// How [`encode`] builds a batch. `Default` is what a plain (non-idempotent) producer sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeOptions {
    /// The records' compression codec. Default none.
    pub compression: Compression,
    /// The timestamp type written in the attributes. Default CreateTime.
    pub timestamp_type: TimestampType,
    /// The idempotent producer's id. Default -1 (none).
    pub producer_id: i64,
    /// The idempotent producer's epoch. Default -1 (none).
    pub producer_epoch: i16,
    /// Sequence number of the first record. Default -1 (none).
    pub base_sequence: i32,
    /// Mark the batch transactional. Default false.
    pub transactional: bool,
    /// Mark the batch as control records (the records must then be well-formed control
    /// records, e.g. transaction markers). Default false.
    pub control: bool,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            compression: Compression::None,
            timestamp_type: TimestampType::CreateTime,
            producer_id: kafka::NO_PRODUCER_ID,
            producer_epoch: kafka::NO_PRODUCER_EPOCH,
            base_sequence: kafka::NO_SEQUENCE,
            transactional: false,
            control: false,
        }
    }
}

/// Encodes `records` into ONE RecordBatch v2.
///
/// The batch's base offset is `records[0].offset` and each record keeps its own offset, so the
/// offsets must increase (a producer numbers its records 0, 1, 2, …; the leader then sets the
/// real base offset with [`set_base_offset`]). The batch's
/// `first_timestamp` is the smallest record timestamp and its `max_timestamp` the largest. The
/// partition leader epoch is -1.
///
/// Errors: no records; offsets not increasing, more than `i32::MAX` apart, or ending at
/// `i64::MAX`; timestamps whose difference overflows; a header key repeated within a record; or
/// a failure of the codec (e.g. a record too large).
pub fn encode(records: &[Record], options: &EncodeOptions) -> Result<Bytes, BatchError> {
    let kafka_records = to_kafka_records(records, options)?;
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &kafka_records,
        &RecordEncodeOptions {
            version: MAGIC,
            compression: to_kafka_compression(options.compression),
        },
    )
    .map_err(|source| BatchError::Encode {
        source: CodecError::new(source),
    })?;

    // kafka-protocol does not write the timestamp type bit; set it, then fix the CRC.
    if options.timestamp_type == TimestampType::LogAppendTime {
        // The attributes are a big-endian i16: bit 3 is in their second byte.
        buf[ATTRIBUTES + 1] |= u8::try_from(TIMESTAMP_TYPE_BIT).expect("bit 3 is in the low byte");
        rewrite_crc(&mut buf).expect("kafka-protocol wrote a whole batch with a valid header");
    }

    let header = BatchHeader::parse(&buf).expect("kafka-protocol wrote an invalid header");
    assert_eq!(
        header.size(),
        buf.len(),
        "kafka-protocol split the records into several batches"
    );
    assert_eq!(usize::try_from(header.record_count), Ok(records.len()));
    assert_eq!(header.is_transactional(), options.transactional);
    assert_eq!(header.is_control(), options.control);
    debug_assert!(super::validate(&buf).is_ok());
    Ok(buf.freeze())
}

/// Decodes every record of every batch in `buf` (any compression), with absolute offsets and
/// timestamps.
///
/// Each batch is first validated (see [`validate`](super::validate)); an invalid batch is a
/// [`BatchError::Invalid`] naming its byte position. Under LogAppendTime every record gets the
/// batch's `max_timestamp`, as Kafka consumers see it. Repeated header keys in a record keep
/// only the last value (a limit of the underlying codec).
pub fn decode(buf: &[u8]) -> Result<Vec<Record>, BatchError> {
    let mut records = Vec::new();
    for item in batches(buf) {
        let (position, header) = item?;
        let batch = &buf[position..position + header.size()];
        decode_batch(batch, &header, &mut records)
            .map_err(|error| super::InvalidBatch { position, error })?;
    }
    Ok(records)
}

/// Decodes the records of one validated batch into `out`.
pub(super) fn decode_batch(
    batch: &[u8],
    header: &BatchHeader,
    out: &mut Vec<Record>,
) -> Result<(), BatchError> {
    let base_offset = header.base_offset;
    let compression = header.compression()?;
    // Decode a copy whose base offset and first timestamp are 0, so the decoder's offsets and
    // timestamps are the records' deltas, and add those here: the decoder adds them unchecked,
    // and a hostile batch must be an error, not an overflow.
    let mut copy = BytesMut::from(batch);
    set_base_offset(&mut copy, 0);
    set_first_timestamp(&mut copy, 0);
    rewrite_crc(&mut copy)?;
    let mut copy = copy.freeze();

    // Decompress first, so that a record count the records cannot hold is an error here and
    // not a huge allocation in the decoder.
    let records_bytes = decompress(copy.slice(HEADER_LEN..), compression).map_err(|source| {
        BatchError::Decompress {
            base_offset,
            compression,
            source,
        }
    })?;
    let record_count = usize::try_from(header.record_count).expect("parse checked record_count");
    if record_count > records_bytes.len() / MIN_RECORD_LEN {
        return Err(BatchError::RecordCountTooLarge {
            base_offset,
            record_count: header.record_count,
            records_bytes: records_bytes.len(),
        });
    }

    let set = RecordBatchDecoder::decode_with_custom_compression(
        &mut copy,
        Some(|_: &mut Bytes, _| Ok(records_bytes.clone())),
    )
    .map_err(|source| BatchError::Decode {
        base_offset,
        source: CodecError::new(source),
    })?;

    let log_append_time = header.timestamp_type() == TimestampType::LogAppendTime;
    out.reserve(set.records.len());
    for record in set.records {
        let offset_delta = record.offset;
        let offset =
            base_offset
                .checked_add(offset_delta)
                .ok_or(BatchError::RecordOffsetOverflow {
                    base_offset,
                    offset_delta,
                })?;
        let timestamp = if log_append_time {
            header.max_timestamp
        } else {
            let timestamp_delta = record.timestamp;
            header.first_timestamp.checked_add(timestamp_delta).ok_or(
                BatchError::RecordTimestampOverflow {
                    base_offset,
                    first_timestamp: header.first_timestamp,
                    timestamp_delta,
                },
            )?
        };
        out.push(Record {
            key: record.key,
            value: record.value,
            headers: record
                .headers
                .into_iter()
                .map(|(key, value)| (String::from(key.as_str()), value))
                .collect(),
            timestamp,
            offset,
        });
    }
    Ok(())
}

/// Decompresses a batch's records section with kafka-protocol's codecs.
pub(super) fn decompress(
    mut compressed: Bytes,
    compression: Compression,
) -> Result<Bytes, CodecError> {
    let take = |buf: &mut Bytes| Ok(mem::take(buf));
    let decompressed = match compression {
        Compression::None => return Ok(compressed),
        Compression::Gzip => codecs::Gzip::decompress(&mut compressed, take),
        Compression::Snappy => codecs::Snappy::decompress(&mut compressed, take),
        Compression::Lz4 => codecs::Lz4::decompress(&mut compressed, take),
        Compression::Zstd => codecs::Zstd::decompress(&mut compressed, take),
    };
    decompressed.map_err(CodecError::new)
}

/// Checks `records` and turns them into kafka-protocol's records, numbered for one batch.
fn to_kafka_records(
    records: &[Record],
    options: &EncodeOptions,
) -> Result<Vec<kafka::Record>, BatchError> {
    let first = records.first().ok_or(BatchError::NoRecords)?;
    let base_offset = first.offset;
    let min_timestamp = records
        .iter()
        .map(|r| r.timestamp)
        .min()
        .expect("not empty");
    let max_timestamp = records
        .iter()
        .map(|r| r.timestamp)
        .max()
        .expect("not empty");
    if max_timestamp.checked_sub(min_timestamp).is_none() {
        return Err(BatchError::TimestampsTooFarApart {
            min: min_timestamp,
            max: max_timestamp,
        });
    }

    let mut previous: Option<i64> = None;
    let mut last_offset_delta = 0;
    let mut kafka_records = Vec::with_capacity(records.len());
    for (index, record) in records.iter().enumerate() {
        if let Some(previous) = previous
            && record.offset <= previous
        {
            return Err(BatchError::OffsetsNotIncreasing {
                index,
                previous,
                offset: record.offset,
            });
        }
        previous = Some(record.offset);
        let offset_delta = record
            .offset
            .checked_sub(base_offset)
            .and_then(|delta| i32::try_from(delta).ok())
            .ok_or(BatchError::OffsetDeltaTooLarge {
                base_offset,
                offset: record.offset,
            })?;
        last_offset_delta = offset_delta;
        let mut keys = HashSet::with_capacity(record.headers.len());
        if let Some((key, _)) = record.headers.iter().find(|(key, _)| !keys.insert(key)) {
            return Err(BatchError::DuplicateHeaderKey {
                index,
                key: key.clone(),
            });
        }
        kafka_records.push(kafka::Record {
            transactional: options.transactional,
            control: options.control,
            delete_horizon: false,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            producer_id: options.producer_id,
            producer_epoch: options.producer_epoch,
            timestamp_type: kafka::TimestampType::Creation,
            offset: record.offset,
            // kafka-protocol starts a new batch when offset - sequence changes, so keep it fixed.
            sequence: options.base_sequence.wrapping_add(offset_delta),
            timestamp: record.timestamp,
            key: record.key.clone(),
            value: record.value.clone(),
            headers: record
                .headers
                .iter()
                .map(|(key, value)| (StrBytes::from_string(key.clone()), value.clone()))
                .collect(),
        });
    }
    // The offset after the batch must exist.
    if base_offset
        .checked_add(i64::from(last_offset_delta) + 1)
        .is_none()
    {
        return Err(BatchError::OffsetOverflow {
            base_offset,
            last_offset_delta,
        });
    }
    Ok(kafka_records)
}

fn to_kafka_compression(compression: Compression) -> kafka::Compression {
    match compression {
        Compression::None => kafka::Compression::None,
        Compression::Gzip => kafka::Compression::Gzip,
        Compression::Snappy => kafka::Compression::Snappy,
        Compression::Lz4 => kafka::Compression::Lz4,
        Compression::Zstd => kafka::Compression::Zstd,
    }
}
