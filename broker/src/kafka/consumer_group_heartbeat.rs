//! ConsumerGroupHeartbeat (v0-1, KIP-848): a member of a group on the consumer protocol
//! (`group.protocol=consumer`) joins, heartbeats and leaves; the coordinator computes the
//! assignment and answers each member with the partitions it is to own.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use kafka_protocol::protocol::StrBytes;

use super::{Client, KafkaContext};
use crate::group::consumer::HeartbeatRequest;

/// Answers a ConsumerGroupHeartbeat request.
pub(super) async fn handle(
    request: ConsumerGroupHeartbeatRequest,
    version: i16,
    client: &Client<'_>,
    context: &KafkaContext,
) -> ConsumerGroupHeartbeatResponse {
    let refused = |error: ResponseError, message: String| {
        tracing::debug!(group = %request.group_id.0, %message, "ConsumerGroupHeartbeat refused");
        ConsumerGroupHeartbeatResponse::default()
            .with_error_code(error.code())
            .with_error_message(Some(StrBytes::from_string(message)))
    };
    tracing::trace!(?request, version, "ConsumerGroupHeartbeat");
    if request
        .subscribed_topic_regex
        .as_ref()
        .is_some_and(|r| !r.is_empty())
    {
        return refused(
            ResponseError::InvalidRequest,
            "subscribing by regular expression is not supported; name the topics".to_string(),
        );
    }
    // From v1 the member makes its own id, also to join.
    if version >= 1 && request.member_id.is_empty() {
        return refused(
            ResponseError::InvalidRequest,
            "the member id is empty; from ConsumerGroupHeartbeat v1 the member generates it"
                .to_string(),
        );
    }
    let heartbeat = HeartbeatRequest {
        member_id: request.member_id.to_string(),
        member_epoch: request.member_epoch,
        instance_id: request.instance_id.map(|i| i.to_string()),
        rack_id: request.rack_id.map(|r| r.to_string()),
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        subscribed_topic_names: request
            .subscribed_topic_names
            .map(|names| names.into_iter().map(|n| n.to_string()).collect()),
        server_assignor: request.server_assignor.map(|a| a.to_string()),
        topic_partitions: request.topic_partitions.map(|owned| {
            owned
                .into_iter()
                .map(|t| (t.topic_id, t.partitions))
                .collect()
        }),
        client_id: client.id.to_string(),
        client_host: client.host.to_string(),
    };
    match context
        .groups
        .consumer_heartbeat(&request.group_id, heartbeat)
        .await
    {
        Ok(result) => ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(StrBytes::from_string(result.member_id)))
            .with_member_epoch(result.member_epoch)
            .with_heartbeat_interval_ms(result.heartbeat_interval_ms)
            .with_assignment(result.assignment.map(|assignment| {
                Assignment::default().with_topic_partitions(
                    assignment
                        .into_iter()
                        .map(|(topic, partitions)| {
                            TopicPartitions::default()
                                .with_topic_id(topic)
                                .with_partitions(partitions.into_iter().collect())
                        })
                        .collect(),
                )
            })),
        Err((error, message)) => refused(error, message),
    }
}
