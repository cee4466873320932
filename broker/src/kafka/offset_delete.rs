//! OffsetDelete (v0): removes a group's committed offsets of partitions it no longer reads;
//! the offsets of topics a live consumer group subscribes to stay (GROUP_SUBSCRIBED_TO_TOPIC).

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use super::KafkaContext;

/// Answers an OffsetDelete request.
pub(super) async fn handle(
    request: OffsetDeleteRequest,
    context: &KafkaContext,
) -> OffsetDeleteResponse {
    let partitions: Vec<(String, i32)> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.to_string(), p.partition_index))
        })
        .collect();
    let results = match context
        .groups
        .delete_offsets(&request.group_id, partitions)
        .await
    {
        Ok(results) => results,
        Err((error, message)) => {
            tracing::debug!(group = %request.group_id.0, %message, "OffsetDelete refused");
            return OffsetDeleteResponse::default().with_error_code(error.code());
        }
    };
    let mut codes = results.into_iter().map(|r| r.map_or(0, |(e, _)| e.code()));
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(codes.next().unwrap_or(0))
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}
