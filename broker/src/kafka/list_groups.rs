//! ListGroups (v0-5): the groups this broker coordinates (clients ask every broker), filtered
//! by state (v4) and type (v5).

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use super::KafkaContext;

/// Answers a ListGroups request.
pub(super) async fn handle(
    request: ListGroupsRequest,
    context: &KafkaContext,
) -> ListGroupsResponse {
    let wanted = |filter: &[StrBytes], value: &str| {
        filter.is_empty() || filter.iter().any(|f| f.eq_ignore_ascii_case(value))
    };
    let groups = context
        .groups
        .list_groups()
        .await
        .into_iter()
        .filter(|g| wanted(&request.states_filter, g.state))
        .filter(|g| wanted(&request.types_filter, g.group_type))
        .map(|g| {
            ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(g.group_id)))
                .with_protocol_type(StrBytes::from_string(g.protocol_type))
                .with_group_state(StrBytes::from_static_str(g.state))
                .with_group_type(StrBytes::from_static_str(g.group_type))
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}
