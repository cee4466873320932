//! CreatePartitions: each topic is grown to the count asked for by the active controller
//! (or, with `validate_only`, checked against this node's metadata by the same decision); the
//! answer waits, within the request's timeout, until this node's metadata has the new
//! partitions.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{KafkaContext, Refusal, admin_timeout, controller_error, internal_topic};
use crate::controller::{ControllerError, decisions};
use crate::group::OFFSETS_TOPIC;

/// Answers a CreatePartitions request.
pub(super) async fn handle(
    request: CreatePartitionsRequest,
    context: &KafkaContext,
) -> CreatePartitionsResponse {
    let timeout = admin_timeout(request.timeout_ms);
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
        let grown = if topic.assignments.is_some() {
            Err((
                ResponseError::InvalidRequest,
                "manual replica assignment is not supported; give the count and the controller \
                 places the new replicas"
                    .into(),
            ))
        } else {
            grow(
                topic.name.as_str(),
                topic.count,
                request.validate_only,
                timeout,
                context,
            )
            .await
        };
        let result = match grown {
            Ok(()) => result,
            Err((error, message)) => result
                .with_error_code(error.code())
                .with_error_message(Some(StrBytes::from_string(message))),
        };
        results.push(result);
    }
    CreatePartitionsResponse::default().with_results(results)
}

/// Grows topic `name` to `count` partitions through the active controller (or with
/// `validate_only` checks that it could be grown now), and waits within `timeout` until this
/// node's metadata has the new partitions.
pub(crate) async fn grow(
    name: &str,
    count: i32,
    validate_only: bool,
    timeout: std::time::Duration,
    context: &KafkaContext,
) -> Result<(), Refusal> {
    let refused = |e: ControllerError| (controller_error(&e), e.to_string());
    if name == OFFSETS_TOPIC {
        // Groups are found by hashing into its partitions: more would move every group.
        return Err(internal_topic(name, "given more partitions"));
    }
    if validate_only {
        let metadata = context.controller.metadata();
        decisions::create_partitions(&metadata, name, count, 0).map_err(|e| refused(e.into()))?;
        return Ok(());
    }
    context
        .controller
        .create_partitions(name, count)
        .await
        .map_err(refused)?;
    let count = usize::try_from(count).unwrap_or(0);
    let grown = context
        .controller
        .wait_for_metadata(
            |m| {
                m.topic_by_name(name)
                    .is_some_and(|t| t.partitions.len() >= count)
            },
            timeout,
        )
        .await;
    if !grown {
        tracing::warn!(topic = name, "grown, but not yet in this node's metadata");
    }
    Ok(())
}
