//! DescribeGroups (v0-5): each group's state, protocol and members (with their metadata and
//! assignment once the group is stable). An unknown group is described as Dead.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use super::KafkaContext;

/// Answers a DescribeGroups request.
pub(super) async fn handle(
    request: DescribeGroupsRequest,
    context: &KafkaContext,
) -> DescribeGroupsResponse {
    let mut groups = Vec::with_capacity(request.groups.len());
    for group_id in request.groups {
        let answer = DescribedGroup::default().with_group_id(group_id.clone());
        groups.push(match context.groups.describe_group(&group_id).await {
            Ok(group) => answer
                .with_group_state(StrBytes::from_static_str(group.state))
                .with_protocol_type(StrBytes::from_string(group.protocol_type))
                .with_protocol_data(StrBytes::from_string(group.protocol))
                .with_members(
                    group
                        .members
                        .into_iter()
                        .map(|m| {
                            DescribedGroupMember::default()
                                .with_member_id(StrBytes::from_string(m.member_id))
                                .with_group_instance_id(m.instance_id.map(StrBytes::from_string))
                                .with_client_id(StrBytes::from_string(m.client_id))
                                .with_client_host(StrBytes::from_string(m.client_host))
                                .with_member_metadata(m.metadata)
                                .with_member_assignment(m.assignment)
                        })
                        .collect(),
                ),
            Err((error, message)) => answer
                .with_error_code(error.code())
                .with_error_message(Some(StrBytes::from_string(message)))
                .with_group_state(StrBytes::from_static_str("Dead")),
        });
    }
    DescribeGroupsResponse::default().with_groups(groups)
}
