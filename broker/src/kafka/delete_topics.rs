//! DeleteTopics: each topic, named (up to version 5) or by name or id (version 6), is deleted
//! by the active controller; the answer waits, within the request's timeout, until this
//! node's metadata no longer has it.

use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::{KafkaContext, Refusal, admin_timeout, controller_error, internal_topic};
use crate::group::OFFSETS_TOPIC;

/// Answers a DeleteTopics request.
pub(super) async fn handle(
    request: DeleteTopicsRequest,
    context: &KafkaContext,
) -> DeleteTopicsResponse {
    let timeout = admin_timeout(request.timeout_ms);
    // Versions up to 5 name the topics; version 6 names them or gives their ids.
    let wanted = request
        .topic_names
        .into_iter()
        .map(|name| (Some(name), Uuid::nil()))
        .chain(request.topics.into_iter().map(|t| (t.name, t.topic_id)));
    let mut responses = Vec::new();
    for (name, topic_id) in wanted {
        let metadata = context.controller.metadata();
        let found = match &name {
            Some(name) => metadata.topic_by_name(name.as_str()),
            None => metadata.topic(topic_id),
        };
        let result = DeletableTopicResult::default()
            .with_name(name.clone())
            .with_topic_id(topic_id);
        let Some(topic) = found else {
            let (error, what) = match &name {
                Some(name) => (
                    ResponseError::UnknownTopicOrPartition,
                    format!("topic {:?}", name.as_str()),
                ),
                None => (
                    ResponseError::UnknownTopicId,
                    format!("topic id {topic_id}"),
                ),
            };
            responses.push(failed(result, error, format!("{what} does not exist")));
            continue;
        };
        let (id, topic_name) = (topic.id, topic.name.clone());
        let result = result
            .with_name(Some(TopicName(StrBytes::from_string(topic_name.clone()))))
            .with_topic_id(id);
        match delete(&topic_name, id, timeout, context).await {
            Ok(()) => responses.push(result),
            Err((error, message)) => responses.push(failed(result, error, message)),
        }
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

/// Deletes topic `name`, whose id is `id`, through the active controller, and waits within
/// `timeout` until this node's metadata no longer has it.
pub(crate) async fn delete(
    name: &str,
    id: Uuid,
    timeout: Duration,
    context: &KafkaContext,
) -> Result<(), Refusal> {
    if name == OFFSETS_TOPIC {
        return Err(internal_topic(name, "deleted"));
    }
    context
        .controller
        .delete_topic(name)
        .await
        .map_err(|e| (controller_error(&e), e.to_string()))?;
    let gone = context
        .controller
        .wait_for_metadata(|m| m.topic(id).is_none(), timeout)
        .await;
    if !gone {
        tracing::warn!(topic = name, "deleted, but still in this node's metadata");
    }
    Ok(())
}

fn failed(
    result: DeletableTopicResult,
    error: ResponseError,
    message: String,
) -> DeletableTopicResult {
    result
        .with_error_code(error.code())
        .with_error_message(Some(StrBytes::from_string(message)))
}
