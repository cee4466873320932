//! The consumer: reads records from partitions it is assigned, by hand ([`Consumer::assign`])
//! or by its group's coordinator ([`Consumer::subscribe`]), and commits how far it got.
//!
//! ```text
//!             Consumer (the user's task)
//!   recv ◄── bounded queue ◄── fetcher task ──► Broker.Fetch on each leader
//!     │ moves positions            ▲ reads the assigned partitions and their fetch offsets
//!     ▼                            │
//!   Shared state: assigned partitions, positions, member id and epoch
//!     ▲                            │
//!     │ reconciles the assignment  ▼ commits positions
//!   group task ──► Groups.Heartbeat / CommitOffsets on the coordinator
//! ```
//!
//! A position is the offset after the last record [`Consumer::recv`] handed out; commits
//! store positions. The fetcher reads ahead of the positions (at most `fetch_queue_len`
//! fetched responses wait); what it read for a partition that was since revoked or moved
//! with [`Consumer::seek`] is dropped.

mod config;
mod fetcher;
mod group;
mod state;

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use config::{AutoOffsetReset, ConsumerConfig, PartitionsCallback};

use self::fetcher::Fetched;
use self::state::{Mode, Shared, Start};
use crate::TopicPartition;
use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::offsets::{self, OffsetSpec};

/// One record read from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// The topic it was read from.
    pub topic: String,
    /// The partition it was read from.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// Its key; `None` is a null key (not the same as an empty one).
    pub key: Option<Bytes>,
    /// Its value; `None` is a null value (a tombstone on a compacted topic).
    pub value: Option<Bytes>,
    /// Its headers, in order; a value may be null.
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Milliseconds since the Unix epoch: the producer's CreateTime, or the broker's
    /// LogAppendTime on a topic that uses it.
    pub timestamp_ms: i64,
}

impl ConsumerRecord {
    /// The partition the record was read from.
    pub fn topic_partition(&self) -> TopicPartition {
        TopicPartition::new(self.topic.clone(), self.partition)
    }
}

/// Where [`Consumer::seek`] moves a partition's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekTo {
    /// This offset: the next record read is the one stored there (or the first after it).
    Offset(i64),
    /// The log start offset: the oldest record still held.
    Beginning,
    /// The high watermark: only records appended from now on.
    End,
    /// The first record whose timestamp is at least this (ms since the Unix epoch); the end
    /// when there is none.
    Timestamp(i64),
}

/// Fetched records of one partition waiting to be handed out.
#[derive(Debug)]
struct Chunk {
    tp: TopicPartition,
    generation: u64,
    records: VecDeque<ConsumerRecord>,
}

/// Reads records from Weir, as a member of a consumer group or from partitions assigned by
/// hand; made by [`Client::consumer`](crate::Client::consumer).
///
/// Records of one partition come in offset order. With [`ConsumerConfig::auto_commit`] (the
/// default) the positions of the records handed out are committed every
/// `auto_commit_interval`, when partitions are revoked and on [`close`](Consumer::close), so
/// a group member that takes over a partition starts after the last record handed out; a
/// consumer that must not skip a record it has not finished processing turns auto commit off
/// and calls [`commit`](Consumer::commit) after processing.
///
/// Call [`close`](Consumer::close) when done: it commits and leaves the group at once. A
/// consumer that is only dropped stops its tasks, and its partitions move to other members
/// when its session times out on the coordinator.
///
/// ```no_run
/// # async fn example() -> weir_client::Result<()> {
/// use weir_client::{AutoOffsetReset, Client, ConsumerConfig};
///
/// let client = Client::connect("127.0.0.1:9093").await?;
/// let mut consumer = client.consumer(ConsumerConfig {
///     auto_commit: false,
///     auto_offset_reset: AutoOffsetReset::Earliest,
///     ..ConsumerConfig::new("billing")
/// })?;
/// consumer.subscribe(&["orders"]).await?;
/// for _ in 0..100 {
///     let record = consumer.recv().await?;
///     println!("{}-{}@{}: {:?}", record.topic, record.partition, record.offset, record.value);
/// }
/// // The next member to read these partitions starts after the records handed out.
/// consumer.commit().await?;
/// consumer.close().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Consumer {
    shared: Arc<Shared>,
    records: mpsc::Receiver<Fetched>,
    errors: mpsc::UnboundedReceiver<Error>,
    chunk: Option<Chunk>,
    fetcher: Option<JoinHandle<()>>,
    member: Option<JoinHandle<()>>,
}

impl Consumer {
    /// A consumer on `client`'s connections; it reads nothing until it is given partitions
    /// with [`subscribe`](Consumer::subscribe) or [`assign`](Consumer::assign). Must be called
    /// within a Tokio runtime (it starts the consumer's background tasks).
    pub fn new(client: &crate::Client, config: ConsumerConfig) -> Result<Consumer> {
        Consumer::start(client.cluster.clone(), config)
    }

    fn start(cluster: Arc<Cluster>, config: ConsumerConfig) -> Result<Consumer> {
        config.validate()?;
        let queue_len = config.fetch_queue_len;
        let has_group = config.group.is_some();
        let shared = Arc::new(Shared::new(cluster, config));
        let (queue, records) = mpsc::channel(queue_len);
        let (errors_tx, errors) = mpsc::unbounded_channel();
        let fetcher = tokio::spawn(fetcher::run(shared.clone(), queue));
        let member = has_group.then(|| tokio::spawn(group::run(shared.clone(), errors_tx)));
        Ok(Consumer {
            shared,
            records,
            errors,
            chunk: None,
            fetcher: Some(fetcher),
            member,
        })
    }

    /// Joins the consumer's group with these topics; the group's coordinator then assigns
    /// their partitions among the group's members (balanced, and moving as few as possible
    /// when members come and go) and the consumer reads those given to it. A second call
    /// replaces the topics.
    ///
    /// Fails with [`Error::UnknownTopic`] for a topic that does not exist, and when the
    /// consumer has no group or has partitions assigned by hand.
    pub async fn subscribe(&mut self, topics: &[&str]) -> Result<()> {
        self.shared.group("subscribing")?;
        if topics.is_empty() {
            return Err(Error::invalid(
                "topics",
                "subscribe needs at least one topic",
            ));
        }
        if self.shared.lock().mode == Mode::Manual {
            return Err(Error::invalid(
                "subscribe",
                "this consumer reads partitions assigned by hand; use another consumer to \
                 subscribe",
            ));
        }
        for topic in topics {
            self.shared.cluster.partitions(topic).await?;
        }
        let mut topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        topics.sort();
        topics.dedup();
        {
            let mut state = self.shared.lock();
            if state.mode != Mode::Subscribed(topics.clone()) {
                state.mode = Mode::Subscribed(topics);
                state.subscription_changed = true;
            }
        }
        self.shared.wake_group.notify_one();
        Ok(())
    }

    /// Reads exactly `partitions`, without group membership (Kafka's `assign`): partitions
    /// already assigned keep their positions; new ones start at the group's committed offset
    /// (when the consumer has a group) or as `auto_offset_reset` says. Commits with a group
    /// are made as no member (generation -1), which the coordinator accepts while the group
    /// has no members. The positions of partitions no longer in `partitions` are dropped
    /// without a commit (call [`commit`](Consumer::commit) first to keep them). Fails when the
    /// consumer has subscribed.
    pub fn assign(&mut self, partitions: Vec<TopicPartition>) -> Result<()> {
        let start = if self.shared.config.group.is_some() {
            Start::Committed
        } else {
            Start::Reset
        };
        let mut state = self.shared.lock();
        if matches!(state.mode, Mode::Subscribed(_)) {
            return Err(Error::invalid(
                "assign",
                "this consumer subscribed to topics; use another consumer to assign partitions \
                 by hand",
            ));
        }
        state.mode = Mode::Manual;
        state.partitions.retain(|tp, _| partitions.contains(tp));
        for tp in partitions {
            state
                .partitions
                .entry(tp)
                .or_insert_with(|| self.shared.new_partition(start));
        }
        drop(state);
        self.shared.wake_fetcher.notify_one();
        Ok(())
    }

    /// The partitions the consumer reads now, in order.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.shared.lock().partitions.keys().cloned().collect()
    }

    /// The next record of any assigned partition, waiting until there is one.
    ///
    /// Fails with what went wrong reading a partition (e.g. [`Error::NoOffset`] with
    /// [`AutoOffsetReset::None`], [`Error::UnknownTopic`]); that partition is then read no
    /// more until [`seek`](Consumer::seek) gives it a position, while the others go on. Failures
    /// that pass (a leader moving) are retried and not reported. Cancel safe: a `recv`
    /// dropped before it completes loses no record.
    pub async fn recv(&mut self) -> Result<ConsumerRecord> {
        loop {
            if let Some(record) = self.next_buffered() {
                return Ok(record);
            }
            tokio::select! {
                biased;
                Some(error) = self.errors.recv() => return Err(error),
                fetched = self.records.recv() => match fetched {
                    None => return Err(Error::Closed("consumer")),
                    Some(Fetched::Records { tp, generation, records }) => {
                        self.chunk = Some(Chunk { tp, generation, records: records.into() });
                    }
                    Some(Fetched::Failed { tp, generation, error }) => {
                        if self.is_current(&tp, generation) {
                            return Err(error);
                        }
                    }
                },
            }
        }
    }

    /// The records, as a [`Stream`] of what [`recv`](Consumer::recv) returns; it never ends.
    ///
    /// ```no_run
    /// # async fn example(consumer: &mut weir_client::Consumer) -> weir_client::Result<()> {
    /// use futures_util::StreamExt;
    ///
    /// let mut records = consumer.stream();
    /// while let Some(record) = records.next().await {
    ///     let record = record?;
    ///     println!("{}", record.offset);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn stream(&mut self) -> impl Stream<Item = Result<ConsumerRecord>> + Unpin + '_ {
        Box::pin(futures_util::stream::unfold(self, |consumer| async move {
            let next = consumer.recv().await;
            Some((next, consumer))
        }))
    }

    fn is_current(&self, tp: &TopicPartition, generation: u64) -> bool {
        self.shared
            .lock()
            .partitions
            .get(tp)
            .is_some_and(|p| p.generation == generation)
    }

    /// The next record of the chunk being handed out, if its partition is still read from
    /// where the chunk was fetched; moves the partition's position past it.
    fn next_buffered(&mut self) -> Option<ConsumerRecord> {
        let chunk = self.chunk.as_mut()?;
        let mut state = self.shared.lock();
        let current = state
            .partitions
            .get_mut(&chunk.tp)
            .filter(|p| p.generation == chunk.generation);
        let record = match current {
            Some(partition) => chunk.records.pop_front().inspect(|record| {
                partition.position = Some(record.offset + 1);
            }),
            None => None,
        };
        drop(state);
        if record.is_none() {
            self.chunk = None;
        }
        record
    }

    /// Commits the positions of every assigned partition (the offset after the last record
    /// handed out), and waits until the coordinator has stored them.
    pub async fn commit(&self) -> Result<()> {
        self.shared.commit(self.shared.positions(None)).await
    }

    /// Commits these offsets (each the next offset to read: the last record processed + 1).
    pub async fn commit_offsets(&self, offsets: Vec<(TopicPartition, i64)>) -> Result<()> {
        if let Some((tp, offset)) = offsets.iter().find(|(_, offset)| *offset < 0) {
            return Err(Error::invalid(
                "offset",
                format!("cannot commit offset {offset} for {tp}: offsets are at least 0"),
            ));
        }
        self.shared.commit(offsets).await
    }

    /// The group's committed offsets of `partitions`, `None` where nothing is committed.
    pub async fn committed(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, Option<i64>)>> {
        self.shared.committed(partitions).await
    }

    /// Moves an assigned partition's position: the next record [`recv`](Consumer::recv)
    /// returns from it is the one at the new position. Records already fetched past the old
    /// position are dropped. A partition that failed (see [`recv`](Consumer::recv)) is read
    /// again from here.
    pub async fn seek(&mut self, tp: &TopicPartition, to: SeekTo) -> Result<()> {
        let not_assigned = || {
            Error::invalid(
                "partition",
                format!("{tp} is not assigned to this consumer, so it cannot seek there"),
            )
        };
        if !self.shared.lock().partitions.contains_key(tp) {
            return Err(not_assigned());
        }
        let list = |spec| offsets::list_offset(&self.shared.cluster, &tp.topic, tp.partition, spec);
        let offset = match to {
            SeekTo::Offset(offset) if offset < 0 => {
                return Err(Error::invalid(
                    "offset",
                    format!("cannot seek {tp} to {offset}: offsets are at least 0"),
                ));
            }
            SeekTo::Offset(offset) => offset,
            SeekTo::Beginning => list(OffsetSpec::Earliest).await?,
            SeekTo::End => list(OffsetSpec::Latest).await?,
            SeekTo::Timestamp(ms) => list(OffsetSpec::Timestamp(ms)).await?,
        };
        let generation = self.shared.next_generation();
        {
            let mut state = self.shared.lock();
            let partition = state.partitions.get_mut(tp).ok_or_else(not_assigned)?;
            partition.position = Some(offset);
            partition.fetch_offset = offset;
            partition.start = Start::Known;
            partition.generation = generation;
            partition.in_flight = false;
            partition.retry_at = None;
        }
        if self.chunk.as_ref().is_some_and(|chunk| chunk.tp == *tp) {
            self.chunk = None;
        }
        self.shared.wake_fetcher.notify_one();
        Ok(())
    }

    /// An assigned partition's position: the offset of the next record
    /// [`recv`](Consumer::recv) returns from it; `None` when it is not assigned or its
    /// starting offset is not known yet.
    pub fn position(&self, tp: &TopicPartition) -> Option<i64> {
        self.shared.lock().partitions.get(tp)?.position
    }

    /// Stops reading; with auto commit, commits the positions; leaves the group (a static
    /// member keeps its place for its restart until its session ends). Returns the first
    /// failure, after trying every step.
    pub async fn close(mut self) -> Result<()> {
        self.shared.lock().closed = true;
        self.shared.wake_fetcher.notify_one();
        self.shared.wake_group.notify_one();
        if let Some(fetcher) = self.fetcher.take() {
            fetcher.abort();
        }
        if let Some(member) = self.member.take() {
            // It ends at its next turn, once what it is doing (a heartbeat, a commit) is done.
            // It is never aborted, so the only failure is a panic: a bug, surfaced here.
            if let Err(e) = member.await
                && e.is_panic()
            {
                std::panic::resume_unwind(e.into_panic());
            }
        }
        if self.shared.config.group.is_none() {
            return Ok(());
        }
        let committed = if self.shared.config.auto_commit {
            self.commit().await
        } else {
            Ok(())
        };
        let owned: Vec<TopicPartition> = {
            let mut state = self.shared.lock();
            let subscribed = matches!(state.mode, Mode::Subscribed(_));
            let owned = std::mem::take(&mut state.partitions);
            if subscribed {
                owned.into_keys().collect()
            } else {
                Vec::new()
            }
        };
        if !owned.is_empty()
            && let Some(on_revoke) = &self.shared.config.on_revoke
        {
            on_revoke(&owned);
        }
        let left = group::leave(&self.shared).await;
        committed.and(left)
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        if let Some(fetcher) = self.fetcher.take() {
            fetcher.abort();
        }
        if let Some(member) = self.member.take() {
            member.abort();
        }
    }
}
