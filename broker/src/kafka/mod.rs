//! The Kafka wire protocol front end: a listener on `--kafka-addr` that speaks to kcat,
//! librdkafka, the Java client and kafka-python, on the `kafka-protocol` crate's codecs.
//!
//! ```text
//!  TCP ─▶ frame (i32 length, at most MAX_REQUEST_BYTES) ─▶ header + body decoded by api key
//!      ─▶ handler (one file per API) ─▶ response header (version per API) + body ─▶ TCP
//! ```
//!
//! Invariants:
//! - Each connection answers its requests in the order they came (clients pipeline), one at a
//!   time, as Kafka does.
//! - Only the versions in [`versions::SUPPORTED`] are advertised and served. An unknown API, a
//!   version outside them or a body that does not decode closes the connection, as Kafka
//!   does; ApiVersions at an unknown version gets UNSUPPORTED_VERSION and our ranges (KIP-511).
//! - Optional tagged fields are left at their defaults, so older clients that parse tags
//!   strictly read only what their version requires.

pub(crate) mod alter_configs;
mod api_versions;
mod connection;
mod consumer_group_heartbeat;
pub(crate) mod create_partitions;
pub(crate) mod create_topics;
mod delete_groups;
mod delete_records;
pub(crate) mod delete_topics;
mod describe_cluster;
pub(crate) mod describe_configs;
mod describe_groups;
pub(crate) mod fetch;
mod find_coordinator;
mod heartbeat;
mod incremental_alter_configs;
pub(crate) mod init_producer_id;
mod join_group;
mod leave_group;
mod list_groups;
mod list_offsets;
mod metadata;
mod offset_commit;
mod offset_delete;
mod offset_fetch;
mod offset_for_leader_epoch;
pub(crate) mod produce;
mod sync_group;
mod versions;

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::clock::Clock;
use crate::config::NodeConfig;
use crate::controller::{ControllerError, ControllerView, ErrorKind};
use crate::group::GroupCoordinator;
use crate::partition::{
    Partition, PartitionError, ProduceError, ProducerStateError, ReplicaManager,
};
use crate::storage::{self, TopicPartition};

/// The largest request a client may send, in bytes (Kafka's `socket.request.max.bytes`).
pub const MAX_REQUEST_BYTES: usize = 100 * 1024 * 1024;

/// What the handlers use: the node's view of the cluster and its partitions. The gRPC front
/// end shares it, and with it the handlers' protocol-neutral parts (produce, fetch, topic
/// admin), which take it and answer with a [`Refusal`].
#[derive(Debug, Clone)]
pub struct KafkaContext {
    /// The committed metadata and the active controller.
    pub controller: ControllerView,
    /// The partitions this broker holds.
    pub replicas: Arc<ReplicaManager>,
    /// The broker's time (LogAppendTime, timestamp checks).
    pub clock: Arc<dyn Clock>,
    /// The node's configuration: topic defaults, auto topic creation, its own id.
    pub config: Arc<NodeConfig>,
    /// The cluster's id (`NodeConfig::cluster_id`), as Metadata and DescribeCluster report it.
    pub cluster_id: String,
    /// The group coordinator: consumer groups and committed offsets.
    pub groups: Arc<GroupCoordinator>,
}

/// How long an admin request waits for its change to reach this node's metadata when the
/// client gives no timeout.
const ADMIN_WAIT_DEFAULT_MS: u64 = 30_000;

/// Who sent a request: what group members are described with.
#[derive(Debug, Clone, Copy)]
pub(super) struct Client<'a> {
    /// The client id of the request header.
    pub(super) id: &'a str,
    /// The client's address, as Kafka shows it (`/127.0.0.1`).
    pub(super) host: &'a str,
}

/// Why a request (or one partition or topic of it) was refused: the Kafka error, and a message
/// saying what was wrong and what to do.
pub(crate) type Refusal = (ResponseError, String);

/// The client's timeout of an admin request, or the default for none (0 or less).
pub(crate) fn admin_timeout(timeout_ms: i32) -> Duration {
    let ms = u64::try_from(timeout_ms)
        .ok()
        .filter(|&ms| ms > 0)
        .unwrap_or(ADMIN_WAIT_DEFAULT_MS);
    Duration::from_millis(ms)
}

/// The Kafka error code for the controller's refusal.
pub(crate) fn controller_error(error: &ControllerError) -> ResponseError {
    match error.kind() {
        ErrorKind::InvalidTopicName => ResponseError::InvalidTopicException,
        ErrorKind::TopicExists => ResponseError::TopicAlreadyExists,
        ErrorKind::UnknownTopic => ResponseError::UnknownTopicOrPartition,
        ErrorKind::InvalidPartitions => ResponseError::InvalidPartitions,
        ErrorKind::InvalidReplicationFactor => ResponseError::InvalidReplicationFactor,
        ErrorKind::InvalidConfig => ResponseError::InvalidConfig,
        ErrorKind::InvalidRequest => ResponseError::InvalidRequest,
        // The client may retry: an election is under way or the quorum is unreachable.
        ErrorKind::NotController | ErrorKind::Unavailable | ErrorKind::Conflict => {
            ResponseError::RequestTimedOut
        }
        ErrorKind::StaleIsrChange | ErrorKind::UnregisteredBroker => {
            ResponseError::UnknownServerError
        }
    }
}

/// Splits a `host:port` address (IPv6 hosts in brackets) as Metadata responses give it.
fn host_and_port(address: &str) -> Option<(String, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let port = port.parse::<u16>().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_string(), port))
}

/// Kafka's config resource types (`ConfigResource.Type`).
pub(crate) mod resource_type {
    /// A topic's configs.
    pub(crate) const TOPIC: i8 = 2;
    /// A broker's configs.
    pub(crate) const BROKER: i8 = 4;
}

/// The partition `tp` as this broker holds it, or why it cannot be served here: a topic or
/// partition that does not exist is UNKNOWN_TOPIC_OR_PARTITION, one held elsewhere
/// NOT_LEADER_OR_FOLLOWER, and one the metadata says this broker leads but whose log it is
/// still opening (just after a start or a leadership change) LEADER_NOT_AVAILABLE, which
/// clients retry after a short backoff instead of treating as a stale leader.
pub(crate) fn lookup(
    tp: &TopicPartition,
    context: &KafkaContext,
) -> Result<Arc<Partition>, Refusal> {
    if let Some(partition) = context.replicas.partition(tp) {
        return Ok(partition);
    }
    let metadata = context.controller.metadata();
    let Some(topic) = metadata.topic_by_name(&tp.topic) else {
        return Err((
            ResponseError::UnknownTopicOrPartition,
            format!("topic {:?} does not exist", tp.topic),
        ));
    };
    let count = topic.partitions.len();
    let Some(assigned) = usize::try_from(tp.partition)
        .ok()
        .and_then(|p| topic.partitions.get(p))
    else {
        return Err((
            ResponseError::UnknownTopicOrPartition,
            format!(
                "topic {:?} has {count} partitions; {tp} does not exist",
                tp.topic
            ),
        ));
    };
    let node = context.config.node_id;
    if assigned.leader == Some(node) {
        return Err((
            ResponseError::LeaderNotAvailable,
            format!("broker {node} leads {tp} but is still opening its log; retry shortly"),
        ));
    }
    Err((
        ResponseError::NotLeaderOrFollower,
        format!("broker {node} holds no replica of {tp}; refresh metadata"),
    ))
}

/// The refusal of a change to an internal topic (`__consumer_offsets`), which only the
/// broker writes and shapes.
pub(crate) fn internal_topic(name: &str, what: &str) -> Refusal {
    (
        ResponseError::InvalidTopicException,
        format!(
            "{name} is internal to the broker (consumer groups and offsets) and cannot be {what}"
        ),
    )
}

/// A partition's refusal as a [`Refusal`].
pub(crate) fn refused(error: &PartitionError) -> Refusal {
    (partition_error(error), error.to_string())
}

/// The Kafka error code for a partition's refusal.
pub(crate) fn partition_error(error: &PartitionError) -> ResponseError {
    match error {
        PartitionError::NotLeader { .. } => ResponseError::NotLeaderOrFollower,
        PartitionError::FencedLeaderEpoch { .. } => ResponseError::FencedLeaderEpoch,
        PartitionError::UnknownLeaderEpoch { .. } => ResponseError::UnknownLeaderEpoch,
        PartitionError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        PartitionError::OffsetNotAvailable { .. } => ResponseError::OffsetNotAvailable,
        PartitionError::PolicyViolation { .. } => ResponseError::PolicyViolation,
        PartitionError::NotEnoughReplicas { .. } => ResponseError::NotEnoughReplicas,
        PartitionError::NotEnoughReplicasAfterAppend { .. } => {
            ResponseError::NotEnoughReplicasAfterAppend
        }
        PartitionError::ReplicationTimedOut { .. } => ResponseError::RequestTimedOut,
        // Only a broker fetching as a follower can be refused so.
        PartitionError::NotReplica { .. } => ResponseError::NotLeaderOrFollower,
        PartitionError::Produce(refusal) => match refusal {
            ProduceError::CorruptMessage { .. } => ResponseError::CorruptMessage,
            ProduceError::MessageTooLarge { .. } => ResponseError::MessageTooLarge,
            ProduceError::InvalidRecord { .. } => ResponseError::InvalidRecord,
            ProduceError::InvalidTimestamp { .. } => ResponseError::InvalidTimestamp,
        },
        PartitionError::Producer(refusal) => match refusal {
            ProducerStateError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
            ProducerStateError::OutOfOrderSequence { .. }
            | ProducerStateError::NewEpochNotAtZero { .. } => {
                ResponseError::OutOfOrderSequenceNumber
            }
            ProducerStateError::MissingSequence { .. } | ProducerStateError::MixedRetry { .. } => {
                ResponseError::InvalidRecord
            }
        },
        PartitionError::Storage(e) => match e {
            storage::Error::InvalidBatch { .. } | storage::Error::EmptyAppend => {
                ResponseError::CorruptMessage
            }
            storage::Error::BatchTooLarge { .. } => ResponseError::MessageTooLarge,
            storage::Error::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
            // The disk is full, failed or the log is offline: the client may retry elsewhere.
            _ => ResponseError::KafkaStorageError,
        },
    }
}

/// How long a shutdown waits for the connections to finish the requests they are answering
/// (a long-polling fetch waits at most its `max_wait_ms`) before it closes them anyway.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(10);

/// Serves the Kafka protocol on `listener` until `shutdown` completes; each connection runs
/// on its own task. At shutdown the listener stops accepting, and each connection answers
/// the request it is working on and then closes, within [`SHUTDOWN_DRAIN`].
pub async fn serve(
    listener: TcpListener,
    context: KafkaContext,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let context = Arc::new(context);
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            // Reap finished connections so the set does not grow with every client.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let context = Arc::clone(&context);
                    let stopping = stopping.clone();
                    connections.spawn(async move {
                        if let Err(e) = connection::run(stream, &context, stopping).await {
                            tracing::debug!(%peer, error = %e, "Kafka connection closed");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors, say: wait a little rather than spin.
                    tracing::warn!(error = %e, "accepting a Kafka connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    drop(listener);
    stop.send_replace(true);
    let open = connections.len();
    let drained = tokio::time::timeout(SHUTDOWN_DRAIN, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open,
            left = connections.len(),
            "Kafka connections did not finish their requests in time; closing them"
        );
        connections.shutdown().await;
    }
}
