//! Wiring: a [`Node`] starts every part of a Weir node in order (the HTTP admin endpoints,
//! storage, listeners, the controller, the broker's partitions, the front ends) and stops
//! them in the reverse order.
//!
//! The HTTP endpoints come first so that `/healthz` answers through a long log recovery, and
//! go first at shutdown, which `/readyz` reports from its first moment (503), so that load
//! balancers stop sending clients while the broker hands its leaderships over.
//!
//! The `weir-broker` binary is a [`Node`] run until a signal; tests start nodes in process
//! with listeners on port 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tonic::service::Routes;
use uuid::Uuid;
use weir_proto::internal::v1::replication_server::ReplicationServer;

use crate::clock::Clock;
use crate::config::{BoundAddresses, NodeConfig};
use crate::controller::{
    BrokerRecord, BrokerStatus, Controller, ControllerConfig, ControllerError, Endpoints,
    MetadataSubscription, decisions,
};
use crate::group::{GroupConfig, GroupCoordinator};
use crate::grpc;
use crate::kafka::{self, KafkaContext};
use crate::metrics::{self, Health};
use crate::partition::{ProducePolicy, ReplicaManager};
use crate::replication::{self, ReplicationService};
use crate::storage::{self, LogManager};

/// The controller's directory inside the data directory.
pub const METADATA_DIR: &str = "metadata";
/// How long a request to the active controller may wait through elections.
const CONTROLLER_REQUEST_TIMEOUT_MS: u64 = 30_000;
/// How long a shutdown waits for the HTTP requests being answered (a scrape).
const HTTP_SHUTDOWN_DRAIN: Duration = Duration::from_secs(5);

/// Why a node could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The data directory could not be opened or closed.
    #[error("the data directory {dir}: {source}")]
    Storage {
        /// The data directory.
        dir: String,
        /// What went wrong.
        source: storage::Error,
    },
    /// A listener could not be bound.
    #[error(
        "could not listen on the {what} address {address} ({flag}): {source}; is another node \
         using it? choose a free port"
    )]
    Listen {
        /// Which listener.
        what: &'static str,
        /// The address.
        address: SocketAddr,
        /// The flag that sets it.
        flag: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The controller could not start or stop.
    #[error("this node's controller: {0}")]
    Controller(#[from] ControllerError),
    /// A value of the configuration cannot be used.
    #[error("the configuration: {0}")]
    Config(String),
    /// A task of the node panicked.
    #[error("{what} panicked: {source}")]
    Panicked {
        /// Which task.
        what: &'static str,
        /// The panic.
        source: tokio::task::JoinError,
    },
}

/// A running Weir node: its storage, its controller, its partitions and its front ends.
#[derive(Debug)]
pub struct Node {
    config: NodeConfig,
    logs: Arc<LogManager>,
    controller: Controller,
    replicas: Arc<ReplicaManager>,
    /// Set to stop the listeners and the storage maintenance.
    stop: watch::Sender<bool>,
    /// The front ends, which finish the requests they are answering when stopped.
    servers: Vec<(&'static str, JoinHandle<()>)>,
    /// Background tasks that are aborted at shutdown.
    background: Vec<JoinHandle<()>>,
    maintenance: JoinHandle<()>,
    /// What `/readyz` answers.
    health: Health,
    http: HttpServer,
}

/// The HTTP admin endpoints' server; dropping it (a start that failed) stops it too.
#[derive(Debug)]
struct HttpServer {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl HttpServer {
    /// Binds `config.http_addr` and serves `/metrics`, `/healthz` and `/readyz` from `health`.
    async fn start(
        config: &NodeConfig,
        health: &Health,
    ) -> Result<(HttpServer, SocketAddr), ServerError> {
        let listener = listen(config.http_addr, "HTTP", "--http-addr").await?;
        let address = local_addr(&listener, "HTTP", "--http-addr")?;
        let (stop, _) = watch::channel(false);
        let task = tokio::spawn(metrics::serve(
            listener,
            health.clone(),
            stopped(stop.subscribe()),
        ));
        tracing::info!(%address, "serving /metrics, /healthz and /readyz");
        Ok((HttpServer { stop, task }, address))
    }

    /// Stops accepting, and waits a moment for the requests being answered.
    async fn stop(self) {
        self.stop.send_replace(true);
        match tokio::time::timeout(HTTP_SHUTDOWN_DRAIN, self.task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "the HTTP server panicked"),
            Err(_) => tracing::warn!("HTTP requests did not finish in time; closing them"),
        }
    }
}

impl Node {
    /// Starts a node as `config` says, reading the time from `clock`: opens (and, after an
    /// unclean stop, recovers) the data directory, binds the listeners (a port of 0 gets a
    /// free one, which the advertised address then follows), joins the controller quorum,
    /// registers as a broker unless `process_roles` leaves that out, and serves the front
    /// ends.
    pub async fn start(config: NodeConfig, clock: Arc<dyn Clock>) -> Result<Node, ServerError> {
        let partition_series_max = usize::try_from(config.metrics_partition_series_max)
            .map_err(|_| ServerError::Config("metrics_partition_series_max is too large".into()))?;
        metrics::describe();
        let health = Health::starting();
        let (http, http_addr) = HttpServer::start(&config, &health).await?;
        let storage_config = config.storage_config();
        let data_dir = storage_config.data_dir.clone();
        let storage_error = |source| ServerError::Storage {
            dir: data_dir.display().to_string(),
            source,
        };
        let logs = {
            let clock = Arc::clone(&clock);
            tokio::task::spawn_blocking(move || LogManager::open(storage_config, clock))
                .await
                .map_err(|source| ServerError::Panicked {
                    what: "opening the data directory",
                    source,
                })?
                .map_err(storage_error)?
        };
        let logs = Arc::new(logs);
        tracing::info!(dir = %data_dir.display(), logs = logs.logs().len(), "storage is open");

        let internal = listen(config.internal_addr, "internal", "--internal-addr").await?;
        let kafka_listener = listen(config.kafka_addr, "Kafka", "--kafka-addr").await?;
        let grpc_listener = listen(config.grpc_addr, "gRPC", "--grpc-addr").await?;
        let bound = BoundAddresses {
            internal: Some(local_addr(&internal, "internal", "--internal-addr")?),
            kafka: Some(local_addr(&kafka_listener, "Kafka", "--kafka-addr")?),
            grpc: Some(local_addr(&grpc_listener, "gRPC", "--grpc-addr")?),
            http: Some(http_addr),
        };
        let config = config.with_bound_addresses(&bound);
        let node_id = u64::try_from(config.node_id)
            .map_err(|_| ServerError::Config("node_id must be 0 or more".into()))?;

        // The partitions this node holds follow the committed metadata; as leaders they
        // serve followers on the internal listener.
        let produce_defaults = ProducePolicy {
            max_message_bytes: usize::try_from(config.message_max_bytes)
                .map_err(|_| ServerError::Config("message_max_bytes must be positive".into()))?,
            min_insync_replicas: config.min_insync_replicas,
            ..ProducePolicy::default()
        };
        let replicas = Arc::new(
            ReplicaManager::new(config.node_id, Arc::clone(&logs), produce_defaults)
                .with_producer_state(config.producer_state_config())
                .with_high_watermark_checkpoint_interval(
                    config.replica_high_watermark_checkpoint_interval_ms,
                ),
        );
        replication::describe_metrics();
        crate::storage::describe_metrics();
        let replica_events = replicas.replica_events();
        let isr_check = Arc::new(Notify::new());
        let replication_service = Routes::new(ReplicationServer::new(ReplicationService::new(
            Arc::clone(&replicas),
            Arc::clone(&isr_check),
        )));
        let controller = Controller::start_with_services(
            ControllerConfig {
                node_id,
                dir: data_dir.join(METADATA_DIR),
                voters: config.controller_voters.clone(),
                heartbeat_interval_ms: config.controller_heartbeat_interval_ms,
                election_timeout_min_ms: config.controller_election_timeout_min_ms,
                election_timeout_max_ms: config.controller_election_timeout_max_ms,
                broker_session_timeout_ms: config.broker_session_timeout_ms,
                broker_heartbeat_interval_ms: config.broker_heartbeat_interval_ms,
                leader_balance_interval_ms: config
                    .auto_leader_rebalance_enable
                    .then_some(config.leader_imbalance_check_interval_ms),
                request_timeout_ms: CONTROLLER_REQUEST_TIMEOUT_MS,
                clock: Arc::clone(&clock),
            },
            internal,
            replication_service,
        )
        .await?;
        tracing::info!(
            node_id,
            voter = controller.is_voter(),
            internal = %config.advertised_internal_addr,
            "joined the controller quorum"
        );
        if config.process_roles.broker {
            controller.start_broker(
                BrokerRecord {
                    broker_id: config.node_id,
                    incarnation: Uuid::new_v4(),
                    endpoints: Endpoints {
                        kafka: config.advertised_kafka_addr.clone(),
                        grpc: config.advertised_grpc_addr.clone(),
                        internal: config.advertised_internal_addr.clone(),
                    },
                    rack: config.rack.clone(),
                },
                Duration::from_millis(config.broker_heartbeat_interval_ms),
            );
        } else {
            tracing::info!(node_id, "a controller only: this node holds no partitions");
        }

        let mut background = vec![
            tokio::spawn(report_broker_status(controller.broker_status(), node_id)),
            tokio::spawn(replication::run_fetchers(
                replica_events,
                config.fetcher_config(),
            )),
            tokio::spawn(replication::run_isr_changes(
                Arc::clone(&replicas),
                controller.view(),
                config.replica_lag_time_max_ms,
                isr_check,
                partition_series_max,
            )),
            tokio::spawn(Arc::clone(&replicas).run(controller.subscribe())),
        ];
        if config.process_roles.broker {
            background.push(tokio::spawn(remove_orphans(
                controller.broker_status(),
                controller.subscribe(),
                Arc::clone(&replicas),
            )));
        }

        let (stop, _) = watch::channel(false);
        let maintenance = tokio::spawn(Arc::clone(&logs).run(stopped(stop.subscribe())));
        let groups = Arc::new(GroupCoordinator::new(
            GroupConfig::from_node(&config),
            controller.view(),
            Arc::clone(&replicas),
            Arc::clone(&clock),
        ));
        background.push(tokio::spawn(Arc::clone(&groups).run(stop.subscribe())));
        let context = KafkaContext {
            controller: controller.view(),
            replicas: Arc::clone(&replicas),
            groups,
            clock,
            cluster_id: config.cluster_id(),
            config: Arc::new(config.clone()),
        };
        let kafka_server = tokio::spawn(kafka::serve(
            kafka_listener,
            context.clone(),
            stopped(stop.subscribe()),
        ));
        tracing::info!(address = %config.advertised_kafka_addr, "serving the Kafka protocol");
        let grpc_server = tokio::spawn(grpc::serve(grpc_listener, context, stop.subscribe()));
        tracing::info!(address = %config.advertised_grpc_addr, "serving the gRPC API");
        health.serving(readiness(&config, &controller));
        Ok(Node {
            config,
            logs,
            controller,
            replicas,
            stop,
            servers: vec![
                ("the Kafka listener", kafka_server),
                ("the gRPC listener", grpc_server),
            ],
            background,
            maintenance,
            health,
            http,
        })
    }

    /// The configuration the node runs with, its listen and advertised addresses resolved to
    /// the ports bound.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// The address the Kafka listener is bound to.
    pub fn kafka_addr(&self) -> SocketAddr {
        self.config.kafka_addr
    }

    /// The address the public gRPC listener is bound to.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.config.grpc_addr
    }

    /// The address the internal listener is bound to.
    pub fn internal_addr(&self) -> SocketAddr {
        self.config.internal_addr
    }

    /// The address the HTTP endpoints (`/metrics`, `/healthz`, `/readyz`) are bound to.
    pub fn http_addr(&self) -> SocketAddr {
        self.config.http_addr
    }

    /// This node's part in the controller quorum.
    pub fn controller(&self) -> &Controller {
        &self.controller
    }

    /// The partitions this node holds.
    pub fn replicas(&self) -> &Arc<ReplicaManager> {
        &self.replicas
    }

    /// The partition logs of this node.
    pub fn logs(&self) -> &Arc<LogManager> {
        &self.logs
    }

    /// Waits until this node is a live broker (registered and caught up with the metadata
    /// log), for at most `timeout`; returns whether it is.
    pub async fn wait_until_live(&self, timeout: Duration) -> bool {
        let mut status = self.controller.broker_status();
        tokio::time::timeout(timeout, status.wait_for(|s| *s == BrokerStatus::Live))
            .await
            .is_ok_and(|live| live.is_ok())
    }

    /// Stops the node: `/readyz` says so at once; a broker first hands its leaderships to
    /// other in-sync replicas (controlled shutdown, unless configured off); then the HTTP
    /// endpoints stop, then the other listeners stop accepting and answer the requests they
    /// are working on, then the controller stops and every log is flushed and closed.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        tracing::info!("shutting down");
        self.health.shutting_down();
        if self.config.process_roles.broker && self.config.controlled_shutdown_enable {
            self.controlled_shutdown().await;
        }
        self.http.stop().await;
        self.stop.send_replace(true);
        for (what, server) in self.servers {
            if let Err(source) = server.await {
                tracing::warn!(error = %source, "{what} panicked");
            }
        }
        for task in &self.background {
            task.abort();
        }
        if let Err(e) = self.maintenance.await {
            tracing::warn!(error = %e, "storage maintenance panicked");
        }
        self.controller.shutdown().await?;
        // The partitions stopped changing with the listeners and the controller.
        let replicas = Arc::clone(&self.replicas);
        match tokio::task::spawn_blocking(move || replicas.shutdown()).await {
            Ok(written) => tracing::info!(written, "wrote producer state snapshots"),
            Err(e) => tracing::warn!(error = %e, "writing producer state snapshots panicked"),
        }
        let logs = self.logs;
        let dir = logs.config().data_dir.display().to_string();
        tokio::task::spawn_blocking(move || logs.shutdown())
            .await
            .map_err(|source| ServerError::Panicked {
                what: "closing the logs",
                source,
            })?
            .map_err(|source| ServerError::Storage { dir, source })
    }
}

impl Node {
    /// Asks the active controller to move this broker's leaderships to other in-sync replicas
    /// and take it out of every ISR, while the front ends still answer (clients told
    /// NOT_LEADER_OR_FOLLOWER find the new leaders). Skipped when no other live broker shares
    /// a partition with this one (a single node, or the last one of a cluster stopping):
    /// nothing could move. A failure is logged, not fatal: the broker's partitions then move
    /// when its session ends.
    async fn controlled_shutdown(&self) {
        let metadata = self.controller.metadata();
        if !decisions::has_shared_partitions(&metadata, self.config.node_id) {
            return;
        }
        let timeout = Duration::from_millis(self.config.controlled_shutdown_timeout_ms);
        match self.controller.controlled_shutdown(timeout).await {
            Ok(moves) => tracing::info!(
                leaders_moved = moves.moved,
                left_offline = moves.offline,
                "controlled shutdown: other in-sync replicas lead this broker's partitions now"
            ),
            Err(e) => tracing::warn!(
                error = %e,
                "controlled shutdown failed; stopping anyway, and this broker's partitions \
                 move to other replicas when its session ends"
            ),
        }
    }
}

/// What `/readyz` checks once the listeners are up: a broker is ready when the active
/// controller has it live (registered, caught up with the metadata log, heartbeating); a
/// controller-only node when it knows the active controller and has applied every entry it
/// knows to be committed.
fn readiness(
    config: &NodeConfig,
    controller: &Controller,
) -> impl Fn() -> Result<(), String> + Send + Sync + 'static {
    let broker = config
        .process_roles
        .broker
        .then(|| controller.broker_status());
    let view = controller.view();
    move || match &broker {
        Some(status) => match *status.borrow() {
            BrokerStatus::Live => Ok(()),
            BrokerStatus::Registering => Err("registering with the active controller".to_string()),
            BrokerStatus::Fenced => {
                Err("fenced: catching up with the metadata log, or its session expired".to_string())
            }
        },
        None => view.metadata_caught_up(),
    }
}

/// Completes once `stop` is set (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    // A dropped sender stops the task too.
    let _stopped = stop.wait_for(|stop| *stop).await;
}

/// Binds the `what` listener at `address`, or says which flag to change.
async fn listen(
    address: SocketAddr,
    what: &'static str,
    flag: &'static str,
) -> Result<TcpListener, ServerError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| ServerError::Listen {
            what,
            address,
            flag,
            source,
        })
}

fn local_addr(
    listener: &TcpListener,
    what: &'static str,
    flag: &'static str,
) -> Result<SocketAddr, ServerError> {
    listener.local_addr().map_err(|source| ServerError::Listen {
        what,
        address: SocketAddr::from(([0, 0, 0, 0], 0)),
        flag,
        source,
    })
}

/// Once this broker is live (caught up with the metadata log), removes the logs of topics
/// deleted while it was down.
async fn remove_orphans(
    mut status: watch::Receiver<BrokerStatus>,
    metadata: MetadataSubscription,
    replicas: Arc<ReplicaManager>,
) {
    if status.wait_for(|s| *s == BrokerStatus::Live).await.is_err() {
        return;
    }
    let caught_up_to = metadata.latest().applied_index.unwrap_or(0);
    loop {
        let replicas = Arc::clone(&replicas);
        match tokio::task::spawn_blocking(move || replicas.remove_orphans(caught_up_to)).await {
            Ok(Some(0)) => return,
            Ok(Some(removed)) => {
                tracing::info!(removed, "removed the logs of partitions deleted while down");
                return;
            }
            // The replica manager has not applied that far yet: it is moments behind.
            Ok(None) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => {
                tracing::error!(error = %e, "removing orphan logs panicked");
                return;
            }
        }
    }
}

/// Logs each change of this node's standing as a broker.
async fn report_broker_status(mut status: watch::Receiver<BrokerStatus>, id: u64) {
    loop {
        let now = *status.borrow_and_update();
        match now {
            BrokerStatus::Registering => tracing::info!(broker_id = id, "registering"),
            BrokerStatus::Fenced => tracing::info!(broker_id = id, "registered; catching up"),
            BrokerStatus::Live => tracing::info!(broker_id = id, "broker is live"),
        }
        if status.changed().await.is_err() {
            return;
        }
    }
}
