//! Crashes during the log cleaner's segment swap: a compacted log's directory is rebuilt in
//! every state the swap passes through (cleaned copies written, some of them committed as
//! `.swap`, some renamed into place, the indexes first), reopened without any recovery
//! checkpoint, and must hold, segment by segment, either the original or the compacted batches
//! — the compacted ones exactly for the segments whose swap was committed, which are always the
//! oldest — with no leftover files and the log end unchanged.

mod common;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use weir_broker::clock::Clock;
use weir_broker::config::{CleanupPolicy, LogConfig};
use weir_broker::storage::{Log, OpenState, Throttle, write_checkpoint};
use weir_proto::batch::{self, EncodeOptions, Record};

const SEGMENTS: usize = 4;
const PER_SEGMENT: usize = 20;
const KEYS: usize = 5;

fn config() -> LogConfig {
    LogConfig {
        cleanup_policy: CleanupPolicy::COMPACT,
        ..common::small_config(64 * 1024)
    }
}

fn name(base: i64, suffix: &str) -> String {
    format!("{base:020}.{suffix}")
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// The (offset, key, value) of every record of a sealed segment's log file.
fn segment_records(dir: &Path, base: i64) -> Vec<(i64, Option<Bytes>, Option<Bytes>)> {
    let bytes = std::fs::read(dir.join(name(base, "log"))).unwrap();
    batch::decode(&bytes)
        .unwrap()
        .into_iter()
        .map(|r| (r.offset, r.key, r.value))
        .collect()
}

/// Every record of the log from its start, read through the log.
fn read_all(log: &Log) -> Vec<(i64, Option<Bytes>, Option<Bytes>)> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let bytes = log.read(offset, 1 << 20).unwrap();
        assert!(!bytes.is_empty(), "nothing read at {offset}");
        out.extend(
            batch::decode(&bytes)
                .unwrap()
                .into_iter()
                .map(|r| (r.offset, r.key, r.value)),
        );
        // Past the last batch read, which may be an empty one that ends a segment.
        offset = common::split_batches(&bytes).last().unwrap().1 + 1;
    }
    out
}

/// A log of `SEGMENTS` sealed segments of keyed records (and an empty active one), copied
/// before and after one clean. Returns the two directories and the segments' base offsets.
fn before_and_after(clock: &Arc<dyn Clock>) -> (tempfile::TempDir, tempfile::TempDir, Vec<i64>) {
    let live = tempfile::tempdir().unwrap();
    let log = common::open(live.path(), config(), clock);
    for i in 0..SEGMENTS * PER_SEGMENT {
        let record = Record {
            key: Some(Bytes::from(format!("key-{}", i % KEYS))),
            value: (i % 7 != 3).then(|| Bytes::from(format!("value-{i}"))),
            headers: Vec::new(),
            timestamp: 1_000 + i as i64,
            offset: 0,
        };
        log.append(
            &batch::encode(&[record], &EncodeOptions::default()).unwrap(),
            0,
        )
        .unwrap();
        if (i + 1) % PER_SEGMENT == 0 {
            log.roll().unwrap();
        }
    }
    log.flush().unwrap();
    let bases: Vec<i64> = log.segment_base_offsets()[..SEGMENTS].to_vec();
    let before = tempfile::tempdir().unwrap();
    copy_dir(live.path(), before.path());
    let stats = log.clean(&mut Throttle::new(u64::MAX)).unwrap().unwrap();
    assert_eq!(stats.segments_rewritten, SEGMENTS);
    let after = tempfile::tempdir().unwrap();
    copy_dir(live.path(), after.path());
    drop(log);
    (before, after, bases)
}

/// Where a crash stopped the swap.
#[derive(Debug, Clone, Copy)]
enum Crash {
    /// The first `committed` segments' logs were renamed to `.swap`; the rest are `.cleaned`.
    Committing { committed: usize },
    /// Every copy committed; the first `done` segments are in place, and of the next one
    /// `step` files were renamed (0: none, 1: its offset index, 2: both indexes).
    Replacing { done: usize, step: usize },
}

/// Builds the directory a crash at `crash` leaves, from the states before and after.
fn crash_state(before: &Path, after: &Path, bases: &[i64], crash: Crash, to: &Path) {
    copy_dir(before, to);
    // The cleaner writes its state (compacted files may have gaps below the cleaned end)
    // before the first rename, and records the clean itself only after the last.
    let end = (SEGMENTS * PER_SEGMENT) as i64;
    let payload = format!("first-dirty 0\ngaps-below {end}\n");
    write_checkpoint(&to.join("cleaner-checkpoint"), 1, payload.as_bytes()).unwrap();
    for (i, &base) in bases.iter().enumerate() {
        let copy = |suffix: &str, target: String| {
            std::fs::copy(after.join(name(base, suffix)), to.join(target)).unwrap();
        };
        let (committed, renamed) = match crash {
            Crash::Committing { committed } => (i < committed, 0),
            Crash::Replacing { done, .. } if i < done => (true, 3),
            Crash::Replacing { done, step } if i == done => (true, step),
            Crash::Replacing { .. } => (true, 0),
        };
        let log_name = if renamed == 3 {
            name(base, "log")
        } else if committed {
            name(base, "log.swap")
        } else {
            name(base, "log.cleaned")
        };
        copy("log", log_name);
        let index = if renamed >= 1 {
            "index"
        } else {
            "index.cleaned"
        };
        copy("index", name(base, index));
        let time_index = if renamed >= 2 {
            "timeindex"
        } else {
            "timeindex.cleaned"
        };
        copy("timeindex", name(base, time_index));
    }
}

#[test]
fn a_crash_anywhere_in_the_swap_leaves_each_segment_whole_and_the_oldest_compacted() {
    let (_, clock) = common::clock();
    let (before, after, bases) = before_and_after(&clock);
    let mut crashes: Vec<Crash> = (0..=SEGMENTS)
        .map(|committed| Crash::Committing { committed })
        .collect();
    for done in 0..SEGMENTS {
        for step in 0..3 {
            crashes.push(Crash::Replacing { done, step });
        }
    }
    for crash in crashes {
        let dir = tempfile::tempdir().unwrap();
        crash_state(before.path(), after.path(), &bases, crash, dir.path());
        let compacted = match crash {
            Crash::Committing { committed } => committed,
            Crash::Replacing { .. } => SEGMENTS,
        };
        let mut expected = Vec::new();
        for (i, &base) in bases.iter().enumerate() {
            let from = if i < compacted {
                after.path()
            } else {
                before.path()
            };
            expected.extend(segment_records(from, base));
        }

        // No recovery checkpoint: every segment is recovered.
        let log = Log::open(
            dir.path(),
            config(),
            Arc::clone(&clock),
            OpenState::default(),
        )
        .unwrap();
        assert_eq!(
            log.log_end_offset(),
            (SEGMENTS * PER_SEGMENT) as i64,
            "{crash:?}"
        );
        assert_eq!(read_all(&log), expected, "{crash:?}");
        let leftovers: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap"))
            .collect();
        assert_eq!(leftovers, Vec::<String>::new(), "{crash:?}");
        // Each segment's indexes agree with its log: every surviving offset is found.
        for (offset, _, _) in &expected {
            let bytes = log.read(*offset, 1).unwrap();
            let records = batch::decode(&bytes).unwrap();
            assert_eq!(
                records.first().map(|r| r.offset),
                Some(*offset),
                "{crash:?}"
            );
        }
        // The clean can be done again from here, to the same result as without a crash.
        log.clean(&mut Throttle::new(u64::MAX)).unwrap();
        let mut cleaned = Vec::new();
        for &base in &bases {
            cleaned.extend(segment_records(after.path(), base));
        }
        assert_eq!(read_all(&log), cleaned, "{crash:?} then a clean");
    }
}

#[test]
fn a_compacted_log_reopens_without_any_checkpoint_and_keeps_its_gaps() {
    let (_, clock) = common::clock();
    let (_before, after, bases) = before_and_after(&clock);
    let mut expected = Vec::new();
    for &base in &bases {
        expected.extend(segment_records(after.path(), base));
    }
    // The newest record of each key is left, in the last segment (base 60) after a gap.
    let offsets: Vec<i64> = expected.iter().map(|r| r.0).collect();
    assert_eq!(offsets, (75..80).collect::<Vec<i64>>());
    let log = Log::open(
        after.path(),
        config(),
        Arc::clone(&clock),
        OpenState::default(),
    )
    .unwrap();
    assert_eq!(read_all(&log), expected);
    assert_eq!(log.log_end_offset(), (SEGMENTS * PER_SEGMENT) as i64);
}
