//! DeleteRecords (v0-2): each partition's leader moves its log start offset up to the offset
//! given (-1: the high watermark) and answers the new start, the low watermark. Records below
//! it are gone for consumers at once; whole segments below it are deleted from disk.
//!
//! As in Kafka: an offset above the high watermark is OFFSET_OUT_OF_RANGE; a topic whose
//! `cleanup.policy` compacts without deleting gets POLICY_VIOLATION; an error answers low
//! watermark -1. The new start is written to the recovery checkpoint before the answer, so it
//! survives a crash. With no followers to wait for, `timeout_ms` is not needed: the low
//! watermark is the leader's log start when the answer is sent.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::{KafkaContext, lookup, partition_error};
use crate::partition::Partition;
use crate::storage::TopicPartition;

/// One partition of the request: where its answer goes, and what to delete.
struct Deletion {
    topic: usize,
    answer: DeleteRecordsPartitionResult,
    target: Result<(Arc<Partition>, i64), ResponseError>,
}

/// Answers a DeleteRecords request. The deletions write to disk, so they run on the blocking
/// pool.
pub(super) async fn handle(
    request: DeleteRecordsRequest,
    context: &KafkaContext,
) -> DeleteRecordsResponse {
    let mut deletions = Vec::new();
    for (topic_index, topic) in request.topics.iter().enumerate() {
        let name = topic.name.0.as_str();
        for wanted in &topic.partitions {
            let tp = TopicPartition::new(name, wanted.partition_index);
            let target = lookup(&tp, context)
                .map(|partition| (partition, wanted.offset))
                .map_err(|(error, _)| error);
            deletions.push(Deletion {
                topic: topic_index,
                answer: DeleteRecordsPartitionResult::default()
                    .with_partition_index(wanted.partition_index),
                target,
            });
        }
    }
    let replicas = Arc::clone(&context.replicas);
    let deleted = tokio::task::spawn_blocking(move || {
        deletions
            .into_iter()
            .map(|deletion| {
                let outcome = deletion.target.and_then(|(partition, offset)| {
                    replicas
                        .delete_records(&partition, offset)
                        .map_err(|e| partition_error(&e))
                });
                let answer = match outcome {
                    Ok(low_watermark) => deletion.answer.with_low_watermark(low_watermark),
                    Err(error) => deletion
                        .answer
                        .with_error_code(error.code())
                        .with_low_watermark(-1),
                };
                (deletion.topic, answer)
            })
            .collect::<Vec<_>>()
    })
    .await;
    let mut topics: Vec<DeleteRecordsTopicResult> = request
        .topics
        .iter()
        .map(|t| DeleteRecordsTopicResult::default().with_name(t.name.clone()))
        .collect();
    match deleted {
        Ok(answers) => {
            for (topic, answer) in answers {
                topics[topic].partitions.push(answer);
            }
        }
        Err(error) => {
            tracing::error!(%error, "a DeleteRecords request panicked");
            for (topic, wanted) in request.topics.iter().zip(&mut topics) {
                wanted.partitions = topic
                    .partitions
                    .iter()
                    .map(|p| {
                        DeleteRecordsPartitionResult::default()
                            .with_partition_index(p.partition_index)
                            .with_low_watermark(-1)
                            .with_error_code(ResponseError::UnknownServerError.code())
                    })
                    .collect();
            }
        }
    }
    DeleteRecordsResponse::default().with_topics(topics)
}
