//! JoinGroup (v0-9): a member (re)joins a classic group; the answer comes when the group's
//! join phase ends, with the generation, the chosen protocol and, for the leader, every
//! member's metadata.

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::{Client, KafkaContext};

/// Answers a JoinGroup request.
pub(super) async fn handle(
    request: JoinGroupRequest,
    version: i16,
    client: &Client<'_>,
    context: &KafkaContext,
) -> JoinGroupResponse {
    // Before v1 there is no rebalance timeout: the session timeout serves as both.
    let rebalance_timeout_ms = if version >= 1 {
        request.rebalance_timeout_ms
    } else {
        request.session_timeout_ms
    };
    let joined = context
        .groups
        .join(
            &request.group_id,
            request.member_id.to_string(),
            request.group_instance_id.map(|i| i.to_string()),
            version >= 4,
            client.id.to_string(),
            client.host.to_string(),
            request.session_timeout_ms,
            rebalance_timeout_ms,
            request.protocol_type.to_string(),
            request
                .protocols
                .into_iter()
                .map(|p| (p.name.to_string(), p.metadata))
                .collect(),
        )
        .await;
    let joined = match joined {
        Ok(joined) => joined,
        Err((error, message)) => {
            tracing::debug!(group = %request.group_id.0, %message, "JoinGroup refused");
            return JoinGroupResponse::default()
                .with_error_code(error.code())
                .with_generation_id(-1)
                .with_member_id(request.member_id);
        }
    };
    let text = StrBytes::from_string;
    JoinGroupResponse::default()
        .with_error_code(joined.error.map_or(0, |e| e.code()))
        .with_generation_id(joined.generation)
        .with_protocol_type(joined.protocol_type.map(text))
        .with_protocol_name(joined.protocol_name.map(text))
        .with_leader(text(joined.leader))
        .with_skip_assignment(joined.skip_assignment)
        .with_member_id(text(joined.member_id))
        .with_members(
            joined
                .members
                .into_iter()
                .map(|(member_id, instance_id, metadata)| {
                    JoinGroupResponseMember::default()
                        .with_member_id(text(member_id))
                        .with_group_instance_id(instance_id.map(text))
                        .with_metadata(metadata)
                })
                .collect(),
        )
}
