//! FindCoordinator (v0-6): the broker coordinating each group, the leader of its partition of
//! `__consumer_offsets` (created on first use). From v4 one request names many keys.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::{KafkaContext, Refusal, host_and_port};

/// Kafka's coordinator key types.
const GROUP: i8 = 0;
const TRANSACTION: i8 = 1;

/// Answers a FindCoordinator request.
pub(super) async fn handle(
    request: FindCoordinatorRequest,
    version: i16,
    context: &KafkaContext,
) -> FindCoordinatorResponse {
    let keys = if version >= 4 {
        request.coordinator_keys
    } else {
        vec![request.key]
    };
    let mut coordinators = Vec::with_capacity(keys.len());
    for key in keys {
        let found = find(&key, request.key_type, context).await;
        let answer = Coordinator::default().with_key(key);
        coordinators.push(match found {
            Ok((node_id, host, port)) => answer
                .with_node_id(BrokerId(node_id))
                .with_host(StrBytes::from_string(host))
                .with_port(i32::from(port)),
            Err((error, message)) => answer
                .with_node_id(BrokerId(-1))
                .with_port(-1)
                .with_error_code(error.code())
                .with_error_message(Some(StrBytes::from_string(message))),
        });
    }
    if version >= 4 {
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let first = coordinators.into_iter().next().unwrap_or_default();
    FindCoordinatorResponse::default()
        .with_error_code(first.error_code)
        .with_error_message(first.error_message)
        .with_node_id(first.node_id)
        .with_host(first.host)
        .with_port(first.port)
}

async fn find(
    key: &str,
    key_type: i8,
    context: &KafkaContext,
) -> Result<(i32, String, u16), Refusal> {
    match key_type {
        GROUP => {}
        TRANSACTION => {
            return Err((
                ResponseError::TransactionalIdAuthorizationFailed,
                "Weir does not support transactions; use an idempotent producer without \
                 transactional.id"
                    .to_string(),
            ));
        }
        other => {
            return Err((
                ResponseError::InvalidRequest,
                format!("coordinator key type {other}; Weir coordinates consumer groups (type 0)"),
            ));
        }
    }
    let coordinator = context.groups.find_coordinator(key).await?;
    let (host, port) = host_and_port(&coordinator.endpoints.kafka).ok_or_else(|| {
        (
            ResponseError::CoordinatorNotAvailable,
            format!(
                "broker {} advertises an unusable Kafka address {:?}",
                coordinator.node_id, coordinator.endpoints.kafka
            ),
        )
    })?;
    Ok((coordinator.node_id, host, port))
}
