//! Produce: each partition's batches checked and appended by its leader; acks=all waits for
//! the high watermark to pass them, within the request's timeout; acks=0 gets no answer.
//!
//! [`append`] and [`Appended::acknowledge`] are the one produce path: the gRPC front end's
//! Produce goes through them too.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;

use super::{KafkaContext, Refusal, internal_topic, lookup, refused};
use crate::group::OFFSETS_TOPIC;
use crate::partition::Partition;
use crate::storage::{AppendInfo, TopicPartition};

/// What a producer is told of records a partition took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Produced {
    /// The offset of the first record.
    pub(crate) base_offset: i64,
    /// The time stamped on the records under LogAppendTime, else -1.
    pub(crate) log_append_time_ms: i64,
    /// The partition's log start offset.
    pub(crate) log_start_offset: i64,
}

/// Records a partition's leader has appended, not yet acknowledged.
#[derive(Debug)]
pub(crate) struct Appended {
    partition: Arc<Partition>,
    info: AppendInfo,
    /// The leader epoch it appended at.
    leader_epoch: i32,
    now_ms: i64,
}

/// Checks `records` against partition `tp`'s policy and appends them as its leader, at
/// `now_ms` (LogAppendTime, timestamp checks). With `acks_all`, the ISR must have at least
/// the topic's `min.insync.replicas` members first (NOT_ENOUGH_REPLICAS).
pub(crate) fn append(
    tp: &TopicPartition,
    records: Bytes,
    now_ms: i64,
    acks_all: bool,
    context: &KafkaContext,
) -> Result<Appended, Refusal> {
    if tp.topic == OFFSETS_TOPIC {
        return Err(internal_topic(&tp.topic, "written to by clients"));
    }
    let partition = lookup(tp, context)?;
    if acks_all {
        partition.check_enough_replicas().map_err(|e| refused(&e))?;
    }
    let leader_epoch = partition.leader_epoch();
    let info = partition
        .produce(records, now_ms)
        .map_err(|e| refused(&e))?;
    // A retry the partition already had appends nothing (no batches) and is not counted.
    let appended = if info.batch_count > 0 {
        u64::try_from(info.last_offset - info.base_offset + 1).unwrap_or(0)
    } else {
        0
    };
    crate::metrics::records_in(&tp.topic, info.bytes, appended);
    Ok(Appended {
        partition,
        info,
        leader_epoch,
        now_ms,
    })
}

impl Appended {
    /// Waits, with `acks_all`, until every in-sync replica has the records (the high
    /// watermark passes them), until `deadline` at the latest; then says where they are. A
    /// request's partitions share one deadline, so their waits overlap.
    pub(crate) async fn acknowledge(
        self,
        acks_all: bool,
        deadline: Instant,
    ) -> Result<Produced, Refusal> {
        let partition = &self.partition;
        if acks_all {
            let timeout = deadline.saturating_duration_since(Instant::now());
            partition
                .wait_for_replication(self.info.last_offset, self.leader_epoch, timeout)
                .await
                .map_err(|e| refused(&e))?;
        }
        // A retry (nothing appended) answers with the stored batches' time.
        let log_append_time_ms = match (partition.appends_log_time(), self.info.batch_count) {
            (false, _) => -1,
            (true, 0) => self.info.max_timestamp,
            (true, _) => self.now_ms,
        };
        Ok(Produced {
            base_offset: self.info.base_offset,
            log_append_time_ms,
            log_start_offset: partition.log().log_start_offset(),
        })
    }
}

/// Answers a Produce request; `None` for acks=0, which Kafka never answers.
pub(super) async fn handle(
    request: ProduceRequest,
    context: &KafkaContext,
) -> Option<ProduceResponse> {
    let now_ms = context.clock.now_ms();
    let timeout = Duration::from_millis(u64::try_from(request.timeout_ms).unwrap_or(0));
    // Every partition is appended first, then all wait for their replicas until one deadline.
    let deadline = Instant::now() + timeout;
    let appended: Vec<_> = request
        .topic_data
        .into_iter()
        .map(|topic| {
            let name = topic.name.0.to_string();
            let partitions = topic
                .partition_data
                .into_iter()
                .map(|data| {
                    let tp = TopicPartition::new(name.clone(), data.index);
                    let records = data.records.unwrap_or_default();
                    let acks_all = request.acks == -1;
                    (data.index, append(&tp, records, now_ms, acks_all, context))
                })
                .collect::<Vec<_>>();
            (topic.name, partitions)
        })
        .collect();
    let mut topics = Vec::with_capacity(appended.len());
    for (name, appended) in appended {
        let mut partitions = Vec::with_capacity(appended.len());
        for (index, appended) in appended {
            let response = PartitionProduceResponse::default().with_index(index);
            let produced = match appended {
                Ok(appended) => appended.acknowledge(request.acks == -1, deadline).await,
                Err(refusal) => Err(refusal),
            };
            partitions.push(match produced {
                Ok(produced) => response
                    .with_base_offset(produced.base_offset)
                    .with_log_append_time_ms(produced.log_append_time_ms)
                    .with_log_start_offset(produced.log_start_offset),
                Err((error, message)) => failed(response, error, message),
            });
        }
        topics.push(
            TopicProduceResponse::default()
                .with_name(name)
                .with_partition_responses(partitions),
        );
    }
    (request.acks != 0).then(|| ProduceResponse::default().with_responses(topics))
}

fn failed(
    response: PartitionProduceResponse,
    error: ResponseError,
    message: String,
) -> PartitionProduceResponse {
    response
        .with_error_code(error.code())
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
        .with_error_message(Some(StrBytes::from_string(message)))
}
