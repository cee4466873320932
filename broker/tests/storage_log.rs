//! The log's behaviour case by case: reads, validation, rolling, retention, timestamps,
//! replicated appends and flushing.

mod common;

use std::sync::Arc;

use weir_broker::config::LogConfig;
use weir_broker::storage::{Error, Log, OpenState, TimestampOffset};
use weir_proto::batch::{self, BatchError, Compression};

fn new_log(config: LogConfig) -> (tempfile::TempDir, Log, Arc<weir_broker::clock::ManualClock>) {
    let (manual, clock) = common::clock();
    let dir = tempfile::tempdir().unwrap();
    let log = common::open(dir.path(), config, &clock);
    (dir, log, manual)
}

#[test]
fn reads_return_whole_batches_and_answer_out_of_range() {
    let (_dir, log, _) = new_log(common::small_config(64 * 1024));
    let first = log.append(&common::batch(5, 10, 0), 3).unwrap();
    assert_eq!((first.base_offset, first.last_offset), (0, 4));
    let second = log.append(&common::batch(5, 10, 0), 3).unwrap();
    assert_eq!((second.base_offset, second.last_offset), (5, 9));

    // An offset inside a batch returns that whole batch, offsets and epoch stamped in.
    let read = log.read(7, 1).unwrap();
    let batches = common::split_batches(&read);
    assert_eq!(
        batches.iter().map(|b| (b.0, b.1)).collect::<Vec<_>>(),
        vec![(5, 9)]
    );
    assert_eq!(batch::validate(&read).unwrap().partition_leader_epoch, 3);
    // max_bytes bounds what follows the first batch, never the first batch itself.
    assert_eq!(common::split_batches(&log.read(0, 1).unwrap()).len(), 1);
    assert_eq!(
        common::split_batches(&log.read(0, 1 << 20).unwrap()).len(),
        2
    );
    // The end gives nothing; past it is out of range.
    assert!(log.read(10, 1 << 20).unwrap().is_empty());
    let error = log.read(11, 100).unwrap_err();
    assert!(matches!(
        error,
        Error::OffsetOutOfRange {
            offset: 11,
            log_end_offset: 10,
            ..
        }
    ));
    assert!(
        error.to_string().contains("holds offsets 0 to 10"),
        "{error}"
    );
    assert!(matches!(
        log.read(-1, 100),
        Err(Error::OffsetOutOfRange { .. })
    ));
    // read_below stops at an upper offset, such as a high watermark.
    assert!(log.read_below(0, 1 << 20, 0).unwrap().is_empty());
    assert_eq!(
        common::split_batches(&log.read_below(0, 1 << 20, 5).unwrap()).len(),
        1
    );
}

#[test]
fn invalid_batches_are_refused_and_nothing_is_written() {
    let (_dir, log, _) = new_log(common::small_config(64 * 1024));
    let good = common::batch(2, 10, 0);
    let mut bad_crc = good.to_vec();
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 1;
    let mut two = good.to_vec();
    two.extend_from_slice(&bad_crc);

    let error = log.append(&two, 0).unwrap_err();
    match &error {
        Error::InvalidBatch {
            position,
            source: BatchError::CrcMismatch { .. },
        } => {
            assert_eq!(*position, good.len())
        }
        other => panic!("expected a CRC error, got {other:?}"),
    }
    assert!(matches!(
        log.append(&good[..30], 0),
        Err(Error::InvalidBatch { position: 0, .. })
    ));
    assert!(matches!(log.append(&[], 0), Err(Error::EmptyAppend)));
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.size_bytes(), 0);
}

#[test]
fn every_compression_codec_is_stored_and_found_by_timestamp() {
    let (_dir, log, _) = new_log(common::small_config(64 * 1024));
    for (i, compression) in Compression::ALL.into_iter().enumerate() {
        let timestamp = 1_000 * (i as i64 + 1);
        log.append(&common::batch_with(4, 100, timestamp, compression), 0)
            .unwrap();
    }
    let stored = common::read_all(&log);
    assert_eq!(stored.len(), Compression::ALL.len());
    // Record timestamps are 1000..1003, 2000..2003, ...; offsets 0..3, 4..7, ...
    let check = |timestamp, expected: Option<(i64, i64)>| {
        let found = log.offset_for_timestamp(timestamp).unwrap();
        let expected = expected.map(|(timestamp, offset)| TimestampOffset {
            timestamp,
            offset,
            leader_epoch: 0,
        });
        assert_eq!(found, expected, "timestamp {timestamp}");
    };
    check(0, Some((1_000, 0)));
    check(1_002, Some((1_002, 2)));
    check(2_001, Some((2_001, 5)));
    check(3_500, Some((4_000, 12)));
    check(5_003, Some((5_003, 19)));
    check(5_004, None);
}

#[test]
fn segments_roll_by_size_and_by_age() {
    let config = LogConfig {
        segment_ms: 60_000,
        ..common::small_config(4_096)
    };
    let (_dir, log, clock) = new_log(config);
    for _ in 0..10 {
        log.append(&common::batch(1, 1_000, 0), 0).unwrap();
    }
    let by_size = log.segment_count();
    assert!(
        by_size >= 3,
        "1 KiB batches in 4 KiB segments roll, got {by_size} segments"
    );

    // The age of the active segment counts from its creation.
    log.roll().unwrap();
    let before = log.segment_count();
    log.append(&common::batch(1, 10, 0), 0).unwrap();
    clock.advance_ms(59_999);
    log.append(&common::batch(1, 10, 0), 0).unwrap();
    assert_eq!(log.segment_count(), before);
    clock.advance_ms(1);
    log.append(&common::batch(1, 10, 0), 0).unwrap();
    assert_eq!(log.segment_count(), before + 1);

    // A batch larger than a segment gets a segment of its own size.
    log.append(&common::batch(1, 10_000, 0), 0).unwrap();
    assert_eq!(common::read_all(&log).len(), 14);
}

#[test]
fn retention_deletes_whole_old_segments_and_moves_the_start() {
    let (_dir, log, clock) = new_log(common::small_config(4_096));
    let now = 1_000_000;
    for i in 0..12 {
        // Three batches a segment; timestamps one second apart.
        log.append(&common::batch(1, 1_000, now - 12_000 + i * 1_000), 0)
            .unwrap();
    }
    let segments = log.segment_count();
    assert_eq!(segments, 4);

    let by_time = LogConfig {
        retention_ms: Some(6_500),
        ..common::small_config(4_096)
    };
    log.set_config(by_time).unwrap();
    clock.set_ms(now);
    // Segments whose newest record is older than 6.5 s: the first two (newest at -10 s, -7 s).
    assert_eq!(log.delete_expired_segments().unwrap(), 2);
    assert_eq!(log.log_start_offset(), 6);
    assert!(matches!(
        log.read(5, 100),
        Err(Error::OffsetOutOfRange { .. })
    ));
    assert_eq!(
        log.read(6, 1).unwrap().len(),
        common::read_all(&log)[0].2.len()
    );

    let by_size = LogConfig {
        retention_bytes: Some(3_000),
        ..common::small_config(4_096)
    };
    log.set_config(by_size).unwrap();
    assert_eq!(log.delete_expired_segments().unwrap(), 1);
    assert_eq!(log.log_start_offset(), 9);
    assert_eq!(log.delete_expired_segments().unwrap(), 0);

    // Everything expired: the active segment goes too and an empty one takes its place.
    let everything = LogConfig {
        retention_ms: Some(0),
        ..common::small_config(4_096)
    };
    log.set_config(everything).unwrap();
    assert_eq!(log.delete_expired_segments().unwrap(), 1);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (12, 12));
    assert_eq!(log.segment_base_offsets(), vec![12]);
    assert_eq!(
        log.append(&common::batch(1, 10, now), 0)
            .unwrap()
            .base_offset,
        12
    );
}

#[test]
fn replicated_appends_keep_offsets_and_epochs() {
    let (_leader_dir, leader, _) = new_log(common::small_config(64 * 1024));
    leader.append(&common::batch(3, 10, 0), 4).unwrap();
    leader.append(&common::batch(2, 10, 0), 5).unwrap();
    let fetched = leader.read(0, 1 << 20).unwrap();

    let (_dir, follower, _) = new_log(common::small_config(64 * 1024));
    let info = follower.append_replicated(&fetched).unwrap();
    assert_eq!(
        (info.base_offset, info.last_offset, info.batch_count),
        (0, 4, 2)
    );
    assert_eq!(follower.read(0, 1 << 20).unwrap(), fetched);

    // Offsets must continue the log...
    let error = follower.append_replicated(&fetched).unwrap_err();
    assert!(matches!(
        error,
        Error::OffsetsNotIncreasing {
            base_offset: 0,
            log_end_offset: 5,
            ..
        }
    ));
    // ...and may jump ahead (a compacted leader); such a gap is flushed at once.
    let mut later = common::batch(1, 10, 0).to_vec();
    batch::set_base_offset(&mut later, 100);
    batch::set_partition_leader_epoch(&mut later, 5);
    follower.append_replicated(&later).unwrap();
    assert_eq!(follower.log_end_offset(), 101);
    assert_eq!(follower.recovery_point(), 101);
    assert_eq!(
        common::split_batches(&follower.read(50, 100).unwrap())[0].0,
        100
    );

    // A gap between the batches of one append is flushed at once too.
    let second = batch::BatchHeader::parse(&fetched).unwrap().size();
    let mut first_batch = fetched[..second].to_vec();
    batch::set_base_offset(&mut first_batch, 0);
    let mut both = first_batch.clone();
    let mut later = fetched[second..].to_vec();
    batch::set_base_offset(&mut later, 300);
    both.extend_from_slice(&later);
    let (_dir, follower, _) = new_log(common::small_config(64 * 1024));
    follower.append_replicated(&both).unwrap();
    assert_eq!(follower.log_end_offset(), 302);
    assert_eq!(
        follower.recovery_point(),
        302,
        "a gap inside the append is flushed"
    );
}

#[test]
fn flush_policies_move_the_recovery_point() {
    let every_write = LogConfig {
        flush_messages: Some(1),
        ..common::small_config(8_192)
    };
    let (_dir, log, _) = new_log(every_write);
    log.append(&common::batch(2, 10, 0), 0).unwrap();
    assert_eq!(log.recovery_point(), 2);

    let by_time = LogConfig {
        flush_ms: Some(1_000),
        ..common::small_config(8_192)
    };
    let (_dir, log, clock) = new_log(by_time);
    log.append(&common::batch(2, 10, 0), 0).unwrap();
    assert!(!log.flush_if_due().unwrap());
    clock.advance_ms(999);
    assert!(!log.flush_if_due().unwrap());
    clock.advance_ms(1);
    assert!(log.flush_if_due().unwrap());
    assert_eq!(log.recovery_point(), 2);
    assert!(!log.flush_if_due().unwrap(), "nothing left to flush");

    // Sealed segments are flushed on their own, moving the recovery point to the active one.
    let (_dir, log, _) = new_log(common::small_config(4_096));
    for _ in 0..5 {
        log.append(&common::batch(1, 1_000, 0), 0).unwrap();
    }
    log.flush_sealed().unwrap();
    assert_eq!(
        log.recovery_point(),
        *log.segment_base_offsets().last().unwrap()
    );
}

#[test]
fn truncation_removes_the_tail_and_appends_continue() {
    let (dir, log, _) = new_log(common::small_config(4_096));
    for _ in 0..10 {
        log.append(&common::batch(2, 900, 0), 0).unwrap();
    }
    let before = common::read_all(&log);
    // Offset 7 is inside the batch 6..7: that batch goes too.
    assert_eq!(log.truncate_to(7).unwrap(), 6);
    assert_eq!(common::read_all(&log), before[..3]);
    assert_eq!(
        log.append(&common::batch(1, 10, 0), 1).unwrap().base_offset,
        6
    );
    // Truncated bytes do not come back after a crash.
    let checkpoint = log.checkpoint();
    let after = common::read_all(&log);
    drop(log);
    let state = OpenState {
        clean_shutdown: false,
        checkpoint: Some(checkpoint),
    };
    let (_, clock) = common::clock();
    let log = Log::open(dir.path(), common::small_config(4_096), clock, state).unwrap();
    assert_eq!(common::read_all(&log), after);
    // Below the first segment: everything goes, and the log restarts there.
    assert_eq!(log.truncate_to(0).unwrap(), 0);
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.segment_count()
        ),
        (0, 0, 1)
    );
}

#[test]
fn a_closed_log_refuses_writes_and_still_reads() {
    let (_dir, log, _) = new_log(common::small_config(8_192));
    log.append(&common::batch(1, 10, 0), 0).unwrap();
    log.close().unwrap();
    assert!(matches!(
        log.append(&common::batch(1, 10, 0), 0),
        Err(Error::Closed { .. })
    ));
    assert_eq!(common::read_all(&log).len(), 1);
}

#[test]
fn bad_configuration_is_refused_with_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let (_, clock) = common::clock();
    let config = LogConfig {
        segment_index_bytes: 8,
        ..LogConfig::default()
    };
    let error = Log::open(dir.path(), config, clock, OpenState::default()).unwrap_err();
    assert!(
        error.to_string().contains("segment_index_bytes = 8"),
        "{error}"
    );
}
