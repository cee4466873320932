//! The accumulator's decisions, checked without a broker or a clock.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use weir_proto::batch::{BatchHeader, Compression, Record};

use super::{Accumulator, Settings, backoff, sequence_after};
use crate::TopicPartition;
use crate::error::Error;

const LINGER: Duration = Duration::from_millis(5);
const TIMEOUT: Duration = Duration::from_secs(120);
const BACKOFF: Duration = Duration::from_millis(100);

fn settings(batch_size: usize, idempotence: bool) -> Settings {
    Settings {
        batch_size,
        linger: LINGER,
        delivery_timeout: TIMEOUT,
        compression: Compression::None,
        idempotence,
        retry_backoff: BACKOFF,
    }
}

fn tp(partition: i32) -> TopicPartition {
    TopicPartition::new("t", partition)
}

/// Appends `count` records of 10 bytes (estimated) to `tp`, waiters numbered from `first`.
fn append(acc: &mut Accumulator<u32>, tp: &TopicPartition, first: u32, count: u32, now: Instant) {
    for waiter in first..first + count {
        let record = Record {
            value: Some(Bytes::from(format!("v{waiter}"))),
            timestamp: 1_000 + i64::from(waiter),
            ..Record::default()
        };
        acc.append(tp.clone(), record, 10, waiter, now);
    }
}

/// The (partition, producer id, base sequence, record count) of each batch drained at `now`.
fn drain(acc: &mut Accumulator<u32>, now: Instant) -> Vec<(i32, i64, i32, i32)> {
    let drained = acc.drain(now);
    assert!(drained.expired.is_empty());
    assert!(drained.unencodable.is_empty());
    drained
        .ready
        .iter()
        .map(|out| {
            let header = BatchHeader::parse(&out.bytes).unwrap();
            (
                out.tp.partition,
                header.producer_id,
                header.base_sequence,
                header.record_count,
            )
        })
        .collect()
}

fn retriable() -> Error {
    Error::Timeout {
        what: "a test".to_string(),
        after: Duration::from_secs(1),
    }
}

#[test]
fn sequences_are_contiguous_and_a_retry_resends_the_same_bytes() {
    let now = Instant::now();
    let mut acc = Accumulator::new(settings(1 << 20, true));
    append(&mut acc, &tp(0), 0, 3, now);
    assert!(acc.needs_producer_id());
    assert_eq!(drain(&mut acc, now + LINGER), vec![]);
    acc.set_producer_id(7, 0);
    let first = acc.drain(now + LINGER).ready;
    assert_eq!(first.len(), 1);
    let header = BatchHeader::parse(&first[0].bytes).unwrap();
    assert_eq!((header.producer_id, header.base_sequence), (7, 0));

    // Records sent meanwhile wait behind the batch in flight.
    append(&mut acc, &tp(0), 3, 2, now);
    assert_eq!(drain(&mut acc, now + LINGER * 2), vec![]);

    let backoff = BACKOFF;
    assert!(acc.retry(&tp(0), retriable(), now).is_none());
    assert_eq!(drain(&mut acc, now + backoff / 2), vec![]);
    let again = acc.drain(now + backoff).ready;
    assert_eq!(again.len(), 1);
    assert_eq!(
        again[0].bytes, first[0].bytes,
        "a retry sends the same bytes"
    );

    let done = acc.complete(&tp(0));
    assert_eq!(done.waiters, vec![0, 1, 2]);
    assert_eq!(done.timestamps, vec![1000, 1001, 1002]);
    assert_eq!(drain(&mut acc, now + backoff), vec![(0, 7, 3, 2)]);
    assert_eq!(acc.complete(&tp(0)).waiters, vec![3, 4]);
    assert!(acc.is_empty());
}

#[test]
fn a_failed_numbered_batch_starts_a_new_producer_id() {
    let now = Instant::now();
    let mut acc = Accumulator::new(settings(1 << 20, true));
    acc.set_producer_id(7, 0);
    append(&mut acc, &tp(0), 0, 2, now);
    append(&mut acc, &tp(1), 2, 2, now);
    assert_eq!(
        drain(&mut acc, now + LINGER),
        vec![(0, 7, 0, 2), (1, 7, 0, 2)]
    );
    acc.complete(&tp(1));
    append(&mut acc, &tp(0), 4, 1, now);
    append(&mut acc, &tp(1), 5, 1, now);
    // Partition 0's batch fails for good: whether the broker has it is unknown.
    assert_eq!(acc.fail(&tp(0)).waiters, vec![0, 1]);
    assert!(acc.needs_producer_id());
    assert_eq!(
        drain(&mut acc, now + LINGER),
        vec![],
        "nothing new until a new id"
    );
    acc.set_producer_id(8, 0);
    assert_eq!(
        drain(&mut acc, now + LINGER),
        vec![(0, 8, 0, 1), (1, 8, 0, 1)]
    );
}

#[test]
fn a_retried_batch_fails_at_its_delivery_timeout_and_renumbers() {
    let now = Instant::now();
    let mut acc = Accumulator::new(settings(1 << 20, true));
    acc.set_producer_id(7, 0);
    append(&mut acc, &tp(0), 0, 1, now);
    assert_eq!(drain(&mut acc, now + LINGER).len(), 1);
    // The backoff ends after the deadline: the batch waits for the deadline, then expires.
    let late = now + TIMEOUT - Duration::from_millis(10);
    assert!(acc.retry(&tp(0), retriable(), late).is_none());
    assert_eq!(acc.next_wakeup(late), Some(now + TIMEOUT));
    assert!(acc.drain(late).expired.is_empty());
    let drained = acc.drain(now + TIMEOUT);
    assert!(drained.ready.is_empty());
    let (_, expired) = drained.expired.into_iter().next().expect("expired");
    assert!(expired.last_error.is_some());
    assert_eq!(expired.attempts, 1);
    // Its sequences may or may not be in the log: the next batch needs a new producer id.
    append(&mut acc, &tp(0), 1, 1, now + TIMEOUT);
    assert!(acc.needs_producer_id());

    // A failure reported after the deadline fails at once.
    acc.set_producer_id(8, 0);
    let later = now + TIMEOUT + LINGER;
    assert_eq!(drain(&mut acc, later), vec![(0, 8, 0, 1)]);
    assert!(acc.retry(&tp(0), retriable(), later + TIMEOUT).is_some());
}

#[test]
fn batches_wait_for_linger_or_a_full_batch() {
    let now = Instant::now();
    // Room for 2 records of 10 bytes next to the 61-byte header.
    let mut acc = Accumulator::new(settings(81, false));
    append(&mut acc, &tp(0), 0, 1, now);
    assert_eq!(drain(&mut acc, now), vec![]);
    assert_eq!(acc.next_wakeup(now), Some(now + LINGER));
    append(&mut acc, &tp(0), 1, 4, now);
    // Full batches go at once, one at a time per partition, without producer ids.
    assert_eq!(drain(&mut acc, now), vec![(0, -1, -1, 2)]);
    assert_eq!(drain(&mut acc, now), vec![]);
    assert_eq!(acc.complete(&tp(0)).waiters, vec![0, 1]);
    assert_eq!(drain(&mut acc, now), vec![(0, -1, -1, 2)]);
    assert_eq!(acc.complete(&tp(0)).waiters, vec![2, 3]);
    // The last one is alone, so it waits for linger.
    assert_eq!(drain(&mut acc, now), vec![]);
    assert_eq!(drain(&mut acc, now + LINGER), vec![(0, -1, -1, 1)]);
}

#[test]
fn flush_sends_without_waiting_for_linger() {
    let now = Instant::now();
    let mut acc = Accumulator::new(settings(1 << 20, false));
    append(&mut acc, &tp(0), 0, 1, now);
    let mark = acc.flush();
    append(&mut acc, &tp(1), 1, 1, now);
    assert!(acc.pending_below(mark));
    assert_eq!(drain(&mut acc, now), vec![(0, -1, -1, 1)]);
    acc.complete(&tp(0));
    assert!(
        !acc.pending_below(mark),
        "the later batch does not hold up the flush"
    );
    assert!(!acc.is_empty());
}

#[test]
fn batches_expire_after_the_delivery_timeout() {
    let now = Instant::now();
    let mut acc = Accumulator::new(settings(1 << 20, true));
    append(&mut acc, &tp(0), 0, 2, now);
    let drained = acc.drain(now + TIMEOUT);
    assert!(drained.ready.is_empty());
    assert_eq!(drained.expired.len(), 1);
    assert_eq!(drained.expired[0].1.waiters, vec![0, 1]);
    assert!(acc.is_empty());
}

#[test]
fn sticky_partition_changes_when_its_batch_is_sent() {
    let now = Instant::now();
    let mut acc = Accumulator::new(settings(1 << 20, false));
    let candidates = [0, 1, 2];
    let first = acc.sticky_partition("t", &candidates, 10);
    append(&mut acc, &tp(first), 0, 1, now);
    for _ in 0..10 {
        assert_eq!(acc.sticky_partition("t", &candidates, 10), first);
    }
    assert_eq!(drain(&mut acc, now + LINGER).len(), 1);
    let second = acc.sticky_partition("t", &candidates, 10);
    assert_ne!(second, first);
    // A record too large for the open batch moves on too.
    append(&mut acc, &tp(second), 1, 1, now);
    let third = acc.sticky_partition("t", &candidates, 1 << 20);
    assert_ne!(third, second);
}

#[test]
fn sequences_wrap_like_kafkas() {
    assert_eq!(sequence_after(0, 5), 5);
    assert_eq!(sequence_after(i32::MAX, 1), 0);
    assert_eq!(sequence_after(i32::MAX - 1, 3), 1);
}

#[test]
fn backoff_doubles_up_to_a_second() {
    let first = Duration::from_millis(100);
    assert_eq!(backoff(first, 0), first);
    assert_eq!(backoff(first, 1), first * 2);
    assert_eq!(backoff(first, 4), Duration::from_secs(1));
    assert_eq!(backoff(first, 40), Duration::from_secs(1));
    assert_eq!(backoff(Duration::from_secs(3), 2), Duration::from_secs(3));
}
