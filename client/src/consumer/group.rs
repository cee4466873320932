//! The group member: a background task that heartbeats to the group's coordinator on the
//! consumer protocol (`Groups.Heartbeat`), reconciles the assignment it is given, and commits
//! positions every `auto_commit_interval`.
//!
//! Reconciling, as the coordinator expects it (partitions are revoked before they are given
//! to anyone else):
//!
//! ```text
//!   answer names an assignment
//!     ├─ partitions no longer in it: stop fetching, commit their positions (auto commit),
//!     │  on_revoke, then report what is owned now in the next heartbeat, sent at once
//!     └─ partitions new in it: on_assign, then the fetcher starts them at the committed
//!        offset (or auto_offset_reset)
//!   FENCED_MEMBER_EPOCH / UNKNOWN_MEMBER_ID: the partitions are lost (no commit), on_revoke,
//!   rejoin with epoch 0
//!   NOT_COORDINATOR and other passing failures: find the coordinator again, retry soon
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;
use tokio::sync::mpsc;
use tokio::time::Instant;
use weir_proto::v1 as pb;

use super::state::{Mode, RETRY_BACKOFF, Shared, Start};
use crate::TopicPartition;
use crate::error::Error;

/// The member epoch that leaves a group for good.
pub(super) const LEAVE_EPOCH: i32 = -1;
/// The member epoch a static member leaves with, keeping its partitions for its restart.
pub(super) const LEAVE_STATIC_EPOCH: i32 = -2;

/// The heartbeat interval until the coordinator names one.
const FIRST_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);

/// Runs the member until the consumer closes; failures that do not pass go to `recv`.
pub(super) async fn run(shared: Arc<Shared>, errors: mpsc::UnboundedSender<Error>) {
    let mut member = Member {
        shared,
        errors,
        interval: FIRST_HEARTBEAT_INTERVAL,
        last_committed: BTreeMap::new(),
    };
    let auto_commit = member.shared.config.auto_commit;
    let commit_interval = member.shared.config.auto_commit_interval;
    let mut next_heartbeat = Instant::now();
    let mut next_commit = Instant::now() + commit_interval;
    loop {
        let subscribed = {
            let state = member.shared.lock();
            if state.closed {
                return;
            }
            matches!(state.mode, Mode::Subscribed(_))
        };
        tokio::select! {
            () = tokio::time::sleep_until(next_heartbeat), if subscribed => {
                next_heartbeat = member.heartbeat().await;
            }
            () = tokio::time::sleep_until(next_commit), if auto_commit => {
                member.auto_commit().await;
                next_commit = Instant::now() + commit_interval;
            }
            () = member.shared.wake_group.notified() => {
                if member.shared.lock().subscription_changed {
                    next_heartbeat = Instant::now();
                }
            }
        }
    }
}

struct Member {
    shared: Arc<Shared>,
    errors: mpsc::UnboundedSender<Error>,
    interval: Duration,
    /// What this task last committed, so that unchanged positions are not committed again.
    last_committed: BTreeMap<TopicPartition, i64>,
}

impl Member {
    /// Commits the positions that moved since the last auto commit.
    async fn auto_commit(&mut self) {
        let changed: Vec<(TopicPartition, i64)> = self
            .shared
            .positions(None)
            .into_iter()
            .filter(|(tp, offset)| self.last_committed.get(tp) != Some(offset))
            .collect();
        if changed.is_empty() {
            return;
        }
        match self.shared.commit(changed.clone()).await {
            Ok(()) => self.last_committed.extend(changed),
            Err(error) => tracing::warn!(%error, "auto commit failed; will try again"),
        }
    }

    /// Sends one heartbeat and acts on the answer; returns when to send the next.
    async fn heartbeat(&mut self) -> Instant {
        let Some((request, sent_subscription)) = self.request() else {
            return Instant::now() + self.interval;
        };
        match self.shared.heartbeat(request).await {
            Ok(answer) => {
                {
                    let mut state = self.shared.lock();
                    state.member_id = answer.member_id.clone();
                    state.member_epoch = answer.member_epoch;
                    if sent_subscription {
                        state.subscription_changed = false;
                    }
                }
                if answer.heartbeat_interval_ms > 0 {
                    self.interval = Duration::from_millis(
                        u64::try_from(answer.heartbeat_interval_ms).unwrap_or(0),
                    );
                }
                let changed = match answer.assignment {
                    Some(assignment) => self.reconcile(assignment).await,
                    None => false,
                };
                // A changed assignment is acknowledged at once, so the rebalance moves on.
                if changed {
                    Instant::now()
                } else {
                    Instant::now() + self.interval
                }
            }
            Err(error) => self.heartbeat_failed(error),
        }
    }

    /// The next heartbeat request, and whether it carries the subscription; `None` when not
    /// subscribed.
    fn request(&self) -> Option<(pb::HeartbeatRequest, bool)> {
        let shared = &self.shared;
        let state = shared.lock();
        let Mode::Subscribed(topics) = &state.mode else {
            return None;
        };
        let joining = state.member_epoch == 0;
        let send_subscription = joining || state.subscription_changed;
        let rebalance_timeout_ms =
            i32::try_from(shared.config.rebalance_timeout.as_millis()).unwrap_or(i32::MAX);
        let request = pb::HeartbeatRequest {
            group: shared.config.group.clone().unwrap_or_default(),
            member_id: state.member_id.clone(),
            member_epoch: state.member_epoch,
            instance_id: shared.config.instance_id.clone(),
            rack_id: None,
            rebalance_timeout_ms: if joining { rebalance_timeout_ms } else { -1 },
            subscribed_topics: send_subscription.then(|| pb::TopicNames {
                names: topics.clone(),
            }),
            server_assignor: if joining {
                shared.config.assignor.clone()
            } else {
                None
            },
            owned: (!joining).then(|| assignment_of(state.partitions.keys())),
            client_id: shared.cluster.config.client_id.clone(),
        };
        Some((request, send_subscription))
    }

    /// Moves the owned partitions to `assignment`; returns whether they changed.
    async fn reconcile(&mut self, assignment: pb::Assignment) -> bool {
        let target: BTreeSet<TopicPartition> = assignment
            .topics
            .into_iter()
            .flat_map(|t| {
                let topic = t.topic;
                t.partitions
                    .into_iter()
                    .map(move |p| TopicPartition::new(topic.clone(), p))
            })
            .collect();
        let owned: BTreeSet<TopicPartition> =
            self.shared.lock().partitions.keys().cloned().collect();
        let revoked: Vec<TopicPartition> = owned.difference(&target).cloned().collect();
        let added: Vec<TopicPartition> = target.difference(&owned).cloned().collect();
        if !revoked.is_empty() {
            self.revoke(&revoked, true).await;
        }
        if !added.is_empty() {
            tracing::info!(partitions = ?added, "partitions assigned");
            if let Some(on_assign) = &self.shared.config.on_assign {
                on_assign(&added);
            }
            let mut state = self.shared.lock();
            for tp in &added {
                let partition = self.shared.new_partition(Start::Committed);
                state.partitions.insert(tp.clone(), partition);
            }
            drop(state);
            self.shared.wake_fetcher.notify_one();
        }
        !revoked.is_empty() || !added.is_empty()
    }

    /// Gives up `partitions`: stops fetching them, commits their positions when `commit`
    /// (and auto commit is on), then tells `on_revoke`.
    async fn revoke(&mut self, partitions: &[TopicPartition], commit: bool) {
        tracing::info!(?partitions, commit, "partitions revoked");
        let positions: Vec<(TopicPartition, i64)> = {
            let mut state = self.shared.lock();
            partitions
                .iter()
                .filter_map(|tp| {
                    let p = state.partitions.remove(tp)?;
                    Some((tp.clone(), p.position?))
                })
                .collect()
        };
        self.shared.wake_fetcher.notify_one();
        if commit
            && self.shared.config.auto_commit
            && let Err(error) = self.shared.commit(positions).await
        {
            tracing::warn!(%error, "committing the revoked partitions' positions failed");
        }
        for tp in partitions {
            self.last_committed.remove(tp);
        }
        if let Some(on_revoke) = &self.shared.config.on_revoke {
            on_revoke(partitions);
        }
    }

    /// After a failed heartbeat: rejoin when fenced, retry soon when it may pass, else report
    /// to `recv` and retry at the next interval.
    fn heartbeat_failed(&mut self, error: Error) -> Instant {
        match error.kafka_error() {
            Some(ResponseError::FencedMemberEpoch | ResponseError::UnknownMemberId) => {
                tracing::warn!(%error, "fenced from the group; rejoining");
                let lost: Vec<TopicPartition> = {
                    let mut state = self.shared.lock();
                    state.member_epoch = 0;
                    if error.kafka_error() == Some(ResponseError::UnknownMemberId) {
                        state.member_id.clear();
                    }
                    std::mem::take(&mut state.partitions).into_keys().collect()
                };
                self.shared.wake_fetcher.notify_one();
                for tp in &lost {
                    self.last_committed.remove(tp);
                }
                if !lost.is_empty()
                    && let Some(on_revoke) = &self.shared.config.on_revoke
                {
                    on_revoke(&lost);
                }
                Instant::now()
            }
            _ if error.is_retriable() || error.is_stale_coordinator() => {
                tracing::debug!(%error, "heartbeat failed; retrying");
                Instant::now() + RETRY_BACKOFF
            }
            _ => {
                tracing::warn!(%error, "heartbeat refused");
                let _ = self.errors.send(error);
                Instant::now() + self.interval
            }
        }
    }
}

/// Partitions by topic, as a heartbeat reports them.
fn assignment_of<'a>(partitions: impl Iterator<Item = &'a TopicPartition>) -> pb::Assignment {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for tp in partitions {
        by_topic.entry(&tp.topic).or_default().push(tp.partition);
    }
    pb::Assignment {
        topics: by_topic
            .into_iter()
            .map(|(topic, partitions)| pb::AssignedPartitions {
                topic: topic.to_string(),
                partitions,
            })
            .collect(),
    }
}

/// Leaves the group (for good, or as a static member keeping its place for a restart).
pub(super) async fn leave(shared: &Shared) -> crate::Result<()> {
    let (member_id, joined) = {
        let state = shared.lock();
        (
            state.member_id.clone(),
            matches!(state.mode, Mode::Subscribed(_)) && state.member_epoch > 0,
        )
    };
    if !joined {
        return Ok(());
    }
    let epoch = if shared.config.instance_id.is_some() {
        LEAVE_STATIC_EPOCH
    } else {
        LEAVE_EPOCH
    };
    let request = pb::HeartbeatRequest {
        group: shared.config.group.clone().unwrap_or_default(),
        member_id,
        member_epoch: epoch,
        instance_id: shared.config.instance_id.clone(),
        rebalance_timeout_ms: -1,
        client_id: shared.cluster.config.client_id.clone(),
        ..pb::HeartbeatRequest::default()
    };
    shared
        .cluster
        .retry("leaving the group", || shared.heartbeat(request.clone()))
        .await?;
    shared.lock().member_epoch = epoch;
    Ok(())
}
