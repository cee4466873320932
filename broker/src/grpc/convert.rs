//! Conversions between the prost types of `weir.v1` and the domain types: records and
//! batches, codecs, record formats, config entries.

use bytes::Bytes;
use kafka_protocol::ResponseError;
use weir_proto::batch::{self, Compression, EncodeOptions};
use weir_proto::v1 as pb;

use super::status::invalid;
use crate::kafka::Refusal;
use crate::kafka::describe_configs::{ConfigEntry, source};
use crate::storage::TopicPartition;

/// The batches a partition's records become: the bytes as given, or one batch the broker
/// encodes from structured records (timestamps left out take `now_ms`).
pub(super) fn batches(
    tp: &TopicPartition,
    data: Option<pb::partition_records::Data>,
    compression: i32,
    now_ms: i64,
) -> Result<Bytes, Refusal> {
    match data {
        Some(pb::partition_records::Data::Batches(bytes)) => Ok(bytes),
        Some(pb::partition_records::Data::Records(list)) => {
            let compression = self::compression(compression)?;
            encode(tp, &list.records, compression, now_ms)
        }
        None => Err(invalid(format!(
            "the request for {tp} has neither batches nor records"
        ))),
    }
}

/// Encodes `records` into one RecordBatch v2 compressed with `compression`.
fn encode(
    tp: &TopicPartition,
    records: &[pb::Record],
    compression: Compression,
    now_ms: i64,
) -> Result<Bytes, Refusal> {
    let records: Vec<batch::Record> = records
        .iter()
        .zip(0..)
        .map(|(record, offset)| batch::Record {
            key: record.key.clone(),
            value: record.value.clone(),
            headers: record
                .headers
                .iter()
                .map(|h| (h.key.clone(), h.value.clone()))
                .collect(),
            timestamp: record.timestamp_ms.unwrap_or(now_ms),
            offset,
        })
        .collect();
    let options = EncodeOptions {
        compression,
        ..EncodeOptions::default()
    };
    batch::encode(&records, &options).map_err(|e| {
        (
            ResponseError::InvalidRecord,
            format!("the records for {tp} cannot be made into a batch: {e}"),
        )
    })
}

/// The codec a request names.
fn compression(value: i32) -> Result<Compression, Refusal> {
    let codec = pb::Compression::try_from(value)
        .map_err(|_| invalid(format!("compression {value} is not a codec Weir knows")))?;
    Ok(match codec {
        pb::Compression::None => Compression::None,
        pb::Compression::Gzip => Compression::Gzip,
        pb::Compression::Snappy => Compression::Snappy,
        pb::Compression::Lz4 => Compression::Lz4,
        pb::Compression::Zstd => Compression::Zstd,
    })
}

/// The record format a request asks for.
pub(super) fn format(value: i32) -> Result<pb::RecordFormat, Refusal> {
    pb::RecordFormat::try_from(value)
        .map_err(|_| invalid(format!("record format {value} is not one Weir knows")))
}

/// What a consumer gets of `stored` (whole batches read from a log, the first one holding
/// `offset`): the bytes, or the records from `offset` on, decoded; and the offset after them.
pub(super) fn records(
    tp: &TopicPartition,
    stored: Bytes,
    offset: i64,
    format: pb::RecordFormat,
) -> Result<(Bytes, Vec<pb::Record>, i64), Refusal> {
    let mut next_offset = offset;
    for item in batch::batches(&stored) {
        let (_, header) = item.map_err(|e| stored_damage(tp, &e))?;
        next_offset = next_offset.max(header.next_offset());
    }
    match format {
        pb::RecordFormat::Batches => Ok((stored, Vec::new(), next_offset)),
        pb::RecordFormat::Records => {
            let decoded = batch::decode(&stored).map_err(|e| stored_damage(tp, &e))?;
            let records = decoded
                .into_iter()
                .filter(|r| r.offset >= offset)
                .map(|r| pb::Record {
                    key: r.key,
                    value: r.value,
                    headers: r
                        .headers
                        .into_iter()
                        .map(|(key, value)| pb::RecordHeader { key, value })
                        .collect(),
                    timestamp_ms: Some(r.timestamp),
                    offset: r.offset,
                })
                .collect();
            Ok((Bytes::new(), records, next_offset))
        }
    }
}

/// Stored batches that do not read back: the log is damaged.
fn stored_damage(tp: &TopicPartition, error: &dyn std::fmt::Display) -> Refusal {
    (
        ResponseError::KafkaStorageError,
        format!("the stored batches of {tp} do not decode: {error}"),
    )
}

/// A described config as the API shows it.
pub(super) fn config_entry(entry: ConfigEntry) -> pb::ConfigEntry {
    let source = match entry.source {
        source::TOPIC => pb::ConfigSource::Topic,
        source::STATIC_BROKER => pb::ConfigSource::Broker,
        _ => pb::ConfigSource::Default,
    };
    pb::ConfigEntry {
        name: entry.name,
        value: entry.value,
        source: source as i32,
    }
}
