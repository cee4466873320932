//! Log compaction against an in-memory model: random keyed appends (with tombstones, under
//! every codec), rolls, cleans, time passing and reopens. After every clean and reopen, a read
//! from the log start must give exactly the model's records, in offset order, offsets
//! unchanged: below the cleaned point the newest record of each key (tombstones until
//! `delete.retention.ms` after their first clean), everything above it as appended.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use weir_broker::clock::{Clock, ManualClock};
use weir_broker::config::{CleanupPolicy, LogConfig};
use weir_broker::storage::{Log, OpenState, Throttle};
use weir_proto::batch::{self, Compression, EncodeOptions, Record};

const NOW_MS: i64 = 1_000_000;

#[derive(Debug, Clone)]
enum Op {
    /// Append one batch: (key, is tombstone) per record, with a codec.
    Append {
        records: Vec<(u8, bool)>,
        codec: usize,
    },
    Roll,
    Clean,
    Advance {
        ms: i64,
    },
    Reopen {
        clean: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (proptest::collection::vec((0u8..8, proptest::bool::weighted(0.15)), 1..6), 0usize..5)
            .prop_map(|(records, codec)| Op::Append { records, codec }),
        2 => Just(Op::Roll),
        3 => Just(Op::Clean),
        2 => (0i64..1_500).prop_map(|ms| Op::Advance { ms }),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
    ]
}

/// One record as the model holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ModelRecord {
    offset: i64,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
    /// When a clean first covered this record (its segment's first clean).
    first_cleaned_at: Option<i64>,
}

struct Harness {
    dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    config: LogConfig,
    log: Option<Log>,
    model: Vec<ModelRecord>,
    next_value: u64,
}

impl Harness {
    fn new(segment_bytes: u64, delete_retention_ms: i64) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(NOW_MS));
        let config = LogConfig {
            cleanup_policy: CleanupPolicy::COMPACT,
            delete_retention_ms,
            segment_ms: i64::MAX / 4,
            ..common::small_config(segment_bytes)
        };
        let dyn_clock: Arc<dyn Clock> = clock.clone();
        let log = common::open(dir.path(), config.clone(), &dyn_clock);
        Harness {
            dir,
            clock,
            config,
            log: Some(log),
            model: Vec::new(),
            next_value: 0,
        }
    }

    fn log(&self) -> &Log {
        self.log.as_ref().unwrap()
    }

    fn append(&mut self, records: &[(u8, bool)], codec: usize) {
        let now = self.clock.now_ms();
        let base = self.log().log_end_offset();
        let batch: Vec<Record> = records
            .iter()
            .enumerate()
            .map(|(i, &(key, tombstone))| {
                self.next_value += 1;
                Record {
                    key: Some(Bytes::from(vec![b'k', key])),
                    value: (!tombstone).then(|| Bytes::from(format!("v{}", self.next_value))),
                    headers: Vec::new(),
                    timestamp: now,
                    offset: i as i64,
                }
            })
            .collect();
        let options = EncodeOptions {
            compression: Compression::ALL[codec],
            ..EncodeOptions::default()
        };
        let bytes = batch::encode(&batch, &options).unwrap();
        let info = self.log().append(&bytes, 0).unwrap();
        assert_eq!(info.base_offset, base);
        for (i, record) in batch.into_iter().enumerate() {
            self.model.push(ModelRecord {
                offset: base + i as i64,
                key: record.key.unwrap().to_vec(),
                value: record.value.map(|v| v.to_vec()),
                first_cleaned_at: None,
            });
        }
    }

    fn clean(&mut self) {
        let now = self.clock.now_ms();
        let end_before = self.log().log_end_offset();
        let active_base = *self.log().segment_base_offsets().last().unwrap();
        let stats = self.log().clean(&mut Throttle::new(u64::MAX)).unwrap();
        assert_eq!(self.log().log_end_offset(), end_before, "the log end stays");
        let Some(stats) = stats else {
            return;
        };
        // No compaction lag: every sealed segment is cleanable.
        assert_eq!(stats.first_dirty_offset, active_base);
        let cleaned_below = stats.first_dirty_offset;
        let mut newest: HashMap<Vec<u8>, i64> = HashMap::new();
        for r in self.model.iter().filter(|r| r.offset < cleaned_below) {
            newest.insert(r.key.clone(), r.offset);
        }
        let retention = self.config.delete_retention_ms;
        self.model.retain(|r| {
            if r.offset >= cleaned_below {
                return true;
            }
            let expired =
                r.value.is_none() && r.first_cleaned_at.is_some_and(|at| now - at >= retention);
            newest[&r.key] == r.offset && !expired
        });
        for r in self.model.iter_mut().filter(|r| r.offset < cleaned_below) {
            r.first_cleaned_at.get_or_insert(now);
        }
    }

    fn reopen(&mut self, clean: bool) {
        let log = self.log.take().unwrap();
        let checkpoint = log.checkpoint();
        if clean {
            log.close().unwrap();
        }
        drop(log);
        let state = OpenState {
            clean_shutdown: clean,
            checkpoint: Some(checkpoint),
        };
        let clock: Arc<dyn Clock> = self.clock.clone();
        let log = Log::open(self.dir.path(), self.config.clone(), clock, state).unwrap();
        self.log = Some(log);
    }

    /// Reads the whole log from its start and compares it with the model.
    fn check(&self) -> Result<(), TestCaseError> {
        let log = self.log();
        let end = log.log_end_offset();
        let mut offset = log.log_start_offset();
        let mut read = Vec::new();
        while offset < end {
            let bytes = log.read(offset, 1 << 20).unwrap();
            prop_assert!(
                !bytes.is_empty(),
                "nothing read at {offset} below the end {end}"
            );
            for (_, last, batch_bytes) in common::split_batches(&bytes) {
                for r in batch::decode(&batch_bytes).expect("valid batches, CRC included") {
                    read.push((
                        r.offset,
                        r.key.unwrap().to_vec(),
                        r.value.map(|v| v.to_vec()),
                    ));
                }
                offset = last + 1;
            }
        }
        let expected: Vec<_> = self
            .model
            .iter()
            .map(|r| (r.offset, r.key.clone(), r.value.clone()))
            .collect();
        prop_assert_eq!(read, expected);
        Ok(())
    }
}

fn run(segment_bytes: u64, delete_retention_ms: i64, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut h = Harness::new(segment_bytes, delete_retention_ms);
    for op in ops {
        match op {
            Op::Append { records, codec } => h.append(&records, codec),
            Op::Roll => h.log().roll().unwrap(),
            Op::Clean => {
                h.clean();
                h.check()?;
            }
            Op::Advance { ms } => h.clock.advance_ms(ms),
            Op::Reopen { clean } => {
                h.reopen(clean);
                h.check()?;
            }
        }
    }
    h.clean();
    h.check()?;
    h.log().roll().unwrap();
    h.clean();
    h.check()?;
    // With nothing new written, tombstones past delete.retention.ms still go.
    h.clock.advance_ms(2_000);
    h.clean();
    h.check()?;
    if delete_retention_ms <= 2_000 {
        let active_base = *h.log().segment_base_offsets().last().unwrap();
        let left = h
            .model
            .iter()
            .filter(|r| r.offset < active_base && r.value.is_none());
        prop_assert_eq!(left.count(), 0, "expired tombstones are gone");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn compaction_keeps_the_newest_record_of_each_key_and_every_offset(
        segment_bytes in 1024u64..3000,
        delete_retention_ms in prop_oneof![Just(0i64), Just(1_000), Just(i64::MAX / 4)],
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        run(segment_bytes, delete_retention_ms, ops)?;
    }
}

/// Writes `count` single-record batches cycling over `keys` keys, rolling every `per_segment`.
fn fill(log: &Log, count: usize, keys: usize, per_segment: usize) {
    for i in 0..count {
        let record = Record {
            key: Some(Bytes::from(format!("key-{}", i % keys))),
            value: Some(Bytes::from(format!("value-{i}"))),
            headers: Vec::new(),
            timestamp: NOW_MS,
            offset: 0,
        };
        let bytes = batch::encode(&[record], &EncodeOptions::default()).unwrap();
        log.append(&bytes, 0).unwrap();
        if (i + 1) % per_segment == 0 {
            log.roll().unwrap();
        }
    }
}

#[test]
fn a_reader_holding_old_segment_bytes_keeps_them_through_a_clean() {
    let dir = tempfile::tempdir().unwrap();
    let (_clock, clock) = common::clock();
    let config = LogConfig {
        cleanup_policy: CleanupPolicy::COMPACT,
        ..common::small_config(64 * 1024)
    };
    let log = common::open(dir.path(), config, &clock);
    fill(&log, 100, 5, 20);
    let held = log.read(0, 1 << 20).unwrap();
    let copy = held.to_vec();
    let stats = log.clean(&mut Throttle::new(u64::MAX)).unwrap().unwrap();
    // Five sealed segments of 20 (the active one is empty).
    assert_eq!(stats.records_removed, 95, "100 cleanable records, 5 keys");
    assert_eq!(stats.first_dirty_offset, 100);
    assert_eq!(&held[..], &copy[..], "the old map is still valid");
    // From offset 0 a reader now gets the newest record of each key, offsets unchanged.
    let mut offsets = Vec::new();
    let mut offset = 0;
    while offset < log.log_end_offset() {
        let bytes = log.read(offset, 1 << 20).unwrap();
        assert!(!bytes.is_empty(), "nothing read at {offset}");
        offsets.extend(batch::decode(&bytes).unwrap().iter().map(|r| r.offset));
        // Past the last batch read, which may be an empty one that ends a segment.
        offset = common::split_batches(&bytes).last().unwrap().1 + 1;
    }
    assert_eq!(offsets, (95..100).collect::<Vec<i64>>());
    assert_eq!(log.log_end_offset(), 100);
    // Nothing dirty is left below the active segment: a second clean does nothing.
    assert_eq!(log.clean(&mut Throttle::new(u64::MAX)).unwrap(), None);
}

#[test]
fn only_segments_older_than_the_lag_and_below_the_high_watermark_are_cleaned_and_delete_policy_is_left_alone()
 {
    let dir = tempfile::tempdir().unwrap();
    let (manual, clock) = common::clock();
    let config = LogConfig {
        cleanup_policy: CleanupPolicy::COMPACT,
        min_compaction_lag_ms: 10_000,
        ..common::small_config(64 * 1024)
    };
    let log = common::open(dir.path(), config.clone(), &clock);
    fill(&log, 40, 4, 20);
    assert_eq!(
        log.clean(&mut Throttle::new(u64::MAX)).unwrap(),
        None,
        "too young"
    );
    manual.advance_ms(10_000);
    let stats = log.clean(&mut Throttle::new(u64::MAX)).unwrap().unwrap();
    assert_eq!(stats.first_dirty_offset, 40);
    assert_eq!(stats.records_removed, 36);

    // Only segments wholly below the high watermark the owner passes are cleaned.
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path(), config.clone(), &clock);
    fill(&log, 60, 4, 20);
    log.set_cleaner_upper_offset(39);
    let stats = log.clean(&mut Throttle::new(u64::MAX)).unwrap().unwrap();
    assert_eq!(stats.first_dirty_offset, 20);
    log.set_cleaner_upper_offset(40);
    let stats = log.clean(&mut Throttle::new(u64::MAX)).unwrap().unwrap();
    assert_eq!(stats.first_dirty_offset, 40);

    let dir = tempfile::tempdir().unwrap();
    let deleting = LogConfig {
        cleanup_policy: CleanupPolicy::DELETE,
        ..config
    };
    let log = common::open(dir.path(), deleting, &clock);
    fill(&log, 40, 4, 20);
    assert_eq!(log.clean(&mut Throttle::new(u64::MAX)).unwrap(), None);
    assert!(log.dirtiness().unwrap().is_none());
}

#[test]
fn retention_deletes_under_compact_delete_and_never_under_compact_alone() {
    for (policy, expected) in [
        (CleanupPolicy::COMPACT, 0),
        (
            CleanupPolicy {
                delete: true,
                compact: true,
            },
            5,
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (manual, clock) = common::clock();
        let config = LogConfig {
            cleanup_policy: policy,
            retention_ms: Some(1_000),
            ..common::small_config(64 * 1024)
        };
        let log = common::open(dir.path(), config, &clock);
        fill(&log, 100, 5, 20);
        log.clean(&mut Throttle::new(u64::MAX)).unwrap().unwrap();
        manual.set_ms(NOW_MS + 10_000);
        assert_eq!(
            log.delete_expired_segments().unwrap(),
            expected,
            "{policy:?}"
        );
    }
}
