//! Random sequences of log operations, run against the real log and against a plain in-memory
//! model of one; any difference in what they answer is a bug.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use weir_broker::clock::{Clock, ManualClock};
use weir_broker::config::LogConfig;
use weir_broker::storage::{Error, Log, OpenState, TimestampOffset};
use weir_proto::batch;

const NOW_MS: i64 = 100_000;

#[derive(Debug, Clone)]
enum Op {
    /// Append a batch of this many records, values this long, timestamps from this one.
    Append {
        records: usize,
        value_len: usize,
        timestamp: i64,
        new_epoch: bool,
    },
    Read {
        pick: u16,
        max_bytes: usize,
    },
    LookupTime {
        timestamp: i64,
    },
    LookupMaxTime,
    DeleteRecords {
        pick: u16,
    },
    Roll,
    Truncate {
        pick: u16,
    },
    Reopen {
        clean: bool,
    },
    RetainBytes {
        limit: u64,
    },
    RetainAge {
        age_ms: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (1usize..6, 0usize..2_500, 0i64..5_000, proptest::bool::weighted(0.1)).prop_map(
            |(records, value_len, timestamp, new_epoch)| Op::Append { records, value_len, timestamp, new_epoch }
        ),
        4 => (any::<u16>(), 0usize..20_000).prop_map(|(pick, max_bytes)| Op::Read { pick, max_bytes }),
        2 => (-10i64..5_100).prop_map(|timestamp| Op::LookupTime { timestamp }),
        1 => Just(Op::LookupMaxTime),
        1 => any::<u16>().prop_map(|pick| Op::DeleteRecords { pick }),
        1 => Just(Op::Roll),
        1 => any::<u16>().prop_map(|pick| Op::Truncate { pick }),
        2 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
        1 => (0u64..60_000).prop_map(|limit| Op::RetainBytes { limit }),
        1 => (0i64..6_000).prop_map(|age| Op::RetainAge { age_ms: NOW_MS - 2_000 - age }),
    ]
}

/// One stored batch in the model: its bytes as the log must hold them.
#[derive(Debug, Clone)]
struct ModelBatch {
    base: i64,
    last: i64,
    max_timestamp: i64,
    epoch: i32,
    /// (offset, timestamp) of each record.
    records: Vec<(i64, i64)>,
    bytes: Vec<u8>,
}

#[derive(Debug, Clone)]
struct ModelSegment {
    base: i64,
    capacity: usize,
    batches: Vec<ModelBatch>,
}

impl ModelSegment {
    fn size(&self) -> usize {
        self.batches.iter().map(|b| b.bytes.len()).sum()
    }
}

/// The in-memory model: a list of segments of batches, and the two offsets.
#[derive(Debug)]
struct Model {
    segment_bytes: usize,
    segments: Vec<ModelSegment>,
    log_start_offset: i64,
    log_end_offset: i64,
}

impl Model {
    fn new(segment_bytes: usize) -> Self {
        let first = ModelSegment {
            base: 0,
            capacity: segment_bytes,
            batches: Vec::new(),
        };
        Model {
            segment_bytes,
            segments: vec![first],
            log_start_offset: 0,
            log_end_offset: 0,
        }
    }

    fn active(&mut self) -> &mut ModelSegment {
        self.segments.last_mut().unwrap()
    }

    fn roll(&mut self, needed: usize) {
        let segment = ModelSegment {
            base: self.log_end_offset,
            capacity: self.segment_bytes.max(needed),
            batches: Vec::new(),
        };
        if self.active().batches.is_empty() {
            *self.active() = segment;
        } else {
            self.segments.push(segment);
        }
    }

    fn append(&mut self, raw: &[u8], epoch: i32) -> (i64, i64) {
        let mut bytes = raw.to_vec();
        let header = batch::BatchHeader::parse(&bytes).unwrap();
        let base = self.log_end_offset;
        batch::set_base_offset(&mut bytes, base);
        batch::set_partition_leader_epoch(&mut bytes, epoch);
        let active = self.active();
        if active.size() + bytes.len() > active.capacity {
            self.roll(bytes.len());
        }
        let records = batch::decode(&bytes)
            .unwrap()
            .iter()
            .map(|r| (r.offset, r.timestamp))
            .collect();
        let last = base + i64::from(header.last_offset_delta);
        let max_timestamp = header.max_timestamp;
        self.active().batches.push(ModelBatch {
            base,
            last,
            max_timestamp,
            epoch,
            records,
            bytes,
        });
        self.log_end_offset = last + 1;
        (base, last)
    }

    fn read(&self, offset: i64, max_bytes: usize) -> Result<Vec<u8>, ()> {
        if offset < self.log_start_offset || offset > self.log_end_offset {
            return Err(());
        }
        for segment in &self.segments {
            let Some(first) = segment.batches.iter().position(|b| b.last >= offset) else {
                continue;
            };
            let mut out = segment.batches[first].bytes.clone();
            for batch in &segment.batches[first + 1..] {
                if out.len() + batch.bytes.len() > max_bytes {
                    break;
                }
                out.extend_from_slice(&batch.bytes);
            }
            return Ok(out);
        }
        Ok(Vec::new())
    }

    fn lookup_time(&self, timestamp: i64) -> Option<TimestampOffset> {
        self.segments
            .iter()
            .flat_map(|s| &s.batches)
            .flat_map(|b| b.records.iter().map(|&(offset, ts)| (offset, ts, b.epoch)))
            .find(|(offset, ts, _)| *ts >= timestamp && *offset >= self.log_start_offset)
            .map(|(offset, timestamp, leader_epoch)| TimestampOffset {
                timestamp,
                offset,
                leader_epoch,
            })
    }

    /// The first record with the largest timestamp at or after the log start.
    fn lookup_max_time(&self) -> Option<TimestampOffset> {
        let max = self
            .segments
            .iter()
            .flat_map(|s| &s.batches)
            .flat_map(|b| &b.records)
            .filter(|(offset, _)| *offset >= self.log_start_offset)
            .map(|&(_, ts)| ts)
            .max()?;
        self.lookup_time(max)
    }

    fn truncate(&mut self, offset: i64) {
        if offset >= self.log_end_offset {
            return;
        }
        let keep = self.segments.iter().filter(|s| s.base <= offset).count();
        if keep == 0 {
            let segment = ModelSegment {
                base: offset,
                capacity: self.segment_bytes,
                batches: vec![],
            };
            self.segments = vec![segment];
            self.log_start_offset = offset;
            self.log_end_offset = offset;
            return;
        }
        let first_removed = self
            .segments
            .iter()
            .flat_map(|s| &s.batches)
            .find(|b| b.last >= offset)
            .map(|b| b.base)
            .unwrap();
        let new_end = first_removed.min(offset);
        let was_active = keep == self.segments.len();
        self.segments.truncate(keep);
        let segment_bytes = self.segment_bytes;
        let active = self.active();
        active.batches.retain(|b| b.last < offset);
        if !was_active {
            // A sealed segment becomes active again, sized for appends.
            active.capacity = segment_bytes.max(active.size());
        }
        self.log_end_offset = new_end;
        self.log_start_offset = self.log_start_offset.min(new_end);
    }

    fn reopen(&mut self) {
        let segment_bytes = self.segment_bytes;
        let active = self.active();
        active.capacity = segment_bytes.max(active.size());
    }

    fn delete_oldest(&mut self, count: usize) {
        if count == 0 {
            return;
        }
        if count == self.segments.len() {
            // Retention never counts an empty segment, so this adds a new active one.
            self.roll(0);
        }
        self.segments.drain(..count);
        self.log_start_offset = self.log_start_offset.max(self.segments[0].base);
    }

    fn retain_bytes(&mut self, limit: u64) {
        let total: u64 = self.segments.iter().map(|s| s.size() as u64).sum();
        let mut excess = total.saturating_sub(limit);
        let mut count = 0;
        for segment in &self.segments {
            let size = segment.size() as u64;
            if segment.batches.is_empty() || size > excess {
                break;
            }
            excess -= size;
            count += 1;
        }
        self.delete_oldest(count);
    }

    fn retain_age(&mut self, age_ms: i64) {
        let count = self
            .segments
            .iter()
            .take_while(|s| {
                let max = s.batches.iter().map(|b| b.max_timestamp).max();
                max.is_some_and(|m| m < NOW_MS - age_ms)
            })
            .count();
        self.delete_oldest(count);
    }

    /// DeleteRecords: the start moves up to `offset` (at most the end), and segments wholly
    /// below it go.
    fn delete_records(&mut self, offset: i64) -> Result<i64, ()> {
        if offset < 0 || offset > self.log_end_offset {
            return Err(());
        }
        if offset > self.log_start_offset {
            self.log_start_offset = offset;
            let count = self.segments[1..]
                .iter()
                .take_while(|s| s.base <= offset)
                .count();
            self.segments.drain(..count);
        }
        Ok(self.log_start_offset)
    }

    /// The batches a reader can still reach, as stored batches.
    fn visible(&self) -> Vec<common::StoredBatch> {
        self.segments
            .iter()
            .flat_map(|s| &s.batches)
            .filter(|b| b.last >= self.log_start_offset)
            .map(|b| (b.base, b.last, b.bytes.clone()))
            .collect()
    }

    fn pick(&self, pick: u16) -> i64 {
        let low = self.log_start_offset - 2;
        let span = (self.log_end_offset + 2 - low + 1) as u64;
        low + (u64::from(pick) % span) as i64
    }
}

struct Harness {
    dir: tempfile::TempDir,
    config: LogConfig,
    clock: Arc<dyn Clock>,
    log: Option<Log>,
    epoch: i32,
}

impl Harness {
    fn log(&self) -> &Log {
        self.log.as_ref().unwrap()
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
        let log = Log::open(
            self.dir.path(),
            self.config.clone(),
            Arc::clone(&self.clock),
            state,
        );
        self.log = Some(log.unwrap());
    }
}

fn run(segment_bytes: usize, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let clock = Arc::new(ManualClock::new(NOW_MS));
    let dyn_clock: Arc<dyn Clock> = clock;
    let config = LogConfig {
        segment_ms: i64::MAX / 4,
        ..common::small_config(segment_bytes as u64)
    };
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path(), config.clone(), &dyn_clock);
    let mut h = Harness {
        dir,
        config,
        clock: dyn_clock,
        log: Some(log),
        epoch: 0,
    };
    let mut model = Model::new(segment_bytes);

    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Append {
                records,
                value_len,
                timestamp,
                new_epoch,
            } => {
                h.epoch += i32::from(new_epoch);
                let raw = common::batch(records, value_len, timestamp);
                let info = h.log().append(&raw, h.epoch).unwrap();
                let (base, last) = model.append(&raw, h.epoch);
                prop_assert_eq!(
                    (info.base_offset, info.last_offset),
                    (base, last),
                    "step {}",
                    step
                );
            }
            Op::Read { pick, max_bytes } => {
                let offset = model.pick(pick);
                let real = h.log().read(offset, max_bytes);
                match (real, model.read(offset, max_bytes)) {
                    (Ok(bytes), Ok(expected)) => {
                        prop_assert!(
                            bytes[..] == expected[..],
                            "step {}: read {} differs",
                            step,
                            offset
                        )
                    }
                    (Err(Error::OffsetOutOfRange { .. }), Err(())) => {}
                    (real, expected) => prop_assert!(
                        false,
                        "step {}: read {}: real {:?}, model {:?}",
                        step,
                        offset,
                        real.map(|b| b.len()),
                        expected.map(|b| b.len())
                    ),
                }
            }
            Op::LookupTime { timestamp } => {
                let real = h.log().offset_for_timestamp(timestamp).unwrap();
                prop_assert_eq!(real, model.lookup_time(timestamp), "step {}", step);
            }
            Op::LookupMaxTime => {
                let real = h.log().max_timestamp_offset().unwrap();
                prop_assert_eq!(real, model.lookup_max_time(), "step {}", step);
            }
            Op::DeleteRecords { pick } => {
                let offset = model.pick(pick);
                let real = h.log().delete_records_before(offset);
                match (real, model.delete_records(offset)) {
                    (Ok(real), Ok(expected)) => prop_assert_eq!(real, expected, "step {}", step),
                    (Err(Error::OffsetOutOfRange { .. }), Err(())) => {}
                    (real, expected) => prop_assert!(
                        false,
                        "step {}: delete records before {}: real {:?}, model {:?}",
                        step,
                        offset,
                        real,
                        expected
                    ),
                }
            }
            Op::Roll => {
                h.log().roll().unwrap();
                if !model.active().batches.is_empty() {
                    model.roll(0);
                }
            }
            Op::Truncate { pick } => {
                let offset = model.pick(pick).max(0);
                let end = h.log().truncate_to(offset).unwrap();
                model.truncate(offset);
                prop_assert_eq!(end, model.log_end_offset, "step {}", step);
            }
            Op::Reopen { clean } => {
                h.reopen(clean);
                model.reopen();
            }
            Op::RetainBytes { limit } => {
                let config = LogConfig {
                    retention_bytes: Some(limit),
                    ..h.config.clone()
                };
                h.log().set_config(config).unwrap();
                h.log().delete_expired_segments().unwrap();
                h.log().set_config(h.config.clone()).unwrap();
                model.retain_bytes(limit);
            }
            Op::RetainAge { age_ms } => {
                let config = LogConfig {
                    retention_ms: Some(age_ms),
                    ..h.config.clone()
                };
                h.log().set_config(config).unwrap();
                h.log().delete_expired_segments().unwrap();
                h.log().set_config(h.config.clone()).unwrap();
                model.retain_age(age_ms);
            }
        }
        let log = h.log();
        prop_assert_eq!(
            log.log_start_offset(),
            model.log_start_offset,
            "step {}",
            step
        );
        prop_assert_eq!(log.log_end_offset(), model.log_end_offset, "step {}", step);
        let bases: Vec<i64> = model.segments.iter().map(|s| s.base).collect();
        prop_assert_eq!(log.segment_base_offsets(), bases, "step {}", step);
        let size: u64 = model.segments.iter().map(|s| s.size() as u64).sum();
        prop_assert_eq!(log.size_bytes(), size, "step {}", step);
        // The leader-epoch cache names where each epoch of the readable records starts (with
        // no readable record it may keep the epoch in effect at the end, as Kafka does).
        let visible = model.visible();
        let epochs = common::epochs_of(&visible, model.log_start_offset);
        if !visible.is_empty() {
            prop_assert_eq!(common::leader_epochs(log), epochs.clone(), "step {}", step);
        }
        for (i, &(epoch, _)) in epochs.iter().enumerate() {
            let end = epochs
                .get(i + 1)
                .map_or(model.log_end_offset, |next| next.1);
            let found = log.end_offset_for_epoch(epoch);
            prop_assert_eq!(
                (found.leader_epoch, found.end_offset),
                (epoch, end),
                "step {}",
                step
            );
        }
    }
    // Finally every batch, read back one by one, is the model's.
    let all: Vec<Bytes> = common::read_all(h.log())
        .into_iter()
        .map(|b| Bytes::from(b.2))
        .collect();
    let expected: Vec<Bytes> = model
        .segments
        .iter()
        .flat_map(|s| &s.batches)
        .filter(|b| b.last >= model.log_start_offset)
        .map(|b| Bytes::from(b.bytes.clone()))
        .collect();
    prop_assert_eq!(all, expected);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn log_matches_the_model(
        segment_bytes in 1024usize..24_000,
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        run(segment_bytes, ops)?;
    }
}
