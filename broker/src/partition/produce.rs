//! What a leader checks in the record batches a producer sends before they reach its log,
//! and how it stamps them: each failure is one of Kafka's produce error codes.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use weir_proto::batch::{self, BatchError, BatchHeader};

/// Why a producer's records were refused; nothing of them was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProduceError {
    /// A batch that does not parse or whose CRC does not match (CORRUPT_MESSAGE).
    #[error("corrupt record batch at byte {position}: {reason}")]
    CorruptMessage {
        /// Where the batch starts in the request's records.
        position: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A batch larger than the topic's `max.message.bytes` (MESSAGE_TOO_LARGE).
    #[error(
        "record batch of {size} bytes is larger than the topic's max.message.bytes ({limit}); \
         send smaller batches or raise max.message.bytes"
    )]
    MessageTooLarge {
        /// The batch's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A batch whose fields contradict each other, or one only brokers may write
    /// (INVALID_RECORD).
    #[error("invalid record batch at byte {position}: {reason}")]
    InvalidRecord {
        /// Where the batch starts in the request's records.
        position: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A CreateTime timestamp outside the topic's allowed window (INVALID_TIMESTAMP).
    #[error(
        "record timestamp {timestamp} is {distance_ms} ms from the broker's time, more than the \
         topic's {key} ({limit_ms}); check the producer's clock"
    )]
    InvalidTimestamp {
        /// The offending timestamp.
        timestamp: i64,
        /// How far it is from the broker's time.
        distance_ms: i64,
        /// The config that limits it.
        key: &'static str,
        /// The limit.
        limit_ms: i64,
    },
}

/// How a topic's leader checks and stamps what producers send. The defaults are Kafka's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducePolicy {
    /// The largest batch, in bytes. Kafka: `max.message.bytes`.
    pub max_message_bytes: usize,
    /// Stamp batches with the broker's time (`message.timestamp.type=LogAppendTime`).
    pub log_append_time: bool,
    /// How far in the past a CreateTime timestamp may be. Kafka:
    /// `message.timestamp.before.max.ms`; `None` for no limit.
    pub timestamp_before_max_ms: Option<i64>,
    /// How far in the future a CreateTime timestamp may be. Kafka:
    /// `message.timestamp.after.max.ms`; `None` for no limit.
    pub timestamp_after_max_ms: Option<i64>,
    /// In-sync replicas an acks=all produce needs. Kafka: `min.insync.replicas`.
    pub min_insync_replicas: i32,
    /// The topic is compacted (`cleanup.policy` includes `compact`): every record needs a key.
    pub compacted: bool,
}

impl Default for ProducePolicy {
    fn default() -> Self {
        Self {
            max_message_bytes: 1_048_588,
            log_append_time: false,
            timestamp_before_max_ms: None,
            timestamp_after_max_ms: None,
            min_insync_replicas: 1,
            compacted: false,
        }
    }
}

/// Records checked and stamped, ready for the log.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The bytes to append: the request's own, or a copy where the broker stamped them.
    pub records: Bytes,
    /// The header of each batch, in order.
    pub batches: Vec<BatchHeader>,
}

impl ProducePolicy {
    /// This policy with a topic's own configs (Kafka's names) laid over it. Values were
    /// validated when the topic was created; one that does not parse keeps the default.
    pub fn with_topic_configs(&self, configs: &BTreeMap<String, String>) -> ProducePolicy {
        let mut policy = self.clone();
        let number = |name: &str| configs.get(name).and_then(|v| v.trim().parse::<i64>().ok());
        if let Some(bytes) = number("max.message.bytes").and_then(|n| usize::try_from(n).ok()) {
            policy.max_message_bytes = bytes;
        }
        if let Some(kind) = configs.get("message.timestamp.type") {
            policy.log_append_time = kind == "LogAppendTime";
        }
        // Kafka's default is Long.MAX_VALUE: no limit.
        let limit = |n: i64| (n < i64::MAX).then_some(n);
        if let Some(ms) = number("message.timestamp.before.max.ms") {
            policy.timestamp_before_max_ms = limit(ms);
        }
        if let Some(ms) = number("message.timestamp.after.max.ms") {
            policy.timestamp_after_max_ms = limit(ms);
        }
        if let Some(min) = number("min.insync.replicas").and_then(|n| i32::try_from(n).ok()) {
            policy.min_insync_replicas = min;
        }
        if let Some(cleanup) = configs.get("cleanup.policy") {
            policy.compacted = cleanup.split(',').any(|p| p.trim() == "compact");
        }
        policy
    }

    /// Checks every batch of `records` (framing, CRC, size, consistency, timestamps) and,
    /// under LogAppendTime, stamps them with `now_ms`. Refuses the whole request if any batch
    /// fails, as Kafka does for one partition's records.
    pub fn prepare(&self, records: Bytes, now_ms: i64) -> Result<Prepared, ProduceError> {
        let mut batches = Vec::new();
        let mut position = 0;
        while position < records.len() {
            let rest = &records[position..];
            let header = batch::validate(rest).map_err(|e| corrupt(position, &e))?;
            self.check(position, &header, now_ms)?;
            if self.compacted {
                check_keys(position, &rest[..header.size()])?;
            }
            batches.push(header);
            position += header.size();
        }
        if batches.is_empty() {
            return Err(ProduceError::InvalidRecord {
                position: 0,
                reason: "the request holds no record batch for the partition".into(),
            });
        }
        if !self.log_append_time {
            return Ok(Prepared { records, batches });
        }
        let mut stamped = BytesMut::from(&records[..]);
        let mut position = 0;
        for header in &mut batches {
            let end = position + header.size();
            let batch = &mut stamped[position..end];
            batch::set_log_append_time(batch, now_ms)
                .and_then(|()| BatchHeader::parse(batch))
                .map(|stamped| *header = stamped)
                .map_err(|e| corrupt(position, &e))?;
            position = end;
        }
        Ok(Prepared {
            records: stamped.freeze(),
            batches,
        })
    }

    fn check(
        &self,
        position: usize,
        header: &BatchHeader,
        now_ms: i64,
    ) -> Result<(), ProduceError> {
        let invalid = |reason: String| ProduceError::InvalidRecord { position, reason };
        if header.size() > self.max_message_bytes {
            return Err(ProduceError::MessageTooLarge {
                size: header.size(),
                limit: self.max_message_bytes,
            });
        }
        if i64::from(header.record_count) != i64::from(header.last_offset_delta) + 1 {
            return Err(invalid(format!(
                "it counts {} records but its offsets span {}",
                header.record_count,
                i64::from(header.last_offset_delta) + 1
            )));
        }
        if header.is_control() {
            return Err(invalid(
                "control batches are written by brokers, not producers".into(),
            ));
        }
        if header.is_transactional() {
            return Err(invalid(
                "transactions are not supported; produce without one".into(),
            ));
        }
        if let Err(e) = header.compression() {
            return Err(corrupt(position, &e));
        }
        if self.log_append_time {
            return Ok(());
        }
        for timestamp in [header.first_timestamp, header.max_timestamp] {
            let (key, limit, distance) = if timestamp < now_ms {
                (
                    "message.timestamp.before.max.ms",
                    self.timestamp_before_max_ms,
                    now_ms.saturating_sub(timestamp),
                )
            } else {
                (
                    "message.timestamp.after.max.ms",
                    self.timestamp_after_max_ms,
                    timestamp.saturating_sub(now_ms),
                )
            };
            if let Some(limit_ms) = limit
                && distance > limit_ms
            {
                return Err(ProduceError::InvalidTimestamp {
                    timestamp,
                    distance_ms: distance,
                    key,
                    limit_ms,
                });
            }
        }
        Ok(())
    }
}

/// Refuses a batch holding a record without a key, which a compacted topic cannot keep
/// (Kafka: INVALID_RECORD, "Compacted topic cannot accept message without key").
fn check_keys(position: usize, batch: &[u8]) -> Result<(), ProduceError> {
    let records = batch::decode(batch).map_err(|e| corrupt(position, &e))?;
    match records.iter().find(|r| r.key.is_none()) {
        None => Ok(()),
        Some(record) => Err(ProduceError::InvalidRecord {
            position,
            reason: format!(
                "a compacted topic cannot accept a record without a key (the record at offset \
                 delta {} has none); give every record a key, or change the topic's \
                 cleanup.policy",
                record.offset - batch::BatchHeader::parse(batch).map_or(0, |h| h.base_offset)
            ),
        }),
    }
}

fn corrupt(position: usize, error: &BatchError) -> ProduceError {
    ProduceError::CorruptMessage {
        position,
        reason: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use weir_proto::batch::{Compression, EncodeOptions, Record, TimestampType};

    use super::*;

    fn batch(count: usize, timestamp: i64) -> Vec<u8> {
        let records: Vec<Record> = (0..count)
            .map(|i| Record {
                key: None,
                value: Some(Bytes::from(vec![b'v'; 100])),
                headers: Vec::new(),
                timestamp,
                offset: i as i64,
            })
            .collect();
        let options = EncodeOptions {
            compression: Compression::Zstd,
            ..EncodeOptions::default()
        };
        batch::encode(&records, &options).unwrap().to_vec()
    }

    #[test]
    fn good_batches_pass_untouched_and_bad_ones_name_their_kafka_error() {
        let policy = ProducePolicy::default();
        let mut two = batch(3, 1_000);
        two.extend(batch(2, 1_000));
        let prepared = policy.prepare(Bytes::from(two.clone()), 5_000).unwrap();
        assert_eq!(prepared.records, two, "no copy without LogAppendTime");
        assert_eq!(prepared.batches.len(), 2);

        // A flipped bit: CORRUPT_MESSAGE, naming the batch's position.
        let mut flipped = two.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let error = policy.prepare(Bytes::from(flipped), 5_000).unwrap_err();
        let first = batch(3, 1_000).len();
        assert!(
            matches!(&error, ProduceError::CorruptMessage { position, .. } if *position == first),
            "{error}"
        );
        // A torn batch is corrupt too; nothing at all is an invalid request.
        let error = policy
            .prepare(Bytes::from(two[..40].to_vec()), 5_000)
            .unwrap_err();
        assert!(
            matches!(error, ProduceError::CorruptMessage { position: 0, .. }),
            "{error}"
        );
        assert!(matches!(
            policy.prepare(Bytes::new(), 5_000).unwrap_err(),
            ProduceError::InvalidRecord { .. }
        ));

        // Too large for the topic: MESSAGE_TOO_LARGE.
        let small = policy.with_topic_configs(&BTreeMap::from([(
            "max.message.bytes".to_string(),
            "64".to_string(),
        )]));
        let error = small
            .prepare(Bytes::from(batch(1, 1_000)), 5_000)
            .unwrap_err();
        assert!(
            matches!(error, ProduceError::MessageTooLarge { limit: 64, .. }),
            "{error}"
        );

        // A record count that contradicts the offsets: INVALID_RECORD (with a valid CRC).
        let mut lying = batch(3, 1_000);
        lying[57..61].copy_from_slice(&5i32.to_be_bytes());
        let crc = batch::compute_crc(&lying).unwrap();
        lying[17..21].copy_from_slice(&crc.to_be_bytes());
        let error = policy.prepare(Bytes::from(lying), 5_000).unwrap_err();
        assert!(error.to_string().contains("counts 5 records"), "{error}");
    }

    #[test]
    fn a_compacted_topic_refuses_records_without_a_key() {
        let keyed = |key: Option<&'static str>| Record {
            key: key.map(|k| Bytes::from_static(k.as_bytes())),
            value: Some(Bytes::from_static(b"v")),
            headers: Vec::new(),
            timestamp: 1_000,
            offset: 0,
        };
        let mut two = keyed(Some("k"));
        two.offset = 1;
        let mut keyless = keyed(None);
        keyless.offset = 1;
        let options = EncodeOptions {
            compression: Compression::Lz4,
            ..EncodeOptions::default()
        };
        let good = batch::encode(&[keyed(Some("a")), two], &options).unwrap();
        let bad = batch::encode(&[keyed(Some("a")), keyless], &options).unwrap();
        for policy in ["compact", "compact,delete", "delete, compact"] {
            let compacted = ProducePolicy::default().with_topic_configs(&BTreeMap::from([(
                "cleanup.policy".to_string(),
                policy.to_string(),
            )]));
            assert!(compacted.prepare(good.clone(), 5_000).is_ok());
            let mut both = good.to_vec();
            both.extend_from_slice(&bad);
            let error = compacted.prepare(Bytes::from(both), 5_000).unwrap_err();
            assert_eq!(
                error,
                ProduceError::InvalidRecord {
                    position: good.len(),
                    reason: "a compacted topic cannot accept a record without a key (the record \
                             at offset delta 1 has none); give every record a key, or change \
                             the topic's cleanup.policy"
                        .into(),
                }
            );
        }
        let deleting = ProducePolicy::default().with_topic_configs(&BTreeMap::from([(
            "cleanup.policy".to_string(),
            "delete".to_string(),
        )]));
        assert!(deleting.prepare(bad, 5_000).is_ok());
    }

    #[test]
    fn timestamps_are_checked_or_stamped_as_the_topic_says() {
        let limited = ProducePolicy::default().with_topic_configs(&BTreeMap::from([
            ("message.timestamp.before.max.ms".into(), "1000".into()),
            ("message.timestamp.after.max.ms".into(), "100".into()),
        ]));
        let now = 1_000_000;
        assert!(
            limited
                .prepare(Bytes::from(batch(1, now - 1000)), now)
                .is_ok()
        );
        let error = limited
            .prepare(Bytes::from(batch(1, now - 1001)), now)
            .unwrap_err();
        assert!(
            matches!(
                error,
                ProduceError::InvalidTimestamp {
                    key: "message.timestamp.before.max.ms",
                    ..
                }
            ),
            "{error}"
        );
        let error = limited
            .prepare(Bytes::from(batch(1, now + 101)), now)
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("message.timestamp.after.max.ms (100)"),
            "{error}"
        );

        let stamping = ProducePolicy::default().with_topic_configs(&BTreeMap::from([(
            "message.timestamp.type".into(),
            "LogAppendTime".into(),
        )]));
        let prepared = stamping.prepare(Bytes::from(batch(2, 5)), now).unwrap();
        let header = batch::validate(&prepared.records).unwrap();
        assert_eq!(header.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(header.max_timestamp, now);
        assert_eq!(prepared.batches[0], header);
        let timestamps: Vec<i64> = batch::decode(&prepared.records)
            .unwrap()
            .iter()
            .map(|r| r.timestamp)
            .collect();
        assert_eq!(timestamps, [now, now]);
    }
}
