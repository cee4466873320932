//! The follower's side: one fetch session per leader broker, carrying every partition this
//! broker copies from it.
//!
//! [`run_fetchers`] follows the replica manager's [`ReplicaEvent`]s, in order: a partition
//! that must follow a leader moves to that leader's [`Fetcher`] (created on first use), one
//! that stops following leaves it, and a fetcher with no partitions left stops. A fetcher's
//! task first settles where each new partition's log agrees with the leader's (asking
//! OffsetForLeaderEpoch and truncating a divergent tail, see [`super::truncation`]), then
//! long-polls Fetch for all its partitions at once and appends what comes back. A change of
//! its partitions cancels the poll in flight, so a new partition does not wait for it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use weir_proto::internal::v1 as pb;
use weir_proto::internal::v1::replication_client::ReplicationClient;

use super::metrics;
use super::truncation::{Truncation, decide};
use crate::controller::BrokerId;
use crate::partition::{Partition, PartitionError, ReplicaEvent};
use crate::storage::{EpochEndOffset, TopicPartition};

/// How followers fetch. The defaults follow Kafka's `replica.fetch.*` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetcherConfig {
    /// This broker's id, which the leaders track the follower by.
    pub broker: BrokerId,
    /// How long a fetch waits at the leader for records. Kafka: `replica.fetch.wait.max.ms`.
    pub max_wait_ms: u32,
    /// The most record bytes per partition in one answer. Kafka: `replica.fetch.max.bytes`.
    pub partition_max_bytes: u32,
    /// The most record bytes in one answer. Kafka: `replica.fetch.response.max.bytes`.
    pub max_bytes: u32,
    /// How long to wait before retrying a partition (or a leader) that failed. Kafka:
    /// `replica.fetch.backoff.ms`.
    pub backoff_ms: u64,
    /// A producer idle this long is dropped when a truncation rebuilds the producer state.
    pub producer_expiration_ms: i64,
}

/// How long connecting to a leader may take before the attempt counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long past its `max_wait_ms` a fetch may take before it counts as failed.
const FETCH_GRACE: Duration = Duration::from_secs(10);

/// Follows `events` until the replica manager stops sending them: starts, moves and stops
/// the partitions of per-leader fetchers. Dropping the returned future stops every fetcher.
pub async fn run_fetchers(
    mut events: mpsc::UnboundedReceiver<ReplicaEvent>,
    config: FetcherConfig,
) {
    let mut fetchers = Fetchers {
        config,
        by_leader: HashMap::new(),
        assigned: HashMap::new(),
    };
    while let Some(event) = events.recv().await {
        match event {
            ReplicaEvent::Follow {
                partition,
                leader,
                address,
                leader_epoch,
            } => fetchers.follow(partition, leader, address, leader_epoch),
            ReplicaEvent::Stop { tp } => fetchers.stop(&tp),
        }
    }
}

/// Which leader (and address) a fetcher fetches from.
type LeaderKey = (BrokerId, String);

/// Every fetcher of this broker.
struct Fetchers {
    config: FetcherConfig,
    by_leader: HashMap<LeaderKey, Fetcher>,
    /// Each followed partition's leader and the epoch it follows at.
    assigned: HashMap<TopicPartition, (LeaderKey, i32)>,
}

impl Fetchers {
    fn follow(
        &mut self,
        partition: Arc<Partition>,
        leader: BrokerId,
        address: String,
        leader_epoch: i32,
    ) {
        let tp = partition.topic_partition().clone();
        let key = (leader, address);
        if self.assigned.get(&tp) == Some(&(key.clone(), leader_epoch)) {
            return;
        }
        self.stop(&tp);
        tracing::info!(%tp, leader, address = %key.1, leader_epoch, "following");
        let config = self.config;
        let fetcher = self
            .by_leader
            .entry(key.clone())
            .or_insert_with(|| Fetcher::start(key.0, &key.1, config));
        fetcher.shared.partitions().insert(
            tp.clone(),
            Followed {
                partition,
                leader_epoch,
                settled: false,
                retry_at: None,
            },
        );
        fetcher.shared.wake.notify_one();
        self.assigned.insert(tp, (key, leader_epoch));
    }

    fn stop(&mut self, tp: &TopicPartition) {
        let Some((key, _)) = self.assigned.remove(tp) else {
            return;
        };
        let Some(fetcher) = self.by_leader.get(&key) else {
            return;
        };
        let now_empty = {
            let mut partitions = fetcher.shared.partitions();
            partitions.remove(tp);
            partitions.is_empty()
        };
        fetcher.shared.wake.notify_one();
        if now_empty {
            // Dropping the fetcher stops its task.
            self.by_leader.remove(&key);
        }
    }
}

/// A fetch session with one leader broker: its partitions and the task that fetches them.
struct Fetcher {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for Fetcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a fetcher's owner and its task share.
struct Shared {
    partitions: Mutex<BTreeMap<TopicPartition, Followed>>,
    /// Notified when the partitions change.
    wake: Notify,
}

impl Shared {
    fn partitions(&self) -> MutexGuard<'_, BTreeMap<TopicPartition, Followed>> {
        self.partitions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Partitions a fetcher works on in one request.
type Batch = Vec<(TopicPartition, Followed)>;

/// A partition a fetcher copies.
#[derive(Debug, Clone)]
struct Followed {
    partition: Arc<Partition>,
    leader_epoch: i32,
    /// Whether its log agrees with the leader's (truncation is done).
    settled: bool,
    /// After a failure: not before this.
    retry_at: Option<Instant>,
}

impl Fetcher {
    fn start(leader: BrokerId, address: &str, config: FetcherConfig) -> Fetcher {
        let shared = Arc::new(Shared {
            partitions: Mutex::new(BTreeMap::new()),
            wake: Notify::new(),
        });
        let session = Session {
            leader,
            address: address.to_string(),
            config,
            shared: Arc::clone(&shared),
            failing: false,
        };
        Fetcher {
            shared,
            task: tokio::spawn(session.run()),
        }
    }
}

/// The task of one fetcher.
struct Session {
    leader: BrokerId,
    address: String,
    config: FetcherConfig,
    shared: Arc<Shared>,
    /// Whether the last request failed (failures are logged when they start and end).
    failing: bool,
}

impl Session {
    async fn run(mut self) {
        let client = match Endpoint::from_shared(format!("http://{}", self.address)) {
            Ok(endpoint) => ReplicationClient::new(
                endpoint
                    .connect_timeout(CONNECT_TIMEOUT)
                    .tcp_nodelay(true)
                    .connect_lazy(),
            )
            .max_decoding_message_size(usize::MAX),
            Err(e) => {
                tracing::error!(leader = self.leader, address = %self.address, error = %e,
                    "the leader's internal address is not usable; not fetching from it");
                return;
            }
        };
        let backoff = Duration::from_millis(self.config.backoff_ms.max(1));
        loop {
            let now = Instant::now();
            let (unsettled, ready, next_retry) = self.due(now);
            let worked = if !unsettled.is_empty() {
                self.settle(client.clone(), unsettled, backoff).await
            } else if !ready.is_empty() {
                self.fetch(client.clone(), ready, next_retry, backoff).await
            } else {
                let wait = next_retry.unwrap_or(now + Duration::from_secs(3600));
                tokio::select! {
                    () = self.shared.wake.notified() => {}
                    () = tokio::time::sleep_until(wait) => {}
                }
                true
            };
            if !worked {
                tokio::select! {
                    () = self.shared.wake.notified() => {}
                    () = tokio::time::sleep(backoff) => {}
                }
            }
        }
    }

    /// The partitions due now: those still to settle, those ready to fetch, and the earliest
    /// retry of the rest.
    fn due(&self, now: Instant) -> (Batch, Batch, Option<Instant>) {
        let partitions = self.shared.partitions();
        let mut unsettled = Vec::new();
        let mut ready = Vec::new();
        let mut next_retry: Option<Instant> = None;
        for (tp, followed) in partitions.iter() {
            match followed.retry_at {
                Some(at) if at > now => {
                    next_retry = Some(next_retry.map_or(at, |n| n.min(at)));
                }
                _ if !followed.settled => unsettled.push((tp.clone(), followed.clone())),
                _ => ready.push((tp.clone(), followed.clone())),
            }
        }
        (unsettled, ready, next_retry)
    }

    /// Applies `change` to partition `tp` if the fetcher still copies it at `leader_epoch`.
    fn update(&self, tp: &TopicPartition, leader_epoch: i32, change: impl FnOnce(&mut Followed)) {
        if let Some(followed) = self.shared.partitions().get_mut(tp)
            && followed.leader_epoch == leader_epoch
        {
            change(followed);
        }
    }

    fn retry_later(&self, tp: &TopicPartition, leader_epoch: i32, backoff: Duration) {
        self.update(tp, leader_epoch, |f| {
            f.retry_at = Some(Instant::now() + backoff);
        });
    }

    /// Logs the start and the end of a run of failed requests, not every one.
    fn note(&mut self, result: Result<(), &tonic::Status>) {
        match (result, self.failing) {
            (Err(status), false) => {
                self.failing = true;
                tracing::warn!(leader = self.leader, address = %self.address,
                    error = %status.message(), "fetching from the leader fails; retrying");
            }
            (Ok(()), true) => {
                self.failing = false;
                tracing::info!(leader = self.leader, address = %self.address,
                    "fetching from the leader again");
            }
            _ => {}
        }
    }

    /// One round of truncation for `unsettled` partitions: asks the leader where each one's
    /// latest epoch ends, and truncates. Returns whether the request went through.
    async fn settle(
        &mut self,
        mut client: ReplicationClient<Channel>,
        unsettled: Batch,
        backoff: Duration,
    ) -> bool {
        let mut queries = Vec::new();
        for (tp, followed) in &unsettled {
            match followed.partition.log().leader_epochs().last() {
                // Nothing written under any epoch: nothing can diverge.
                None => self.update(tp, followed.leader_epoch, |f| f.settled = true),
                Some(latest) => queries.push(pb::EpochQuery {
                    partition: Some(named(&followed.partition)),
                    current_leader_epoch: followed.leader_epoch,
                    leader_epoch: latest.epoch,
                }),
            }
        }
        if queries.is_empty() {
            return true;
        }
        let request = pb::LeaderEpochRequest {
            replica_id: self.config.broker,
            partitions: queries,
        };
        let reply = tokio::select! {
            reply = client.offset_for_leader_epoch(request) => reply,
            () = self.shared.wake.notified() => return true,
        };
        let reply = match reply {
            Ok(reply) => reply.into_inner(),
            Err(status) => {
                self.note(Err(&status));
                return false;
            }
        };
        self.note(Ok(()));
        let by_name: HashMap<TopicPartition, Followed> = unsettled.into_iter().collect();
        for answer in reply.partitions {
            let Some(named) = &answer.partition else {
                continue;
            };
            let tp = TopicPartition::new(named.topic.clone(), named.partition);
            let Some(followed) = by_name.get(&tp) else {
                continue;
            };
            let epoch = followed.leader_epoch;
            if answer.error != i32::from(pb::ReplicaError::None) {
                tracing::debug!(%tp, error = answer.message, "the leader cannot answer yet");
                self.retry_later(&tp, epoch, backoff);
                continue;
            }
            let answer = EpochEndOffset {
                leader_epoch: answer.leader_epoch,
                end_offset: answer.end_offset,
            };
            match self.truncate(followed, answer) {
                Ok(Truncation::Final(_)) => self.update(&tp, epoch, |f| f.settled = true),
                Ok(Truncation::AskAgain(_)) => {}
                Err(e) => {
                    tracing::warn!(%tp, error = %e, "truncating to the leader's log failed");
                    self.retry_later(&tp, epoch, backoff);
                }
            }
        }
        true
    }

    /// Truncates `followed` where the leader's `answer` says its log diverges.
    fn truncate(
        &self,
        followed: &Followed,
        answer: EpochEndOffset,
    ) -> Result<Truncation, PartitionError> {
        let partition = &followed.partition;
        let log = partition.log();
        let decision = decide(
            answer,
            log.log_end_offset(),
            partition.high_watermark(),
            |epoch| log.end_offset_for_epoch(epoch),
        );
        partition.truncate_as_follower(
            followed.leader_epoch,
            decision.offset(),
            self.config.producer_expiration_ms,
        )?;
        Ok(decision)
    }

    /// One fetch of the `ready` partitions, appending what comes back; it waits at the leader
    /// no later than `next_retry`, when a partition backing off is due again. Returns whether
    /// the request went through.
    async fn fetch(
        &mut self,
        mut client: ReplicationClient<Channel>,
        ready: Batch,
        next_retry: Option<Instant>,
        backoff: Duration,
    ) -> bool {
        let max_wait = fetch_wait(
            Duration::from_millis(u64::from(self.config.max_wait_ms)),
            Instant::now(),
            next_retry,
        );
        let request = pb::ReplicaFetchRequest {
            replica_id: self.config.broker,
            max_wait_ms: u32::try_from(max_wait.as_millis()).unwrap_or(u32::MAX),
            max_bytes: self.config.max_bytes,
            partition_max_bytes: self.config.partition_max_bytes,
            partitions: ready
                .iter()
                .map(|(_, followed)| pb::FetchPartition {
                    partition: Some(named(&followed.partition)),
                    leader_epoch: followed.leader_epoch,
                    fetch_offset: followed.partition.log().log_end_offset(),
                    high_watermark: followed.partition.high_watermark(),
                })
                .collect(),
        };
        let fetched: HashMap<TopicPartition, (Followed, i64)> = ready
            .into_iter()
            .zip(&request.partitions)
            .map(|((tp, followed), asked)| (tp, (followed, asked.fetch_offset)))
            .collect();
        let timeout = max_wait + FETCH_GRACE;
        let reply = tokio::select! {
            reply = tokio::time::timeout(timeout, client.fetch(request)) => reply,
            () = self.shared.wake.notified() => return true,
        };
        let reply = match reply {
            Ok(Ok(reply)) => reply.into_inner(),
            Ok(Err(status)) => {
                self.note(Err(&status));
                return false;
            }
            Err(_elapsed) => {
                let status = tonic::Status::deadline_exceeded("the fetch took too long");
                self.note(Err(&status));
                return false;
            }
        };
        self.note(Ok(()));
        for answer in reply.partitions {
            let Some(named) = &answer.partition else {
                continue;
            };
            let tp = TopicPartition::new(named.topic.clone(), named.partition);
            if let Some((followed, fetch_offset)) = fetched.get(&tp) {
                self.take(&tp, followed, *fetch_offset, answer, backoff);
            }
        }
        true
    }

    /// Applies the leader's answer for one partition.
    fn take(
        &self,
        tp: &TopicPartition,
        followed: &Followed,
        fetch_offset: i64,
        answer: pb::FetchedPartition,
        backoff: Duration,
    ) {
        let epoch = followed.leader_epoch;
        let partition = &followed.partition;
        let error =
            pb::ReplicaError::try_from(answer.error).unwrap_or(pb::ReplicaError::StorageError);
        let result = match error {
            pb::ReplicaError::None => partition
                .append_as_follower(
                    epoch,
                    &answer.records,
                    answer.high_watermark,
                    answer.log_start_offset,
                )
                .map(|appended| {
                    if appended.is_some() {
                        metrics::bytes_in(answer.records.len());
                    }
                }),
            pb::ReplicaError::OffsetOutOfRange if fetch_offset < answer.log_start_offset => {
                partition
                    .reset_as_follower(
                        epoch,
                        answer.log_start_offset,
                        self.config.producer_expiration_ms,
                    )
                    .map(drop)
            }
            pb::ReplicaError::OffsetOutOfRange
                if answer.log_end_offset >= 0 && fetch_offset > answer.log_end_offset =>
            {
                partition
                    .truncate_as_follower(
                        epoch,
                        answer.log_end_offset,
                        self.config.producer_expiration_ms,
                    )
                    .map(drop)
            }
            _ => {
                tracing::debug!(%tp, ?error, message = answer.message, "the leader refused a fetch");
                self.retry_later(tp, epoch, backoff);
                return;
            }
        };
        match result {
            Ok(()) => {}
            // The partition's state moved on; the replica manager's next event says how.
            Err(PartitionError::NotLeader { .. } | PartitionError::FencedLeaderEpoch { .. }) => {}
            Err(e) => {
                tracing::warn!(%tp, error = %e, "could not take what the leader sent; settling again");
                self.update(tp, epoch, |f| {
                    f.settled = false;
                    f.retry_at = Some(Instant::now() + backoff);
                });
            }
        }
    }
}

/// How long a fetch may wait at the leader for records: `max_wait`, but no later than
/// `next_retry`, when the first partition backing off after a failure is due again. Otherwise
/// that partition would sit out the whole long poll of the others: after a leader change, a
/// follower that asks the new leader before the new leader has the change is told to come
/// back after the backoff, and the acks=all writes there wait for that follower.
fn fetch_wait(max_wait: Duration, now: Instant, next_retry: Option<Instant>) -> Duration {
    match next_retry {
        Some(at) => max_wait.min(at.saturating_duration_since(now)),
        None => max_wait,
    }
}

/// How the protocol names a partition.
fn named(partition: &Partition) -> pb::ReplicaPartition {
    let tp = partition.topic_partition();
    pb::ReplicaPartition {
        topic: tp.topic.clone(),
        topic_id: bytes::Bytes::copy_from_slice(partition.topic_id().as_bytes()),
        partition: tp.partition,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks the wait of a fetch made at `now_ms` with `max_wait_ms`, when a partition
    /// backing off is due at `retry_ms` (if any).
    fn check(max_wait_ms: u64, now_ms: u64, retry_ms: Option<u64>, expected_ms: u64) {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let wait = fetch_wait(
            Duration::from_millis(max_wait_ms),
            at(now_ms),
            retry_ms.map(at),
        );
        assert_eq!(
            wait,
            Duration::from_millis(expected_ms),
            "max wait {max_wait_ms} ms at {now_ms} ms, retry at {retry_ms:?} ms"
        );
    }

    #[test]
    fn a_fetch_waits_its_max_wait_when_no_partition_backs_off() {
        check(500, 0, None, 500);
        check(0, 0, None, 0);
    }

    #[test]
    fn a_fetch_waits_no_later_than_a_partition_backing_off_is_due() {
        check(500, 0, Some(100), 100);
        check(500, 40, Some(100), 60);
        check(500, 0, Some(500), 500);
        check(500, 0, Some(900), 500);
    }

    #[test]
    fn a_fetch_waits_not_at_all_when_a_retry_is_due() {
        check(500, 100, Some(100), 0);
        check(500, 150, Some(100), 0);
    }
}
