//! Readers running while one writer appends, rolls segments and applies retention: every read
//! returns whole, valid batches with the offsets asked for, never a partial one.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use weir_broker::config::LogConfig;
use weir_broker::storage::Error;
use weir_proto::batch;

const APPENDS: usize = 3_000;
const READERS: usize = 3;

#[test]
fn readers_never_see_a_partial_batch() {
    let (_, clock) = common::clock();
    let config = LogConfig {
        retention_bytes: Some(256 * 1024),
        ..common::small_config(32 * 1024)
    };
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(common::open(dir.path(), config, &clock));
    let done = Arc::new(AtomicBool::new(false));

    let readers: Vec<_> = (0..READERS)
        .map(|seed| {
            let log = Arc::clone(&log);
            let done = Arc::clone(&done);
            std::thread::spawn(move || read_until_done(&log, &done, seed as u64))
        })
        .collect();

    for i in 0..APPENDS {
        let batch = common::batch(1 + i % 5, (i * 37) % 2_000, i as i64);
        log.append(&batch, 0).unwrap();
        if i % 100 == 99 {
            log.delete_expired_segments().unwrap();
        }
    }
    done.store(true, Ordering::Release);
    let reads: usize = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(reads > 0, "the readers read nothing");
}

/// Reads at pseudo-random offsets until `done`; returns how many reads returned batches.
fn read_until_done(log: &weir_broker::storage::Log, done: &AtomicBool, seed: u64) -> usize {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut reads = 0;
    while !done.load(Ordering::Acquire) {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let start = log.log_start_offset();
        let end = log.log_end_offset();
        let offset = start + (state >> 33) as i64 % (end - start + 1);
        let max_bytes = (state >> 20) as usize % 40_000;
        let bytes = match log.read(offset, max_bytes) {
            Ok(bytes) => bytes,
            // Retention moved the start past the offset after it was chosen.
            Err(Error::OffsetOutOfRange {
                log_start_offset, ..
            }) if log_start_offset > offset => {
                continue;
            }
            Err(e) => panic!("read at {offset} failed: {e}"),
        };
        let mut expected_base = None;
        for item in batch::batches(&bytes) {
            let (position, header) = item.unwrap_or_else(|e| panic!("partial batch: {e}"));
            batch::validate(&bytes[position..]).expect("a whole, valid batch");
            match expected_base {
                None => assert!(header.base_offset <= offset && offset <= header.last_offset()),
                Some(next) => assert_eq!(header.base_offset, next, "offsets continue"),
            }
            expected_base = Some(header.next_offset());
        }
        reads += usize::from(expected_base.is_some());
    }
    reads
}
