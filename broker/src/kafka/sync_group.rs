//! SyncGroup (v0-5): members ask for their assignment; the leader's request brings it. The
//! answer comes once the leader's assignment is written.

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::KafkaContext;

/// Answers a SyncGroup request.
pub(super) async fn handle(request: SyncGroupRequest, context: &KafkaContext) -> SyncGroupResponse {
    let synced = context
        .groups
        .sync(
            &request.group_id,
            request.member_id.to_string(),
            request.group_instance_id.map(|i| i.to_string()),
            request.generation_id,
            request.protocol_type.map(|t| t.to_string()),
            request.protocol_name.map(|p| p.to_string()),
            request
                .assignments
                .into_iter()
                .map(|a| (a.member_id.to_string(), a.assignment))
                .collect(),
        )
        .await;
    match synced {
        Ok(synced) => SyncGroupResponse::default()
            .with_error_code(synced.error.map_or(0, |e| e.code()))
            .with_protocol_type(synced.protocol_type.map(StrBytes::from_string))
            .with_protocol_name(synced.protocol_name.map(StrBytes::from_string))
            .with_assignment(synced.assignment),
        Err((error, message)) => {
            tracing::debug!(group = %request.group_id.0, %message, "SyncGroup refused");
            SyncGroupResponse::default().with_error_code(error.code())
        }
    }
}
