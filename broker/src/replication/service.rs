//! The leader's side: the `Replication` service on the internal listener, which followers
//! fetch from (`proto/weir/internal/v1/replication.proto`).
//!
//! A fetch names every partition a follower copies from this broker. Each is read from the
//! follower's log end offset to this broker's (not only below the high watermark), which
//! also tells the partition how far the follower has come. The answer goes back at once if it
//! carries records or a high watermark the follower does not know yet; otherwise the request
//! waits, up to its `max_wait_ms`, for an append or a move of the high watermark.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::select_all;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tonic::{Request, Response, Status};
use uuid::Uuid;
use weir_proto::internal::v1 as pb;
use weir_proto::internal::v1::replication_server::Replication;

use super::metrics;
use crate::partition::{Partition, PartitionError, ReplicaManager};
use crate::storage::{self, TopicPartition};

/// The longest a follower's fetch may wait, whatever it asks for.
const MAX_WAIT_CAP: Duration = Duration::from_secs(30);

/// The `Replication` service: partitions this broker leads, as followers fetch them.
#[derive(Debug, Clone)]
pub struct ReplicationService {
    replicas: Arc<ReplicaManager>,
    /// Woken when a fetch comes from a replica outside the ISR, which may now rejoin it.
    isr_check: Arc<Notify>,
}

impl ReplicationService {
    /// The service over this broker's partitions; a fetch from a replica outside a
    /// partition's ISR wakes `isr_check`.
    pub fn new(replicas: Arc<ReplicaManager>, isr_check: Arc<Notify>) -> ReplicationService {
        ReplicationService {
            replicas,
            isr_check,
        }
    }

    /// The partition a request names, if this broker holds that topic's replica of it.
    fn partition(&self, named: Option<&pb::ReplicaPartition>) -> Result<Arc<Partition>, Failure> {
        let named = named.ok_or_else(|| {
            Failure::new(
                pb::ReplicaError::UnknownPartition,
                "no partition named".into(),
            )
        })?;
        let tp = TopicPartition::new(named.topic.clone(), named.partition);
        let unknown = || {
            Failure::new(
                pb::ReplicaError::UnknownPartition,
                format!(
                    "broker {} holds no replica of {tp}",
                    self.replicas.broker_id()
                ),
            )
        };
        let partition = self.replicas.partition(&tp).ok_or_else(unknown)?;
        let same_topic =
            Uuid::from_slice(&named.topic_id).is_ok_and(|id| id == partition.topic_id());
        if !same_topic {
            return Err(unknown());
        }
        Ok(partition)
    }
}

/// One partition's failure, as the protocol carries it.
struct Failure {
    error: pb::ReplicaError,
    message: String,
}

impl Failure {
    fn new(error: pb::ReplicaError, message: String) -> Failure {
        Failure { error, message }
    }
}

impl From<PartitionError> for Failure {
    fn from(error: PartitionError) -> Failure {
        let code = match &error {
            PartitionError::NotLeader { .. } => pb::ReplicaError::NotLeader,
            PartitionError::FencedLeaderEpoch { .. } => pb::ReplicaError::FencedLeaderEpoch,
            PartitionError::UnknownLeaderEpoch { .. } => pb::ReplicaError::UnknownLeaderEpoch,
            PartitionError::OffsetOutOfRange { .. }
            | PartitionError::Storage(storage::Error::OffsetOutOfRange { .. }) => {
                pb::ReplicaError::OffsetOutOfRange
            }
            PartitionError::NotReplica { .. } => pb::ReplicaError::UnknownPartition,
            _ => pb::ReplicaError::StorageError,
        };
        Failure::new(code, error.to_string())
    }
}

/// What one pass over a fetch's partitions found.
struct Pass {
    reply: pb::ReplicaFetchReply,
    /// Whether the follower learns something: records, a failure, or a newer high watermark.
    news: bool,
    /// What to wait on if it does not: each partition's log end and high watermark.
    watches: Vec<watch::Receiver<i64>>,
}

impl ReplicationService {
    /// Reads every partition of `request` once.
    fn read_all(&self, request: &pb::ReplicaFetchRequest) -> Pass {
        let max_bytes = request.max_bytes as usize;
        let partition_max_bytes = request.partition_max_bytes as usize;
        let mut bytes_left = max_bytes;
        let mut pass = Pass {
            reply: pb::ReplicaFetchReply::default(),
            news: false,
            watches: Vec::new(),
        };
        for wanted in &request.partitions {
            let mut answer = pb::FetchedPartition {
                partition: wanted.partition.clone(),
                high_watermark: -1,
                log_start_offset: -1,
                log_end_offset: -1,
                ..Default::default()
            };
            let read = self
                .partition(wanted.partition.as_ref())
                .and_then(|partition| {
                    // Watched before reading, so a change right after the read is not missed.
                    pass.watches.push(partition.watch_log_end());
                    pass.watches.push(partition.watch_high_watermark());
                    let limit = partition_max_bytes.min(bytes_left);
                    // The first partition with records gets a batch even if it is over the limit.
                    let limit = if bytes_left == max_bytes {
                        limit.max(1)
                    } else {
                        limit
                    };
                    let read = partition.read_for_follower(
                        request.replica_id,
                        wanted.leader_epoch,
                        wanted.fetch_offset,
                        limit,
                    )?;
                    let (_, isr) = partition.replicas_and_isr();
                    if !isr.contains(&request.replica_id) {
                        self.isr_check.notify_one();
                    }
                    Ok(read)
                });
            match read {
                Ok(read) => {
                    let known = wanted.high_watermark.min(wanted.fetch_offset);
                    let visible = read.high_watermark.min(wanted.fetch_offset);
                    pass.news |= !read.records.is_empty() || visible > known;
                    bytes_left = bytes_left.saturating_sub(read.records.len());
                    metrics::bytes_out(read.records.len());
                    answer.high_watermark = read.high_watermark;
                    answer.log_start_offset = read.log_start_offset;
                    answer.log_end_offset = read.log_end_offset;
                    answer.records = read.records;
                }
                Err(failure) => {
                    pass.news = true;
                    if failure.error == pb::ReplicaError::OffsetOutOfRange
                        && let Ok(partition) = self.partition(wanted.partition.as_ref())
                    {
                        answer.log_start_offset = partition.log().log_start_offset();
                        answer.log_end_offset = partition.log().log_end_offset();
                    }
                    answer.error = failure.error.into();
                    answer.message = failure.message;
                }
            }
            pass.reply.partitions.push(answer);
        }
        pass
    }
}

#[tonic::async_trait]
impl Replication for ReplicationService {
    async fn fetch(
        &self,
        request: Request<pb::ReplicaFetchRequest>,
    ) -> Result<Response<pb::ReplicaFetchReply>, Status> {
        let request = request.into_inner();
        if request.replica_id < 0 {
            return Err(Status::invalid_argument(format!(
                "replica_id {} is not a broker id",
                request.replica_id
            )));
        }
        let wait = Duration::from_millis(u64::from(request.max_wait_ms)).min(MAX_WAIT_CAP);
        let deadline = Instant::now() + wait;
        loop {
            let mut pass = self.read_all(&request);
            if pass.news || pass.watches.is_empty() || Instant::now() >= deadline {
                return Ok(Response::new(pass.reply));
            }
            // Whatever moves next (an append, the high watermark) is worth another look.
            let changes = pass.watches.iter_mut().map(|w| Box::pin(w.changed()));
            tokio::select! {
                _ = select_all(changes) => {}
                () = tokio::time::sleep_until(deadline) => {
                    return Ok(Response::new(pass.reply));
                }
            }
        }
    }

    async fn offset_for_leader_epoch(
        &self,
        request: Request<pb::LeaderEpochRequest>,
    ) -> Result<Response<pb::LeaderEpochReply>, Status> {
        let request = request.into_inner();
        let partitions = request
            .partitions
            .into_iter()
            .map(|query| {
                let mut answer = pb::EpochAnswer {
                    partition: query.partition.clone(),
                    leader_epoch: -1,
                    end_offset: -1,
                    ..Default::default()
                };
                let found = self
                    .partition(query.partition.as_ref())
                    .and_then(|partition| {
                        Ok(partition.end_offset_for_epoch(
                            Some(query.current_leader_epoch),
                            query.leader_epoch,
                        )?)
                    });
                match found {
                    Ok(found) => {
                        answer.leader_epoch = found.leader_epoch;
                        answer.end_offset = found.end_offset;
                    }
                    Err(failure) => {
                        answer.error = failure.error.into();
                        answer.message = failure.message;
                    }
                }
                answer
            })
            .collect();
        Ok(Response::new(pb::LeaderEpochReply { partitions }))
    }
}
