//! Loading producer state from logs and snapshot files, and writing snapshots.

use std::sync::Arc;

use bytes::Bytes;
use weir_proto::batch::{self, EncodeOptions, Record};

use super::*;
use crate::clock::{Clock, ManualClock};
use crate::config::LogConfig;
use crate::partition::producer_state::BatchMetadata;
use crate::storage::OpenState;

const DAY_MS: i64 = 86_400_000;

/// A batch of `count` records of producer `producer_id` (epoch 0) from `sequence`, at
/// `timestamp`.
fn batch(producer_id: i64, sequence: i32, count: usize, timestamp: i64) -> Bytes {
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            key: None,
            value: Some(Bytes::from(vec![b'v'; 200])),
            headers: Vec::new(),
            timestamp,
            offset: i as i64,
        })
        .collect();
    let options = EncodeOptions {
        producer_id,
        producer_epoch: 0,
        base_sequence: sequence,
        ..EncodeOptions::default()
    };
    batch::encode(&records, &options).unwrap()
}

fn open(dir: &Path) -> Log {
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(1_000));
    let config = LogConfig {
        segment_bytes: 4096,
        segment_index_bytes: 4096,
        ..LogConfig::default()
    };
    Log::open(dir, config, clock, OpenState::default()).unwrap()
}

/// Appends batches of 2 records for producers 1 and 2 in turn, `rounds` times, and returns
/// the state their appends give.
fn fill(log: &Log, rounds: i32, state: &mut ProducerStates) {
    for round in 0..rounds {
        for producer_id in [1, 2] {
            let bytes = batch(producer_id, round * 2, 2, 5_000 + i64::from(round));
            let info = log.append(&bytes, 0).unwrap();
            let header = batch::BatchHeader::parse(&bytes).unwrap();
            state.record_batch(&header, info.base_offset);
        }
    }
}

fn snapshots(dir: &Path) -> Vec<i64> {
    list_snapshots(dir).unwrap()
}

#[test]
fn without_a_snapshot_the_whole_log_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let mut expected = ProducerStates::default();
    fill(&log, 10, &mut expected);
    log.append(&batch(-1, -1, 3, 5_000), 0).unwrap();

    let (manager, report) = ProducerStateManager::load(&log, 6_000, DAY_MS).unwrap();
    assert_eq!(
        report,
        LoadReport {
            snapshot_offset: None,
            batches_scanned: 21,
            producers: 2,
            expired: 0,
        }
    );
    assert_eq!(*manager.lock(), expected);
    assert_eq!(
        manager.lock().get(2).unwrap().batches.back(),
        Some(&BatchMetadata {
            first_sequence: 18,
            last_sequence: 19,
            first_offset: 38,
            last_offset: 39,
            max_timestamp: 5_009,
        })
    );
}

#[test]
fn a_snapshot_after_a_roll_bounds_what_is_read_and_the_newest_two_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let (manager, _) = ProducerStateManager::load(&log, 6_000, DAY_MS).unwrap();
    assert_eq!(
        manager.snapshot(&log, SnapshotWhen::Moved).unwrap(),
        None,
        "empty log"
    );

    // Appends go through the manager's state, as the partition's do.
    let append = |rounds: std::ops::Range<i32>| {
        for round in rounds {
            let bytes = batch(1, round * 2, 2, 5_000);
            let mut state = manager.lock();
            let info = log.append(&bytes, 0).unwrap();
            state.record_batch(
                &batch::BatchHeader::parse(&bytes).unwrap(),
                info.base_offset,
            );
        }
    };
    append(0..2);
    assert_eq!(
        manager.snapshot(&log, SnapshotWhen::AfterRoll).unwrap(),
        None,
        "no segment rolled yet"
    );
    append(2..12);
    assert!(log.segment_count() > 1);
    assert_eq!(
        manager.snapshot(&log, SnapshotWhen::AfterRoll).unwrap(),
        Some(24)
    );
    assert_eq!(
        manager.snapshot(&log, SnapshotWhen::Moved).unwrap(),
        None,
        "not moved"
    );
    append(12..13);
    assert_eq!(
        manager.snapshot(&log, SnapshotWhen::AfterRoll).unwrap(),
        None
    );
    assert_eq!(
        manager.snapshot(&log, SnapshotWhen::Moved).unwrap(),
        Some(26)
    );
    append(13..15);
    assert_eq!(
        manager.snapshot(&log, SnapshotWhen::Moved).unwrap(),
        Some(30)
    );
    assert_eq!(snapshots(dir.path()), [26, 30]);
    append(15..17);
    let live = manager.lock().clone();

    let (loaded, report) = ProducerStateManager::load(&log, 6_000, DAY_MS).unwrap();
    assert_eq!(
        report,
        LoadReport {
            snapshot_offset: Some(30),
            batches_scanned: 2,
            producers: 1,
            expired: 0,
        }
    );
    assert_eq!(*loaded.lock(), live);
}

#[test]
fn snapshots_beyond_the_log_end_or_damaged_are_deleted_and_older_ones_used() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let mut state = ProducerStates::default();
    fill(&log, 3, &mut state);
    let (manager, _) = ProducerStateManager::load(&log, 6_000, DAY_MS).unwrap();
    assert_eq!(
        manager.snapshot(&log, SnapshotWhen::Moved).unwrap(),
        Some(12)
    );
    let mut more = ProducerStates::default();
    fill(&log, 2, &mut more);
    // A damaged snapshot, and one from a longer log that lost its tail.
    write_checkpoint(&snapshot_path(dir.path(), 20), SNAPSHOT_VERSION, b"garbage").unwrap();
    write_checkpoint(
        &snapshot_path(dir.path(), 99),
        SNAPSHOT_VERSION,
        &state.encode(),
    )
    .unwrap();
    std::fs::write(dir.path().join("00000000000000000020.snapshot.tmp"), b"x").unwrap();

    let (loaded, report) = ProducerStateManager::load(&log, 6_000, DAY_MS).unwrap();
    assert_eq!(
        report.snapshot_offset,
        Some(12),
        "99 is past the end, 20 does not decode"
    );
    assert_eq!(report.batches_scanned, 4);
    assert_eq!(snapshots(dir.path()), [12]);
    assert!(
        !dir.path()
            .join("00000000000000000020.snapshot.tmp")
            .exists()
    );
    // Producer 1's last batch is the second fill's last: sequence 2 and 3 of round 1.
    assert_eq!(loaded.lock().get(1).unwrap().last_sequence(), 3);
    assert_eq!(loaded.lock().get(1).unwrap().batches.len(), 5);
}

#[test]
fn producers_expired_by_the_time_of_loading_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.append(&batch(1, 0, 1, 1_000), 0).unwrap();
    log.append(&batch(2, 0, 1, 2_000), 0).unwrap();
    let (manager, report) = ProducerStateManager::load(&log, 1_000 + DAY_MS, DAY_MS).unwrap();
    assert_eq!((report.producers, report.expired), (1, 1));
    assert!(manager.lock().get(1).is_none());
    assert_eq!(manager.remove_expired(2_000 + DAY_MS, DAY_MS), 1);
    assert!(manager.lock().is_empty());
}
