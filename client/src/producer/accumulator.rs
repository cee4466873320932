//! The record accumulator: the producer's pure core. Records go in, per partition, into
//! batches; the sender asks which batches are ready ([`Accumulator::drain`]) and reports how
//! each went ([`Accumulator::complete`], [`Accumulator::retry`], [`Accumulator::fail`]). No
//! tasks, sockets or clocks here: the time is an argument.
//!
//! ```text
//!  send ─▶ partition queue: [in flight or retrying | full | ... | open] ─▶ drain ─▶ sender
//!                               ▲                                             │
//!                               └──── complete / retry (same bytes) / fail ◀──┘
//! ```
//!
//! Invariants:
//! - A partition has at most one batch in flight, always its oldest: batches are sent,
//!   retried and acknowledged in order, so the records of a partition keep their order even
//!   across retries (Kafka's `max.in.flight.requests.per.connection=1`, per partition).
//! - A batch is encoded once, when it is first sent; that is when it gets its producer id,
//!   epoch and base sequence. A retry sends the very same bytes, so the broker recognises it
//!   (same producer, epoch and sequence range) and answers with the first append's offsets.
//! - Sequences of a partition are contiguous: each new batch starts where the last one sent
//!   ended (wrapping from `i32::MAX` to 0, as Kafka does).
//! - A batch that had a sequence and then failed for good (delivery timeout, a
//!   non-retriable error) may or may not be in the log, so the partition's next sequence is
//!   unknown. Then the producer takes a new producer id ([`Accumulator::needs_producer_id`])
//!   and every partition's sequences restart at 0 under it; a producer id a partition never
//!   saw is accepted at any sequence (KIP-360), so no later batch is stuck behind the
//!   failure. Until the new id is known, only retries of batches already numbered are sent.
//! - The only open batch of a partition is its newest one that was never sent; records join
//!   it while it has room, else start a new batch.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use weir_proto::batch::{self, Compression, EncodeOptions, HEADER_LEN, Record};

use super::partitioner::Random;
use crate::TopicPartition;
use crate::error::Error;

/// What the accumulator needs of the producer's configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) batch_size: usize,
    pub(crate) linger: Duration,
    pub(crate) delivery_timeout: Duration,
    pub(crate) compression: Compression,
    pub(crate) idempotence: bool,
    pub(crate) retry_backoff: Duration,
}

/// The idempotent producer's identity, as far as the accumulator knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Identity {
    /// Not idempotent: batches carry no producer id.
    None,
    /// A producer id must be fetched before new batches are numbered.
    Wanted,
    /// The current producer id and epoch.
    Known { id: i64, epoch: i16 },
}

/// Records of one partition sent together as one RecordBatch v2.
#[derive(Debug)]
pub(crate) struct Batch<W> {
    /// Increasing with creation across all partitions (what [`Accumulator::flush`] marks).
    id: u64,
    /// The records, until the batch is encoded.
    records: Vec<Record>,
    /// Each record's timestamp, in order.
    pub(crate) timestamps: Vec<i64>,
    /// Whoever waits for each record's outcome, in order.
    pub(crate) waiters: Vec<W>,
    /// The estimated bytes of the records (what they hold of the producer's buffer memory).
    pub(crate) buffered: usize,
    created: Instant,
    deadline: Instant,
    /// The batch's bytes, from its first send on.
    encoded: Option<Bytes>,
    /// The base sequence it was numbered with, if idempotent and sent.
    pub(crate) base_sequence: Option<i32>,
    /// When it may be sent again, after a retriable failure.
    retry_at: Option<Instant>,
    /// How many times it failed and was retried.
    pub(crate) attempts: u32,
    /// The last retriable failure, to explain a delivery timeout.
    pub(crate) last_error: Option<Error>,
}

impl<W> Batch<W> {
    fn new(id: u64, created: Instant, deadline: Instant) -> Batch<W> {
        Batch {
            id,
            records: Vec::new(),
            timestamps: Vec::new(),
            waiters: Vec::new(),
            buffered: 0,
            created,
            deadline,
            encoded: None,
            base_sequence: None,
            retry_at: None,
            attempts: 0,
            last_error: None,
        }
    }

    /// Estimated encoded size: the batch header and the records.
    fn size(&self) -> usize {
        HEADER_LEN + self.buffered
    }

    /// How many records it holds.
    pub(crate) fn len(&self) -> usize {
        self.waiters.len()
    }
}

#[derive(Debug)]
struct Queue<W> {
    batches: VecDeque<Batch<W>>,
    in_flight: bool,
}

/// A batch to send now.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub(crate) tp: TopicPartition,
    pub(crate) bytes: Bytes,
}

/// What [`Accumulator::drain`] found.
#[derive(Debug)]
pub(crate) struct Drained<W> {
    /// Batches to send, at most one per partition; each is now in flight.
    pub(crate) ready: Vec<Outgoing>,
    /// Batches whose delivery timeout passed before they could be (re)sent.
    pub(crate) expired: Vec<(TopicPartition, Batch<W>)>,
    /// Batches that could not be encoded.
    pub(crate) unencodable: Vec<(TopicPartition, Batch<W>, Error)>,
}

/// Every partition's batches, the sticky partitions and the idempotent producer's
/// sequence numbers.
#[derive(Debug)]
pub(crate) struct Accumulator<W> {
    settings: Settings,
    queues: BTreeMap<TopicPartition, Queue<W>>,
    /// Each topic's sticky partition for records without key or partition.
    sticky: HashMap<String, i32>,
    random: Random,
    next_batch_id: u64,
    /// Batches with a smaller id are sent without waiting for `linger`.
    flush_below: u64,
    closing: bool,
    identity: Identity,
    /// The next base sequence of each partition under the current producer id.
    sequences: HashMap<TopicPartition, i32>,
}

impl<W> Accumulator<W> {
    pub(crate) fn new(settings: Settings) -> Accumulator<W> {
        Accumulator {
            settings,
            queues: BTreeMap::new(),
            sticky: HashMap::new(),
            random: Random::new(),
            next_batch_id: 0,
            flush_below: 0,
            closing: false,
            identity: if settings.idempotence {
                Identity::Wanted
            } else {
                Identity::None
            },
            sequences: HashMap::new(),
        }
    }

    /// The partition of `topic` a record without key or partition goes to: the topic's
    /// sticky partition while its open batch has room for `size` more bytes, else a new one
    /// picked at random among `candidates` (another than before, when there is a choice).
    pub(crate) fn sticky_partition(&mut self, topic: &str, candidates: &[i32], size: usize) -> i32 {
        assert!(!candidates.is_empty(), "a topic has at least one partition");
        let previous = self.sticky.get(topic).copied();
        if let Some(partition) = previous
            && candidates.contains(&partition)
            && self.has_room(&TopicPartition::new(topic, partition), size)
        {
            return partition;
        }
        let choices: Vec<i32> = match previous {
            Some(previous) if candidates.len() > 1 => candidates
                .iter()
                .copied()
                .filter(|&p| p != previous)
                .collect(),
            _ => candidates.to_vec(),
        };
        let partition = choices[self.random.below(choices.len())];
        self.sticky.insert(topic.to_string(), partition);
        partition
    }

    /// Whether the partition's open batch takes `size` more bytes.
    fn has_room(&self, tp: &TopicPartition, size: usize) -> bool {
        let Some(queue) = self.queues.get(tp) else {
            return false;
        };
        queue.batches.back().is_some_and(|open| {
            open.encoded.is_none() && open.size() + size <= self.settings.batch_size
        })
    }

    /// Adds a record to partition `tp`'s open batch, or a new one. `record.offset` is set
    /// here; `size` is its estimated size.
    pub(crate) fn append(
        &mut self,
        tp: TopicPartition,
        mut record: Record,
        size: usize,
        waiter: W,
        now: Instant,
    ) {
        let batch_size = self.settings.batch_size;
        let queue = self.queues.entry(tp).or_insert_with(|| Queue {
            batches: VecDeque::new(),
            in_flight: false,
        });
        let joins = queue.batches.back().is_some_and(|open| {
            open.encoded.is_none() && (open.size() + size <= batch_size || open.len() == 0)
        });
        if !joins {
            let id = self.next_batch_id;
            self.next_batch_id += 1;
            let deadline = now + self.settings.delivery_timeout;
            queue.batches.push_back(Batch::new(id, now, deadline));
        }
        let open = queue.batches.back_mut().expect("an open batch");
        record.offset = i64::try_from(open.records.len()).expect("a batch holds few records");
        open.timestamps.push(record.timestamp);
        open.records.push(record);
        open.waiters.push(waiter);
        open.buffered += size;
    }

    /// Whether a producer id must be fetched (and given with
    /// [`set_producer_id`](Self::set_producer_id)) before new batches can be sent.
    pub(crate) fn needs_producer_id(&self) -> bool {
        self.identity == Identity::Wanted && self.queues.values().any(|q| !q.batches.is_empty())
    }

    /// The producer id to number new batches with; every partition's sequences start at 0.
    pub(crate) fn set_producer_id(&mut self, id: i64, epoch: i16) {
        assert!(
            self.settings.idempotence,
            "only an idempotent producer has an id"
        );
        self.identity = Identity::Known { id, epoch };
        self.sequences.clear();
    }

    /// Sends every batch there is now without waiting for `linger`; returns the mark to
    /// give [`pending_below`](Self::pending_below).
    pub(crate) fn flush(&mut self) -> u64 {
        self.flush_below = self.next_batch_id;
        self.flush_below
    }

    /// Whether a batch created before `mark` (from [`flush`](Self::flush)) is still
    /// waiting to be sent or acknowledged.
    pub(crate) fn pending_below(&self, mark: u64) -> bool {
        self.queues
            .values()
            .any(|q| q.batches.front().is_some_and(|b| b.id < mark))
    }

    /// From now on every batch is sent without waiting for `linger`.
    pub(crate) fn close(&mut self) {
        self.closing = true;
    }

    /// Whether [`close`](Self::close) was called.
    pub(crate) fn is_closing(&self) -> bool {
        self.closing
    }

    /// Whether no record waits to be sent or acknowledged.
    pub(crate) fn is_empty(&self) -> bool {
        self.queues.values().all(|q| q.batches.is_empty())
    }

    /// Whether the front batch of `queue` may be sent at `now`.
    fn ready(&self, queue: &Queue<W>, now: Instant) -> bool {
        let Some(front) = queue.batches.front() else {
            return false;
        };
        if queue.in_flight || front.retry_at.is_some_and(|at| at > now) {
            return false;
        }
        if front.encoded.is_some() {
            return true;
        }
        if self.identity == Identity::Wanted {
            return false;
        }
        front.size() >= self.settings.batch_size
            || queue.batches.len() > 1
            || front.created + self.settings.linger <= now
            || front.id < self.flush_below
            || self.closing
    }

    /// Takes out the batches whose delivery timeout passed while they waited, and marks the
    /// batches to send now as in flight, encoding those sent for the first time.
    pub(crate) fn drain(&mut self, now: Instant) -> Drained<W> {
        let mut drained = Drained {
            ready: Vec::new(),
            expired: Vec::new(),
            unencodable: Vec::new(),
        };
        let tps: Vec<TopicPartition> = self.queues.keys().cloned().collect();
        for tp in tps {
            self.expire(&tp, now, &mut drained.expired);
            let queue = &self.queues[&tp];
            if !self.ready(queue, now) {
                continue;
            }
            match self.encode_front(&tp) {
                Ok(bytes) => {
                    let queue = self.queues.get_mut(&tp).expect("listed");
                    queue.in_flight = true;
                    drained.ready.push(Outgoing { tp, bytes });
                }
                Err(error) => {
                    let batch = self.pop(&tp);
                    drained.unencodable.push((tp, batch, error));
                }
            }
        }
        self.queues.retain(|_, q| !q.batches.is_empty());
        drained
    }

    /// Moves the batches of `tp` whose deadline passed, and that are not in flight, to
    /// `expired`.
    fn expire(
        &mut self,
        tp: &TopicPartition,
        now: Instant,
        expired: &mut Vec<(TopicPartition, Batch<W>)>,
    ) {
        loop {
            let queue = &self.queues[tp];
            let due = !queue.in_flight && queue.batches.front().is_some_and(|b| b.deadline <= now);
            if !due {
                return;
            }
            let batch = self.pop(tp);
            expired.push((tp.clone(), batch));
        }
    }

    /// The front batch's bytes, encoding and numbering it on its first send.
    fn encode_front(&mut self, tp: &TopicPartition) -> Result<Bytes, Error> {
        let identity = self.identity;
        let compression = self.settings.compression;
        let next_sequence = self.sequences.get(tp).copied().unwrap_or(0);
        let front = self
            .queues
            .get_mut(tp)
            .and_then(|q| q.batches.front_mut())
            .expect("a ready queue has a front batch");
        if let Some(bytes) = &front.encoded {
            return Ok(bytes.clone());
        }
        let mut options = EncodeOptions {
            compression,
            ..EncodeOptions::default()
        };
        if let Identity::Known { id, epoch } = identity {
            options.producer_id = id;
            options.producer_epoch = epoch;
            options.base_sequence = next_sequence;
        }
        let bytes = batch::encode(&front.records, &options)?;
        let count = front.records.len();
        front.records = Vec::new();
        front.encoded = Some(bytes.clone());
        if let Identity::Known { .. } = identity {
            front.base_sequence = Some(next_sequence);
            self.sequences
                .insert(tp.clone(), sequence_after(next_sequence, count));
        }
        Ok(bytes)
    }

    fn pop(&mut self, tp: &TopicPartition) -> Batch<W> {
        let queue = self.queues.get_mut(tp).expect("a queue with a batch");
        queue.in_flight = false;
        let batch = queue.batches.pop_front().expect("a batch");
        self.forget_sequences_of(&batch);
        batch
    }

    /// After a numbered batch leaves without an acknowledgement, the partitions' next
    /// sequences are unknown: start over under a new producer id.
    fn forget_sequences_of(&mut self, batch: &Batch<W>) {
        if batch.base_sequence.is_some() {
            self.identity = Identity::Wanted;
            self.sequences.clear();
        }
    }

    /// The in-flight batch of `tp` was acknowledged: takes it out.
    pub(crate) fn complete(&mut self, tp: &TopicPartition) -> Batch<W> {
        let queue = self.queues.get_mut(tp).expect("a batch in flight");
        assert!(queue.in_flight, "{tp} has a batch in flight");
        queue.in_flight = false;
        let batch = queue.batches.pop_front().expect("a batch in flight");
        if queue.batches.is_empty() {
            self.queues.remove(tp);
        }
        batch
    }

    /// The in-flight batch of `tp` failed with a retriable `error`: it is sent again, the
    /// same bytes, after a backoff (`retry_backoff` doubled on each retry, at most a
    /// second). If its delivery timeout has passed, it is taken out and returned instead, to
    /// fail; if it passes during the backoff, [`drain`](Self::drain) expires it then.
    pub(crate) fn retry(
        &mut self,
        tp: &TopicPartition,
        error: Error,
        now: Instant,
    ) -> Option<Batch<W>> {
        let first = self.settings.retry_backoff;
        let queue = self.queues.get_mut(tp).expect("a batch in flight");
        assert!(queue.in_flight, "{tp} has a batch in flight");
        let front = queue.batches.front_mut().expect("a batch in flight");
        front.last_error = Some(error);
        if now >= front.deadline {
            let batch = self.pop(tp);
            self.drop_if_empty(tp);
            return Some(batch);
        }
        front.retry_at = Some(now + backoff(first, front.attempts));
        front.attempts += 1;
        queue.in_flight = false;
        None
    }

    /// The in-flight batch of `tp` failed for good: takes it out.
    pub(crate) fn fail(&mut self, tp: &TopicPartition) -> Batch<W> {
        let batch = self.pop(tp);
        self.drop_if_empty(tp);
        batch
    }

    fn drop_if_empty(&mut self, tp: &TopicPartition) {
        if self.queues.get(tp).is_some_and(|q| q.batches.is_empty()) {
            self.queues.remove(tp);
        }
    }

    /// When, after `now`, something may next be ready or expire, if anything waits.
    pub(crate) fn next_wakeup(&self, now: Instant) -> Option<Instant> {
        self.queues
            .values()
            .filter(|q| !q.in_flight)
            .filter_map(|q| q.batches.front())
            .flat_map(|front| {
                let linger = front.created + self.settings.linger;
                [Some(front.deadline), front.retry_at, Some(linger)]
            })
            .flatten()
            .filter(|&at| at > now)
            .min()
    }
}

/// The wait before the next try of a batch tried `attempts` times before: `first`
/// doubled each time, at most one second (or `first`, if that is longer).
fn backoff(first: Duration, attempts: u32) -> Duration {
    first
        .saturating_mul(1 << attempts.min(16))
        .min(Duration::from_secs(1).max(first))
}

/// The sequence after `count` records from `base`: `i32::MAX` is followed by 0.
pub(crate) fn sequence_after(base: i32, count: usize) -> i32 {
    let next = (i64::from(base) + count as i64) % (i64::from(i32::MAX) + 1);
    i32::try_from(next).expect("below i32::MAX + 1")
}

#[cfg(test)]
#[path = "accumulator_tests.rs"]
mod tests;
