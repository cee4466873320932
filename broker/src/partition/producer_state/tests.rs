//! The producer state fed batches and checked exactly.

use super::*;

const PID: i64 = 42;

/// The header of a batch of `count` records of producer `producer_id` at `epoch`, starting at
/// sequence `sequence`, stamped `timestamp`.
fn batch(producer_id: i64, epoch: i16, sequence: i32, count: i32, timestamp: i64) -> BatchHeader {
    BatchHeader {
        base_offset: 0,
        batch_length: 100,
        partition_leader_epoch: -1,
        magic: 2,
        crc: 0,
        attributes: 0,
        last_offset_delta: count - 1,
        first_timestamp: timestamp,
        max_timestamp: timestamp,
        producer_id,
        producer_epoch: epoch,
        base_sequence: sequence,
        record_count: count,
    }
}

fn meta(sequences: (i32, i32), offsets: (i64, i64), max_timestamp: i64) -> BatchMetadata {
    BatchMetadata {
        first_sequence: sequences.0,
        last_sequence: sequences.1,
        first_offset: offsets.0,
        last_offset: offsets.1,
        max_timestamp,
    }
}

/// Checks `headers` as one request and, if new, records them at offsets from `*end`, as a
/// leader's append would.
fn produce(
    state: &mut ProducerStates,
    end: &mut i64,
    headers: &[BatchHeader],
) -> Result<Checked, ProducerStateError> {
    let checked = state.check(headers)?;
    if checked == Checked::Append {
        for header in headers {
            state.record_batch(header, *end);
            *end += i64::from(header.last_offset_delta) + 1;
        }
    }
    Ok(checked)
}

#[test]
fn a_retry_gets_its_original_offsets_and_sequences_must_follow_on() {
    let mut state = ProducerStates::default();
    let mut end = 100;
    assert_eq!(
        produce(&mut state, &mut end, &[batch(PID, 0, 0, 5, 10)]),
        Ok(Checked::Append)
    );
    assert_eq!(
        produce(&mut state, &mut end, &[batch(PID, 0, 5, 3, 11)]),
        Ok(Checked::Append)
    );
    assert_eq!(end, 108);
    let entry = state.get(PID).unwrap();
    assert_eq!(entry.epoch, 0);
    assert_eq!(
        entry.batches,
        [meta((0, 4), (100, 104), 10), meta((5, 7), (105, 107), 11)]
    );

    // Either batch sent again is a duplicate, answered with where it is.
    for (sequence, count, first, last, timestamp) in [(0, 5, 100, 104, 10), (5, 3, 105, 107, 11)] {
        assert_eq!(
            produce(&mut state, &mut end, &[batch(PID, 0, sequence, count, 99)]),
            Ok(Checked::Duplicate {
                first_offset: first,
                last_offset: last,
                max_timestamp: timestamp,
            })
        );
    }
    assert_eq!(end, 108, "nothing appended");

    // A gap, or an overlap that is no retry, is out of order.
    assert_eq!(
        produce(&mut state, &mut end, &[batch(PID, 0, 9, 1, 12)]),
        Err(ProducerStateError::OutOfOrderSequence {
            producer_id: PID,
            epoch: 0,
            given: 9,
            expected: 8,
        })
    );
    assert_eq!(
        produce(&mut state, &mut end, &[batch(PID, 0, 5, 2, 12)]),
        Err(ProducerStateError::OutOfOrderSequence {
            producer_id: PID,
            epoch: 0,
            given: 5,
            expected: 8,
        })
    );
    assert_eq!(end, 108);
    assert_eq!(
        state.get(PID).unwrap().batches.len(),
        2,
        "refusals change nothing"
    );
}

#[test]
fn epochs_fence_older_producers_and_a_new_epoch_starts_at_zero() {
    let mut state = ProducerStates::default();
    let mut end = 0;
    produce(&mut state, &mut end, &[batch(PID, 3, 0, 2, 10)]).unwrap();
    assert_eq!(
        produce(&mut state, &mut end, &[batch(PID, 2, 2, 1, 10)]),
        Err(ProducerStateError::InvalidProducerEpoch {
            producer_id: PID,
            given: 2,
            current: 3,
        })
    );
    assert_eq!(
        produce(&mut state, &mut end, &[batch(PID, 4, 2, 1, 10)]),
        Err(ProducerStateError::NewEpochNotAtZero {
            producer_id: PID,
            epoch: 4,
            current: 3,
            given: 2,
        })
    );
    // Epoch 4 at sequence 0: the old epoch's batches are forgotten, so its retry is fenced.
    assert_eq!(
        produce(&mut state, &mut end, &[batch(PID, 4, 0, 1, 11)]),
        Ok(Checked::Append)
    );
    assert_eq!(
        state.get(PID).unwrap(),
        &ProducerEntry {
            epoch: 4,
            batches: VecDeque::from([meta((0, 0), (2, 2), 11)]),
        }
    );
    assert!(matches!(
        produce(&mut state, &mut end, &[batch(PID, 3, 0, 2, 10)]),
        Err(ProducerStateError::InvalidProducerEpoch {
            given: 3,
            current: 4,
            ..
        })
    ));
}

#[test]
fn only_the_last_five_batches_are_recognised_as_retries() {
    let mut state = ProducerStates::default();
    let mut end = 0;
    for i in 0..6 {
        produce(&mut state, &mut end, &[batch(PID, 0, i * 2, 2, 10)]).unwrap();
    }
    let entry = state.get(PID).unwrap();
    assert_eq!(entry.batches.len(), BATCHES_RETAINED);
    assert_eq!(entry.batches[0], meta((2, 3), (2, 3), 10));
    assert_eq!(
        produce(&mut state, &mut end, &[batch(PID, 0, 2, 2, 10)]),
        Ok(Checked::Duplicate {
            first_offset: 2,
            last_offset: 3,
            max_timestamp: 10,
        })
    );
    assert_eq!(
        produce(&mut state, &mut end, &[batch(PID, 0, 0, 2, 10)]),
        Err(ProducerStateError::OutOfOrderSequence {
            producer_id: PID,
            epoch: 0,
            given: 0,
            expected: 12,
        }),
        "the sixth-last batch is too old to be told from a reordering"
    );
}

#[test]
fn an_unknown_producer_is_taken_at_any_sequence_and_plain_batches_pass() {
    let mut state = ProducerStates::default();
    let mut end = 0;
    // As Kafka since 2.5: its earlier batches may have expired or been deleted.
    assert_eq!(
        produce(&mut state, &mut end, &[batch(PID, 1, 77, 3, 10)]),
        Ok(Checked::Append)
    );
    assert_eq!(state.get(PID).unwrap().last_sequence(), 79);
    let plain = batch(-1, -1, -1, 4, 10);
    assert_eq!(
        produce(&mut state, &mut end, &[plain, plain]),
        Ok(Checked::Append)
    );
    assert_eq!(
        state.len(),
        1,
        "batches without a producer id leave no state"
    );
    assert_eq!(end, 11);
    assert_eq!(
        state.check(&[batch(PID, -1, 5, 1, 10)]),
        Err(ProducerStateError::MissingSequence {
            producer_id: PID,
            epoch: -1,
            sequence: 5,
        })
    );
    assert!(matches!(
        state.check(&[batch(7, 0, -1, 1, 10)]),
        Err(ProducerStateError::MissingSequence { sequence: -1, .. })
    ));
}

#[test]
fn sequences_wrap_from_i32_max_to_zero() {
    assert_eq!(last_sequence(i32::MAX - 1, 3), 1);
    assert_eq!(last_sequence(i32::MAX, 0), i32::MAX);
    assert_eq!(next_sequence(i32::MAX), 0);
    assert_eq!(next_sequence(41), 42);

    let mut state = ProducerStates::default();
    let mut end = 0;
    produce(&mut state, &mut end, &[batch(PID, 0, i32::MAX - 1, 3, 10)]).unwrap();
    assert_eq!(
        state.get(PID).unwrap().batches[0],
        meta((i32::MAX - 1, 0), (0, 2), 10)
    );
    assert_eq!(
        produce(&mut state, &mut end, &[batch(PID, 0, i32::MAX - 1, 3, 10)]),
        Ok(Checked::Duplicate {
            first_offset: 0,
            last_offset: 2,
            max_timestamp: 10,
        }),
        "a retry of the batch that wrapped"
    );
    assert_eq!(
        produce(&mut state, &mut end, &[batch(PID, 0, 1, 1, 10)]),
        Ok(Checked::Append)
    );

    let mut state = ProducerStates::default();
    let mut end = 0;
    produce(&mut state, &mut end, &[batch(PID, 0, i32::MAX, 1, 10)]).unwrap();
    assert_eq!(
        produce(&mut state, &mut end, &[batch(PID, 0, 0, 1, 10)]),
        Ok(Checked::Append)
    );
}

#[test]
fn the_batches_of_one_request_are_checked_in_order() {
    let mut state = ProducerStates::default();
    let mut end = 0;
    let first = [
        batch(PID, 0, 0, 5, 10),
        batch(PID, 0, 5, 5, 11),
        batch(9, 0, 0, 1, 12),
    ];
    assert_eq!(produce(&mut state, &mut end, &first), Ok(Checked::Append));
    assert_eq!(state.get(PID).unwrap().batches.len(), 2);
    assert_eq!(state.get(9).unwrap().batches[0], meta((0, 0), (10, 10), 12));

    // The second batch must follow the first of the same request.
    assert_eq!(
        state.check(&[batch(PID, 0, 10, 2, 12), batch(PID, 0, 13, 1, 12)]),
        Err(ProducerStateError::OutOfOrderSequence {
            producer_id: PID,
            epoch: 0,
            given: 13,
            expected: 12,
        })
    );
    // The same new batch twice in one request is no retry of itself.
    assert!(matches!(
        state.check(&[batch(PID, 0, 10, 2, 12), batch(PID, 0, 10, 2, 12)]),
        Err(ProducerStateError::OutOfOrderSequence {
            given: 10,
            expected: 12,
            ..
        })
    ));
    // The whole request again: one answer spanning both batches.
    assert_eq!(
        state.check(&first[..2]),
        Ok(Checked::Duplicate {
            first_offset: 0,
            last_offset: 9,
            max_timestamp: 11,
        })
    );
    // A retried batch with a new one cannot be answered with one base offset.
    assert_eq!(
        state.check(&[batch(PID, 0, 5, 5, 11), batch(PID, 0, 10, 1, 12)]),
        Err(ProducerStateError::MixedRetry {
            duplicates: 1,
            new: 1,
        })
    );
    // Retries of batches that are not next to each other in the log neither.
    assert_eq!(
        state.check(&[batch(PID, 0, 0, 5, 10), batch(9, 0, 0, 1, 12)]),
        Err(ProducerStateError::MixedRetry {
            duplicates: 2,
            new: 0,
        })
    );
}

#[test]
fn producers_idle_for_the_expiration_time_are_forgotten() {
    let mut state = ProducerStates::default();
    let mut end = 0;
    produce(&mut state, &mut end, &[batch(1, 0, 0, 1, 1_000)]).unwrap();
    produce(&mut state, &mut end, &[batch(2, 0, 0, 1, 1_000)]).unwrap();
    produce(&mut state, &mut end, &[batch(2, 0, 1, 1, 5_000)]).unwrap();
    assert_eq!(state.remove_expired(10_999, 10_000), 0);
    assert_eq!(
        state.remove_expired(11_000, 10_000),
        1,
        "producer 1, idle for exactly 10 s"
    );
    assert!(state.get(1).is_none());
    assert!(state.get(2).is_some(), "its last batch is what counts");
    assert_eq!(state.remove_expired(15_000, 10_000), 1);
    assert!(state.is_empty());
}

#[test]
fn the_encoding_round_trips_and_refuses_damage() {
    let mut state = ProducerStates::default();
    let mut end = 0;
    for i in 0..7 {
        produce(
            &mut state,
            &mut end,
            &[batch(PID, 2, i, 1, 10 + i64::from(i))],
        )
        .unwrap();
    }
    produce(&mut state, &mut end, &[batch(3, 0, 0, 4, 5)]).unwrap();
    let bytes = state.encode();
    assert_eq!(bytes.len(), 4 + 2 * 11 + 6 * BATCH_BYTES);
    assert_eq!(ProducerStates::decode(&bytes), Ok(state.clone()));
    assert_eq!(
        ProducerStates::decode(&0u32.to_be_bytes()),
        Ok(ProducerStates::default())
    );

    let error = ProducerStates::decode(&bytes[..bytes.len() - 1]).unwrap_err();
    assert_eq!(error.position, bytes.len() - 8, "{error}");
    let mut longer = bytes.clone();
    longer.push(0);
    let error = ProducerStates::decode(&longer).unwrap_err();
    assert_eq!(error.reason, "1 bytes follow the last producer");
    // Producer 3 comes first; a batch count of 0 there is refused.
    let mut empty = bytes.clone();
    empty[4 + 8 + 2] = 0;
    let error = ProducerStates::decode(&empty).unwrap_err();
    assert_eq!(error.reason, "producer 3 has 0 batches");
    // Producer ids must be ascending.
    let mut swapped = bytes;
    swapped[4..12].copy_from_slice(&100i64.to_be_bytes());
    let error = ProducerStates::decode(&swapped).unwrap_err();
    assert_eq!(error.reason, format!("producer id {PID} is out of order"));
}
