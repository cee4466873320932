//! A node's part in the controller quorum. Every node runs one: a controller voter keeps the
//! metadata log and votes; any other broker follows the log as a Raft learner, added when it
//! registers. Either way the node holds the whole, current [`ClusterMetadata`], serves the
//! internal API's Raft and controller RPCs on its internal listener, and sends requests only
//! the active controller can decide (the Raft leader) to it: directly when it knows which
//! node that is, otherwise through a voter, which forwards them.
//!
//! As a broker, the node registers itself and heartbeats (see [`Controller::start_broker`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::{BasicNode, Config, Raft, ServerState};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use uuid::Uuid;
use weir_proto::internal::v1::controller_raft_server::ControllerRaftServer;
use weir_proto::internal::v1::controller_server::ControllerServer;

use super::active::Active;
use super::decisions::{ConfigChange, IsrProposal, LeadershipMoves, ProducerIdBlock};
use super::error::{ControllerError, ErrorKind};
use super::metadata::ClusterMetadata;
use super::metrics;
use super::producer_ids::ProducerIds;
use super::raft::{LogStore, NetworkFactory, RaftService, StateMachine, TypeConfig};
use super::records::{BrokerId, BrokerRecord};
use super::rpc::{AlteredPartition, ControllerService, Peers, Reply, Request};
use super::session;
use super::subscription::MetadataSubscription;
use crate::clock::Clock;
use crate::config::Voter;

/// How a node's controller part runs.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// This node's id. If it is one of `voters`, the node votes; otherwise it is a learner.
    pub node_id: u64,
    /// Where the metadata log and snapshots live.
    pub dir: PathBuf,
    /// Every voter of the quorum.
    pub voters: Vec<Voter>,
    /// How often the leader sends Raft heartbeats.
    pub heartbeat_interval_ms: u64,
    /// A voter that hears no leader for a random time in this range starts an election.
    pub election_timeout_min_ms: u64,
    /// See `election_timeout_min_ms`.
    pub election_timeout_max_ms: u64,
    /// A broker whose heartbeats stop for this long is fenced.
    pub broker_session_timeout_ms: u64,
    /// How often brokers heartbeat. A newly elected active controller fences a broker it has
    /// not heard from within two of these (or the session timeout, if shorter).
    pub broker_heartbeat_interval_ms: u64,
    /// How often the active controller gives partitions back to their preferred leaders;
    /// `None` never does.
    pub leader_balance_interval_ms: Option<u64>,
    /// How long a request may wait for an active controller to take it (through elections
    /// and retries) before it fails.
    pub request_timeout_ms: u64,
    /// The time broker sessions are measured by.
    pub clock: Arc<dyn Clock>,
}

/// A broker's standing with the active controller, as its heartbeats report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerStatus {
    /// Not registered yet (or registering again).
    Registering,
    /// Registered, but fenced: not caught up with the metadata log yet, or its session
    /// expired. A fenced broker leads no partition.
    Fenced,
    /// Registered, caught up and heartbeating.
    Live,
}

/// The quorum as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumStatus {
    /// The active controller, if known.
    pub leader: Option<u64>,
    /// The current Raft term.
    pub term: u64,
    /// The voters and their addresses.
    pub voters: Vec<(u64, String)>,
    /// The learners (brokers that follow the metadata log) and their addresses.
    pub learners: Vec<(u64, String)>,
}

/// A node's running part in the controller quorum.
pub struct Controller {
    inner: Arc<Inner>,
    stop_server: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
    /// Fences brokers whose sessions expired (while this node leads), and keeps the Raft
    /// metrics current.
    background: Vec<JoinHandle<()>>,
    /// This node's registration and heartbeats, once it runs as a broker.
    broker: Mutex<Option<JoinHandle<()>>>,
    /// This node's session stream to the active controller, once it runs as a broker.
    session: Mutex<Option<JoinHandle<()>>>,
    /// The broker incarnation this node runs as, once it does.
    broker_identity: Mutex<Option<(BrokerId, Uuid)>>,
    broker_status: watch::Sender<BrokerStatus>,
}

/// A cheap, cloneable view of this node's controller for the front ends: the committed
/// metadata and the active controller, valid while the node runs.
#[derive(Clone)]
pub struct ControllerView {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ControllerView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerView")
            .field("node_id", &self.inner.node_id)
            .finish_non_exhaustive()
    }
}

impl ControllerView {
    /// The metadata this node has applied.
    pub fn metadata(&self) -> Arc<ClusterMetadata> {
        self.inner.state_machine.metadata()
    }

    /// The active controller, as this node knows it.
    pub fn leader(&self) -> Option<u64> {
        self.inner.leader()
    }

    /// Waits until the metadata this node has applied satisfies `condition`, for at most
    /// `timeout`; returns whether it does. After a request to the active controller, this is
    /// how a front end waits for the change to reach its own node.
    pub async fn wait_for_metadata(
        &self,
        condition: impl Fn(&ClusterMetadata) -> bool,
        timeout: Duration,
    ) -> bool {
        let mut images = self.inner.state_machine.watch();
        tokio::time::timeout(timeout, images.wait_for(|image| condition(&image.metadata)))
            .await
            .is_ok_and(|waited| waited.is_ok())
    }

    /// Whether this node has caught up with the metadata log: it knows an active controller
    /// and has applied every entry it knows to be committed. `Err` says why not.
    pub fn metadata_caught_up(&self) -> Result<(), String> {
        if self.inner.leader().is_none() {
            return Err("no active controller known".into());
        }
        let applied = self.inner.state_machine.applied_index();
        let committed = self.inner.log_store.committed_index();
        if committed > applied {
            return Err(format!(
                "applying the metadata log: applied {}, committed {}",
                applied.map_or(-1, |i| i as i64),
                committed.map_or(-1, |i| i as i64),
            ));
        }
        Ok(())
    }

    /// How far this node has applied the metadata log.
    pub fn applied_index(&self) -> Option<u64> {
        self.inner.state_machine.applied_index()
    }

    /// The quorum as this node sees it: leader, term, voters and learners.
    pub fn quorum_status(&self) -> QuorumStatus {
        let metrics = self.inner.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let mut status = QuorumStatus {
            leader: metrics.current_leader,
            term: metrics.current_term,
            voters: Vec::new(),
            learners: Vec::new(),
        };
        for (id, node) in membership.nodes() {
            let entry = (*id, node.addr.clone());
            if voters.contains(id) {
                status.voters.push(entry);
            } else {
                status.learners.push(entry);
            }
        }
        status
    }

    /// Creates a topic with its replicas placed over the live brokers. Returns its id.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<Uuid, ControllerError> {
        let request = Request::CreateTopic {
            name: name.to_string(),
            partitions,
            replication_factor,
            configs,
        };
        match self.inner.route(request).await? {
            Reply::TopicCreated(topic_id) => Ok(topic_id),
            other => Err(unexpected(&other)),
        }
    }

    /// Deletes a topic and its partitions.
    pub async fn delete_topic(&self, name: &str) -> Result<(), ControllerError> {
        let request = Request::DeleteTopic {
            name: name.to_string(),
        };
        match self.inner.route(request).await? {
            Reply::Done => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Grows topic `name` to `total` partitions.
    pub async fn create_partitions(&self, name: &str, total: i32) -> Result<(), ControllerError> {
        let request = Request::CreatePartitions {
            name: name.to_string(),
            total,
        };
        match self.inner.route(request).await? {
            Reply::Done => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Makes `changes` to topic `name`'s configs, all or none; they take effect on every
    /// broker as it applies the change.
    pub async fn alter_topic_configs(
        &self,
        name: &str,
        changes: Vec<ConfigChange>,
    ) -> Result<(), ControllerError> {
        let request = Request::AlterTopicConfigs {
            name: name.to_string(),
            changes,
        };
        match self.inner.route(request).await? {
            Reply::Done => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Hands broker `broker_id` (incarnation `incarnation`) the next block of producer ids
    /// (KIP-730). It is committed when this returns, so no other broker gets those ids.
    pub async fn allocate_producer_ids(
        &self,
        broker_id: BrokerId,
        incarnation: Uuid,
    ) -> Result<ProducerIdBlock, ControllerError> {
        let request = Request::AllocateProducerIds {
            broker_id,
            incarnation,
        };
        match self.inner.route(request).await? {
            Reply::ProducerIds(block) => Ok(block),
            other => Err(unexpected(&other)),
        }
    }

    /// A producer id no other producer in the cluster has, for an idempotent producer: the
    /// next of this node's block, asking the active controller for a new block when it is
    /// used up. Refused on a node that does not run as a broker.
    pub async fn next_producer_id(&self) -> Result<i64, ControllerError> {
        self.inner
            .producer_ids
            .next(|broker_id, incarnation| self.allocate_producer_ids(broker_id, incarnation))
            .await
    }

    /// A partition leader's ISR change. It takes effect once committed, which it is when
    /// this returns; a proposal made at stale epochs is refused.
    pub async fn alter_partition(
        &self,
        proposal: IsrProposal,
    ) -> Result<AlteredPartition, ControllerError> {
        match self.inner.route(Request::AlterPartition(proposal)).await? {
            Reply::PartitionAltered(altered) => Ok(altered),
            other => Err(unexpected(&other)),
        }
    }
}

/// What the node's API, its RPC service and its background tasks share.
pub(crate) struct Inner {
    pub(super) node_id: u64,
    voters: Vec<Voter>,
    pub(super) raft: Raft<TypeConfig>,
    state_machine: StateMachine,
    /// Shared with Raft; read for the commit index only.
    log_store: LogStore,
    pub(super) active: Active,
    pub(super) peers: Peers,
    request_timeout: Duration,
    /// This node's producer ids, once it runs as a broker.
    producer_ids: ProducerIds,
    /// Set when the node stops: open session streams end, so the listener can stop.
    pub(super) stopping: watch::Sender<bool>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("node_id", &self.inner.node_id)
            .finish_non_exhaustive()
    }
}

impl Controller {
    /// Opens the metadata log, serves the internal API's Raft and controller RPCs on
    /// `listener`, and joins the quorum. A voter of a fresh quorum initializes it with
    /// `voters` (every voter proposes the same membership, so it does not matter which one is
    /// first); a learner waits to be added when it registers as a broker.
    pub async fn start(
        config: ControllerConfig,
        listener: TcpListener,
    ) -> Result<Controller, ControllerError> {
        Controller::start_with_services(config, listener, Routes::default()).await
    }

    /// [`start`](Self::start), serving `services` (the rest of the internal API, such as
    /// replication) on the same listener.
    pub async fn start_with_services(
        config: ControllerConfig,
        listener: TcpListener,
        services: Routes,
    ) -> Result<Controller, ControllerError> {
        metrics::describe();
        if config.voters.is_empty() {
            return Err(ControllerError::Config(
                "the controller voter list is empty; name at least one voter".into(),
            ));
        }
        let is_voter = config.voters.iter().any(|v| v.node_id == config.node_id);
        let raft_config = Config {
            cluster_name: "weir".into(),
            heartbeat_interval: config.heartbeat_interval_ms,
            election_timeout_min: config.election_timeout_min_ms,
            election_timeout_max: config.election_timeout_max_ms,
            ..Config::default()
        }
        .validate()
        .map_err(|e| ControllerError::Config(e.to_string()))?;
        let session_timeout_ms = i64::try_from(config.broker_session_timeout_ms)
            .map_err(|e| ControllerError::Config(format!("broker_session_timeout_ms: {e}")))?;
        let first_heartbeat_grace_ms = i64::try_from(config.broker_heartbeat_interval_ms)
            .ok()
            .and_then(|interval| interval.checked_mul(2))
            .ok_or_else(|| {
                ControllerError::Config("broker_heartbeat_interval_ms is too large".into())
            })?;
        let log_store = LogStore::open(&config.dir).map_err(ControllerError::Storage)?;
        let state_machine = StateMachine::open(&config.dir).map_err(ControllerError::Storage)?;
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            NetworkFactory,
            log_store.clone(),
            state_machine.clone(),
        )
        .await
        .map_err(|e| ControllerError::Raft(e.to_string()))?;

        let voter_ids: BTreeSet<u64> = config.voters.iter().map(|v| v.node_id).collect();
        let inner = Arc::new(Inner {
            node_id: config.node_id,
            voters: config.voters.clone(),
            active: Active::new(
                config.node_id,
                voter_ids,
                raft.clone(),
                state_machine.clone(),
                config.clock,
                session_timeout_ms,
                first_heartbeat_grace_ms,
            ),
            raft,
            state_machine,
            log_store,
            peers: Peers::default(),
            request_timeout: Duration::from_millis(config.request_timeout_ms),
            producer_ids: ProducerIds::default(),
            stopping: watch::channel(false).0,
        });

        let (stop_server, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(
            Server::builder()
                .add_routes(services)
                .add_service(ControllerRaftServer::new(RaftService::new(
                    inner.raft.clone(),
                )))
                .add_service(ControllerServer::new(ControllerService::new(Arc::clone(
                    &inner,
                ))))
                .serve_with_incoming_shutdown(
                    // Replication answers are small and latency-bound: without TCP_NODELAY a
                    // response's trailing frame waits ~40 ms for the follower's delayed ACK,
                    // which every acks=all write would pay.
                    TcpIncoming::from(listener).with_nodelay(Some(true)),
                    async {
                        // A dropped sender stops the server too.
                        stopped.await.unwrap_or(());
                    },
                ),
        );

        if is_voter {
            inner.initialize().await?;
        }
        let mut background = vec![
            tokio::spawn(expire_sessions_forever(
                Arc::clone(&inner),
                // Often, so a session ends close to its timeout; a check that finds nothing
                // reads only local state.
                Duration::from_millis((config.broker_session_timeout_ms / 10).clamp(10, 100)),
            )),
            tokio::spawn(record_raft_metrics(inner.raft.clone())),
        ];
        if let Some(interval_ms) = config.leader_balance_interval_ms {
            background.push(tokio::spawn(balance_leaders_forever(
                Arc::clone(&inner),
                Duration::from_millis(interval_ms.max(1)),
            )));
        }
        let (broker_status, _) = watch::channel(BrokerStatus::Registering);
        Ok(Controller {
            inner,
            stop_server: Some(stop_server),
            server: Some(server),
            background,
            broker: Mutex::new(None),
            session: Mutex::new(None),
            broker_identity: Mutex::new(None),
            broker_status,
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> u64 {
        self.inner.node_id
    }

    /// Whether this node is a controller voter (otherwise it is a learner).
    pub fn is_voter(&self) -> bool {
        self.inner
            .voters
            .iter()
            .any(|v| v.node_id == self.inner.node_id)
    }

    /// The metadata this node has applied.
    pub fn metadata(&self) -> Arc<ClusterMetadata> {
        self.inner.state_machine.metadata()
    }

    /// A view of the metadata and the active controller, for the front ends.
    pub fn view(&self) -> ControllerView {
        ControllerView {
            inner: Arc::clone(&self.inner),
        }
    }

    /// Follows the committed metadata as a stream of changes.
    pub fn subscribe(&self) -> MetadataSubscription {
        MetadataSubscription::new(self.inner.state_machine.watch())
    }

    /// The active controller, as this node knows it.
    pub fn leader(&self) -> Option<u64> {
        self.inner.leader()
    }

    /// How far this node has applied the metadata log.
    pub fn applied_index(&self) -> Option<u64> {
        self.inner.state_machine.applied_index()
    }

    /// Waits until this node knows an active controller, for at most `timeout`.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<u64, ControllerError> {
        let metrics = self
            .inner
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
        self.inner.wait_for_applied(index, timeout).await
    }

    /// Registers a broker incarnation with the active controller, fenced: it is unfenced by
    /// a heartbeat showing it has applied the metadata log up to its registration. Returns
    /// the registration's log index.
    pub async fn register_broker(&self, record: BrokerRecord) -> Result<u64, ControllerError> {
        match self.inner.route(Request::RegisterBroker(record)).await? {
            Reply::Registered { registered_at } => Ok(registered_at),
            other => Err(unexpected(&other)),
        }
    }

    /// A broker's heartbeat: it is alive and has applied the metadata log up to
    /// `applied_index`. A fenced broker that has caught up with its registration is unfenced
    /// (and regains leadership of offline partitions it is in sync for). Returns whether the
    /// broker is still fenced.
    pub async fn heartbeat(
        &self,
        broker_id: BrokerId,
        incarnation: Uuid,
        applied_index: u64,
    ) -> Result<bool, ControllerError> {
        let request = Request::Heartbeat {
            broker_id,
            incarnation,
            applied_index,
        };
        match self.inner.route(request).await? {
            Reply::Heartbeat { fenced } => Ok(fenced),
            other => Err(unexpected(&other)),
        }
    }

    /// Fences a broker and moves leadership of its partitions to other ISR members. Only
    /// the active controller does this; elsewhere it is refused.
    pub async fn fence_broker(&self, broker_id: BrokerId) -> Result<u64, ControllerError> {
        self.inner.active.fence_broker(broker_id).await
    }

    /// Fences every live broker whose session expired, if this node is the active
    /// controller; returns them. The background task does this every quarter session; tests
    /// call it after moving their clock.
    pub async fn expire_sessions(&self) -> Result<Vec<BrokerId>, ControllerError> {
        self.inner.active.expire_sessions().await
    }

    /// The brokers this node has heard from (a registration, heartbeat or session stream)
    /// since it became the active controller; empty unless it is. A broker missing here for
    /// two heartbeat intervals after an election is fenced.
    pub fn brokers_heard_from(&self) -> Vec<BrokerId> {
        self.inner.active.heard_from()
    }

    /// Gives partitions back to their preferred leaders (the first replica) where that
    /// replica is live and in sync, if this node is the active controller; returns how many
    /// moved. The background task does this every `leader_balance_interval_ms`.
    pub async fn balance_leaders(&self) -> Result<usize, ControllerError> {
        self.inner.active.balance_leaders().await
    }

    /// Stops this node's heartbeats and asks the active controller to move leadership of its
    /// partitions to other in-sync replicas and take it out of every ISR (Kafka's controlled
    /// shutdown), then waits until this node has applied that, for at most `timeout` in all.
    /// Afterwards this broker leads nothing, and stays fenced until it registers again.
    pub async fn controlled_shutdown(
        &self,
        timeout: Duration,
    ) -> Result<LeadershipMoves, ControllerError> {
        let identity = *lock(&self.broker_identity);
        let Some((broker_id, incarnation)) = identity else {
            return Err(ControllerError::InvalidRequest(
                "this node does not run as a broker".into(),
            ));
        };
        // Heartbeats would unfence it again on a controller that did not see the request. The
        // session stream stays open until the node stops: closing it now would fence the
        // broker too, racing the request.
        self.stop_heartbeats();
        let request = Request::ControlledShutdown {
            broker_id,
            incarnation,
        };
        let deadline = Instant::now() + timeout;
        let reply = tokio::time::timeout(timeout, self.inner.route(request))
            .await
            .map_err(|_| {
                ControllerError::Unavailable(format!(
                    "no active controller answered within {} ms",
                    timeout.as_millis()
                ))
            })??;
        let Reply::ShutdownReady { fenced_at, moves } = reply else {
            return Err(unexpected(&reply));
        };
        self.inner
            .wait_for_applied(
                fenced_at,
                deadline.saturating_duration_since(Instant::now()),
            )
            .await?;
        self.broker_status.send_replace(BrokerStatus::Fenced);
        Ok(moves)
    }

    /// Runs this node as broker `record`: registers it with the active controller, then
    /// heartbeats every `heartbeat_interval`, registering again if the controller no longer
    /// knows this incarnation. [`broker_status`](Self::broker_status) follows the outcome.
    pub fn start_broker(&self, record: BrokerRecord, heartbeat_interval: Duration) {
        self.inner
            .producer_ids
            .set_broker(record.broker_id, record.incarnation);
        *lock(&self.broker_identity) = Some((record.broker_id, record.incarnation));
        let session = tokio::spawn(session::hold_session(
            Arc::clone(&self.inner),
            record.broker_id,
            record.incarnation,
        ));
        if let Some(previous) = lock(&self.session).replace(session) {
            previous.abort();
        }
        let task = tokio::spawn(run_broker(
            Arc::clone(&self.inner),
            record,
            heartbeat_interval,
            self.broker_status.clone(),
        ));
        if let Some(previous) = lock(&self.broker).replace(task) {
            previous.abort();
        }
    }

    /// This node's standing as a broker.
    pub fn broker_status(&self) -> watch::Receiver<BrokerStatus> {
        self.broker_status.subscribe()
    }

    /// Stops this node's broker heartbeats, keeping its session stream open: to the active
    /// controller it looks hung, and its session expires.
    pub fn stop_heartbeats(&self) {
        if let Some(task) = lock(&self.broker).take() {
            task.abort();
        }
    }

    /// Closes this node's session stream, as its death would: the active controller fences
    /// it at once.
    pub fn close_session(&self) {
        if let Some(task) = lock(&self.session).take() {
            task.abort();
        }
    }

    /// Leaves the quorum's work to the others: stops heartbeats, Raft and the listener.
    pub async fn shutdown(mut self) -> Result<(), ControllerError> {
        self.stop_heartbeats();
        self.close_session();
        self.inner.stopping.send_replace(true);
        for task in &self.background {
            task.abort();
        }
        let stopped = self
            .inner
            .raft
            .shutdown()
            .await
            .map_err(|e| ControllerError::Raft(e.to_string()));
        if let Some(stop) = self.stop_server.take() {
            // The server may already be gone; either way it is stopping.
            let _already_stopped = stop.send(());
        }
        if let Some(mut server) = self.server.take() {
            // The listener finishes the requests in flight; a peer holding a connection open
            // past that does not get to hold up this node's stop.
            match tokio::time::timeout(LISTENER_STOP_TIMEOUT, &mut server).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the internal listener failed"),
                Ok(Err(e)) => tracing::warn!(error = %e, "the internal listener panicked"),
                Err(_) => {
                    tracing::warn!(
                        "the internal listener did not stop within {} ms; closing its \
                         connections",
                        LISTENER_STOP_TIMEOUT.as_millis()
                    );
                    server.abort();
                }
            }
        }
        stopped
    }
}

/// A reply of the wrong kind: a peer that does not follow the protocol.
fn unexpected(reply: &Reply) -> ControllerError {
    ControllerError::InvalidRequest(format!("the controller answered with {reply:?}"))
}

/// Where to send a request next.
enum Target {
    Local,
    Remote { address: String, forwarded: bool },
}

impl Inner {
    fn leader(&self) -> Option<u64> {
        self.raft.metrics().borrow().current_leader
    }

    /// Initializes a fresh quorum with the voters; a no-op if it already is.
    async fn initialize(&self) -> Result<(), ControllerError> {
        let initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| ControllerError::Raft(e.to_string()))?;
        if initialized {
            return Ok(());
        }
        let members: BTreeMap<u64, BasicNode> = self
            .voters
            .iter()
            .map(|v| {
                let node = BasicNode {
                    addr: v.address.clone(),
                };
                (v.node_id, node)
            })
            .collect();
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            // Another voter initialized the quorum first, with the same voters.
            Err(e)
                if e.api_error().is_some_and(|api| {
                    matches!(api, openraft::error::InitializeError::NotAllowed(_))
                }) =>
            {
                Ok(())
            }
            Err(e) => Err(ControllerError::Raft(e.to_string())),
        }
    }

    async fn wait_for_applied(&self, index: u64, timeout: Duration) -> Result<(), ControllerError> {
        self.raft
            .wait(Some(timeout))
            .applied_index_at_least(Some(index), "the metadata log")
            .await
            .map_err(|e| ControllerError::Raft(e.to_string()))?;
        Ok(())
    }

    /// The internal address of node `id`, from the Raft membership or the voter list.
    pub(super) fn address_of(&self, id: u64) -> Option<String> {
        let from_membership = {
            let metrics = self.raft.metrics().borrow().clone();
            metrics
                .membership_config
                .membership()
                .get_node(&id)
                .map(|node| node.addr.clone())
        };
        from_membership.or_else(|| {
            self.voters
                .iter()
                .find(|v| v.node_id == id)
                .map(|v| v.address.clone())
        })
    }

    /// Where the `attempt`th try of a request goes: the known active controller, otherwise
    /// the voters in turn (which forward it).
    fn target(&self, attempt: usize, hint: Option<u64>) -> Target {
        let leader = self.leader().or(hint);
        if leader == Some(self.node_id) {
            return Target::Local;
        }
        if let Some(address) = leader.and_then(|id| self.address_of(id)) {
            return Target::Remote {
                address,
                forwarded: true,
            };
        }
        let others: Vec<&Voter> = self
            .voters
            .iter()
            .filter(|v| v.node_id != self.node_id)
            .collect();
        if others.is_empty() {
            // The only voter: it will lead once it has elected itself.
            return Target::Local;
        }
        Target::Remote {
            address: others[attempt % others.len()].address.clone(),
            forwarded: false,
        }
    }

    /// Sends `request` to the active controller, wherever it is, through elections and
    /// unreachable nodes, for at most the request timeout.
    pub(crate) async fn route(&self, request: Request) -> Result<Reply, ControllerError> {
        let deadline = Instant::now() + self.request_timeout;
        let mut hint = None;
        let mut attempt = 0;
        loop {
            let result = match self.target(attempt, hint) {
                Target::Local => self.active.handle(request.clone()).await,
                Target::Remote { address, forwarded } => {
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    let before = self.leader();
                    // A paused or partitioned node keeps its connections and answers
                    // nothing: give up on it as soon as another active controller is known,
                    // rather than waiting out the whole request timeout.
                    tokio::select! {
                        result = self.peers.submit(
                            &address,
                            &request,
                            forwarded,
                            remaining.max(MIN_RPC_TIME),
                        ) => result,
                        () = self.wait_for_new_leader(remaining.max(MIN_RPC_TIME)) => {
                            let leader = self.leader();
                            if leader == before {
                                Err(ControllerError::Unavailable(format!(
                                    "{address} did not answer within {} ms",
                                    remaining.max(MIN_RPC_TIME).as_millis()
                                )))
                            } else {
                                Err(ControllerError::NotController { leader })
                            }
                        }
                    }
                }
            };
            let error = match result {
                Err(error) if error.is_retryable() => error,
                other => return other,
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(ControllerError::Unavailable(format!(
                    "no active controller took the {} within {} ms (the last answer: {error})",
                    request.name(),
                    self.request_timeout.as_millis()
                )));
            }
            hint = error.leader_hint().filter(|&l| l != self.node_id);
            self.wait_for_new_leader(retry_backoff(attempt).min(deadline - now))
                .await;
            attempt += 1;
        }
    }

    /// Waits `pause`, or less if this node learns of a new active controller meanwhile (so a
    /// request goes to it as soon as it is elected).
    async fn wait_for_new_leader(&self, pause: Duration) {
        let before = self.leader();
        let changed = self
            .raft
            .wait(Some(pause))
            .metrics(
                |m| m.current_leader.is_some() && m.current_leader != before,
                "a new active controller",
            )
            .await;
        // A timeout is the usual outcome: the pause is over.
        drop(changed);
    }

    /// Serves a request that reached this node's controller service: decides it here if this
    /// node leads (or it was already forwarded once), otherwise forwards it to the leader.
    pub(crate) async fn serve(
        &self,
        request: Request,
        forwarded: bool,
    ) -> Result<Reply, ControllerError> {
        let leader = self.leader();
        if forwarded || leader == Some(self.node_id) {
            return self.active.handle(request).await;
        }
        match leader.and_then(|id| self.address_of(id)) {
            Some(address) => {
                self.peers
                    .submit(&address, &request, true, self.request_timeout)
                    .await
            }
            None => Err(ControllerError::NotController { leader }),
        }
    }
}

/// How long a stopping node's internal listener may take to finish its connections.
const LISTENER_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The least time a forwarded request is given, even close to its deadline.
const MIN_RPC_TIME: Duration = Duration::from_millis(100);

/// How long to wait before retry `attempt`: doubling from 25 ms up to 400 ms (elections take
/// about that long; a newly known leader cuts the wait short anyway).
fn retry_backoff(attempt: usize) -> Duration {
    let exponent = u32::try_from(attempt.min(4)).expect("small");
    Duration::from_millis(25 * 2u64.pow(exponent))
}

/// Registers this node as a broker and heartbeats for as long as it runs.
async fn run_broker(
    inner: Arc<Inner>,
    record: BrokerRecord,
    interval: Duration,
    status: watch::Sender<BrokerStatus>,
) {
    let broker_id = record.broker_id;
    loop {
        status.send_replace(BrokerStatus::Registering);
        let registered_at = loop {
            match inner.route(Request::RegisterBroker(record.clone())).await {
                Ok(Reply::Registered { registered_at }) => break registered_at,
                Ok(other) => tracing::warn!(reply = ?other, "unexpected registration reply"),
                Err(e) => tracing::warn!(error = %e, broker_id, "registering failed; retrying"),
            }
            tokio::time::sleep(interval).await;
        };
        status.send_replace(BrokerStatus::Fenced);
        tracing::info!(broker_id, registered_at, "registered with the controller");
        // The first heartbeat goes as soon as the registration is applied here, so the broker
        // is unfenced without waiting a whole interval.
        if let Err(e) = inner.wait_for_applied(registered_at, interval).await {
            tracing::debug!(error = %e, "not caught up with the registration yet");
        }
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut leaders = inner.raft.metrics();
        loop {
            // A newly elected controller hears from every broker at once: it fences those it
            // does not hear from soon (they may have died with the previous one).
            let leader = leaders.borrow_and_update().current_leader;
            tokio::select! {
                _ = ticks.tick() => {}
                Ok(_) = leaders.wait_for(|m| m.current_leader.is_some() && m.current_leader != leader) => {
                    ticks.reset();
                }
            }
            let heartbeat = Request::Heartbeat {
                broker_id,
                incarnation: record.incarnation,
                applied_index: inner.state_machine.applied_index().unwrap_or(0),
            };
            match inner.route(heartbeat).await {
                Ok(Reply::Heartbeat { fenced }) => {
                    let now = if fenced {
                        BrokerStatus::Fenced
                    } else {
                        BrokerStatus::Live
                    };
                    // Watchers hear of changes only, not of every heartbeat.
                    status.send_if_modified(|status| std::mem::replace(status, now) != now);
                }
                Ok(other) => tracing::warn!(reply = ?other, "unexpected heartbeat reply"),
                Err(e) if e.kind() == ErrorKind::UnregisteredBroker => {
                    tracing::warn!(
                        broker_id,
                        "the controller lost this broker; registering again"
                    );
                    break;
                }
                Err(e) => tracing::warn!(error = %e, broker_id, "heartbeat failed"),
            }
        }
    }
}

/// Locks `mutex`, whether or not a holder panicked.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Gives partitions back to their preferred leaders every `period` while this node is the
/// active controller, for as long as the node runs.
async fn balance_leaders_forever(inner: Arc<Inner>, period: Duration) {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate; a starting cluster has nothing to balance yet.
    interval.tick().await;
    loop {
        interval.tick().await;
        if let Err(e) = inner.active.balance_leaders().await {
            tracing::warn!(error = %e, "preferred-leader balancing failed; trying next round");
        }
    }
}

/// Fences brokers whose sessions expire, every `period`, for as long as the node runs.
async fn expire_sessions_forever(inner: Arc<Inner>, period: Duration) {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if let Err(e) = inner.active.expire_sessions().await {
            tracing::warn!(error = %e, "checking broker sessions failed");
        }
    }
}

/// Keeps the Raft gauges current, until Raft stops.
async fn record_raft_metrics(raft: Raft<TypeConfig>) {
    let mut changes = raft.metrics();
    loop {
        {
            let state = changes.borrow_and_update();
            metrics::record_raft(state.current_term, state.state == ServerState::Leader);
        }
        if changes.changed().await.is_err() {
            return;
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
                broker_heartbeat_interval_ms: 50,
                leader_balance_interval_ms: None,
                request_timeout_ms: 10_000,
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
                .view()
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

        // Only the active controller decides: another node forwards requests to it, and its
        // refusals back.
        follower
            .view()
            .create_topic("elsewhere", 1, 1, BTreeMap::new())
            .await
            .unwrap();
        let error = follower
            .view()
            .create_topic("elsewhere", 1, 1, BTreeMap::new())
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::TopicExists, "{error}");
        assert_eq!(error.to_string(), "topic \"elsewhere\" already exists");
        let error = follower.fence_broker(1).await.unwrap_err();
        assert!(
            matches!(error, ControllerError::NotController { leader: Some(l) } if l == leader_id),
            "{error}"
        );
        let metadata = leader.metadata();
        assert!(metadata.topic_by_name("elsewhere").is_some());

        // Bad requests change nothing.
        let check = |error: ControllerError, expected: &str| {
            assert!(error.to_string().contains(expected), "{error}");
        };
        check(
            leader
                .view()
                .create_topic("bad name", 1, 1, BTreeMap::new())
                .await
                .unwrap_err(),
            "invalid topic name",
        );
        check(
            leader
                .view()
                .create_topic("big", 1, 4, BTreeMap::new())
                .await
                .unwrap_err(),
            "above the 3 live brokers",
        );
        check(
            leader
                .view()
                .create_topic("topic-0", 1, 1, BTreeMap::new())
                .await
                .unwrap_err(),
            "already exists",
        );
        check(
            leader.view().delete_topic("missing").await.unwrap_err(),
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
        leader.view().delete_topic("topic-0").await.unwrap();
        assert!(leader.metadata().topic_by_name("topic-0").is_none());
        converge(&controllers, leader).await;
        let before_restart = leader.metadata();

        // Every node restarts: the metadata is intact and the quorum works again.
        let addresses: Vec<String> = (1..=3u64)
            .map(|id| {
                let metrics = controllers[0].inner.raft.metrics().borrow().clone();
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
            .view()
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
