//! Produce: each partition's batches checked and appended by its leader; acks=all waits for
//! the high watermark to pass them, within the request's timeout; acks=0 gets no answer.

use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;

use super::{KafkaContext, partition_error};
use crate::partition::PartitionError;
use crate::storage::TopicPartition;

/// Answers a Produce request; `None` for acks=0, which Kafka never answers.
pub(super) async fn handle(
    request: ProduceRequest,
    context: &KafkaContext,
) -> Option<ProduceResponse> {
    let now_ms = context.clock.now_ms();
    let metadata = context.controller.metadata();
    let timeout = Duration::from_millis(u64::try_from(request.timeout_ms).unwrap_or(0));
    let mut topics = Vec::with_capacity(request.topic_data.len());
    for topic in request.topic_data {
        let name = topic.name.0.to_string();
        let known = metadata.topic_by_name(&name).is_some();
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for data in topic.partition_data {
            let tp = TopicPartition::new(name.clone(), data.index);
            let response = PartitionProduceResponse::default().with_index(data.index);
            let Some(partition) = context.replicas.partition(&tp) else {
                let error = if known {
                    ResponseError::NotLeaderOrFollower
                } else {
                    ResponseError::UnknownTopicOrPartition
                };
                partitions.push(failed(response, error, format!("{tp} is not led here")));
                continue;
            };
            let records = data.records.unwrap_or_default();
            let appended = match partition.produce(records, now_ms) {
                Ok(info) => info,
                Err(e) => {
                    partitions.push(refused(response, &e));
                    continue;
                }
            };
            // acks=all: every in-sync replica has it once the high watermark passes it.
            if request.acks == -1
                && partition.high_watermark() <= appended.last_offset
                && !partition.wait_for_data(appended.last_offset, timeout).await
            {
                partitions.push(failed(
                    response,
                    ResponseError::RequestTimedOut,
                    format!("the in-sync replicas did not take the records within {timeout:?}"),
                ));
                continue;
            }
            // A retry (nothing appended) answers with the stored batches' time.
            let log_append_time = match (partition.appends_log_time(), appended.batch_count) {
                (false, _) => -1,
                (true, 0) => appended.max_timestamp,
                (true, _) => now_ms,
            };
            partitions.push(
                response
                    .with_base_offset(appended.base_offset)
                    .with_log_append_time_ms(log_append_time)
                    .with_log_start_offset(partition.log().log_start_offset()),
            );
        }
        topics.push(
            TopicProduceResponse::default()
                .with_name(topic.name)
                .with_partition_responses(partitions),
        );
    }
    (request.acks != 0).then(|| ProduceResponse::default().with_responses(topics))
}

fn refused(response: PartitionProduceResponse, error: &PartitionError) -> PartitionProduceResponse {
    failed(response, partition_error(error), error.to_string())
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
