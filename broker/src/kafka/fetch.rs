//! Fetch: whole batches from each partition below its high watermark, as a long poll: if
//! there are fewer than `min_bytes`, the request waits (up to `max_wait_ms`) for an append to
//! move a high watermark, woken by it rather than polling.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};

use super::{KafkaContext, partition_error};
use crate::partition::Partition;
use crate::storage::TopicPartition;

/// Answers a Fetch request from a consumer.
pub(super) async fn handle(request: FetchRequest, context: &KafkaContext) -> FetchResponse {
    let first = read_all(&request, context);
    let bytes: usize = first.iter().map(|(_, _, size)| size).sum();
    let min_bytes = usize::try_from(request.min_bytes).unwrap_or(0);
    let wait = Duration::from_millis(u64::try_from(request.max_wait_ms).unwrap_or(0));
    let any_error = first.iter().any(|(_, p, _)| p.error_code != 0);
    // min_bytes 0 answers at once, as Kafka does. An append wakes the poll even if it brings
    // fewer than min_bytes: consumers' default is 1, and latency matters more.
    if bytes >= min_bytes || any_error || wait.is_zero() {
        return respond(&request, first);
    }
    // Wait for any partition's high watermark to pass its fetch offset.
    let mut waiters = tokio::task::JoinSet::new();
    for (partition, offset) in waiting_on(&request, context) {
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
    let answers = read_all(&request, context);
    respond(&request, answers)
}

/// The partitions of the request this broker holds, with their fetch offsets.
fn waiting_on(request: &FetchRequest, context: &KafkaContext) -> Vec<(Arc<Partition>, i64)> {
    let mut waiting = Vec::new();
    for topic in &request.topics {
        for wanted in &topic.partitions {
            let tp = TopicPartition::new(topic.topic.0.to_string(), wanted.partition);
            if let Some(partition) = context.replicas.partition(&tp) {
                waiting.push((partition, wanted.fetch_offset));
            }
        }
    }
    waiting
}

/// Reads every partition of the request: (topic index, the partition's answer, its bytes).
fn read_all(request: &FetchRequest, context: &KafkaContext) -> Vec<(usize, PartitionData, usize)> {
    let mut budget = usize::try_from(request.max_bytes).unwrap_or(0);
    let metadata = context.controller.metadata();
    let mut answers = Vec::new();
    for (index, topic) in request.topics.iter().enumerate() {
        let name = topic.topic.0.to_string();
        for wanted in &topic.partitions {
            let tp = TopicPartition::new(name.clone(), wanted.partition);
            let answer = PartitionData::default().with_partition_index(wanted.partition);
            let Some(partition) = context.replicas.partition(&tp) else {
                let error = if metadata.topic_by_name(&name).is_some() {
                    ResponseError::NotLeaderOrFollower
                } else {
                    ResponseError::UnknownTopicOrPartition
                };
                answers.push((index, failed(answer, error), 0));
                continue;
            };
            // Past the total budget, a partition gets nothing this time (but the first
            // partition always gets at least one batch, so a large one cannot stall).
            let limit = usize::try_from(wanted.partition_max_bytes)
                .unwrap_or(0)
                .min(budget);
            let epoch = (wanted.current_leader_epoch >= 0).then_some(wanted.current_leader_epoch);
            let max_bytes = if answers.is_empty() {
                limit.max(1)
            } else {
                limit
            };
            let read = partition.read(wanted.fetch_offset, max_bytes, epoch);
            match read {
                Ok(read) => {
                    let size = read.records.len();
                    budget = budget.saturating_sub(size);
                    let answer = answer
                        .with_high_watermark(read.high_watermark)
                        .with_last_stable_offset(read.high_watermark)
                        .with_log_start_offset(read.log_start_offset)
                        .with_records(Some(read.records));
                    answers.push((index, answer, size));
                }
                Err(e) => answers.push((index, failed(answer, partition_error(&e)), 0)),
            }
        }
    }
    answers
}

fn failed(answer: PartitionData, error: ResponseError) -> PartitionData {
    answer
        .with_error_code(error.code())
        .with_high_watermark(-1)
        .with_records(Some(bytes::Bytes::new()))
}

/// Groups the partitions' answers by topic, in request order.
fn respond(request: &FetchRequest, answers: Vec<(usize, PartitionData, usize)>) -> FetchResponse {
    let mut topics: Vec<FetchableTopicResponse> = request
        .topics
        .iter()
        .map(|t| {
            FetchableTopicResponse::default()
                .with_topic(t.topic.clone())
                .with_topic_id(t.topic_id)
        })
        .collect();
    for (index, answer, _) in answers {
        topics[index].partitions.push(answer);
    }
    FetchResponse::default().with_responses(topics)
}
