//! InitProducerId: an idempotent producer gets a producer id no other producer in the cluster
//! has (from this broker's block, which the active controller hands out), at epoch 0.
//!
//! Without a transactional id Kafka always gives a fresh id, even to a producer that names its
//! old one to bump its epoch (KIP-360, v3+), and so does Weir. Transactions are not served: a
//! transactional id gets TRANSACTIONAL_ID_AUTHORIZATION_FAILED, which librdkafka and the Java
//! client treat as fatal at once, instead of retrying a coordinator that will never come.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::{KafkaContext, Refusal};
use crate::controller::{ControllerError, ErrorKind};

/// Answers an InitProducerId request.
pub(super) async fn handle(
    request: &InitProducerIdRequest,
    context: &KafkaContext,
) -> InitProducerIdResponse {
    if let Some(transactional_id) = &request.transactional_id {
        let transactional_id = transactional_id.0.as_str();
        let error = if transactional_id.is_empty() {
            ResponseError::InvalidRequest
        } else {
            tracing::info!(
                transactional_id,
                "refusing a transactional producer: Weir does not serve transactions"
            );
            ResponseError::TransactionalIdAuthorizationFailed
        };
        return failed(error);
    }
    match allocate(context).await {
        Ok((producer_id, epoch)) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(epoch),
        Err((error, _)) => failed(error),
    }
}

/// A fresh producer id and its first epoch, for an idempotent producer of either API.
pub(crate) async fn allocate(context: &KafkaContext) -> Result<(i64, i16), Refusal> {
    match context.controller.next_producer_id().await {
        Ok(producer_id) => Ok((producer_id, 0)),
        Err(e) => {
            tracing::warn!(error = %e, "no producer id for an idempotent producer");
            Err((
                producer_id_error(&e),
                format!("no producer id could be allocated: {e}; retry"),
            ))
        }
    }
}

/// The code for a failure to get a producer id: retryable while no controller can hand out a
/// block (or this broker is not registered yet), as Kafka answers while it waits for a block.
fn producer_id_error(error: &ControllerError) -> ResponseError {
    match error.kind() {
        ErrorKind::NotController
        | ErrorKind::Unavailable
        | ErrorKind::Conflict
        | ErrorKind::UnregisteredBroker => ResponseError::CoordinatorLoadInProgress,
        _ => ResponseError::UnknownServerError,
    }
}

fn failed(error: ResponseError) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_error_code(error.code())
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}
