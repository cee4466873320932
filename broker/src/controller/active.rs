//! The active controller's side of a node: deciding [`Request`]s while this node is the Raft
//! leader, fencing brokers whose sessions end, and giving partitions back to their preferred
//! leaders.
//!
//! Every decision is made under one lock against the metadata this node has applied, after
//! confirming it still leads and has applied everything committed, then written through
//! Raft; a decision that a concurrent change made stale is refused by `apply` and reported,
//! never half applied.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use openraft::{BasicNode, ChangeMembers, Raft};
use tokio::sync::Mutex;
use uuid::Uuid;

use super::decisions::{self, DecisionError, LeadershipMoves};
use super::error::ControllerError;
use super::metadata::{ApplyError, ClusterMetadata};
use super::metrics::{self, FenceReason};
use super::raft::{MetadataBatch, StateMachine, TypeConfig};
use super::records::{BrokerId, BrokerRecord, MetadataRecord};
use super::rpc::{AlteredPartition, Reply, Request};
use crate::clock::Clock;

/// What decides requests on this node while it leads the quorum.
pub(crate) struct Active {
    node_id: u64,
    /// The controller voters: every other broker follows the metadata log as a learner.
    voters: BTreeSet<u64>,
    raft: Raft<TypeConfig>,
    state_machine: StateMachine,
    /// Serializes decisions, so each is made against the state the previous one left.
    deciding: Mutex<()>,
    clock: Arc<dyn Clock>,
    session_timeout_ms: i64,
    /// How long a broker this controller has not heard from yet (it was just elected) gets
    /// to heartbeat before it is fenced: two heartbeat intervals, not a whole session, so
    /// a broker that died with the previous active controller loses its leaderships soon.
    first_heartbeat_grace_ms: i64,
    sessions: std::sync::Mutex<Sessions>,
}

/// Broker sessions as the active controller sees them (not replicated: a new active
/// controller starts every session afresh).
#[derive(Debug, Default)]
struct Sessions {
    /// When each broker was last heard from (or, for one not heard from yet, when its grace
    /// started, less a session).
    last_heartbeat_ms: BTreeMap<BrokerId, i64>,
    /// The brokers heard from (a registration, heartbeat or session stream).
    heard_from: BTreeSet<BrokerId>,
    /// When this node was first seen leading (by a request or a session check): the grace of
    /// brokers not heard from yet starts there.
    leading_since_ms: Option<i64>,
    /// The log index of each broker's registration: it is unfenced once it has applied it.
    registered_at: BTreeMap<BrokerId, u64>,
    /// Each broker's open session stream: the incarnation that opened it, and a number that
    /// tells it from the broker's earlier streams.
    streams: BTreeMap<BrokerId, (Uuid, u64)>,
    /// The number of the next session stream.
    next_stream: u64,
    /// Broker incarnations in controlled shutdown: their heartbeats do not unfence them.
    shutting_down: BTreeMap<BrokerId, Uuid>,
}

impl Sessions {
    fn heard(&mut self, broker_id: BrokerId, now_ms: i64) {
        self.leading_since_ms.get_or_insert(now_ms);
        self.last_heartbeat_ms.insert(broker_id, now_ms);
        self.heard_from.insert(broker_id);
    }
}

impl Active {
    pub(crate) fn new(
        node_id: u64,
        voters: BTreeSet<u64>,
        raft: Raft<TypeConfig>,
        state_machine: StateMachine,
        clock: Arc<dyn Clock>,
        session_timeout_ms: i64,
        first_heartbeat_grace_ms: i64,
    ) -> Self {
        Self {
            node_id,
            voters,
            raft,
            state_machine,
            deciding: Mutex::new(()),
            clock,
            session_timeout_ms,
            first_heartbeat_grace_ms: first_heartbeat_grace_ms.min(session_timeout_ms),
            sessions: std::sync::Mutex::new(Sessions::default()),
        }
    }

    fn leader(&self) -> Option<u64> {
        self.raft.metrics().borrow().current_leader
    }

    /// Decides `request`, or refuses with [`ControllerError::NotController`] if this node
    /// does not lead the quorum.
    pub(crate) async fn handle(&self, request: Request) -> Result<Reply, ControllerError> {
        match request {
            Request::RegisterBroker(record) => {
                let registered_at = self.register_broker(record).await?;
                Ok(Reply::Registered { registered_at })
            }
            Request::Heartbeat {
                broker_id,
                incarnation,
                applied_index,
            } => {
                let fenced = self
                    .heartbeat(broker_id, incarnation, applied_index)
                    .await?;
                Ok(Reply::Heartbeat { fenced })
            }
            Request::CreateTopic {
                name,
                partitions,
                replication_factor,
                configs,
            } => {
                let _deciding = self.deciding.lock().await;
                let metadata = self.current_metadata().await?;
                let topic_id = Uuid::new_v4();
                // Rotate placement with the topic count, so leaders spread over topics too.
                let start = metadata.topics().count();
                let records = decisions::create_topic(
                    &metadata,
                    &name,
                    topic_id,
                    partitions,
                    replication_factor,
                    configs,
                    start,
                )?;
                self.write(records).await?;
                Ok(Reply::TopicCreated(topic_id))
            }
            Request::DeleteTopic { name } => {
                let _deciding = self.deciding.lock().await;
                let topic_id = self
                    .current_metadata()
                    .await?
                    .topic_by_name(&name)
                    .map(|t| t.id)
                    .ok_or(DecisionError::UnknownTopic(name))?;
                self.write(vec![MetadataRecord::RemoveTopic { topic_id }])
                    .await?;
                Ok(Reply::Done)
            }
            Request::CreatePartitions { name, total } => {
                let _deciding = self.deciding.lock().await;
                let metadata = self.current_metadata().await?;
                let start = metadata.topics().count();
                let records = decisions::create_partitions(&metadata, &name, total, start)?;
                self.write(records).await?;
                Ok(Reply::Done)
            }
            Request::AlterTopicConfigs { name, changes } => {
                let _deciding = self.deciding.lock().await;
                let metadata = self.current_metadata().await?;
                let record = decisions::alter_topic_configs(&metadata, &name, &changes)?;
                self.write(vec![record]).await?;
                Ok(Reply::Done)
            }
            Request::AllocateProducerIds {
                broker_id,
                incarnation,
            } => {
                let _deciding = self.deciding.lock().await;
                let metadata = self.current_metadata().await?;
                let (record, block) =
                    decisions::allocate_producer_ids(&metadata, broker_id, incarnation)?;
                self.write(vec![record]).await?;
                Ok(Reply::ProducerIds(block))
            }
            Request::ControlledShutdown {
                broker_id,
                incarnation,
            } => self.controlled_shutdown(broker_id, incarnation).await,
            Request::AlterPartition(proposal) => {
                let _deciding = self.deciding.lock().await;
                let metadata = self.current_metadata().await?;
                let record = decisions::change_isr(&metadata, &proposal)?;
                self.write(vec![record]).await?;
                let partition = self
                    .state_machine
                    .metadata()
                    .topic(proposal.topic_id)
                    .and_then(|t| t.partitions.get(usize::try_from(proposal.partition).ok()?))
                    .cloned()
                    .ok_or_else(|| {
                        ControllerError::Raft("an altered partition vanished once applied".into())
                    })?;
                Ok(Reply::PartitionAltered(AlteredPartition {
                    leader_epoch: partition.leader_epoch,
                    partition_epoch: partition.partition_epoch,
                    isr: partition.isr,
                }))
            }
        }
    }

    /// Registers a broker incarnation, fenced, and makes sure a broker that is not a voter
    /// follows the metadata log as a learner at its internal address. Returns the
    /// registration's log index: the broker is unfenced once it has applied it.
    async fn register_broker(&self, record: BrokerRecord) -> Result<u64, ControllerError> {
        let _deciding = self.deciding.lock().await;
        let broker_id = record.broker_id;
        let node_id = u64::try_from(broker_id).map_err(|_| {
            ControllerError::InvalidRequest(format!(
                "broker id {broker_id} is negative; node ids are 0 or more"
            ))
        })?;
        let metadata = self.current_metadata().await?;
        // A live earlier incarnation (the broker restarted before its session expired) is
        // fenced first, so its partitions get other leaders: a fenced broker leads nothing.
        let mut records = Vec::new();
        let replaces_live = metadata.is_live(broker_id);
        if replaces_live {
            records.extend(decisions::fence_broker(&metadata, broker_id));
        }
        let internal = record.endpoints.internal.clone();
        records.push(MetadataRecord::RegisterBroker(record));
        let index = self.write(records).await?;
        if replaces_live {
            metrics::broker_fenced(FenceReason::Reregistered);
        }
        {
            let mut sessions = self.sessions();
            sessions.shutting_down.remove(&broker_id);
            sessions.registered_at.insert(broker_id, index);
            sessions.heard(broker_id, self.clock.now_ms());
        }
        if !self.voters.contains(&node_id) {
            self.ensure_learner(node_id, internal).await?;
        }
        Ok(index)
    }

    /// Adds `node_id` to the Raft membership as a learner at `address`, or moves it there.
    /// Only learners are set this way: replacing a voter's address is not safe.
    async fn ensure_learner(&self, node_id: u64, address: String) -> Result<(), ControllerError> {
        let known = {
            let metrics = self.raft.metrics().borrow().clone();
            metrics
                .membership_config
                .membership()
                .get_node(&node_id)
                .map(|node| node.addr.clone())
        };
        if known.as_deref() == Some(address.as_str()) {
            return Ok(());
        }
        tracing::info!(node_id, %address, "adding a broker to the metadata log as a learner");
        let node = BasicNode { addr: address };
        self.raft
            .change_membership(
                ChangeMembers::SetNodes(BTreeMap::from([(node_id, node)])),
                true,
            )
            .await
            .map_err(|e| match e.forward_to_leader::<BasicNode>() {
                Some(forward) => ControllerError::NotController {
                    leader: forward.leader_id,
                },
                None => ControllerError::Raft(e.to_string()),
            })?;
        Ok(())
    }

    /// A broker's heartbeat: it is alive and has applied the metadata log up to
    /// `applied_index`. A fenced broker that has caught up with its registration is unfenced
    /// (and regains leadership of offline partitions it is in sync for). Returns whether the
    /// broker is still fenced.
    async fn heartbeat(
        &self,
        broker_id: BrokerId,
        incarnation: Uuid,
        applied_index: u64,
    ) -> Result<bool, ControllerError> {
        if self.leader() != Some(self.node_id) {
            return Err(ControllerError::NotController {
                leader: self.leader(),
            });
        }
        let registered = |metadata: &ClusterMetadata| {
            metadata
                .broker(broker_id)
                .filter(|b| b.incarnation == incarnation)
                .map(|b| b.fenced)
        };
        // A live broker's heartbeat only needs noting; the local view recognises it.
        let mut fenced = self.state_machine.with_metadata(registered);
        if fenced != Some(false) {
            // Unknown here, or fenced: decide on the committed metadata.
            fenced = registered(&*self.current_metadata().await?);
        }
        let Some(fenced) = fenced else {
            return Err(ControllerError::Unregistered { broker_id });
        };
        let caught_up = {
            let mut sessions = self.sessions();
            sessions.heard(broker_id, self.clock.now_ms());
            // After a change of active controller the registration index is not known here;
            // what this controller has applied is a later point, so a safe one.
            let registered_at = sessions.registered_at.get(&broker_id).copied();
            applied_index
                >= registered_at
                    .or(self.state_machine.applied_index())
                    .unwrap_or(0)
        };
        if !(fenced && caught_up) {
            return Ok(fenced);
        }
        if self.sessions().shutting_down.get(&broker_id) == Some(&incarnation) {
            // Stopping: it stays fenced, leading nothing, until it registers again.
            return Ok(true);
        }
        let _deciding = self.deciding.lock().await;
        let metadata = self.current_metadata().await?;
        if registered(&metadata) == Some(true) {
            self.write(decisions::unfence_broker(&metadata, broker_id))
                .await?;
        }
        Ok(false)
    }

    /// A broker about to stop: it leaves every ISR and its leaderships move to other in-sync
    /// replicas (a fence), and it stays fenced whatever its heartbeats say until it registers
    /// again. A broker fenced already (its session ended first) has nothing left to move.
    async fn controlled_shutdown(
        &self,
        broker_id: BrokerId,
        incarnation: Uuid,
    ) -> Result<Reply, ControllerError> {
        let _deciding = self.deciding.lock().await;
        let metadata = self.current_metadata().await?;
        let Some(broker) = metadata
            .broker(broker_id)
            .filter(|b| b.incarnation == incarnation)
        else {
            return Err(ControllerError::Unregistered { broker_id });
        };
        self.sessions().shutting_down.insert(broker_id, incarnation);
        if broker.fenced {
            return Ok(Reply::ShutdownReady {
                fenced_at: self.state_machine.applied_index().unwrap_or(0),
                moves: LeadershipMoves::default(),
            });
        }
        let records = decisions::fence_broker(&metadata, broker_id);
        let moves = LeadershipMoves::of(&records);
        let fenced_at = self.write(records).await?;
        metrics::broker_fenced(FenceReason::ControlledShutdown);
        tracing::info!(
            broker_id,
            leaders_moved = moves.moved,
            left_offline = moves.offline,
            "a broker is shutting down: fenced it and moved its leaderships"
        );
        Ok(Reply::ShutdownReady { fenced_at, moves })
    }

    /// A broker opened its session stream to this controller; returns the stream's number,
    /// which [`session_closed`](Self::session_closed) takes. Refused unless this node leads
    /// and knows the broker as that incarnation.
    pub(crate) fn open_session(
        &self,
        broker_id: BrokerId,
        incarnation: Uuid,
    ) -> Result<u64, ControllerError> {
        if self.leader() != Some(self.node_id) {
            return Err(ControllerError::NotController {
                leader: self.leader(),
            });
        }
        let known = self
            .state_machine
            .with_metadata(|m| m.broker(broker_id).map(|b| b.incarnation));
        if known != Some(incarnation) {
            return Err(ControllerError::Unregistered { broker_id });
        }
        let mut sessions = self.sessions();
        let stream = sessions.next_stream;
        sessions.next_stream += 1;
        sessions.streams.insert(broker_id, (incarnation, stream));
        sessions.heard(broker_id, self.clock.now_ms());
        Ok(stream)
    }

    /// A broker's session stream closed: unless it opened a newer one meanwhile, its process
    /// stopped or its connection broke, and it is fenced now rather than when its session
    /// times out (a live broker is unfenced again by its next heartbeat).
    pub(crate) async fn session_closed(
        &self,
        broker_id: BrokerId,
        incarnation: Uuid,
        stream: u64,
    ) -> Result<(), ControllerError> {
        {
            let mut sessions = self.sessions();
            if sessions.streams.get(&broker_id) != Some(&(incarnation, stream)) {
                return Ok(());
            }
            sessions.streams.remove(&broker_id);
        }
        if self.leader() != Some(self.node_id) {
            return Ok(());
        }
        let _deciding = self.deciding.lock().await;
        let metadata = self.current_metadata().await?;
        let live = metadata
            .broker(broker_id)
            .is_some_and(|b| b.incarnation == incarnation && !b.fenced);
        if live {
            tracing::info!(
                broker_id,
                "a broker's session stream closed (its process stopped or its connection \
                 broke): fencing it"
            );
            self.fence(broker_id).await?;
            metrics::broker_fenced(FenceReason::SessionClosed);
        }
        Ok(())
    }

    /// Gives partitions back to their preferred leaders (the first replica) where that
    /// replica is live and in sync, if this node leads; returns how many moved.
    pub(crate) async fn balance_leaders(&self) -> Result<usize, ControllerError> {
        if self.leader() != Some(self.node_id)
            || decisions::preferred_leader_elections(&self.state_machine.metadata()).is_empty()
        {
            return Ok(0);
        }
        let _deciding = self.deciding.lock().await;
        let records = decisions::preferred_leader_elections(&*self.current_metadata().await?);
        let moved = records.len();
        if moved > 0 {
            self.write(records).await?;
            metrics::preferred_leaders_elected(moved);
            tracing::info!(moved, "gave partitions back to their preferred leaders");
        }
        Ok(moved)
    }

    /// The brokers heard from since this node became the active controller (none unless it
    /// is).
    pub(crate) fn heard_from(&self) -> Vec<BrokerId> {
        if self.leader() != Some(self.node_id) {
            return Vec::new();
        }
        self.sessions().heard_from.iter().copied().collect()
    }

    /// Fences a broker and moves leadership of its partitions to other ISR members.
    pub(crate) async fn fence_broker(&self, broker_id: BrokerId) -> Result<u64, ControllerError> {
        let _deciding = self.deciding.lock().await;
        let index = self.fence(broker_id).await?;
        metrics::broker_fenced(FenceReason::Requested);
        Ok(index)
    }

    /// The metadata to decide on: this node must still lead, and must have applied every
    /// committed entry (a new leader may not have yet). The caller holds the decision lock.
    async fn current_metadata(&self) -> Result<Arc<ClusterMetadata>, ControllerError> {
        self.raft.ensure_linearizable().await.map_err(|e| {
            use openraft::error::CheckIsLeaderError;
            match e.api_error() {
                Some(CheckIsLeaderError::ForwardToLeader(forward)) => {
                    ControllerError::NotController {
                        leader: forward.leader_id,
                    }
                }
                // Just elected, and not yet heard back from a majority: try again shortly.
                Some(CheckIsLeaderError::QuorumNotEnough(_)) => {
                    ControllerError::Unavailable(e.to_string())
                }
                None => ControllerError::Raft(e.to_string()),
            }
        })?;
        Ok(self.state_machine.metadata())
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes `records` through Raft as one batch; returns its log index once committed and
    /// applied here.
    async fn write(&self, records: Vec<MetadataRecord>) -> Result<u64, ControllerError> {
        let written = self
            .raft
            .client_write(MetadataBatch(records))
            .await
            .map_err(|e| match e.forward_to_leader::<BasicNode>() {
                Some(forward) => ControllerError::NotController {
                    leader: forward.leader_id,
                },
                None => ControllerError::Raft(e.to_string()),
            })?;
        if let Some(refused) = written.data.refused {
            return Err(ControllerError::Conflict(refused));
        }
        Ok(written.log_id.index)
    }

    /// Fences `broker_id`; the caller holds the decision lock.
    async fn fence(&self, broker_id: BrokerId) -> Result<u64, ControllerError> {
        let records = decisions::fence_broker(&*self.current_metadata().await?, broker_id);
        if records.is_empty() {
            return Err(ControllerError::Conflict(ApplyError::UnknownBroker(
                broker_id,
            )));
        }
        self.write(records).await
    }

    /// Fences every live broker whose session expired, if this node leads; returns them.
    pub(crate) async fn expire_sessions(&self) -> Result<Vec<BrokerId>, ControllerError> {
        if self.leader() != Some(self.node_id) {
            // Sessions are the active controller's; a later one starts them afresh.
            *self.sessions() = Sessions::default();
            return Ok(Vec::new());
        }
        // Most checks find nothing: look at the local view first, without a quorum round trip.
        if self.expired(&self.state_machine.metadata()).is_empty() {
            return Ok(Vec::new());
        }
        let _deciding = self.deciding.lock().await;
        let expired = self.expired(&*self.current_metadata().await?);
        for &broker_id in &expired {
            tracing::info!(broker_id, "fencing a broker whose session expired");
            self.fence(broker_id).await?;
            metrics::broker_fenced(FenceReason::SessionExpired);
        }
        Ok(expired)
    }

    /// The live brokers in `metadata` whose sessions expired. A broker not heard from yet
    /// (this controller was just elected) is given the first-heartbeat grace from when this
    /// node was first seen leading.
    fn expired(&self, metadata: &ClusterMetadata) -> Vec<BrokerId> {
        let mut sessions = self.sessions();
        let now = self.clock.now_ms();
        let since = *sessions.leading_since_ms.get_or_insert(now);
        for broker in metadata.brokers() {
            sessions
                .last_heartbeat_ms
                .entry(broker.id)
                .or_insert(since - self.session_timeout_ms + self.first_heartbeat_grace_ms);
        }
        decisions::expired_sessions(
            metadata,
            &sessions.last_heartbeat_ms,
            now,
            self.session_timeout_ms,
        )
    }
}
