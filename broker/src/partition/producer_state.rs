//! Idempotent producers as one partition knows them: for each producer id, its epoch and the
//! last [`BATCHES_RETAINED`] batches it wrote, which is what tells a retried batch from a new
//! one. Pure: batches in, verdicts out; the log and files are the caller's.
//!
//! Kafka's rules (its `ProducerStateManager` and `ProducerAppendInfo`), for a batch with a
//! producer id:
//! - the same epoch and sequence range as one of the producer's last five batches: a
//!   duplicate, answered with that batch's offsets and no error, and not written again;
//! - an epoch older than the producer's: INVALID_PRODUCER_EPOCH;
//! - a newer epoch: it must start at sequence 0, or OUT_OF_ORDER_SEQUENCE_NUMBER;
//! - the same epoch: it must start right after the last sequence (`i32::MAX` wraps to 0), or
//!   OUT_OF_ORDER_SEQUENCE_NUMBER;
//! - a producer id this partition does not know (new, expired, or its batches deleted) is
//!   taken at any sequence, as Kafka does since 2.5 (KIP-360) instead of UNKNOWN_PRODUCER_ID.
//!
//! Invariants:
//! - Every producer held has at least one batch and at most [`BATCHES_RETAINED`], oldest
//!   first, all of its current epoch.
//! - [`ProducerStates::record_batch`] is the one way state changes: the leader's appends, a
//!   follower's replicated batches and the rebuild from the log all go through it, so they
//!   agree.
//! - The encoding ([`ProducerStates::encode`]) is explicit and versioned by its caller, and
//!   [`ProducerStates::decode`] refuses anything that breaks the invariants above.

use std::collections::{BTreeMap, VecDeque};

use weir_proto::batch::BatchHeader;

/// How many of a producer's last batches are kept to recognise a retry (Kafka's
/// `NUM_BATCHES_TO_RETAIN`; producers keep at most 5 requests in flight per partition).
pub const BATCHES_RETAINED: usize = 5;

/// One batch a producer wrote, as its retry is recognised and answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    /// The sequence number of its first record.
    pub first_sequence: i32,
    /// The sequence number of its last record.
    pub last_sequence: i32,
    /// The offset of its first record in the log.
    pub first_offset: i64,
    /// The offset of its last record in the log.
    pub last_offset: i64,
    /// Its max timestamp: what expiration measures the producer's idleness by.
    pub max_timestamp: i64,
}

/// One producer's state in the partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    /// The producer's current epoch.
    pub epoch: i16,
    /// Its last batches of this epoch, oldest first (at least one).
    pub batches: VecDeque<BatchMetadata>,
}

impl ProducerEntry {
    fn last(&self) -> &BatchMetadata {
        self.batches
            .back()
            .expect("a producer entry holds at least one batch")
    }

    /// The last sequence number the producer wrote.
    pub fn last_sequence(&self) -> i32 {
        self.last().last_sequence
    }

    /// The max timestamp of its last batch.
    pub fn last_timestamp(&self) -> i64 {
        self.last().max_timestamp
    }
}

/// What a producer's batches (one request's, for one partition) are, once checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// New batches: append them, then record them.
    Append,
    /// A retry of batches already in the log, at these offsets: append nothing.
    Duplicate {
        /// The offset of the first record of the first batch.
        first_offset: i64,
        /// The offset of the last record of the last batch.
        last_offset: i64,
        /// The largest max timestamp of the batches.
        max_timestamp: i64,
    },
}

/// Why a producer's batches were refused; nothing of the request was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProducerStateError {
    /// An epoch older than the producer's (INVALID_PRODUCER_EPOCH).
    #[error(
        "producer {producer_id} sent epoch {given}, older than its current epoch {current}: a \
         newer instance of the producer took over; this one must stop"
    )]
    InvalidProducerEpoch {
        /// The producer.
        producer_id: i64,
        /// The epoch the batch carries.
        given: i16,
        /// The producer's epoch here.
        current: i16,
    },
    /// A sequence that does not follow the producer's last (OUT_OF_ORDER_SEQUENCE_NUMBER).
    #[error(
        "producer {producer_id} (epoch {epoch}) sent sequence {given} but the next expected is \
         {expected}: a batch was lost or reordered in between"
    )]
    OutOfOrderSequence {
        /// The producer.
        producer_id: i64,
        /// Its epoch.
        epoch: i16,
        /// The sequence the batch starts at.
        given: i32,
        /// The sequence that would follow its last batch.
        expected: i32,
    },
    /// A new epoch that does not start at sequence 0 (OUT_OF_ORDER_SEQUENCE_NUMBER).
    #[error(
        "producer {producer_id} started epoch {epoch} (after {current}) at sequence {given}; a \
         new epoch starts at sequence 0"
    )]
    NewEpochNotAtZero {
        /// The producer.
        producer_id: i64,
        /// The new epoch.
        epoch: i16,
        /// The producer's epoch here.
        current: i16,
        /// The sequence the batch starts at.
        given: i32,
    },
    /// A batch with a producer id but no epoch or sequence (INVALID_RECORD).
    #[error(
        "a batch of producer {producer_id} has epoch {epoch} and base sequence {sequence}; an \
         idempotent producer's batches carry both, 0 or more"
    )]
    MissingSequence {
        /// The producer.
        producer_id: i64,
        /// The epoch the batch carries.
        epoch: i16,
        /// The sequence it carries.
        sequence: i32,
    },
    /// A request that retries some batches and adds others (INVALID_RECORD): one base offset
    /// cannot answer both.
    #[error(
        "the request retries {duplicates} batch(es) already written and adds {new} new one(s); \
         send new batches in a request of their own"
    )]
    MixedRetry {
        /// How many batches were duplicates.
        duplicates: usize,
        /// How many were new.
        new: usize,
    },
}

/// Bytes that are not an encoded [`ProducerStates`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("producer state encoding is invalid at byte {position}: {reason}")]
pub struct DecodeError {
    /// Where the problem is.
    pub position: usize,
    /// What it is.
    pub reason: String,
}

/// Every idempotent producer of one partition. See the module documentation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStates {
    producers: BTreeMap<i64, ProducerEntry>,
}

/// The sequence of the last record of a batch starting at `base` with `last_offset_delta`
/// (Kafka's `incrementSequence`: past `i32::MAX` it wraps to 0).
pub fn last_sequence(base: i32, last_offset_delta: i32) -> i32 {
    let last = (i64::from(base) + i64::from(last_offset_delta)) % (i64::from(i32::MAX) + 1);
    i32::try_from(last).expect("reduced modulo 2^31")
}

/// The sequence that follows `last` (`i32::MAX` is followed by 0).
pub fn next_sequence(last: i32) -> i32 {
    last_sequence(last, 1)
}

impl ProducerStates {
    /// The producer `producer_id`'s state, if this partition knows it.
    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// How many producers are known.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// Whether no producer is known.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Checks one request's batches for a partition, in order, against this state and the
    /// batches before them in the request. Retries are recognised against the state before
    /// the request (as Kafka does). Changes nothing: after appending, record each batch with
    /// [`record_batch`](Self::record_batch).
    pub fn check(&self, batches: &[BatchHeader]) -> Result<Checked, ProducerStateError> {
        // Each producer's (epoch, last sequence) as the earlier batches of the request leave it.
        let mut pending: BTreeMap<i64, (i16, i32)> = BTreeMap::new();
        let mut duplicates: Vec<BatchMetadata> = Vec::new();
        let mut new = 0;
        for header in batches {
            if header.producer_id < 0 {
                new += 1;
                continue;
            }
            if let Some(duplicate) = self.duplicate_of(header)? {
                duplicates.push(duplicate);
                continue;
            }
            let current = pending.get(&header.producer_id).copied().or_else(|| {
                self.get(header.producer_id)
                    .map(|e| (e.epoch, e.last_sequence()))
            });
            check_sequence(header, current)?;
            let last = last_sequence(header.base_sequence, header.last_offset_delta);
            pending.insert(header.producer_id, (header.producer_epoch, last));
            new += 1;
        }
        match (duplicates.first(), duplicates.last()) {
            (Some(first), Some(last)) if new == 0 => {
                let contiguous = duplicates
                    .windows(2)
                    .all(|pair| pair[1].first_offset == pair[0].last_offset + 1);
                if !contiguous {
                    return Err(ProducerStateError::MixedRetry {
                        duplicates: duplicates.len(),
                        new,
                    });
                }
                Ok(Checked::Duplicate {
                    first_offset: first.first_offset,
                    last_offset: last.last_offset,
                    max_timestamp: duplicates
                        .iter()
                        .map(|d| d.max_timestamp)
                        .max()
                        .unwrap_or(-1),
                })
            }
            (Some(_), _) => Err(ProducerStateError::MixedRetry {
                duplicates: duplicates.len(),
                new,
            }),
            (None, _) => Ok(Checked::Append),
        }
    }

    /// The stored batch `header` retries, if it is one of its producer's last batches (same
    /// epoch and sequence range). Refuses a producer id without an epoch or sequence.
    fn duplicate_of(
        &self,
        header: &BatchHeader,
    ) -> Result<Option<BatchMetadata>, ProducerStateError> {
        if header.producer_epoch < 0 || header.base_sequence < 0 {
            return Err(ProducerStateError::MissingSequence {
                producer_id: header.producer_id,
                epoch: header.producer_epoch,
                sequence: header.base_sequence,
            });
        }
        let Some(entry) = self.get(header.producer_id) else {
            return Ok(None);
        };
        if entry.epoch != header.producer_epoch {
            return Ok(None);
        }
        let last = last_sequence(header.base_sequence, header.last_offset_delta);
        Ok(entry
            .batches
            .iter()
            .find(|b| b.first_sequence == header.base_sequence && b.last_sequence == last)
            .copied())
    }

    /// Records a batch now in the log at `first_offset` (a leader's append, a follower's
    /// replicated batch, or a batch read back from the log). No checks: the log is the truth.
    /// A batch without a producer id, or a control batch, changes nothing.
    pub fn record_batch(&mut self, header: &BatchHeader, first_offset: i64) {
        if header.producer_id < 0 || header.is_control() {
            return;
        }
        let batch = BatchMetadata {
            first_sequence: header.base_sequence,
            last_sequence: last_sequence(header.base_sequence.max(0), header.last_offset_delta),
            first_offset,
            last_offset: first_offset + i64::from(header.last_offset_delta),
            max_timestamp: header.max_timestamp,
        };
        let entry = self
            .producers
            .entry(header.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: header.producer_epoch,
                batches: VecDeque::new(),
            });
        if entry.epoch != header.producer_epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        entry.batches.push_back(batch);
        while entry.batches.len() > BATCHES_RETAINED {
            entry.batches.pop_front();
        }
    }

    /// Forgets producers whose last batch is at least `expiration_ms` older than `now_ms`
    /// (Kafka's `producer.id.expiration.ms`); returns how many.
    pub fn remove_expired(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers
            .retain(|_, entry| now_ms.saturating_sub(entry.last_timestamp()) < expiration_ms);
        before - self.producers.len()
    }
}

/// Kafka's sequence check of one batch against its producer's `(epoch, last sequence)`, if
/// known.
fn check_sequence(
    header: &BatchHeader,
    current: Option<(i16, i32)>,
) -> Result<(), ProducerStateError> {
    let Some((epoch, last)) = current else {
        return Ok(());
    };
    let producer_id = header.producer_id;
    let given = header.base_sequence;
    if header.producer_epoch < epoch {
        return Err(ProducerStateError::InvalidProducerEpoch {
            producer_id,
            given: header.producer_epoch,
            current: epoch,
        });
    }
    if header.producer_epoch > epoch {
        return if given == 0 {
            Ok(())
        } else {
            Err(ProducerStateError::NewEpochNotAtZero {
                producer_id,
                epoch: header.producer_epoch,
                current: epoch,
                given,
            })
        };
    }
    let expected = next_sequence(last);
    if given != expected {
        return Err(ProducerStateError::OutOfOrderSequence {
            producer_id,
            epoch,
            given,
            expected,
        });
    }
    Ok(())
}

/// Bytes of one encoded batch: two sequences, two offsets, a timestamp.
const BATCH_BYTES: usize = 4 + 4 + 8 + 8 + 8;

impl ProducerStates {
    /// The state as bytes: the producer count (u32), then per producer in id order its id
    /// (i64), epoch (i16), batch count (u8) and batches (first and last sequence i32, first
    /// and last offset i64, max timestamp i64), all big-endian. The caller frames and
    /// versions it.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.producers.len() * (11 + 2 * BATCH_BYTES));
        let count = u32::try_from(self.producers.len()).expect("fewer than 2^32 producers");
        out.extend_from_slice(&count.to_be_bytes());
        for (producer_id, entry) in &self.producers {
            out.extend_from_slice(&producer_id.to_be_bytes());
            out.extend_from_slice(&entry.epoch.to_be_bytes());
            let batches = u8::try_from(entry.batches.len()).expect("at most 5 batches");
            out.push(batches);
            for batch in &entry.batches {
                out.extend_from_slice(&batch.first_sequence.to_be_bytes());
                out.extend_from_slice(&batch.last_sequence.to_be_bytes());
                out.extend_from_slice(&batch.first_offset.to_be_bytes());
                out.extend_from_slice(&batch.last_offset.to_be_bytes());
                out.extend_from_slice(&batch.max_timestamp.to_be_bytes());
            }
        }
        out
    }

    /// The state [`encode`](Self::encode) wrote; refuses bytes that are cut short, run on,
    /// or break the invariants (ids out of order or negative, no batches or more than
    /// [`BATCHES_RETAINED`], offsets that go backwards).
    pub fn decode(bytes: &[u8]) -> Result<ProducerStates, DecodeError> {
        let mut reader = Reader { bytes, position: 0 };
        let count = u32::from_be_bytes(reader.take()?);
        let mut producers = BTreeMap::new();
        let mut previous = -1;
        for _ in 0..count {
            let at = reader.position;
            let producer_id = i64::from_be_bytes(reader.take()?);
            if producer_id <= previous {
                return Err(reader.error(at, format!("producer id {producer_id} is out of order")));
            }
            previous = producer_id;
            let epoch = i16::from_be_bytes(reader.take()?);
            let batch_count = usize::from(u8::from_be_bytes(reader.take()?));
            if !(1..=BATCHES_RETAINED).contains(&batch_count) {
                return Err(reader.error(
                    at,
                    format!("producer {producer_id} has {batch_count} batches"),
                ));
            }
            let mut batches = VecDeque::with_capacity(batch_count);
            for _ in 0..batch_count {
                let at = reader.position;
                let batch = BatchMetadata {
                    first_sequence: i32::from_be_bytes(reader.take()?),
                    last_sequence: i32::from_be_bytes(reader.take()?),
                    first_offset: i64::from_be_bytes(reader.take()?),
                    last_offset: i64::from_be_bytes(reader.take()?),
                    max_timestamp: i64::from_be_bytes(reader.take()?),
                };
                let follows = batches
                    .back()
                    .is_none_or(|b: &BatchMetadata| b.last_offset < batch.first_offset);
                if batch.first_offset < 0 || batch.last_offset < batch.first_offset || !follows {
                    return Err(reader.error(
                        at,
                        format!(
                            "producer {producer_id} has a batch at impossible offsets {batch:?}"
                        ),
                    ));
                }
                batches.push_back(batch);
            }
            producers.insert(producer_id, ProducerEntry { epoch, batches });
        }
        if reader.position != bytes.len() {
            let extra = bytes.len() - reader.position;
            return Err(reader.error(
                reader.position,
                format!("{extra} bytes follow the last producer"),
            ));
        }
        Ok(ProducerStates { producers })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let bytes = self.bytes;
        let end = self.position + N;
        let field = bytes.get(self.position..end).ok_or_else(|| {
            self.error(self.position, format!("cut short: {N} more bytes needed"))
        })?;
        self.position = end;
        Ok(field.try_into().expect("N bytes"))
    }

    fn error(&self, position: usize, reason: String) -> DecodeError {
        DecodeError { position, reason }
    }
}

#[cfg(test)]
mod tests;
