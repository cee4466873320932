//! A controller node: the Raft quorum member (a voter) that keeps its metadata log in
//! `<dir>`, serves the Raft RPCs of its peers on its internal listener, and, while it is the
//! active controller (the Raft leader), decides and writes metadata changes.
//!
//! Every decision is made under one lock against the metadata this node has applied, then
//! written through Raft; a decision that a concurrent change made stale is refused by
//! `apply` and reported, never half applied.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::{BasicNode, Config, Raft};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, oneshot};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use uuid::Uuid;
use weir_proto::internal::v1::controller_raft_server::ControllerRaftServer;

use super::decisions::{self, DecisionError};
use super::metadata::{ApplyError, ClusterMetadata};
use super::raft::{LogStore, MetadataBatch, NetworkFactory, RaftService, StateMachine, TypeConfig};
use super::records::{BrokerId, BrokerRecord, MetadataRecord};
use crate::clock::Clock;
use crate::config::Voter;

/// How a controller node runs.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// This node's id; it must be one of `voters`.
    pub node_id: u64,
    /// Where the metadata log and snapshots live.
    pub dir: PathBuf,
    /// Every voter of the quorum, this node included.
    pub voters: Vec<Voter>,
    /// How often the leader sends heartbeats.
    pub heartbeat_interval_ms: u64,
    /// A follower that hears no leader for a random time in this range starts an election.
    pub election_timeout_min_ms: u64,
    /// See `election_timeout_min_ms`.
    pub election_timeout_max_ms: u64,
    /// A broker whose heartbeats stop for this long is fenced.
    pub broker_session_timeout_ms: u64,
    /// The time broker sessions are measured by.
    pub clock: Arc<dyn Clock>,
}

/// Why a controller request failed.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// This node is not the active controller; `leader` is, if one is known.
    #[error("node is not the active controller (the active controller is {})", leader.map_or("not known yet".to_string(), |l| format!("node {l}")))]
    NotController {
        /// The active controller's node id, if known.
        leader: Option<u64>,
    },
    /// The request is invalid for the current metadata.
    #[error(transparent)]
    Refused(#[from] DecisionError),
    /// The decision went stale before it was committed (another change won the race).
    #[error("the change conflicts with a concurrent one: {0}; retry it")]
    Conflict(#[source] ApplyError),
    /// A heartbeat from a broker that is not registered with that incarnation.
    #[error("broker {broker_id} is not registered with this incarnation; register it again")]
    Unregistered {
        /// The broker.
        broker_id: BrokerId,
    },
    /// A topic named in the request does not exist.
    #[error("topic {0:?} does not exist")]
    UnknownTopic(String),
    /// The configuration cannot work.
    #[error("invalid controller configuration: {0}")]
    Config(String),
    /// The metadata log could not be read or written.
    #[error("controller storage failed: {0}")]
    Storage(#[source] std::io::Error),
    /// Raft failed (shut down, or a fatal storage error).
    #[error("controller quorum failed: {0}")]
    Raft(String),
}

/// A running controller node.
pub struct Controller {
    shared: Arc<Shared>,
    stop_server: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<Result<(), tonic::transport::Error>>>,
    /// Fences brokers whose sessions expired, while this node leads.
    session_expiry: tokio::task::JoinHandle<()>,
}

/// What the controller and its background task share.
struct Shared {
    node_id: u64,
    raft: Raft<TypeConfig>,
    state_machine: StateMachine,
    /// Serializes decisions, so each is made against the state the previous one left.
    deciding: Mutex<()>,
    clock: Arc<dyn Clock>,
    session_timeout_ms: i64,
    sessions: std::sync::Mutex<Sessions>,
}

/// Broker sessions as the active controller sees them (not replicated: a new active
/// controller starts every session afresh).
#[derive(Debug, Default)]
struct Sessions {
    /// When each broker was last heard from.
    last_heartbeat_ms: BTreeMap<BrokerId, i64>,
    /// The log index of each broker's registration: it is unfenced once it has applied it.
    registered_at: BTreeMap<BrokerId, u64>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("node_id", &self.shared.node_id)
            .finish_non_exhaustive()
    }
}

impl Controller {
    /// Opens the metadata log, serves peers on `listener`, and joins the quorum. A fresh
    /// quorum is initialized with `voters` (every voter proposes the same membership, so it
    /// does not matter which one is first).
    pub async fn start(
        config: ControllerConfig,
        listener: TcpListener,
    ) -> Result<Controller, ControllerError> {
        if !config.voters.iter().any(|v| v.node_id == config.node_id) {
            return Err(ControllerError::Config(format!(
                "node {} is not one of the controller voters",
                config.node_id
            )));
        }
        let raft_config = Config {
            cluster_name: "weir".into(),
            heartbeat_interval: config.heartbeat_interval_ms,
            election_timeout_min: config.election_timeout_min_ms,
            election_timeout_max: config.election_timeout_max_ms,
            ..Config::default()
        }
        .validate()
        .map_err(|e| ControllerError::Config(e.to_string()))?;
        let log_store = LogStore::open(&config.dir).map_err(ControllerError::Storage)?;
        let state_machine = StateMachine::open(&config.dir).map_err(ControllerError::Storage)?;
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            NetworkFactory,
            log_store,
            state_machine.clone(),
        )
        .await
        .map_err(|e| ControllerError::Raft(e.to_string()))?;

        let (stop_server, stopped) = oneshot::channel::<()>();
        let service = ControllerRaftServer::new(RaftService::new(raft.clone()));
        let server = tokio::spawn(
            Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
                    // A dropped sender stops the server too.
                    stopped.await.unwrap_or(());
                }),
        );

        let members: BTreeMap<u64, BasicNode> = config
            .voters
            .iter()
            .map(|v| {
                (
                    v.node_id,
                    BasicNode {
                        addr: v.address.clone(),
                    },
                )
            })
            .collect();
        if !raft
            .is_initialized()
            .await
            .map_err(|e| ControllerError::Raft(e.to_string()))?
        {
            match raft.initialize(members).await {
                Ok(()) => {}
                // Another voter initialized the quorum first, with the same voters.
                Err(e)
                    if e.api_error().is_some_and(|api| {
                        matches!(api, openraft::error::InitializeError::NotAllowed(_))
                    }) => {}
                Err(e) => return Err(ControllerError::Raft(e.to_string())),
            }
        }
        let shared = Arc::new(Shared {
            node_id: config.node_id,
            raft,
            state_machine,
            deciding: Mutex::new(()),
            clock: config.clock,
            session_timeout_ms: i64::try_from(config.broker_session_timeout_ms)
                .map_err(|e| ControllerError::Config(format!("broker_session_timeout_ms: {e}")))?,
            sessions: std::sync::Mutex::new(Sessions::default()),
        });
        let session_expiry = tokio::spawn(expire_sessions_forever(
            Arc::clone(&shared),
            Duration::from_millis((config.broker_session_timeout_ms / 4).max(10)),
        ));
        Ok(Controller {
            shared,
            stop_server: Some(stop_server),
            server: Some(server),
            session_expiry,
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> u64 {
        self.shared.node_id
    }

    /// The metadata this node has applied.
    pub fn metadata(&self) -> ClusterMetadata {
        self.shared.state_machine.metadata()
    }

    /// The active controller, as this node knows it.
    pub fn leader(&self) -> Option<u64> {
        self.shared.raft.metrics().borrow().current_leader
    }

    /// How far this node has applied the metadata log.
    pub fn applied_index(&self) -> Option<u64> {
        self.shared.state_machine.applied_index()
    }

    /// Waits until this node knows an active controller, for at most `timeout`.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<u64, ControllerError> {
        let metrics = self
            .shared
            .raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "an active controller")
            .await
            .map_err(|e| ControllerError::Raft(e.to_string()))?;
        Ok(metrics.current_leader.expect("waited for a leader"))
    }

    /// Waits until this node has applied the metadata log up to `index`.
    pub async fn wait_for_applied(
        &self,
        index: u64,
        timeout: Duration,
    ) -> Result<(), ControllerError> {
        self.shared
            .raft
            .wait(Some(timeout))
            .applied_index_at_least(Some(index), "the metadata log")
            .await
            .map_err(|e| ControllerError::Raft(e.to_string()))?;
        Ok(())
    }

    /// Registers a broker incarnation, fenced: it is unfenced by a heartbeat showing it has
    /// applied the metadata log up to its registration. Returns the registration's log index.
    pub async fn register_broker(&self, record: BrokerRecord) -> Result<u64, ControllerError> {
        let _deciding = self.shared.deciding.lock().await;
        let broker_id = record.broker_id;
        let metadata = self.shared.current_metadata().await?;
        // A live earlier incarnation (the broker restarted before its session expired) is
        // fenced first, so its partitions get other leaders: a fenced broker leads nothing.
        let mut records = Vec::new();
        if metadata.is_live(broker_id) {
            records.extend(decisions::fence_broker(&metadata, broker_id));
        }
        records.push(MetadataRecord::RegisterBroker(record));
        let index = self.shared.write(records).await?;
        let mut sessions = self.shared.sessions();
        sessions.registered_at.insert(broker_id, index);
        sessions
            .last_heartbeat_ms
            .insert(broker_id, self.shared.clock.now_ms());
        Ok(index)
    }

    /// A broker's heartbeat: it is alive and has applied the metadata log up to
    /// `applied_index`. A fenced broker that has caught up with its registration is unfenced
    /// (and regains leadership of offline partitions it is in sync for).
    pub async fn heartbeat(
        &self,
        broker_id: BrokerId,
        incarnation: Uuid,
        applied_index: u64,
    ) -> Result<(), ControllerError> {
        let shared = &self.shared;
        if shared.leader() != Some(shared.node_id) {
            return Err(ControllerError::NotController {
                leader: shared.leader(),
            });
        }
        let registered = |metadata: &ClusterMetadata| {
            metadata
                .broker(broker_id)
                .filter(|b| b.incarnation == incarnation)
                .map(|b| b.fenced)
        };
        // A live broker's heartbeat only needs noting; the local view recognises it.
        let mut fenced = shared.state_machine.with_metadata(registered);
        if fenced != Some(false) {
            // Unknown here, or fenced: decide on the committed metadata.
            fenced = registered(&shared.current_metadata().await?);
        }
        let Some(fenced) = fenced else {
            return Err(ControllerError::Unregistered { broker_id });
        };
        let caught_up = {
            let mut sessions = shared.sessions();
            sessions
                .last_heartbeat_ms
                .insert(broker_id, shared.clock.now_ms());
            // After a change of active controller the registration index is not known here;
            // what this controller has applied is a later point, so a safe one.
            let registered_at = sessions.registered_at.get(&broker_id).copied();
            applied_index
                >= registered_at
                    .or(shared.state_machine.applied_index())
                    .unwrap_or(0)
        };
        if !(fenced && caught_up) {
            return Ok(());
        }
        let _deciding = shared.deciding.lock().await;
        let metadata = shared.current_metadata().await?;
        if registered(&metadata) == Some(true) {
            shared
                .write(decisions::unfence_broker(&metadata, broker_id))
                .await?;
        }
        Ok(())
    }

    /// Fences a broker and moves leadership of its partitions to other ISR members.
    pub async fn fence_broker(&self, broker_id: BrokerId) -> Result<u64, ControllerError> {
        let _deciding = self.shared.deciding.lock().await;
        self.shared.fence(broker_id).await
    }

    /// Fences every live broker whose session expired; returns them. The background task
    /// does this every quarter session; tests call it after moving their clock.
    pub async fn expire_sessions(&self) -> Result<Vec<BrokerId>, ControllerError> {
        self.shared.expire_sessions().await
    }

    /// Creates a topic with its replicas placed over the live brokers. Returns its id.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<Uuid, ControllerError> {
        let _deciding = self.shared.deciding.lock().await;
        let metadata = self.shared.current_metadata().await?;
        let topic_id = Uuid::new_v4();
        // Rotate placement with the topic count, so leaders spread over topics too.
        let start = metadata.topics().count();
        let records = decisions::create_topic(
            &metadata,
            name,
            topic_id,
            partitions,
            replication_factor,
            configs,
            start,
        )?;
        self.shared.write(records).await?;
        Ok(topic_id)
    }

    /// Deletes a topic and its partitions.
    pub async fn delete_topic(&self, name: &str) -> Result<(), ControllerError> {
        let _deciding = self.shared.deciding.lock().await;
        let topic = self
            .shared
            .current_metadata()
            .await?
            .topic_by_name(name)
            .map(|t| t.id)
            .ok_or_else(|| ControllerError::UnknownTopic(name.to_string()))?;
        let remove = MetadataRecord::RemoveTopic { topic_id: topic };
        self.shared.write(vec![remove]).await?;
        Ok(())
    }

    /// Leaves the quorum's work to the others: stops Raft and the peer listener.
    pub async fn shutdown(mut self) -> Result<(), ControllerError> {
        self.session_expiry.abort();
        let stopped = self
            .shared
            .raft
            .shutdown()
            .await
            .map_err(|e| ControllerError::Raft(e.to_string()));
        if let Some(stop) = self.stop_server.take() {
            // The server may already be gone; either way it is stopping.
            let _already_stopped = stop.send(());
        }
        if let Some(server) = self.server.take() {
            match server.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "the controller's peer listener failed"),
                Err(e) => tracing::warn!(error = %e, "the controller's peer listener panicked"),
            }
        }
        stopped
    }
}

impl Shared {
    fn leader(&self) -> Option<u64> {
        self.raft.metrics().borrow().current_leader
    }

    /// The metadata to decide on: this node must still lead, and must have applied every
    /// committed entry (a new leader may not have yet). The caller holds the decision lock.
    async fn current_metadata(&self) -> Result<ClusterMetadata, ControllerError> {
        self.raft.ensure_linearizable().await.map_err(|e| {
            match e.forward_to_leader::<BasicNode>() {
                Some(forward) => ControllerError::NotController {
                    leader: forward.leader_id,
                },
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
        let records = decisions::fence_broker(&self.current_metadata().await?, broker_id);
        if records.is_empty() {
            return Err(ControllerError::Conflict(ApplyError::UnknownBroker(
                broker_id,
            )));
        }
        self.write(records).await
    }

    async fn expire_sessions(&self) -> Result<Vec<BrokerId>, ControllerError> {
        if self.leader() != Some(self.node_id) {
            // Sessions are the active controller's; a later one starts them afresh.
            *self.sessions() = Sessions::default();
            return Ok(Vec::new());
        }
        let _deciding = self.deciding.lock().await;
        let metadata = self.current_metadata().await?;
        let expired = {
            let mut sessions = self.sessions();
            let now = self.clock.now_ms();
            for broker in metadata.brokers() {
                // A broker not heard from yet gets a whole session from now.
                sessions.last_heartbeat_ms.entry(broker.id).or_insert(now);
            }
            decisions::expired_sessions(
                &metadata,
                &sessions.last_heartbeat_ms,
                now,
                self.session_timeout_ms,
            )
        };
        for &broker_id in &expired {
            tracing::info!(broker_id, "fencing a broker whose session expired");
            self.fence(broker_id).await?;
        }
        Ok(expired)
    }
}

/// Fences brokers whose sessions expire, every `period`, for as long as the controller runs.
async fn expire_sessions_forever(shared: Arc<Shared>, period: Duration) {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if let Err(e) = shared.expire_sessions().await {
            tracing::warn!(error = %e, "checking broker sessions failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::controller::records::Endpoints;

    const WAIT: Duration = Duration::from_secs(20);
    const SESSION_MS: i64 = 10_000;

    /// Starts one controller per directory, on `addresses` if given (a restart), otherwise on
    /// fresh ports.
    async fn start_quorum(
        dirs: &[tempfile::TempDir],
        addresses: Option<&[String]>,
        clock: &Arc<ManualClock>,
    ) -> Vec<Controller> {
        let mut listeners = Vec::new();
        for i in 0..dirs.len() {
            let address = addresses.map_or("127.0.0.1:0", |a| a[i].as_str());
            listeners.push(TcpListener::bind(address).await.unwrap());
        }
        let voters: Vec<Voter> = listeners
            .iter()
            .enumerate()
            .map(|(i, l)| Voter {
                node_id: i as u64 + 1,
                address: l.local_addr().unwrap().to_string(),
            })
            .collect();
        let mut controllers = Vec::new();
        for (i, (listener, dir)) in listeners.into_iter().zip(dirs).enumerate() {
            let config = ControllerConfig {
                node_id: i as u64 + 1,
                dir: dir.path().to_path_buf(),
                voters: voters.clone(),
                heartbeat_interval_ms: 50,
                election_timeout_min_ms: 200,
                election_timeout_max_ms: 400,
                broker_session_timeout_ms: SESSION_MS as u64,
                clock: Arc::clone(clock) as Arc<dyn Clock>,
            };
            controllers.push(Controller::start(config, listener).await.unwrap());
        }
        controllers
    }

    fn broker(broker_id: BrokerId) -> BrokerRecord {
        BrokerRecord {
            broker_id,
            incarnation: Uuid::new_v4(),
            endpoints: Endpoints {
                kafka: format!("127.0.0.1:{}", 9000 + broker_id),
                grpc: format!("127.0.0.1:{}", 9100 + broker_id),
                internal: format!("127.0.0.1:{}", 9200 + broker_id),
            },
            rack: None,
        }
    }

    /// Waits until every controller applied what the leader has.
    async fn converge(controllers: &[Controller], leader: &Controller) {
        let index = leader.applied_index().unwrap();
        for controller in controllers {
            controller.wait_for_applied(index, WAIT).await.unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_quorum_agrees_on_topics_refuses_bad_requests_and_moves_leaders_off_a_fenced_broker()
    {
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let clock = Arc::new(ManualClock::new(0));
        let controllers = start_quorum(&dirs, None, &clock).await;
        let leader_id = controllers[0].wait_for_leader(WAIT).await.unwrap();
        let leader = &controllers[leader_id as usize - 1];
        let follower = controllers
            .iter()
            .find(|c| c.node_id() != leader_id)
            .unwrap();

        // Brokers register fenced; a heartbeat that shows them caught up unfences them.
        let mut incarnations = BTreeMap::new();
        for id in 1..=3 {
            let record = broker(id);
            incarnations.insert(id, record.incarnation);
            let registered_at = leader.register_broker(record).await.unwrap();
            assert!(!leader.metadata().is_live(id));
            leader
                .heartbeat(id, incarnations[&id], registered_at - 1)
                .await
                .unwrap();
            assert!(!leader.metadata().is_live(id), "not caught up yet");
            leader
                .heartbeat(id, incarnations[&id], registered_at)
                .await
                .unwrap();
            assert!(leader.metadata().is_live(id));
        }
        let error = leader.heartbeat(1, Uuid::new_v4(), 0).await.unwrap_err();
        assert!(
            matches!(error, ControllerError::Unregistered { broker_id: 1 }),
            "{error}"
        );
        for n in 0..20 {
            leader
                .create_topic(&format!("topic-{n}"), 3, 2, BTreeMap::new())
                .await
                .unwrap();
        }
        converge(&controllers, leader).await;
        let metadata = leader.metadata();
        assert_eq!(metadata.topics().count(), 20);
        for controller in &controllers {
            assert_eq!(
                controller.metadata(),
                metadata,
                "node {}",
                controller.node_id()
            );
        }

        // Only the active controller decides; others say who does.
        let error = follower
            .create_topic("elsewhere", 1, 1, BTreeMap::new())
            .await
            .unwrap_err();
        assert!(
            matches!(error, ControllerError::NotController { leader: Some(l) } if l == leader_id),
            "{error}"
        );

        // Bad requests change nothing.
        let check = |error: ControllerError, expected: &str| {
            assert!(error.to_string().contains(expected), "{error}");
        };
        check(
            leader
                .create_topic("bad name", 1, 1, BTreeMap::new())
                .await
                .unwrap_err(),
            "invalid topic name",
        );
        check(
            leader
                .create_topic("big", 1, 4, BTreeMap::new())
                .await
                .unwrap_err(),
            "above the 3 live brokers",
        );
        check(
            leader
                .create_topic("topic-0", 1, 1, BTreeMap::new())
                .await
                .unwrap_err(),
            "already exists",
        );
        check(
            leader.delete_topic("missing").await.unwrap_err(),
            "does not exist",
        );
        assert_eq!(leader.metadata(), metadata);

        // Broker 3 restarts (a new incarnation) before its session expired: it is fenced until
        // caught up, and the partitions it led move to other ISR members meanwhile.
        let restarted = broker(3);
        let registered_at = leader.register_broker(restarted.clone()).await.unwrap();
        let led_by_3 = leader
            .metadata()
            .topics()
            .flat_map(|t| t.partitions.iter())
            .filter(|p| p.leader == Some(3))
            .count();
        assert_eq!(led_by_3, 0, "a fenced broker leads nothing");
        leader
            .heartbeat(3, restarted.incarnation, registered_at)
            .await
            .unwrap();
        incarnations.insert(3, restarted.incarnation);
        assert!(leader.metadata().is_live(3));
        converge(&controllers, leader).await;
        let metadata = leader.metadata();

        // Broker 1's heartbeats stop: when its session expires, every partition it led gets
        // another ISR member, at a higher epoch.
        clock.advance_ms(SESSION_MS * 6 / 10);
        for id in [2, 3] {
            leader.heartbeat(id, incarnations[&id], 0).await.unwrap();
        }
        clock.advance_ms(SESSION_MS * 6 / 10);
        leader.expire_sessions().await.unwrap();
        assert!(!leader.metadata().is_live(1));
        assert!(leader.metadata().is_live(2) && leader.metadata().is_live(3));
        converge(&controllers, leader).await;
        let after = leader.metadata();
        let (mut moved, mut offline) = (0, 0);
        for (topic, before) in after.topics().zip(metadata.topics()) {
            for (now, then) in topic.partitions.iter().zip(&before.partitions) {
                assert!(!now.isr.contains(&1) || now.isr == [1], "{now:?}");
                if then.leader != Some(1) {
                    continue;
                }
                assert_eq!(now.leader_epoch, then.leader_epoch + 1);
                if then.isr == [1] {
                    // Broker 3's restart left 1 the only in-sync replica: nobody may lead.
                    assert_eq!(now.leader, None, "{now:?}");
                    offline += 1;
                } else {
                    assert!(now.leader.is_some_and(|l| l != 1), "{now:?}");
                    moved += 1;
                }
            }
        }
        assert!(
            moved > 0 && offline > 0,
            "both cases happen: {moved} moved, {offline} offline"
        );
        leader.delete_topic("topic-0").await.unwrap();
        assert!(leader.metadata().topic_by_name("topic-0").is_none());
        converge(&controllers, leader).await;
        let before_restart = leader.metadata();

        // Every node restarts: the metadata is intact and the quorum works again.
        let addresses: Vec<String> = (1..=3u64)
            .map(|id| {
                let metrics = controllers[0].shared.raft.metrics().borrow().clone();
                let node = metrics
                    .membership_config
                    .membership()
                    .get_node(&id)
                    .cloned();
                node.expect("every voter is a member").addr
            })
            .collect();
        for controller in controllers {
            controller.shutdown().await.unwrap();
        }
        let controllers = start_quorum(&dirs, Some(&addresses), &clock).await;
        let leader_id = controllers[0].wait_for_leader(WAIT).await.unwrap();
        let leader = &controllers[leader_id as usize - 1];
        leader
            .create_topic("after-restart", 1, 1, BTreeMap::new())
            .await
            .unwrap();
        converge(&controllers, leader).await;
        for controller in &controllers {
            let metadata = controller.metadata();
            assert!(metadata.topic_by_name("after-restart").is_some());
            assert_eq!(
                metadata.topics().count(),
                before_restart.topics().count() + 1
            );
            assert_eq!(
                metadata.brokers().collect::<Vec<_>>(),
                before_restart.brokers().collect::<Vec<_>>()
            );
        }
        for controller in controllers {
            controller.shutdown().await.unwrap();
        }
    }
}
