//! Partitions as a broker holds them: each [`Partition`] is a log plus the replica state the
//! committed metadata gives it (leader or follower, epochs, ISR) and its high watermark; the
//! [`ReplicaManager`] creates, updates and removes them as the metadata changes.
//!
//! Invariants:
//! - A partition takes writes only while it is the leader, and stamps them with its leader
//!   epoch.
//! - Consumers read only below the high watermark. While the leader is the only member of its
//!   ISR, the high watermark is its log end offset; with followers it is the smallest log end
//!   offset in the ISR (see `replica.rs`), and a follower's is never above its leader's.
//! - The high watermark never moves back on a leader.
//! - A follower appends only what its leader at its current leader epoch sent, and truncates
//!   only above its high watermark, under the same locks as a leader's append.
//! - A log directory belongs to one topic id (`partition.metadata`): a log left by an earlier
//!   topic of the same name is removed, never served as the new topic's.
//! - Every append, a leader's or a follower's, holds the partition's producer state lock and
//!   records its batches there before releasing it; a producer's batches are checked against
//!   that state under the same lock, so a retry is never appended twice.

mod high_watermarks;
mod manager;
mod offsets;
mod produce;
mod producer_log;
pub mod producer_state;
mod replica;

pub use manager::{ProducerStateConfig, ReplicaEvent, ReplicaManager};
pub use offsets::{ListedOffset, OffsetSpec};
pub use produce::{Prepared, ProduceError, ProducePolicy};
pub use producer_state::ProducerStateError;
pub use replica::{FollowerRead, FollowerState, IsrChange};

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use uuid::Uuid;
use weir_proto::batch::BatchHeader;

use crate::clock::Clock;
use crate::controller::{BrokerId, Partition as PartitionState};
use crate::storage::{self, AppendInfo, Log, TopicPartition};
use producer_log::{ProducerStateManager, SnapshotWhen};
use producer_state::{Checked, ProducerEntry, ProducerStates};

/// What this broker is for a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// It takes writes and serves reads.
    Leader,
    /// It copies the leader (`None` while the partition is offline).
    Follower {
        /// The leader, if the partition has one.
        leader: Option<BrokerId>,
    },
}

/// Why a partition refused a request; each maps to one Kafka error code.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    /// This broker does not lead the partition (NOT_LEADER_OR_FOLLOWER).
    #[error(
        "broker {broker} is not the leader of {tp} (the leader is {leader:?}); refresh metadata"
    )]
    NotLeader {
        /// The partition.
        tp: TopicPartition,
        /// This broker.
        broker: BrokerId,
        /// The leader, if known.
        leader: Option<BrokerId>,
    },
    /// The client's leader epoch is older than the partition's (FENCED_LEADER_EPOCH).
    #[error(
        "leader epoch {given} of {tp} is stale (the current one is {current}); refresh metadata"
    )]
    FencedLeaderEpoch {
        /// The partition.
        tp: TopicPartition,
        /// The epoch the client gave.
        given: i32,
        /// The partition's epoch.
        current: i32,
    },
    /// The client's leader epoch is newer than this broker knows (UNKNOWN_LEADER_EPOCH).
    #[error("leader epoch {given} of {tp} is not known here yet (it is at {current}); retry")]
    UnknownLeaderEpoch {
        /// The partition.
        tp: TopicPartition,
        /// The epoch the client gave.
        given: i32,
        /// The partition's epoch.
        current: i32,
    },
    /// A fetch offset outside the log (OFFSET_OUT_OF_RANGE).
    #[error("offset {offset} of {tp} is out of range: the log holds {start} to {end}")]
    OffsetOutOfRange {
        /// The partition.
        tp: TopicPartition,
        /// The offset asked for.
        offset: i64,
        /// The log start offset.
        start: i64,
        /// The log end offset.
        end: i64,
    },
    /// The leader's high watermark has not reached the start of its epoch yet, so the end
    /// of the log a consumer may see is not known (OFFSET_NOT_AVAILABLE); retry.
    #[error(
        "{tp} cannot list offsets yet: its high watermark {high_watermark} is below the start \
         of the leader's epoch, {epoch_start}; retry"
    )]
    OffsetNotAvailable {
        /// The partition.
        tp: TopicPartition,
        /// Where the leader's epoch starts.
        epoch_start: i64,
        /// The high watermark.
        high_watermark: i64,
    },
    /// An acks=all produce found fewer in-sync replicas than the topic requires, and appended
    /// nothing (NOT_ENOUGH_REPLICAS).
    #[error(
        "{tp} has {isr} in-sync replicas, fewer than min.insync.replicas={min}; the records \
         were not written; retry once the replicas catch up"
    )]
    NotEnoughReplicas {
        /// The partition.
        tp: TopicPartition,
        /// In-sync replicas now.
        isr: usize,
        /// The topic's `min.insync.replicas`.
        min: i32,
    },
    /// The records were written and replicated to the ISR, but the ISR had shrunk below
    /// `min.insync.replicas` meanwhile (NOT_ENOUGH_REPLICAS_AFTER_APPEND).
    #[error(
        "{tp}: the records were written, but the ISR shrank to {isr} replicas, fewer than \
         min.insync.replicas={min}; a retry may write them again unless the producer is \
         idempotent"
    )]
    NotEnoughReplicasAfterAppend {
        /// The partition.
        tp: TopicPartition,
        /// In-sync replicas now.
        isr: usize,
        /// The topic's `min.insync.replicas`.
        min: i32,
    },
    /// The in-sync replicas did not take the records in time (REQUEST_TIMED_OUT).
    #[error("the in-sync replicas of {tp} did not take the records within the request's timeout")]
    ReplicationTimedOut {
        /// The partition.
        tp: TopicPartition,
    },
    /// A broker that is not one of the partition's replicas fetched it.
    #[error("broker {broker} is not a replica of {tp}")]
    NotReplica {
        /// The partition.
        tp: TopicPartition,
        /// The broker.
        broker: BrokerId,
    },
    /// The topic's configs forbid the request (POLICY_VIOLATION).
    #[error("{tp}: {reason}")]
    PolicyViolation {
        /// The partition.
        tp: TopicPartition,
        /// Which config forbids what.
        reason: String,
    },
    /// The producer's records were refused before the log saw them.
    #[error(transparent)]
    Produce(#[from] ProduceError),
    /// An idempotent producer's batches do not follow its last ones.
    #[error(transparent)]
    Producer(#[from] ProducerStateError),
    /// The log refused (a bad batch, a full disk, an offline log).
    #[error(transparent)]
    Storage(#[from] storage::Error),
}

/// The replica state of a partition on this broker: the committed metadata's, and while it
/// leads, what it knows of its followers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ReplicaState {
    role: Role,
    leader_epoch: i32,
    partition_epoch: i32,
    replicas: Vec<BrokerId>,
    isr: Vec<BrokerId>,
    /// As leader: each follower's progress, reset at each leader epoch.
    followers: BTreeMap<BrokerId, FollowerState>,
    /// As leader: an ISR change proposed to the controller and not yet committed (or
    /// refused). Until then the high watermark counts the members of both ISRs.
    pending_isr: Option<Vec<BrokerId>>,
}

/// One partition replica on this broker.
#[derive(Debug)]
pub struct Partition {
    tp: TopicPartition,
    topic_id: Uuid,
    broker: BrokerId,
    log: Arc<Log>,
    state: Mutex<ReplicaState>,
    /// How producers' batches are checked and stamped (the topic's configs).
    policy: Mutex<ProducePolicy>,
    /// The high watermark; waiting fetches and acks=all produces watch it.
    high_watermark: watch::Sender<i64>,
    /// The log end offset; followers' fetches wait on it.
    log_end: watch::Sender<i64>,
    /// Counts changes of the replica state; acks=all produces watch it for a lost leadership.
    changes: watch::Sender<u64>,
    clock: Arc<dyn Clock>,
    /// The idempotent producers' state; its lock is held across every append.
    producers: ProducerStateManager,
}

/// Records read from a partition.
#[derive(Debug, Clone)]
pub struct ReadResult {
    /// Whole batches, starting with the one that holds the offset asked for.
    pub records: Bytes,
    /// The high watermark when read.
    pub high_watermark: i64,
    /// The log start offset when read.
    pub log_start_offset: i64,
}

impl Partition {
    /// A replica of `tp` held in `log`, in `state`. `checkpointed_high_watermark` is the
    /// high watermark the broker last recorded for it, if any.
    #[allow(clippy::too_many_arguments)]
    fn new(
        tp: TopicPartition,
        topic_id: Uuid,
        broker: BrokerId,
        log: Arc<Log>,
        state: &PartitionState,
        policy: ProducePolicy,
        producers: ProducerStateManager,
        checkpointed_high_watermark: Option<i64>,
        clock: Arc<dyn Clock>,
    ) -> Partition {
        let replica = replica_state(broker, state);
        // Until replication moves it, a replica starts from what it recorded (never above its
        // own log), so nothing unreplicated shows; a sole leader's is its log end.
        let log_end_offset = log.log_end_offset();
        let high_watermark = if is_sole_leader(broker, &replica) {
            log_end_offset
        } else {
            checkpointed_high_watermark
                .unwrap_or(0)
                .clamp(log.log_start_offset(), log_end_offset)
        };
        log.set_cleaner_upper_offset(high_watermark);
        let (high_watermark, _) = watch::channel(high_watermark);
        let (log_end, _) = watch::channel(log_end_offset);
        let (changes, _) = watch::channel(0);
        let partition = Partition {
            tp,
            topic_id,
            broker,
            log,
            state: Mutex::new(replica),
            policy: Mutex::new(policy),
            high_watermark,
            log_end,
            changes,
            clock,
            producers,
        };
        partition.reset_followers(&mut partition.lock());
        partition
    }

    fn lock(&self) -> MutexGuard<'_, ReplicaState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The topic and partition.
    pub fn topic_partition(&self) -> &TopicPartition {
        &self.tp
    }

    /// The topic's id.
    pub fn topic_id(&self) -> Uuid {
        self.topic_id
    }

    /// The partition's log.
    pub fn log(&self) -> &Arc<Log> {
        &self.log
    }

    /// This broker's role.
    pub fn role(&self) -> Role {
        self.lock().role
    }

    /// The current leader epoch.
    pub fn leader_epoch(&self) -> i32 {
        self.lock().leader_epoch
    }

    /// The high watermark: consumers read below it.
    pub fn high_watermark(&self) -> i64 {
        *self.high_watermark.borrow()
    }

    /// Takes the state committed metadata gives the partition. A new leader epoch starts
    /// the followers' progress afresh; a new partition epoch ends a pending ISR change.
    pub(crate) fn update(&self, state: &PartitionState) {
        let mut replica = replica_state(self.broker, state);
        let leader_epoch = (replica.role == Role::Leader).then_some(replica.leader_epoch);
        {
            let mut current = self.lock();
            let same_leadership =
                current.role == replica.role && current.leader_epoch == replica.leader_epoch;
            if same_leadership {
                if replica.role == Role::Leader {
                    let shrunk = current.isr.iter().any(|id| !replica.isr.contains(id));
                    let expanded = replica.isr.iter().any(|id| !current.isr.contains(id));
                    crate::replication::metrics::isr_changed(shrunk, expanded);
                }
                replica.followers = std::mem::take(&mut current.followers);
                if current.partition_epoch == replica.partition_epoch {
                    replica.pending_isr = current.pending_isr.take();
                }
            }
            let elected =
                replica.role == Role::Leader && replica.leader_epoch > current.leader_epoch;
            *current = replica;
            if !same_leadership {
                if elected {
                    crate::metrics::leader_elected();
                }
                self.reset_followers(&mut current);
            }
        }
        if let Some(epoch) = leader_epoch {
            self.start_leader_epoch(epoch);
        }
        self.changes.send_modify(|n| *n += 1);
        self.maybe_advance_high_watermark();
    }

    /// Checks that this broker leads at `leader_epoch` (if the client gave one: -1 means
    /// none), and returns the current epoch.
    fn check_leader(&self, leader_epoch: Option<i32>) -> Result<i32, PartitionError> {
        let state = self.lock();
        if let Role::Follower { leader } = state.role {
            return Err(PartitionError::NotLeader {
                tp: self.tp.clone(),
                broker: self.broker,
                leader,
            });
        }
        check_epoch(&self.tp, leader_epoch, state.leader_epoch)?;
        Ok(state.leader_epoch)
    }

    /// Takes a producer's records as the leader: checks them against the topic's policy
    /// (sizes, CRCs, timestamps; LogAppendTime stamps them with `now_ms`) and against the
    /// idempotent producers' state, and appends them. A retry of batches already written is
    /// answered with their offsets and appends nothing (`batch_count` and `bytes` are 0).
    pub fn produce(&self, records: Bytes, now_ms: i64) -> Result<AppendInfo, PartitionError> {
        self.check_leader(None)?;
        let policy = self
            .policy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let prepared = policy.prepare(records, now_ms)?;
        let mut producers = self.producers.lock();
        match producers.check(&prepared.batches)? {
            Checked::Append => self.append_locked(
                &mut producers,
                &prepared.records,
                prepared.batches.iter().copied(),
            ),
            Checked::Duplicate {
                first_offset,
                last_offset,
                max_timestamp,
            } => Ok(AppendInfo {
                base_offset: first_offset,
                last_offset,
                max_timestamp,
                batch_count: 0,
                bytes: 0,
            }),
        }
    }

    /// Whether the broker stamps appends with its own time (the topic's LogAppendTime).
    pub fn appends_log_time(&self) -> bool {
        self.policy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .log_append_time
    }

    /// Sets how producers' batches are checked (after a change of the topic's configs).
    pub(crate) fn set_policy(&self, policy: ProducePolicy) {
        *self.policy.lock().unwrap_or_else(|p| p.into_inner()) = policy;
    }

    /// Appends checked `batches` as the leader, stamped with the leader epoch; the log checks
    /// their framing and CRCs again before it writes. Their producers' state records them
    /// (unchecked). A sole leader's high watermark moves at once.
    pub fn append_as_leader(&self, batches: &[u8]) -> Result<AppendInfo, PartitionError> {
        let mut producers = self.producers.lock();
        self.append_locked(&mut producers, batches, appended_headers(batches))
    }

    /// [`append_as_leader`](Self::append_as_leader) with the producer state lock held;
    /// `headers` are those of `batches`, read once the log took them.
    fn append_locked(
        &self,
        producers: &mut ProducerStates,
        batches: &[u8],
        headers: impl Iterator<Item = BatchHeader>,
    ) -> Result<AppendInfo, PartitionError> {
        let epoch = self.check_leader(None)?;
        let info = self.log.append(batches, epoch)?;
        let mut first_offset = info.base_offset;
        for header in headers {
            producers.record_batch(&header, first_offset);
            first_offset = first_offset + i64::from(header.last_offset_delta) + 1;
        }
        self.log_end.send_replace(info.last_offset + 1);
        self.maybe_advance_high_watermark();
        Ok(info)
    }

    /// The state of idempotent producer `producer_id` here, if the partition knows it.
    pub fn producer_state(&self, producer_id: i64) -> Option<ProducerEntry> {
        self.producers.lock().get(producer_id).cloned()
    }

    /// Forgets producers idle for `expiration_ms` at `now_ms`; returns how many.
    pub(crate) fn remove_expired_producers(&self, now_ms: i64, expiration_ms: i64) -> usize {
        self.producers.remove_expired(now_ms, expiration_ms)
    }

    /// Writes a snapshot of the producer state if `when` says one is due; returns its offset.
    pub(crate) fn snapshot_producers(
        &self,
        when: SnapshotWhen,
    ) -> Result<Option<i64>, storage::Error> {
        self.producers.snapshot(&self.log, when)
    }

    /// Moves the high watermark up to `offset` (never back), waking waiting fetches.
    pub(crate) fn advance_high_watermark(&self, offset: i64) {
        self.high_watermark.send_if_modified(|hw| {
            let moved = offset > *hw;
            if moved {
                *hw = offset;
                self.log.set_cleaner_upper_offset(offset);
            }
            moved
        });
    }

    /// Reads from `offset` up to `max_bytes` (at least one whole batch; none if `max_bytes`
    /// is 0, the offset and epoch still checked) below the high watermark, as the leader at
    /// `leader_epoch` if the client gave one.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        leader_epoch: Option<i32>,
    ) -> Result<ReadResult, PartitionError> {
        self.check_leader(leader_epoch)?;
        let high_watermark = self.high_watermark();
        let start = self.log.log_start_offset();
        let end = self.log.log_end_offset();
        if offset < start || offset > end {
            return Err(PartitionError::OffsetOutOfRange {
                tp: self.tp.clone(),
                offset,
                start,
                end,
            });
        }
        let records = if offset >= high_watermark || max_bytes == 0 {
            Bytes::new()
        } else {
            self.log.read_below(offset, max_bytes, high_watermark)?
        };
        Ok(ReadResult {
            records,
            high_watermark,
            log_start_offset: start,
        })
    }

    /// Waits until the high watermark passes `offset`, for at most `timeout`; returns
    /// whether it did. Woken by the append that moves it, not by polling.
    pub async fn wait_for_data(&self, offset: i64, timeout: Duration) -> bool {
        let mut high_watermark = self.high_watermark.subscribe();
        tokio::time::timeout(timeout, high_watermark.wait_for(|&hw| hw > offset))
            .await
            .is_ok_and(|waited| waited.is_ok())
    }
}

/// The headers of batches the log took (it validated them, so their CRCs are not checked
/// again).
fn appended_headers(batches: &[u8]) -> impl Iterator<Item = BatchHeader> + '_ {
    let mut position = 0;
    std::iter::from_fn(move || {
        let header = BatchHeader::parse(batches.get(position..)?).ok()?;
        position += header.size();
        Some(header)
    })
}

fn replica_state(broker: BrokerId, state: &PartitionState) -> ReplicaState {
    let role = if state.leader == Some(broker) {
        Role::Leader
    } else {
        Role::Follower {
            leader: state.leader,
        }
    };
    ReplicaState {
        role,
        leader_epoch: state.leader_epoch,
        partition_epoch: state.partition_epoch,
        replicas: state.replicas.clone(),
        isr: state.isr.clone(),
        followers: BTreeMap::new(),
        pending_isr: None,
    }
}

/// Whether `broker` leads with no other ISR member, so its log end is the high watermark.
fn is_sole_leader(broker: BrokerId, state: &ReplicaState) -> bool {
    state.role == Role::Leader && state.isr == [broker]
}

/// Kafka's leader epoch check: `None` (or -1) skips it; an older epoch is fenced, a newer
/// one is not known here yet.
fn check_epoch(
    tp: &TopicPartition,
    given: Option<i32>,
    current: i32,
) -> Result<(), PartitionError> {
    match given {
        Some(given) if given >= 0 && given < current => Err(PartitionError::FencedLeaderEpoch {
            tp: tp.clone(),
            given,
            current,
        }),
        Some(given) if given > current => Err(PartitionError::UnknownLeaderEpoch {
            tp: tp.clone(),
            given,
            current,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod idempotence_tests;
#[cfg(test)]
mod tests;
