//! `weir-broker`: runs a Weir node.
//!
//! The node opens (and after an unclean stop, recovers) every partition log in its data
//! directory, joins the controller quorum (as a voter if it is in the voter list, otherwise as
//! a learner) on its internal listener, registers as a broker and heartbeats (unless its
//! `process_roles` leave out broker), and shuts down cleanly on SIGINT or SIGTERM. The Kafka and gRPC front ends join it with the data path.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;
use uuid::Uuid;
use weir_broker::clock::{Clock, SystemClock};
use weir_broker::config::{BoundAddresses, BrokerArgs, NodeConfig};
use weir_broker::controller::{
    BrokerRecord, BrokerStatus, Controller, ControllerConfig, Endpoints, MetadataSubscription,
};
use weir_broker::kafka::{self, KafkaContext};
use weir_broker::partition::{ProducePolicy, ReplicaManager};
use weir_broker::storage::LogManager;

/// The controller's directory inside the data directory.
const METADATA_DIR: &str = "metadata";
/// How long a request to the active controller may wait through elections.
const CONTROLLER_REQUEST_TIMEOUT_MS: u64 = 30_000;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        // Logs are diagnostics: stderr, beside the error a failed start prints.
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // openraft narrates every election and shutdown step at info.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn")),
        )
        .init();
    let args = BrokerArgs::parse();
    let result = NodeConfig::load_from_process_env(&args)
        .context("the configuration is not usable")
        .and_then(|config| {
            tokio::runtime::Runtime::new()
                .context("could not start the async runtime")
                .and_then(|runtime| runtime.block_on(run(config)))
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The whole chain of causes on one line: what failed, and why.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: NodeConfig) -> anyhow::Result<()> {
    let storage = config.storage_config();
    let data_dir = storage.data_dir.clone();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let manager = {
        let clock = Arc::clone(&clock);
        tokio::task::spawn_blocking(move || LogManager::open(storage, clock))
            .await
            .context("opening the data directory panicked")?
            .with_context(|| format!("could not open the data directory {}", data_dir.display()))?
    };
    let manager = Arc::new(manager);
    tracing::info!(dir = %data_dir.display(), logs = manager.logs().len(), "storage is open");

    let internal = listen(config.internal_addr, "internal", "--internal-addr").await?;
    let kafka = listen(config.kafka_addr, "Kafka", "--kafka-addr").await?;
    let bound = BoundAddresses {
        internal: Some(
            internal
                .local_addr()
                .context("the internal listener has no address")?,
        ),
        kafka: Some(
            kafka
                .local_addr()
                .context("the Kafka listener has no address")?,
        ),
        ..BoundAddresses::default()
    };
    let config = config.with_bound_addresses(&bound);
    let node_id = u64::try_from(config.node_id).context("node_id is checked to be 0 or more")?;
    let controller = Controller::start(
        ControllerConfig {
            node_id,
            dir: data_dir.join(METADATA_DIR),
            voters: config.controller_voters.clone(),
            heartbeat_interval_ms: config.controller_heartbeat_interval_ms,
            election_timeout_min_ms: config.controller_election_timeout_min_ms,
            election_timeout_max_ms: config.controller_election_timeout_max_ms,
            broker_session_timeout_ms: config.broker_session_timeout_ms,
            request_timeout_ms: CONTROLLER_REQUEST_TIMEOUT_MS,
            clock: Arc::clone(&clock),
        },
        internal,
    )
    .await
    .context("could not start this node's controller")?;
    tracing::info!(
        node_id,
        voter = controller.is_voter(),
        internal = %config.advertised_internal_addr,
        "joined the controller quorum"
    );
    if !config.process_roles.broker {
        tracing::info!(node_id, "a controller only: this node holds no partitions");
    } else {
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
    }
    let status = tokio::spawn(report_broker_status(controller.broker_status(), node_id));
    // The partitions this node holds follow the committed metadata.
    let produce_defaults = ProducePolicy {
        max_message_bytes: usize::try_from(config.message_max_bytes)
            .context("message_max_bytes is checked to be positive")?,
        ..ProducePolicy::default()
    };
    let replicas = Arc::new(ReplicaManager::new(
        config.node_id,
        Arc::clone(&manager),
        produce_defaults,
    ));
    let following = tokio::spawn(Arc::clone(&replicas).run(controller.subscribe()));
    let cleanup = config.process_roles.broker.then(|| {
        tokio::spawn(remove_orphans(
            controller.broker_status(),
            controller.subscribe(),
            Arc::clone(&replicas),
        ))
    });

    let (stop, stopping) = tokio::sync::watch::channel(false);
    let kafka_server = tokio::spawn(kafka::serve(
        kafka,
        KafkaContext {
            controller: controller.view(),
            replicas: Arc::clone(&replicas),
            clock,
        },
        async move {
            let mut stopping = stopping;
            // A dropped sender stops the listener too.
            let _stopped = stopping.wait_for(|stop| *stop).await;
        },
    ));
    tracing::info!(address = %config.advertised_kafka_addr, "serving the Kafka protocol");

    Arc::clone(&manager).run(shutdown_signal()).await;
    tracing::info!("shutting down");
    stop.send_replace(true);
    if let Err(e) = kafka_server.await {
        tracing::warn!(error = %e, "the Kafka listener panicked");
    }
    status.abort();
    following.abort();
    if let Some(cleanup) = cleanup {
        cleanup.abort();
    }
    if let Err(e) = controller.shutdown().await {
        tracing::warn!(error = %e, "the controller did not stop cleanly");
    }
    tokio::task::spawn_blocking(move || manager.shutdown())
        .await
        .context("shutting down panicked")?
        .context("clean shutdown failed; the next start will recover the logs")
}

/// Binds the `what` listener at `address`, or says which flag to change.
async fn listen(address: SocketAddr, what: &str, flag: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address).await.with_context(|| {
        format!(
            "could not listen on the {what} address {address} ({flag}); is another node using \
             it? choose a free port"
        )
    })
}

/// Once this broker is live (caught up with the metadata log), removes the logs of topics
/// deleted while it was down.
async fn remove_orphans(
    mut status: tokio::sync::watch::Receiver<BrokerStatus>,
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
async fn report_broker_status(mut status: tokio::sync::watch::Receiver<BrokerStatus>, id: u64) {
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

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(terminate) => terminate,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; stop with Ctrl-C");
            ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        () = ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

/// Completes on Ctrl-C (SIGINT). If SIGINT cannot be listened for, never completes: the node
/// then stops on SIGTERM only, rather than shutting down at once.
async fn ctrl_c() {
    if let Err(e) = tokio::signal::ctrl_c().await {
        tracing::warn!(error = %e, "cannot listen for Ctrl-C");
        std::future::pending::<()>().await;
    }
}
