//! Replication as one partition sees it (DESIGN section 7).
//!
//! As leader: each follower's progress (its log end offset, from the offset it fetches at,
//! and when it was last caught up), the high watermark (the smallest log end offset in the
//! ISR, counting the members of a proposed ISR too until the controller commits it), the ISR
//! changes to propose (a follower that fell behind for `replica_lag_time_max_ms` goes, one
//! that caught up comes back), and the wait of an acks=all produce.
//!
//! As follower: appending what the leader sent, truncating a tail that diverged from the
//! leader's log, and following the leader's high watermark and log start.
//!
//! Invariants:
//! - A leader's high watermark never moves back, and never passes the log end offset of an
//!   ISR member (committed or proposed) that it has not heard from at this leader epoch.
//! - A follower's high watermark is never above its leader's nor its own log end.
//! - A follower changes its log only at the leader epoch it follows, under the producer
//!   state lock then the replica state lock, the order a leader's append takes them in.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::{Partition, PartitionError, ReplicaState, Role, appended_headers, check_epoch};
use crate::controller::BrokerId;
use crate::storage::AppendInfo;

/// What a leader knows of one follower, since the start of its leader epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerState {
    /// The follower's log end offset, as its last fetch said; `None` before its first fetch
    /// at this leader epoch.
    pub log_end_offset: Option<i64>,
    /// When it was last caught up: when it fetched at the leader's log end, or at the end the
    /// leader had at its previous fetch (milliseconds).
    pub last_caught_up_ms: i64,
    /// When it last fetched (milliseconds).
    pub last_fetch_ms: i64,
    /// The leader's log end offset at that fetch.
    last_fetch_leader_end: i64,
}

impl FollowerState {
    fn new(now_ms: i64) -> FollowerState {
        FollowerState {
            log_end_offset: None,
            last_caught_up_ms: now_ms,
            last_fetch_ms: now_ms,
            last_fetch_leader_end: -1,
        }
    }

    /// Notes a fetch at `fetch_offset` when the leader's log ends at `leader_end`, as Kafka
    /// does: caught up now if it asks for the end; caught up at its previous fetch if it asks
    /// for at least what the leader had then.
    fn fetched(&mut self, fetch_offset: i64, leader_end: i64, now_ms: i64) {
        if fetch_offset >= leader_end {
            self.last_caught_up_ms = now_ms;
        } else if fetch_offset >= self.last_fetch_leader_end {
            self.last_caught_up_ms = self.last_caught_up_ms.max(self.last_fetch_ms);
        }
        self.log_end_offset = Some(fetch_offset);
        self.last_fetch_ms = now_ms;
        self.last_fetch_leader_end = leader_end;
    }
}

/// A leader's answer to a follower's fetch of one partition.
#[derive(Debug, Clone)]
pub struct FollowerRead {
    /// Whole batches from the fetch offset, below the log end (not the high watermark).
    pub records: Bytes,
    /// The leader's high watermark after this fetch.
    pub high_watermark: i64,
    /// The leader's log start offset.
    pub log_start_offset: i64,
    /// The leader's log end offset.
    pub log_end_offset: i64,
}

/// An ISR change a leader proposes to the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrChange {
    /// The leader epoch it leads at.
    pub leader_epoch: i32,
    /// The partition epoch it last saw.
    pub partition_epoch: i32,
    /// The proposed ISR, in replica order.
    pub isr: Vec<BrokerId>,
    /// Members that fell behind and leave.
    pub shrunk: Vec<BrokerId>,
    /// Replicas that caught up and join.
    pub expanded: Vec<BrokerId>,
}

impl Partition {
    /// Starts the followers' progress afresh (at a change of leadership): none has fetched
    /// yet, and each counts as caught up now.
    pub(super) fn reset_followers(&self, state: &mut ReplicaState) {
        state.pending_isr = None;
        state.followers.clear();
        if state.role != Role::Leader {
            return;
        }
        let now_ms = self.clock.now_ms();
        for &replica in &state.replicas {
            if replica != self.broker {
                state.followers.insert(replica, FollowerState::new(now_ms));
            }
        }
    }

    /// Moves a leader's high watermark up to the smallest log end offset of its ISR members
    /// (those of a pending ISR change too); nothing moves while a member has not fetched at
    /// this leader epoch.
    pub(super) fn maybe_advance_high_watermark(&self) {
        let candidate = {
            let state = self.lock();
            if state.role != Role::Leader {
                return;
            }
            let mut candidate = self.log.log_end_offset();
            let members = state.isr.iter().chain(state.pending_isr.iter().flatten());
            for member in members.filter(|&&m| m != self.broker) {
                match state.followers.get(member).and_then(|f| f.log_end_offset) {
                    Some(end) => candidate = candidate.min(end),
                    None => return,
                }
            }
            candidate
        };
        self.advance_high_watermark(candidate);
    }

    /// Answers follower `replica`'s fetch at `fetch_offset` (its log end offset), made at
    /// `leader_epoch`: notes its progress, moves the high watermark, and reads up to
    /// `max_bytes` from the offset to the log end.
    pub fn read_for_follower(
        &self,
        replica: BrokerId,
        leader_epoch: i32,
        fetch_offset: i64,
        max_bytes: usize,
    ) -> Result<FollowerRead, PartitionError> {
        let now_ms = self.clock.now_ms();
        let log_start_offset = self.log.log_start_offset();
        let log_end_offset = self.log.log_end_offset();
        {
            let mut state = self.lock();
            if let Role::Follower { leader } = state.role {
                return Err(PartitionError::NotLeader {
                    tp: self.tp.clone(),
                    broker: self.broker,
                    leader,
                });
            }
            check_epoch(&self.tp, Some(leader_epoch), state.leader_epoch)?;
            if replica == self.broker || !state.replicas.contains(&replica) {
                return Err(PartitionError::NotReplica {
                    tp: self.tp.clone(),
                    broker: replica,
                });
            }
            if fetch_offset < log_start_offset || fetch_offset > log_end_offset {
                return Err(PartitionError::OffsetOutOfRange {
                    tp: self.tp.clone(),
                    offset: fetch_offset,
                    start: log_start_offset,
                    end: log_end_offset,
                });
            }
            state
                .followers
                .entry(replica)
                .or_insert_with(|| FollowerState::new(now_ms))
                .fetched(fetch_offset, log_end_offset, now_ms);
        }
        self.maybe_advance_high_watermark();
        let records = if fetch_offset < log_end_offset && max_bytes > 0 {
            self.log.read(fetch_offset, max_bytes)?
        } else {
            Bytes::new()
        };
        Ok(FollowerRead {
            records,
            high_watermark: self.high_watermark(),
            log_start_offset,
            log_end_offset,
        })
    }

    /// The ISR change this leader should propose at `now_ms`, if any, and notes it as
    /// pending (none is proposed while one is): members not caught up for `lag_max_ms` leave;
    /// replicas that `is_live` and whose log reaches both the high watermark and the start of
    /// this leader epoch join.
    pub fn propose_isr_change(
        &self,
        now_ms: i64,
        lag_max_ms: i64,
        is_live: impl Fn(BrokerId) -> bool,
    ) -> Option<IsrChange> {
        let high_watermark = self.high_watermark();
        let log_end_offset = self.log.log_end_offset();
        let mut state = self.lock();
        if state.role != Role::Leader || state.pending_isr.is_some() {
            return None;
        }
        let epoch_start = self
            .log
            .epoch_start_offset(state.leader_epoch)
            .unwrap_or(log_end_offset);
        let progress = |id: &BrokerId| state.followers.get(id).copied();
        let shrunk: Vec<BrokerId> = state
            .isr
            .iter()
            .copied()
            .filter(|&id| id != self.broker)
            .filter(|id| progress(id).is_none_or(|f| now_ms - f.last_caught_up_ms > lag_max_ms))
            .collect();
        let expanded: Vec<BrokerId> = state
            .replicas
            .iter()
            .copied()
            .filter(|id| *id != self.broker && !state.isr.contains(id) && is_live(*id))
            .filter(|id| {
                progress(id)
                    .and_then(|f| f.log_end_offset)
                    .is_some_and(|end| end >= high_watermark && end >= epoch_start)
            })
            .collect();
        if shrunk.is_empty() && expanded.is_empty() {
            return None;
        }
        let isr: Vec<BrokerId> = state
            .replicas
            .iter()
            .copied()
            .filter(|id| (state.isr.contains(id) && !shrunk.contains(id)) || expanded.contains(id))
            .collect();
        state.pending_isr = Some(isr.clone());
        Some(IsrChange {
            leader_epoch: state.leader_epoch,
            partition_epoch: state.partition_epoch,
            isr,
            shrunk,
            expanded,
        })
    }

    /// Forgets a pending ISR change the controller refused (or that could not be sent), so
    /// the next check may propose again. A change the metadata already replaced is ignored.
    pub fn isr_change_failed(&self, change: &IsrChange) {
        let mut state = self.lock();
        if state.partition_epoch == change.partition_epoch
            && state.pending_isr.as_ref() == Some(&change.isr)
        {
            state.pending_isr = None;
        }
    }

    /// What this leader knows of each follower (empty on a follower).
    pub fn followers(&self) -> Vec<(BrokerId, FollowerState)> {
        let state = self.lock();
        state.followers.iter().map(|(&id, &f)| (id, f)).collect()
    }

    /// The partition's replicas and its committed ISR.
    pub fn replicas_and_isr(&self) -> (Vec<BrokerId>, Vec<BrokerId>) {
        let state = self.lock();
        (state.replicas.clone(), state.isr.clone())
    }

    /// Refuses an acks=all produce before it is appended if the ISR is smaller than the
    /// topic's `min.insync.replicas` (NOT_ENOUGH_REPLICAS).
    pub fn check_enough_replicas(&self) -> Result<(), PartitionError> {
        let min = self.min_insync_replicas();
        let isr = self.lock().isr.len();
        if i64::try_from(isr).unwrap_or(i64::MAX) < i64::from(min) {
            return Err(PartitionError::NotEnoughReplicas {
                tp: self.tp.clone(),
                isr,
                min,
            });
        }
        Ok(())
    }

    fn min_insync_replicas(&self) -> i32 {
        self.policy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .min_insync_replicas
    }

    /// Waits, for at most `timeout`, until the high watermark passes `last_offset`, which
    /// this broker appended as leader at `leader_epoch` (an acks=all produce). Fails with
    /// NOT_LEADER_OR_FOLLOWER as soon as the leadership is lost, with
    /// NOT_ENOUGH_REPLICAS_AFTER_APPEND if the ISR is then below `min.insync.replicas`, and
    /// with REQUEST_TIMED_OUT at the timeout.
    pub async fn wait_for_replication(
        &self,
        last_offset: i64,
        leader_epoch: i32,
        timeout: Duration,
    ) -> Result<(), PartitionError> {
        let deadline = Instant::now() + timeout;
        let mut high_watermark = self.high_watermark.subscribe();
        let mut changes = self.changes.subscribe();
        loop {
            let replicated = *high_watermark.borrow_and_update() > last_offset;
            changes.borrow_and_update();
            {
                let state = self.lock();
                if state.role != Role::Leader || state.leader_epoch != leader_epoch {
                    let leader = match state.role {
                        Role::Leader => Some(self.broker),
                        Role::Follower { leader } => leader,
                    };
                    return Err(PartitionError::NotLeader {
                        tp: self.tp.clone(),
                        broker: self.broker,
                        leader,
                    });
                }
                if replicated {
                    let min = self.min_insync_replicas();
                    let isr = state.isr.len();
                    if i64::try_from(isr).unwrap_or(i64::MAX) < i64::from(min) {
                        return Err(PartitionError::NotEnoughReplicasAfterAppend {
                            tp: self.tp.clone(),
                            isr,
                            min,
                        });
                    }
                    return Ok(());
                }
            }
            tokio::select! {
                _ = high_watermark.changed() => {}
                _ = changes.changed() => {}
                () = tokio::time::sleep_until(deadline) => {
                    return Err(PartitionError::ReplicationTimedOut { tp: self.tp.clone() });
                }
            }
        }
    }

    /// The log end offset, watched: a follower's fetch waits on it.
    pub fn watch_log_end(&self) -> tokio::sync::watch::Receiver<i64> {
        self.log_end.subscribe()
    }

    /// The high watermark, watched.
    pub fn watch_high_watermark(&self) -> tokio::sync::watch::Receiver<i64> {
        self.high_watermark.subscribe()
    }

    /// Checks that this replica follows at `leader_epoch`.
    fn check_follower(
        &self,
        state: &ReplicaState,
        leader_epoch: i32,
    ) -> Result<(), PartitionError> {
        if state.role == Role::Leader {
            return Err(PartitionError::NotLeader {
                tp: self.tp.clone(),
                broker: self.broker,
                leader: Some(self.broker),
            });
        }
        if state.leader_epoch != leader_epoch {
            return Err(PartitionError::FencedLeaderEpoch {
                tp: self.tp.clone(),
                given: leader_epoch,
                current: state.leader_epoch,
            });
        }
        Ok(())
    }

    /// Appends batches the leader sent (with their offsets and epochs) as a follower at
    /// `leader_epoch`, recording them in the producer state, then follows the leader's log
    /// start and high watermark (never past its own log end). Returns what was appended.
    pub fn append_as_follower(
        &self,
        leader_epoch: i32,
        batches: &[u8],
        leader_high_watermark: i64,
        leader_log_start: i64,
    ) -> Result<Option<AppendInfo>, PartitionError> {
        let mut producers = self.producers.lock();
        let state = self.lock();
        self.check_follower(&state, leader_epoch)?;
        let info = if batches.is_empty() {
            None
        } else {
            let info = self.log.append_replicated(batches)?;
            for header in appended_headers(batches) {
                producers.record_batch(&header, header.base_offset);
            }
            Some(info)
        };
        let log_end_offset = self.log.log_end_offset();
        self.log_end.send_replace(log_end_offset);
        let start = leader_log_start.min(log_end_offset);
        if start > self.log.log_start_offset() {
            self.log.delete_records_before(start)?;
        }
        self.set_high_watermark(leader_high_watermark.min(log_end_offset));
        Ok(info)
    }

    /// Removes the records at and above `offset`, as a follower at `leader_epoch` whose log
    /// diverged from its leader's, and rebuilds the producer state from what is left
    /// (producers idle for `producer_expiration_ms` are dropped). Returns the new log end.
    pub fn truncate_as_follower(
        &self,
        leader_epoch: i32,
        offset: i64,
        producer_expiration_ms: i64,
    ) -> Result<i64, PartitionError> {
        let mut producers = self.producers.lock();
        let state = self.lock();
        self.check_follower(&state, leader_epoch)?;
        let log_end_offset = self.log.log_end_offset();
        if offset >= log_end_offset {
            return Ok(log_end_offset);
        }
        let high_watermark = self.high_watermark();
        if offset < high_watermark {
            // Only an unclean election makes a leader's log shorter than what was committed.
            tracing::warn!(tp = %self.tp, offset, high_watermark,
                "truncating below the high watermark: the leader's log is shorter");
        }
        let new_end = self.log.truncate_to(offset)?;
        let now_ms = self.clock.now_ms();
        self.producers
            .rebuild(&mut producers, &self.log, now_ms, producer_expiration_ms)?;
        self.log_end.send_replace(new_end);
        self.set_high_watermark(high_watermark.min(new_end));
        tracing::info!(tp = %self.tp, from = log_end_offset, to = new_end, leader_epoch,
            "truncated a divergent tail");
        Ok(new_end)
    }

    /// Empties the log and starts it at `offset`, as a follower at `leader_epoch` whose log
    /// ends below its leader's log start. Returns the new log end.
    pub fn reset_as_follower(
        &self,
        leader_epoch: i32,
        offset: i64,
        producer_expiration_ms: i64,
    ) -> Result<i64, PartitionError> {
        let mut producers = self.producers.lock();
        let state = self.lock();
        self.check_follower(&state, leader_epoch)?;
        let new_end = self.log.reset_to(offset)?;
        let now_ms = self.clock.now_ms();
        self.producers
            .rebuild(&mut producers, &self.log, now_ms, producer_expiration_ms)?;
        self.log_end.send_replace(new_end);
        self.set_high_watermark(new_end);
        tracing::info!(tp = %self.tp, start = new_end, leader_epoch,
            "started the log again at the leader's log start");
        Ok(new_end)
    }

    /// Sets a follower's high watermark (it follows the leader's, so it may go down after a
    /// truncation; consumers never read from a follower).
    fn set_high_watermark(&self, offset: i64) {
        self.high_watermark.send_if_modified(|hw| {
            let changed = *hw != offset;
            *hw = offset;
            self.log.set_cleaner_upper_offset(offset);
            changed
        });
    }
}

#[cfg(test)]
mod tests;
