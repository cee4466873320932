//! Crash recovery: write batches, stop without closing, damage the active segment (cut it
//! short or flip bytes in its tail), reopen, and check that exactly the batches that were wholly
//! valid before the damage survive, that appends continue after them, and that index lookups
//! still answer correctly.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use proptest::prelude::*;
use weir_broker::clock::Clock;
use weir_broker::config::LogConfig;
use weir_broker::storage::{Log, LogCheckpoint, OpenState};
use weir_proto::batch;

const BATCHES: usize = 40;

/// A log written and then stopped: its directory, how to open it, the batches as stored,
/// and the checkpoint its owner would have recorded.
struct Stopped {
    dir: tempfile::TempDir,
    config: LogConfig,
    clock: Arc<dyn Clock>,
    stored: Vec<common::StoredBatch>,
    checkpoint: LogCheckpoint,
}

impl Stopped {
    /// Appends `batches` (with their leader epochs) to a new log, then stops it: cleanly with
    /// `close()` if `close`, otherwise by dropping it, as a kill -9 would (the active segment
    /// stays preallocated).
    fn write(
        segment_bytes: u64,
        batches: impl IntoIterator<Item = (bytes::Bytes, i32)>,
        close: bool,
    ) -> Stopped {
        let (_, clock) = common::clock();
        let config = common::small_config(segment_bytes);
        let dir = tempfile::tempdir().unwrap();
        let log = common::open(dir.path(), config.clone(), &clock);
        for (batch, epoch) in batches {
            log.append(&batch, epoch).unwrap();
        }
        let stored = common::read_all(&log);
        let checkpoint = log.checkpoint();
        if close {
            log.close().unwrap();
        }
        drop(log);
        Stopped {
            dir,
            config,
            clock,
            stored,
            checkpoint,
        }
    }

    /// Opens the log again, as after a clean shutdown or not.
    fn reopen(&self, clean_shutdown: bool) -> Log {
        let state = OpenState {
            clean_shutdown,
            checkpoint: Some(self.checkpoint),
        };
        Log::open(
            self.dir.path(),
            self.config.clone(),
            Arc::clone(&self.clock),
            state,
        )
        .unwrap()
    }

    /// The active segment's file and the file positions of its batches (start, end).
    fn active_segment(&self) -> (PathBuf, Vec<(usize, usize)>) {
        let path = last_log_file(self.dir.path());
        let bytes = std::fs::read(&path).unwrap();
        let mut positions = Vec::new();
        for item in batch::batches(&bytes) {
            match item {
                Ok((position, header)) => positions.push((position, position + header.size())),
                Err(_) => break, // the zeros past the end
            }
        }
        (path, positions)
    }
}

/// A log of `BATCHES` batches of assorted sizes and leader epochs, stopped without closing.
fn crash(segment_bytes: u64, sizes: &[usize]) -> Stopped {
    let batches = sizes.iter().enumerate().map(|(i, &size)| {
        let batch = common::batch(1 + i % 4, size, 1_000 + i as i64 * 10);
        (batch, (i / 10) as i32)
    });
    Stopped::write(segment_bytes, batches, false)
}

/// The segment log files in `dir`, in offset order.
fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs
}

fn last_log_file(dir: &Path) -> PathBuf {
    log_files(dir).pop().unwrap()
}

/// Checks the reopened log holds exactly `expected` (the surviving prefix of the batches),
/// that every offset's lookup finds its batch, and that appends continue after them.
fn check_survivors(log: &Log, expected: &[common::StoredBatch]) -> Result<(), TestCaseError> {
    let survived = common::read_all(log);
    prop_assert_eq!(survived.len(), expected.len());
    prop_assert!(
        survived == expected,
        "surviving batches differ from the valid prefix"
    );
    let end = expected.last().map_or(0, |b| b.1 + 1);
    prop_assert_eq!(log.log_end_offset(), end);
    // The leader-epoch checkpoint lost the epochs whose batches were lost, and only those.
    prop_assert_eq!(common::leader_epochs(log), common::epochs_of(expected, 0));
    for (base, last, bytes) in expected {
        for offset in *base..=*last {
            let read = log.read(offset, 1).unwrap();
            prop_assert_eq!(&read[..], &bytes[..], "lookup of offset {}", offset);
        }
    }
    let info = log.append(&common::batch(2, 10, 5_000), 9).unwrap();
    prop_assert_eq!(info.base_offset, end);
    let read = log.read(end, 1 << 20).unwrap();
    prop_assert_eq!(common::split_batches(&read).len(), 1);
    Ok(())
}

fn sizes() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(0usize..3_000, BATCHES)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// The active segment cut at a random byte: batches wholly before the cut survive.
    #[test]
    fn cut_active_segment(sizes in sizes(), segment_bytes in 4_000u64..40_000, cut in any::<proptest::sample::Index>()) {
        let crashed = crash(segment_bytes, &sizes);
        let (path, positions) = crashed.active_segment();
        let data_end = positions.last().map_or(0, |p| p.1);
        let cut_at = cut.index(data_end + 1);
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(cut_at as u64).unwrap();
        drop(file);

        let lost = positions.iter().filter(|p| p.1 > cut_at).count();
        let expected = &crashed.stored[..crashed.stored.len() - lost];
        check_survivors(&crashed.reopen(false), expected)?;
    }
}

proptest! {
    // Few flips land in the 8 bytes of a base offset, which only recovery's offset check
    // catches; more cases make those likely to be tried on every run.
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    /// Random bytes flipped in the last batches of the active segment (half of the flips in
    /// batch headers, some in the zeros just past the end): batches wholly before the first
    /// flipped byte survive.
    #[test]
    fn flip_bytes_in_active_segment_tail(
        sizes in sizes(),
        segment_bytes in 4_000u64..40_000,
        flips in proptest::collection::vec(
            (any::<proptest::sample::Index>(), any::<proptest::sample::Index>(), any::<bool>(), 1u8..=255),
            1..4,
        ),
    ) {
        let crashed = crash(segment_bytes, &sizes);
        let (path, positions) = crashed.active_segment();
        let data_end = positions.last().map_or(0, |p| p.1);
        let mut bytes = std::fs::read(&path).unwrap();
        // The last five batches and the zeros after them, as (start, end) ranges.
        let mut targets: Vec<(usize, usize)> =
            positions[positions.len().saturating_sub(5)..].to_vec();
        targets.push((data_end, (data_end + 64).min(bytes.len())));
        let mut first_flip = usize::MAX;
        for (which, within, in_header, mask) in flips {
            let (start, end) = targets[which.index(targets.len())];
            if start == end {
                continue;
            }
            let span = if in_header { (end - start).min(batch::HEADER_LEN) } else { end - start };
            let at = start + within.index(span);
            // The partition leader epoch (bytes 12..16 of a batch) lies outside the CRC, as in
            // Kafka; recovery bounds it only by its order, and the leader-epoch checkpoint is
            // checked against the last batch only, so flips there are not judged here.
            if positions.iter().any(|p| (p.0 + 12..p.0 + 16).contains(&at)) {
                continue;
            }
            bytes[at] ^= mask;
            first_flip = first_flip.min(at);
        }
        std::fs::write(&path, &bytes).unwrap();

        let lost = positions.iter().filter(|p| p.1 > first_flip).count();
        let expected = &crashed.stored[..crashed.stored.len() - lost];
        check_survivors(&crashed.reopen(false), expected)?;
    }
}

/// Damage in a sealed segment that was never flushed: the log is cut there and every later
/// segment is removed.
#[test]
fn damage_in_an_unflushed_sealed_segment_removes_later_segments() {
    // Five batches a segment.
    let batches = (0..BATCHES).map(|i| (common::batch(1, 700, i as i64), 0));
    let stopped = Stopped::write(4_096, batches, false);
    let logs = log_files(stopped.dir.path());
    assert!(
        logs.len() >= 4,
        "the test needs several segments, got {}",
        logs.len()
    );
    let victim = &logs[1];
    let mut bytes = std::fs::read(victim).unwrap();
    let first_batch_len = batch::BatchHeader::parse(&bytes).unwrap().size();
    bytes[first_batch_len + 70] ^= 0xff; // inside the second batch's records
    std::fs::write(victim, &bytes).unwrap();

    let log = stopped.reopen(false);
    let first_segment_batches = {
        let first = std::fs::read(&logs[0]).unwrap();
        batch::batches(&first).filter(Result::is_ok).count()
    };
    let expected = &stopped.stored[..first_segment_batches + 1];
    assert_eq!(common::read_all(&log), expected);
    assert_eq!(log.segment_count(), 2);
    for removed in &logs[2..] {
        assert!(!removed.exists(), "{} should be removed", removed.display());
    }
}

/// A clean close trims the files; reopening trusts them and skips recovery, and a log
/// reopened after a flush trusts what was flushed.
#[test]
fn clean_and_flushed_reopen_keep_everything() {
    let (_, clock) = common::clock();
    let config = common::small_config(8_192);
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path(), config.clone(), &clock);
    for i in 0..30 {
        log.append(&common::batch(3, 300, i), 0).unwrap();
    }
    let stored = common::read_all(&log);
    log.flush().unwrap();
    assert_eq!(log.recovery_point(), log.log_end_offset());
    let checkpoint = log.checkpoint();
    log.close().unwrap();
    let active = last_log_file(dir.path());
    let active_len = std::fs::metadata(&active).unwrap().len();
    let data: u64 = log_bytes_in(&active);
    assert_eq!(
        active_len, data,
        "close trims the active segment to its data"
    );
    drop(log);

    for clean_shutdown in [true, false] {
        let state = OpenState {
            clean_shutdown,
            checkpoint: Some(checkpoint),
        };
        let log = Log::open(dir.path(), config.clone(), Arc::clone(&clock), state).unwrap();
        assert_eq!(common::read_all(&log), stored);
        log.close().unwrap();
    }
}

fn log_bytes_in(path: &Path) -> u64 {
    let bytes = std::fs::read(path).unwrap();
    batch::batches(&bytes)
        .map(|b| b.unwrap().1.size() as u64)
        .sum()
}

/// Index files deleted or damaged while stopped are rebuilt from the log.
#[test]
fn damaged_indexes_are_rebuilt() {
    let batches = (0..40).map(|i| (common::batch(2, 250, i), 0));
    let stopped = Stopped::write(8_192, batches, true);
    let dir = &stopped.dir;
    let mut indexes: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "index" || e == "timeindex")
        })
        .collect();
    indexes.sort();
    std::fs::remove_file(&indexes[0]).unwrap();
    std::fs::write(&indexes[1], [0xffu8; 20]).unwrap();
    std::fs::write(&indexes[3], [0u8; 24]).unwrap();

    let log = stopped.reopen(true);
    assert_eq!(common::read_all(&log), stopped.stored);
    for (base, last, bytes) in &stopped.stored {
        for offset in *base..=*last {
            assert_eq!(&log.read(offset, 1).unwrap()[..], &bytes[..]);
        }
    }
}

/// Damage in data that was flushed (so is trusted at start) never stops the log from opening:
/// an index whose last entry points into a batch is rebuilt, and a damaged last batch of a
/// cleanly closed log is found and cut off.
#[test]
fn damage_in_flushed_data_is_recovered_not_fatal() {
    let batches = (0..30).map(|i| (common::batch(2, 400, i), 0));
    let stopped = Stopped::write(8_192, batches, true);
    let (dir, stored) = (&stopped.dir, &stopped.stored);

    let first_index = dir.path().join("00000000000000000000.index");
    let entries = std::fs::read(&first_index).unwrap();
    assert!(entries.len() >= 16, "the first segment has index entries");
    let mut damaged = entries.clone();
    let last = damaged.len() - 1;
    damaged[last] = damaged[last].wrapping_add(3); // the last entry's position, 3 bytes off
    std::fs::write(&first_index, &damaged).unwrap();

    let active = last_log_file(dir.path());
    let mut bytes = std::fs::read(&active).unwrap();
    let positions: Vec<usize> = batch::batches(&bytes).map(|b| b.unwrap().0).collect();
    let last_batch = *positions.last().unwrap();
    bytes[last_batch + 9] ^= 0x40; // the last batch's length
    std::fs::write(&active, &bytes).unwrap();

    let log = stopped.reopen(true);
    assert_eq!(common::read_all(&log), stored[..stored.len() - 1]);
    for (base, _, bytes) in &stored[..stored.len() - 1] {
        assert_eq!(&log.read(*base, 1).unwrap()[..], &bytes[..]);
    }
    assert_eq!(
        std::fs::read(&first_index).unwrap(),
        entries,
        "the index is rebuilt as it was"
    );
}

/// A log that was never closed but is opened as if it had been (its files untrimmed, its
/// active segment still preallocated) opens with all its batches and takes appends.
#[test]
fn an_untrimmed_log_opened_as_clean_keeps_its_batches() {
    let batches = (0..20).map(|i| (common::batch(2, 700, i), 0));
    let stopped = Stopped::write(64 * 1024, batches, false);

    let log = stopped.reopen(true);
    assert_eq!(common::read_all(&log), stopped.stored);
    let info = log.append(&common::batch(1, 10, 0), 0).unwrap();
    assert_eq!(info.base_offset, stopped.stored.last().unwrap().1 + 1);
}
