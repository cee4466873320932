//! The decisions of log compaction, as pure functions: which records of a cleaned segment
//! survive, whether an emptied batch stays, and which logs are dirty enough to clean. The log
//! cleaner ([`super::cleaner`]) carries them out on files.
//!
//! ```text
//!  log start            first dirty           cleanable end       active segment
//!  v                    v                     v                   v
//!  [ clean segments    ][ dirty segments     ][ too young (lag)  ][ never touched ]
//!   newest per key       offset map built here
//!   already
//! ```
//!
//! A record below the cleanable end survives when it has a key, no later record of that key
//! lies in the dirty part (the offset map holds the newest offset of each key seen there), and
//! it is not a tombstone whose time is up (Kafka's rule: tombstones stay for
//! `delete.retention.ms` after the segment holding them was first cleaned).

use std::collections::HashMap;

use bytes::Bytes;
use weir_proto::batch::{BatchHeader, Record};

/// The newest offset of each key in the dirty part of a log.
#[derive(Debug, Default)]
pub(crate) struct OffsetMap {
    newest: HashMap<Bytes, i64>,
}

impl OffsetMap {
    /// Notes that `key` has a record at `offset`.
    pub(crate) fn record(&mut self, key: &Bytes, offset: i64) {
        let newest = self.newest.entry(key.clone()).or_insert(offset);
        *newest = (*newest).max(offset);
    }

    /// The newest offset of `key`, if the dirty part has it.
    pub(crate) fn newest(&self, key: &[u8]) -> Option<i64> {
        self.newest.get(key).copied()
    }

    /// Number of keys.
    pub(crate) fn len(&self) -> usize {
        self.newest.len()
    }
}

/// What compaction does with one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    /// The newest record of its key (or a tombstone still within `delete.retention.ms`).
    Keep,
    /// A later record of the same key exists.
    Superseded,
    /// A tombstone whose segment was cleaned more than `delete.retention.ms` ago.
    ExpiredTombstone,
    /// A record without a key, which a compacted topic cannot hold (Kafka's cleaner drops
    /// them too; producers are refused such records).
    NoKey,
}

/// The fate of `record`, below the cleanable end, given the dirty part's offset map and
/// whether tombstones in its segment have expired.
pub(crate) fn fate(record: &Record, map: &OffsetMap, tombstones_expired: bool) -> Fate {
    let Some(key) = &record.key else {
        return Fate::NoKey;
    };
    if map.newest(key).is_some_and(|newest| newest > record.offset) {
        return Fate::Superseded;
    }
    if record.value.is_none() && tombstones_expired {
        return Fate::ExpiredTombstone;
    }
    Fate::Keep
}

/// Whether tombstones of a segment first cleaned at `cleaned_at_ms` (never, if `None`) are
/// past `delete.retention.ms` at `now_ms`. A segment not cleaned before keeps them: consumers
/// get `delete.retention.ms` from the first clean to see them.
pub(crate) fn tombstones_expired(
    cleaned_at_ms: Option<i64>,
    now_ms: i64,
    delete_retention_ms: i64,
) -> bool {
    cleaned_at_ms.is_some_and(|at| now_ms.saturating_sub(at) >= delete_retention_ms)
}

/// Whether a batch whose records were all removed stays as an empty batch (a header that
/// still covers its offsets):
/// - the last batch of an idempotent producer in the log, so the producer's last sequence
///   number (and epoch) can still be rebuilt from the log, as Kafka keeps it;
/// - the last batch of its segment (ending at `segment_next_offset`), so every segment still
///   ends where it did: a consumer reading past removed records then moves on to the next
///   offset still held, up to the log end, instead of finding nothing to read.
///
/// `last_batch_of` maps each producer id to the base offset of its last batch.
pub(crate) fn keep_empty_batch(
    header: &BatchHeader,
    last_batch_of: &HashMap<i64, i64>,
    segment_next_offset: i64,
) -> bool {
    let producers_last = header.producer_id >= 0
        && last_batch_of.get(&header.producer_id) == Some(&header.base_offset);
    producers_last || header.next_offset() == segment_next_offset
}

/// How much of a log's cleanable part (sealed segments old enough to clean) is dirty.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dirtiness {
    /// Bytes of segments compacted before and not written to since.
    pub clean_bytes: u64,
    /// Bytes of cleanable segments not compacted yet.
    pub dirty_bytes: u64,
    /// The first timestamp of the first dirty batch, if any.
    pub first_dirty_timestamp: Option<i64>,
    /// A compacted segment holds tombstones now past `delete.retention.ms`.
    pub tombstones_due: bool,
}

impl Dirtiness {
    /// Dirty bytes over cleanable bytes, 0 when there are none.
    pub fn ratio(&self) -> f64 {
        let total = self.clean_bytes + self.dirty_bytes;
        if total == 0 {
            return 0.0;
        }
        self.dirty_bytes as f64 / total as f64
    }

    /// Whether the log should be cleaned now: tombstones to remove, or some dirty bytes and
    /// either a dirty ratio of at least `min_ratio` or a dirty record older than `max_lag_ms`.
    pub fn needs_cleaning(&self, min_ratio: f64, max_lag_ms: i64, now_ms: i64) -> bool {
        if self.tombstones_due {
            return true;
        }
        if self.dirty_bytes == 0 {
            return false;
        }
        let overdue = self
            .first_dirty_timestamp
            .is_some_and(|t| now_ms.saturating_sub(t) >= max_lag_ms);
        self.ratio() >= min_ratio || overdue
    }
}

/// The order in which to clean candidate logs: those that need cleaning, dirtiest first (ties
/// keep the given order). Each candidate is its dirtiness and whether it needs cleaning.
pub(crate) fn cleaning_order(candidates: &[(Dirtiness, bool)]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..candidates.len()).filter(|&i| candidates[i].1).collect();
    order.sort_by(|&a, &b| candidates[b].0.ratio().total_cmp(&candidates[a].0.ratio()));
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(offset: i64, key: Option<&str>, value: Option<&str>) -> Record {
        Record {
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            headers: Vec::new(),
            timestamp: 0,
            offset,
        }
    }

    /// The offsets of `records` that survive, given the dirty part from `first_dirty`.
    fn check(
        records: &[Record],
        first_dirty: i64,
        tombstones_expired: bool,
        expected: &[(i64, Fate)],
    ) {
        let mut map = OffsetMap::default();
        for r in records.iter().filter(|r| r.offset >= first_dirty) {
            if let Some(key) = &r.key {
                map.record(key, r.offset);
            }
        }
        let fates: Vec<(i64, Fate)> = records
            .iter()
            .map(|r| (r.offset, fate(r, &map, tombstones_expired)))
            .collect();
        assert_eq!(fates, expected);
    }

    #[test]
    fn the_newest_record_of_each_key_survives() {
        use Fate::*;
        let records = [
            record(0, Some("a"), Some("a0")),
            record(1, Some("b"), Some("b1")),
            record(2, Some("a"), Some("a2")),
            record(3, None, Some("no key")),
            record(4, Some("c"), Some("c4")),
            record(5, Some("b"), None),
            record(6, Some("a"), Some("a6")),
        ];
        check(
            &records,
            0,
            false,
            &[
                (0, Superseded),
                (1, Superseded),
                (2, Superseded),
                (3, NoKey),
                (4, Keep),
                (5, Keep),
                (6, Keep),
            ],
        );
        // Tombstones past delete.retention.ms go; a tombstone that is not newest goes anyway.
        check(
            &records,
            0,
            true,
            &[
                (0, Superseded),
                (1, Superseded),
                (2, Superseded),
                (3, NoKey),
                (4, Keep),
                (5, ExpiredTombstone),
                (6, Keep),
            ],
        );
    }

    #[test]
    fn clean_records_stay_unless_the_dirty_part_supersedes_them() {
        use Fate::*;
        // 0..3 were cleaned before (one record per key); 3.. is dirty.
        let records = [
            record(0, Some("a"), Some("a0")),
            record(1, Some("b"), Some("b1")),
            record(2, Some("c"), None),
            record(3, Some("a"), Some("a3")),
            record(4, Some("d"), Some("d4")),
            record(5, Some("c"), Some("c5")),
        ];
        check(
            &records,
            3,
            false,
            &[
                (0, Superseded),
                (1, Keep),
                (2, Superseded),
                (3, Keep),
                (4, Keep),
                (5, Keep),
            ],
        );
    }

    #[test]
    fn tombstones_expire_delete_retention_after_their_first_clean() {
        assert!(!tombstones_expired(None, 1_000_000, 0), "never cleaned yet");
        assert!(!tombstones_expired(Some(1_000), 1_999, 1_000));
        assert!(tombstones_expired(Some(1_000), 2_000, 1_000));
        assert!(tombstones_expired(Some(1_000), 1_000, 0));
        assert!(!tombstones_expired(Some(1_000), i64::MAX, i64::MAX));
    }

    #[test]
    fn only_a_producers_or_a_segments_last_batch_stays_empty() {
        let header = |base_offset, producer_id| BatchHeader {
            base_offset,
            producer_id,
            ..BatchHeader::parse(
                &weir_proto::batch::encode(&[record(0, Some("k"), None)], &Default::default())
                    .unwrap(),
            )
            .unwrap()
        };
        let last = HashMap::from([(7, 40), (8, 90)]);
        // Each header covers one offset: header(b, _) ends at b + 1.
        assert!(keep_empty_batch(&header(40, 7), &last, 100));
        assert!(
            !keep_empty_batch(&header(30, 7), &last, 100),
            "not its last batch"
        );
        assert!(
            !keep_empty_batch(&header(40, -1), &last, 100),
            "no producer id"
        );
        assert!(!keep_empty_batch(&header(40, 9), &last, 100));
        assert!(
            keep_empty_batch(&header(99, -1), &last, 100),
            "the segment's last"
        );
        assert!(
            keep_empty_batch(&header(30, 7), &last, 31),
            "the segment's last"
        );
    }

    #[test]
    fn dirtiest_first_and_only_past_the_ratio_or_the_max_lag() {
        let d = |clean_bytes, dirty_bytes, first| Dirtiness {
            clean_bytes,
            dirty_bytes,
            first_dirty_timestamp: first,
            tombstones_due: false,
        };
        assert_eq!(d(50, 50, None).ratio(), 0.5);
        assert_eq!(d(0, 0, None).ratio(), 0.0);
        assert!(d(50, 50, Some(0)).needs_cleaning(0.5, i64::MAX, 10));
        assert!(!d(60, 40, Some(0)).needs_cleaning(0.5, i64::MAX, 10));
        assert!(
            d(60, 40, Some(0)).needs_cleaning(0.5, 10, 10),
            "overdue by max lag"
        );
        assert!(!d(60, 40, Some(1)).needs_cleaning(0.5, 10, 10));
        assert!(
            !d(60, 0, Some(0)).needs_cleaning(0.0, 0, 10),
            "nothing dirty"
        );
        let due = Dirtiness {
            tombstones_due: true,
            ..d(60, 0, None)
        };
        assert!(
            due.needs_cleaning(0.5, i64::MAX, 10),
            "expired tombstones to remove"
        );

        let candidates = [
            (d(90, 10, None), false),
            (d(50, 50, None), true),
            (d(10, 90, None), true),
            (d(30, 70, None), true),
        ];
        assert_eq!(cleaning_order(&candidates), vec![2, 3, 1]);
    }
}
