//! DeleteGroups (v0-2): removes groups without members, with their committed offsets.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use super::KafkaContext;

/// Answers a DeleteGroups request.
pub(super) async fn handle(
    request: DeleteGroupsRequest,
    context: &KafkaContext,
) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(request.groups_names.len());
    for group_id in request.groups_names {
        let code = match context.groups.delete_group(&group_id).await {
            Ok(()) => 0,
            Err((error, message)) => {
                tracing::debug!(group = %group_id.0, %message, "DeleteGroups refused");
                error.code()
            }
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(group_id)
                .with_error_code(code),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}
