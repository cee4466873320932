//! Heartbeat (v0-4): a classic group member's session goes on; REBALANCE_IN_PROGRESS tells it
//! to join again.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::KafkaContext;

/// Answers a Heartbeat request.
pub(super) async fn handle(request: HeartbeatRequest, context: &KafkaContext) -> HeartbeatResponse {
    let result = context
        .groups
        .heartbeat(
            &request.group_id,
            &request.member_id,
            request.group_instance_id.as_deref(),
            request.generation_id,
        )
        .await;
    match result {
        Ok(()) => HeartbeatResponse::default(),
        Err((error, message)) => {
            tracing::debug!(group = %request.group_id.0, %message, "Heartbeat refused");
            HeartbeatResponse::default().with_error_code(error.code())
        }
    }
}
