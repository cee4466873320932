//! LeaveGroup (v0-5): members leave a classic group, which rebalances without them. Before
//! v3 one member leaves by member id; from v3 a batch, each by member or instance id.

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use super::KafkaContext;

/// Answers a LeaveGroup request.
pub(super) async fn handle(
    request: LeaveGroupRequest,
    version: i16,
    context: &KafkaContext,
) -> LeaveGroupResponse {
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        request
            .members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|i| i.to_string()),
                )
            })
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    let results = match context.groups.leave(&request.group_id, members).await {
        Ok(results) => results,
        Err((error, message)) => {
            tracing::debug!(group = %request.group_id.0, %message, "LeaveGroup refused");
            return LeaveGroupResponse::default().with_error_code(error.code());
        }
    };
    if version < 3 {
        let error = results.into_iter().next().and_then(Result::err);
        return LeaveGroupResponse::default().with_error_code(error.map_or(0, |(e, _)| e.code()));
    }
    LeaveGroupResponse::default().with_members(
        request
            .members
            .into_iter()
            .zip(results)
            .map(|(member, result)| {
                MemberResponse::default()
                    .with_member_id(member.member_id)
                    .with_group_instance_id(member.group_instance_id)
                    .with_error_code(result.err().map_or(0, |(e, _)| e.code()))
            })
            .collect(),
    )
}
