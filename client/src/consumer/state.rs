//! What a consumer's handle and its background tasks (the fetcher, the group member) share:
//! the assigned partitions with their positions, the group membership, and the calls to the
//! group's coordinator that commit and look up offsets.
//!
//! Invariants:
//! - a partition is fetched only while it is in [`State::partitions`]; taking it out (a
//!   revocation, a new manual assignment) stops its fetching, and records of it still queued
//!   are dropped by [`super::Consumer::recv`];
//! - every change of where a partition is read from (a seek, a reset) gives it a new
//!   `generation`, and fetched records of an older generation are dropped;
//! - at most one fetch per partition is in flight (`in_flight`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kafka_protocol::ResponseError;
use tokio::sync::Notify;
use tokio::time::Instant;
use weir_proto::v1 as pb;

use super::config::ConsumerConfig;
use crate::TopicPartition;
use crate::cluster::Cluster;
use crate::error::{Error, Result, check};

/// How the fetcher learns where to start reading a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Start {
    /// `fetch_offset` is where to read next.
    Known,
    /// Look up the group's committed offset, then apply `auto_offset_reset`.
    Committed,
    /// Apply `auto_offset_reset`.
    Reset,
    /// Reading failed for good (the error went to `recv`); wait for a seek.
    Failed,
}

/// One assigned partition.
#[derive(Debug, Clone)]
pub(super) struct PartitionState {
    /// The offset after the last record `recv` handed out: what a commit stores.
    pub(super) position: Option<i64>,
    /// The next offset to fetch (ahead of `position` by what is prefetched); meaningful when
    /// `start` is [`Start::Known`].
    pub(super) fetch_offset: i64,
    pub(super) start: Start,
    /// Changes whenever where the partition is read from changes.
    pub(super) generation: u64,
    pub(super) in_flight: bool,
    /// No fetch or lookup before this (after a retriable failure).
    pub(super) retry_at: Option<Instant>,
}

/// How partitions come to the consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Mode {
    /// Neither subscribed nor assigned yet.
    Idle,
    /// Given by hand with `assign`.
    Manual,
    /// Given by the group's coordinator for these topics.
    Subscribed(Vec<String>),
}

/// The mutable part of [`Shared`].
#[derive(Debug)]
pub(super) struct State {
    pub(super) partitions: BTreeMap<TopicPartition, PartitionState>,
    pub(super) mode: Mode,
    /// The member id the coordinator gave; empty before joining.
    pub(super) member_id: String,
    /// The member epoch: 0 to (re)join, then what the coordinator said.
    pub(super) member_epoch: i32,
    /// The subscription changed since the last heartbeat that carried it.
    pub(super) subscription_changed: bool,
    pub(super) closed: bool,
}

/// What the consumer's handle and its tasks share.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) cluster: Arc<Cluster>,
    pub(super) config: ConsumerConfig,
    state: Mutex<State>,
    /// Something the fetcher waits for changed (a partition, a position, closing).
    pub(super) wake_fetcher: Notify,
    /// Something the group member waits for changed (the subscription, closing).
    pub(super) wake_group: Notify,
    generations: AtomicU64,
}

/// How long to wait before trying a failed call again.
pub(super) const RETRY_BACKOFF: Duration = Duration::from_millis(100);

impl Shared {
    pub(super) fn new(cluster: Arc<Cluster>, config: ConsumerConfig) -> Shared {
        Shared {
            cluster,
            config,
            state: Mutex::new(State {
                partitions: BTreeMap::new(),
                mode: Mode::Idle,
                member_id: String::new(),
                member_epoch: 0,
                subscription_changed: false,
                closed: false,
            }),
            wake_fetcher: Notify::new(),
            wake_group: Notify::new(),
            generations: AtomicU64::new(1),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("consumer state lock not poisoned")
    }

    /// A generation no partition had before.
    pub(super) fn next_generation(&self) -> u64 {
        self.generations.fetch_add(1, Ordering::Relaxed)
    }

    /// A newly assigned partition, to be started as `start` says.
    pub(super) fn new_partition(&self, start: Start) -> PartitionState {
        PartitionState {
            position: None,
            fetch_offset: -1,
            start,
            generation: self.next_generation(),
            in_flight: false,
            retry_at: None,
        }
    }

    /// The group, or why an operation that needs one cannot run.
    pub(super) fn group(&self, what: &str) -> Result<&str> {
        self.config.group.as_deref().ok_or_else(|| {
            Error::invalid(
                "group",
                format!("{what} needs a consumer group: set ConsumerConfig::group"),
            )
        })
    }

    /// The positions of the assigned partitions (those `only` names, when given) that have one.
    pub(super) fn positions(&self, only: Option<&[TopicPartition]>) -> Vec<(TopicPartition, i64)> {
        let state = self.lock();
        state
            .partitions
            .iter()
            .filter(|(tp, _)| only.is_none_or(|only| only.contains(*tp)))
            .filter_map(|(tp, p)| Some((tp.clone(), p.position?)))
            .collect()
    }

    /// Commits `offsets` for the group: as its member when subscribed, else as no member
    /// (generation -1), which the coordinator accepts while the group has no members.
    pub(super) async fn commit(&self, offsets: Vec<(TopicPartition, i64)>) -> Result<()> {
        let group = self.group("committing offsets")?;
        if offsets.is_empty() {
            return Ok(());
        }
        let commits: Vec<pb::OffsetCommit> = offsets
            .into_iter()
            .map(|(tp, offset)| pb::OffsetCommit {
                topic: tp.topic,
                partition: tp.partition,
                offset,
                leader_epoch: None,
                metadata: None,
            })
            .collect();
        let deadline = Instant::now() + self.cluster.config.retry_timeout;
        loop {
            let request = self.commit_request(group, commits.clone());
            let result = self
                .cluster
                .on_coordinator(group, "committing offsets", |mut groups| {
                    let request = request.clone();
                    async move {
                        let answer = groups.commit_offsets(request).await?.into_inner();
                        for partition in answer.partitions {
                            check(partition.error)?;
                        }
                        Ok(())
                    }
                })
                .await;
            match result {
                // The member's epoch moved while the commit was on its way: the next
                // heartbeat answer brings the new one.
                Err(e)
                    if e.kafka_error() == Some(ResponseError::StaleMemberEpoch)
                        && Instant::now() < deadline =>
                {
                    tokio::time::sleep(RETRY_BACKOFF).await;
                }
                result => return result,
            }
        }
    }

    fn commit_request(
        &self,
        group: &str,
        offsets: Vec<pb::OffsetCommit>,
    ) -> pb::CommitOffsetsRequest {
        let state = self.lock();
        let member = matches!(state.mode, Mode::Subscribed(_)) && state.member_epoch > 0;
        pb::CommitOffsetsRequest {
            group: group.to_string(),
            member_id: if member {
                state.member_id.clone()
            } else {
                String::new()
            },
            generation_id: if member { state.member_epoch } else { -1 },
            group_instance_id: if member {
                self.config.instance_id.clone()
            } else {
                None
            },
            offsets,
        }
    }

    /// The group's committed offsets of `partitions` (`None` where nothing is committed).
    pub(super) async fn committed(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, Option<i64>)>> {
        let group = self.group("looking up committed offsets")?;
        if partitions.is_empty() {
            return Ok(Vec::new());
        }
        let request = pb::FetchOffsetsRequest {
            group: group.to_string(),
            partitions: partitions
                .iter()
                .map(|tp| pb::TopicPartition {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                })
                .collect(),
        };
        let answer = self
            .cluster
            .on_coordinator(group, "committed offsets", |mut groups| {
                let request = request.clone();
                async move { Ok(groups.fetch_offsets(request).await?.into_inner()) }
            })
            .await?;
        Ok(answer
            .offsets
            .into_iter()
            .map(|o| {
                let offset = (o.offset >= 0).then_some(o.offset);
                (TopicPartition::new(o.topic, o.partition), offset)
            })
            .collect())
    }

    /// Sends a consumer-protocol heartbeat to the group's coordinator (one try: the group
    /// member decides what to do on failure).
    pub(super) async fn heartbeat(
        &self,
        request: pb::HeartbeatRequest,
    ) -> Result<pb::HeartbeatResponse> {
        let group = request.group.clone();
        let result: Result<pb::HeartbeatResponse> = async {
            let mut groups = self.cluster.coordinator_client(&group).await?;
            Ok(groups.heartbeat(request).await?.into_inner())
        }
        .await;
        if let Err(e) = &result
            && e.is_stale_coordinator()
        {
            self.cluster.invalidate_coordinator(&group);
        }
        result
    }
}
