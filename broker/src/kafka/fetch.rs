//! Fetch: whole batches from each partition below its high watermark, as a long poll: if
//! there are fewer than `min_bytes`, the request waits (up to `max_wait_ms`) for an append to
//! move a high watermark, woken by it rather than polling.
//!
//! [`long_poll`] is the protocol-neutral part, which the gRPC front end's Fetch shares.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};

use super::{KafkaContext, Refusal, lookup, refused};
use crate::partition::{Partition, ReadResult};
use crate::storage::TopicPartition;

/// One partition a fetch reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Wanted {
    /// The partition.
    pub(crate) tp: TopicPartition,
    /// The offset to read from.
    pub(crate) offset: i64,
    /// At most this many bytes from this partition.
    pub(crate) max_bytes: usize,
    /// The leader epoch the client knows, if it gave one.
    pub(crate) leader_epoch: Option<i32>,
}

/// Reads the `wanted` partitions, within `max_bytes` in all; if that brings fewer than
/// `min_bytes`, waits up to `wait` for an append to any of them and reads again. Answers
/// each partition, in order.
pub(crate) async fn long_poll(
    wanted: &[Wanted],
    max_bytes: usize,
    min_bytes: usize,
    wait: Duration,
    context: &KafkaContext,
) -> Vec<Result<ReadResult, Refusal>> {
    let first = read_all(wanted, max_bytes, context);
    let bytes: usize = first.iter().flatten().map(|read| read.records.len()).sum();
    let any_error = first.iter().any(Result::is_err);
    // min_bytes 0 answers at once, as Kafka does. An append wakes the poll even if it brings
    // fewer than min_bytes: consumers' default is 1, and latency matters more.
    if bytes >= min_bytes || any_error || wait.is_zero() {
        return first;
    }
    let waiting = wanted
        .iter()
        .filter_map(|w| Some((context.replicas.partition(&w.tp)?, w.offset)))
        .collect();
    wait_for_any(waiting, wait).await;
    read_all(wanted, max_bytes, context)
}

/// Waits until the high watermark of any of the partitions passes its offset, for at most
/// `wait`.
async fn wait_for_any(partitions: Vec<(Arc<Partition>, i64)>, wait: Duration) {
    let mut waiters = tokio::task::JoinSet::new();
    for (partition, offset) in partitions {
        waiters.spawn(async move { partition.wait_for_data(offset, wait).await });
    }
    let _woken = tokio::time::timeout(wait, async {
        while let Some(woken) = waiters.join_next().await {
            if woken.unwrap_or(false) {
                return;
            }
        }
        // Nothing to wait on: the timeout ends the poll.
        std::future::pending::<()>().await;
    })
    .await;
    waiters.abort_all();
}

/// Reads every partition of `wanted` within the total budget `max_bytes`.
fn read_all(
    wanted: &[Wanted],
    max_bytes: usize,
    context: &KafkaContext,
) -> Vec<Result<ReadResult, Refusal>> {
    let mut budget = max_bytes;
    let mut answers = Vec::with_capacity(wanted.len());
    for want in wanted {
        let partition = match lookup(&want.tp, context) {
            Ok(partition) => partition,
            Err(refusal) => {
                answers.push(Err(refusal));
                continue;
            }
        };
        // Past the total budget, a partition gets nothing this time (but the first
        // partition always gets at least one batch, so a large one cannot stall).
        let limit = want.max_bytes.min(budget);
        let limit = if answers.is_empty() {
            limit.max(1)
        } else {
            limit
        };
        let read = partition
            .read(want.offset, limit, want.leader_epoch)
            .map_err(|e| refused(&e));
        if let Ok(read) = &read {
            budget = budget.saturating_sub(read.records.len());
        }
        answers.push(read);
    }
    answers
}

/// Answers a Fetch request from a consumer.
pub(super) async fn handle(request: FetchRequest, context: &KafkaContext) -> FetchResponse {
    let mut wanted = Vec::new();
    let mut topic_index = Vec::new();
    for (index, topic) in request.topics.iter().enumerate() {
        for partition in &topic.partitions {
            topic_index.push(index);
            wanted.push(Wanted {
                tp: TopicPartition::new(topic.topic.0.to_string(), partition.partition),
                offset: partition.fetch_offset,
                max_bytes: usize::try_from(partition.partition_max_bytes).unwrap_or(0),
                leader_epoch: (partition.current_leader_epoch >= 0)
                    .then_some(partition.current_leader_epoch),
            });
        }
    }
    let answers = long_poll(
        &wanted,
        usize::try_from(request.max_bytes).unwrap_or(0),
        usize::try_from(request.min_bytes).unwrap_or(0),
        Duration::from_millis(u64::try_from(request.max_wait_ms).unwrap_or(0)),
        context,
    )
    .await;

    // Group the partitions' answers by topic, in request order.
    let mut topics: Vec<FetchableTopicResponse> = request
        .topics
        .iter()
        .map(|t| {
            FetchableTopicResponse::default()
                .with_topic(t.topic.clone())
                .with_topic_id(t.topic_id)
        })
        .collect();
    for ((index, want), answer) in topic_index.into_iter().zip(&wanted).zip(answers) {
        let data = PartitionData::default().with_partition_index(want.tp.partition);
        let data = match answer {
            Ok(read) => {
                crate::metrics::records_out(&want.tp.topic, &read.records);
                data.with_high_watermark(read.high_watermark)
                    .with_last_stable_offset(read.high_watermark)
                    .with_log_start_offset(read.log_start_offset)
                    .with_records(Some(read.records))
            }
            Err((error, _)) => failed(data, error),
        };
        topics[index].partitions.push(data);
    }
    FetchResponse::default().with_responses(topics)
}

fn failed(answer: PartitionData, error: ResponseError) -> PartitionData {
    answer
        .with_error_code(error.code())
        .with_high_watermark(-1)
        .with_records(Some(bytes::Bytes::new()))
}
