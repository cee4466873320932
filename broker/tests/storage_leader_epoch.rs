//! The leader-epoch checkpoint and the log start offset across stops: epochs recorded as
//! batches are appended, cut with the log, rebuilt or completed from the batch headers when
//! the checkpoint file is missing, damaged, behind or wrong; DeleteRecords moving the log start.

mod common;

use std::path::Path;
use std::sync::Arc;

use weir_broker::clock::Clock;
use weir_broker::config::LogConfig;
use weir_broker::storage::{EpochEndOffset, Error, Log, OpenState, write_checkpoint};
use weir_proto::batch;

const CHECKPOINT: &str = "leader-epoch-checkpoint";

/// A log in a temporary directory, reopened as the tests say.
struct Fixture {
    dir: tempfile::TempDir,
    config: LogConfig,
    clock: Arc<dyn Clock>,
}

impl Fixture {
    fn new() -> Fixture {
        let (_, clock) = common::clock();
        Fixture {
            dir: tempfile::tempdir().unwrap(),
            config: common::small_config(4_096),
            clock,
        }
    }

    fn open(&self, state: OpenState) -> Log {
        Log::open(
            self.dir.path(),
            self.config.clone(),
            Arc::clone(&self.clock),
            state,
        )
        .unwrap()
    }

    /// Closes `log` cleanly and opens it again with its checkpoint.
    fn reopen(&self, log: Log) -> Log {
        let checkpoint = log.checkpoint();
        log.close().unwrap();
        drop(log);
        self.open(OpenState {
            clean_shutdown: true,
            checkpoint: Some(checkpoint),
        })
    }

    fn checkpoint_path(&self) -> std::path::PathBuf {
        self.dir.path().join(CHECKPOINT)
    }
}

/// Appends 3-record batches of ~700 bytes (five a segment) at each epoch of `epochs`.
fn append_epochs(log: &Log, epochs: &[i32]) {
    for (i, &epoch) in epochs.iter().enumerate() {
        log.append(&common::batch(3, 700, i as i64), epoch).unwrap();
    }
}

fn end(log: &Log, epoch: i32) -> (i32, i64) {
    let found = log.end_offset_for_epoch(epoch);
    (found.leader_epoch, found.end_offset)
}

fn segment_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "log")
        })
        .count()
}

#[test]
fn epochs_are_recorded_and_survive_reopening_whatever_became_of_the_file() {
    let fixture = Fixture::new();
    let log = fixture.open(OpenState::default());
    assert!(
        !fixture.checkpoint_path().exists(),
        "a new log has no epochs to write"
    );
    // Offsets 0-8 at epoch 0, 9-20 at epoch 2, 21-29 at epoch 5, over several segments.
    append_epochs(&log, &[0, 0, 0, 2, 2, 2, 2, 5, 5, 5]);
    assert!(log.segment_count() >= 2);
    let expected = vec![(0, 0), (2, 9), (5, 21)];
    assert_eq!(common::leader_epochs(&log), expected);
    assert_eq!(end(&log, 0), (0, 9));
    assert_eq!(
        end(&log, 1),
        (0, 9),
        "no records at epoch 1: the epoch before"
    );
    assert_eq!(end(&log, 4), (2, 21));
    assert_eq!(
        end(&log, 5),
        (5, 30),
        "the latest epoch ends at the log end"
    );
    assert_eq!(end(&log, 6), (-1, -1));
    assert_eq!(log.epoch_for_offset(20), Some(2));
    let log = fixture.reopen(log);
    assert_eq!(common::leader_epochs(&log), expected);
    let written = std::fs::read(fixture.checkpoint_path()).unwrap();
    assert!(
        written.ends_with(b"0\n3\n0 0\n2 9\n5 21\n"),
        "Kafka's text format inside the frame"
    );

    // Missing: rebuilt from the batch headers and written again.
    std::fs::remove_file(fixture.checkpoint_path()).unwrap();
    let log = fixture.reopen(log);
    assert_eq!(common::leader_epochs(&log), expected);
    assert_eq!(std::fs::read(fixture.checkpoint_path()).unwrap(), written);

    // Damaged (a flipped byte fails the frame's CRC): rebuilt.
    let mut damaged = written.clone();
    let last = damaged.len() - 2;
    damaged[last] ^= 0x01;
    std::fs::write(fixture.checkpoint_path(), &damaged).unwrap();
    let log = fixture.reopen(log);
    assert_eq!(common::leader_epochs(&log), expected);
    assert_eq!(std::fs::read(fixture.checkpoint_path()).unwrap(), written);

    // Well formed but contradicting the log (epoch 9 would own the last batch): rebuilt.
    write_checkpoint(&fixture.checkpoint_path(), 1, b"0\n2\n0 0\n9 12\n").unwrap();
    let log = fixture.reopen(log);
    assert_eq!(common::leader_epochs(&log), expected);

    // Not in Kafka's format at all: rebuilt.
    write_checkpoint(&fixture.checkpoint_path(), 1, b"epochs: many\n").unwrap();
    let log = fixture.reopen(log);
    assert_eq!(common::leader_epochs(&log), expected);
    log.close().unwrap();
}

#[test]
fn a_checkpoint_behind_the_log_is_completed_from_the_newer_segments() {
    let fixture = Fixture::new();
    let log = fixture.open(OpenState::default());
    append_epochs(&log, &[1, 1, 1, 1, 1, 1, 3, 3]);
    let behind = std::fs::read(fixture.checkpoint_path()).unwrap();
    append_epochs(&log, &[3, 3, 3, 4, 4, 7]);
    let expected = vec![(1, 0), (3, 18), (4, 33), (7, 39)];
    assert_eq!(common::leader_epochs(&log), expected);
    // As if the process died after writing the batches but before the checkpoint.
    let checkpoint = log.checkpoint();
    log.close().unwrap();
    drop(log);
    std::fs::write(fixture.checkpoint_path(), behind).unwrap();
    let log = fixture.open(OpenState {
        clean_shutdown: true,
        checkpoint: Some(checkpoint),
    });
    assert_eq!(common::leader_epochs(&log), expected);
    assert_eq!(end(&log, 3), (3, 33));
    log.close().unwrap();
}

#[test]
fn epochs_are_cut_with_the_log_and_never_go_back() {
    let fixture = Fixture::new();
    let log = fixture.open(OpenState::default());
    append_epochs(&log, &[0, 0, 2, 2, 4]);
    assert_eq!(common::leader_epochs(&log), [(0, 0), (2, 6), (4, 12)]);

    // A new leader records its epoch at the log end before its first append.
    log.assign_leader_epoch(6).unwrap();
    assert_eq!(
        common::leader_epochs(&log),
        [(0, 0), (2, 6), (4, 12), (6, 15)]
    );
    assert_eq!(end(&log, 4), (4, 15));
    assert_eq!(end(&log, 6), (6, 15));
    log.assign_leader_epoch(6).unwrap();
    assert_eq!(
        log.leader_epochs().len(),
        4,
        "the same epoch again changes nothing"
    );

    // Batches of an epoch older than the last written one are refused, before any write.
    let error = log.append(&common::batch(1, 10, 0), 3).unwrap_err();
    assert!(
        matches!(
            error,
            Error::LeaderEpochDecreased {
                epoch: 3,
                written_epoch: 4,
                ..
            }
        ),
        "{error}"
    );
    let mut replicated = common::batch(1, 10, 0).to_vec();
    batch::set_base_offset(&mut replicated, 15);
    batch::set_partition_leader_epoch(&mut replicated, 1);
    assert!(matches!(
        log.append_replicated(&replicated),
        Err(Error::LeaderEpochDecreased { .. })
    ));
    assert_eq!(log.log_end_offset(), 15);
    // A replicated batch of epoch 5 (after the last written, 4, before the recorded but
    // empty 6) replaces the empty epoch, as Kafka's cache does.
    batch::set_partition_leader_epoch(&mut replicated, 5);
    log.append_replicated(&replicated).unwrap();
    assert_eq!(
        common::leader_epochs(&log),
        [(0, 0), (2, 6), (4, 12), (5, 15)]
    );

    // Truncation removes the epochs starting at or after the new end, durably.
    assert_eq!(log.truncate_to(7).unwrap(), 6);
    assert_eq!(common::leader_epochs(&log), [(0, 0)]);
    assert_eq!(end(&log, 2), (-1, -1));
    assert_eq!(end(&log, 0), (0, 6));
    let log = fixture.reopen(log);
    assert_eq!(common::leader_epochs(&log), [(0, 0)]);

    // An epoch recorded at the log end but never written is forgotten at open, as in Kafka:
    // the leader records it again when it takes over.
    log.assign_leader_epoch(8).unwrap();
    let log = fixture.reopen(log);
    assert_eq!(common::leader_epochs(&log), [(0, 0)]);

    // Truncation below every segment empties the cache.
    log.truncate_to(0).unwrap();
    assert_eq!(log.leader_epochs(), []);
    assert_eq!(log.end_offset_for_epoch(0), EpochEndOffset::UNDEFINED);
    log.close().unwrap();
}

#[test]
fn delete_records_moves_the_log_start_and_removes_whole_segments_below_it() {
    let fixture = Fixture::new();
    let log = fixture.open(OpenState::default());
    append_epochs(&log, &[0, 0, 0, 0, 0, 0, 0, 3, 3, 3, 3, 3, 3, 3]);
    let end_offset = log.log_end_offset();
    let bases = log.segment_base_offsets();
    assert!(bases.len() >= 3, "several segments: {bases:?}");
    let segments_before = segment_files(fixture.dir.path());

    // Inside the second segment: the first goes, the second stays with the start inside it.
    let target = bases[1] + 1;
    assert_eq!(log.delete_records_before(target).unwrap(), target);
    assert_eq!(log.log_start_offset(), target);
    assert_eq!(log.segment_base_offsets(), &bases[1..]);
    assert_eq!(segment_files(fixture.dir.path()), segments_before - 1);
    assert!(matches!(
        log.read(target - 1, 1 << 20),
        Err(Error::OffsetOutOfRange { .. })
    ));
    assert!(log.read(target, 1 << 20).is_ok());
    assert_eq!(common::leader_epochs(&log)[0], (0, target));

    // Never back, and never past the end.
    assert_eq!(log.delete_records_before(2).unwrap(), target);
    assert!(matches!(
        log.delete_records_before(end_offset + 1),
        Err(Error::OffsetOutOfRange { .. })
    ));
    assert!(matches!(
        log.delete_records_before(-3),
        Err(Error::OffsetOutOfRange { .. })
    ));

    // The new start survives a stop, clean or not, through the owner's checkpoint.
    let checkpoint = log.checkpoint();
    assert_eq!(checkpoint.log_start_offset, target);
    drop(log);
    let log = fixture.open(OpenState {
        clean_shutdown: false,
        checkpoint: Some(checkpoint),
    });
    assert_eq!(log.log_start_offset(), target);
    assert_eq!(common::leader_epochs(&log)[0], (0, target));

    // Up to the end: every sealed segment goes; the log keeps its end and takes appends.
    assert_eq!(log.delete_records_before(end_offset).unwrap(), end_offset);
    assert_eq!(log.segment_count(), 1);
    assert!(log.read(end_offset, 1 << 20).unwrap().is_empty());
    assert_eq!(common::leader_epochs(&log), [(3, end_offset)]);
    let info = log.append(&common::batch(1, 10, 0), 3).unwrap();
    assert_eq!(info.base_offset, end_offset);
    let log = fixture.reopen(log);
    assert_eq!(log.log_start_offset(), end_offset);
    assert_eq!(common::leader_epochs(&log), [(3, end_offset)]);
    log.close().unwrap();
}
