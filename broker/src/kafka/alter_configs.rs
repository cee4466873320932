//! AlterConfigs (the older, non-incremental API, which librdkafka's and kafka-python's admin
//! clients use): a topic's configs are replaced by the ones given, all or none. Shares with
//! IncrementalAlterConfigs the way a resource's changes are made.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{KafkaContext, Refusal, controller_error, resource_type};
use crate::controller::{ConfigChange, ControllerError, MetadataRecord, decisions};
use crate::topic_config;

/// How long a change waits to reach this node's metadata before it is answered anyway.
const APPLIED_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Answers an AlterConfigs request.
pub(super) async fn handle(
    request: AlterConfigsRequest,
    context: &KafkaContext,
) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let given: Vec<ConfigChange> = resource
            .configs
            .iter()
            .filter_map(|c| {
                let value = c.value.as_ref()?;
                Some(ConfigChange::Set(c.name.to_string(), value.to_string()))
            })
            .collect();
        // Every config not given returns to its default: the given ones replace them all.
        let mut changes: Vec<ConfigChange> = topic_config::known()
            .filter(|def| !given.iter().any(|c| c.name() == def.name))
            .map(|def| ConfigChange::Delete(def.name.to_string()))
            .collect();
        changes.extend(given);
        let altered = alter(
            resource.resource_type,
            resource.resource_name.as_str(),
            changes,
            request.validate_only,
            context,
        )
        .await;
        let response = AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name);
        responses.push(match altered {
            Ok(()) => response,
            Err((error, message)) => response
                .with_error_code(error.code())
                .with_error_message(Some(StrBytes::from_string(message))),
        });
    }
    AlterConfigsResponse::default().with_responses(responses)
}

/// Makes `changes` to the configs of resource `name` of type `kind` through the active
/// controller, or with `validate_only` checks them against this node's metadata; waits until
/// this node's metadata has the change.
pub(crate) async fn alter(
    kind: i8,
    name: &str,
    changes: Vec<ConfigChange>,
    validate_only: bool,
    context: &KafkaContext,
) -> Result<(), Refusal> {
    let refused = |e: ControllerError| (controller_error(&e), e.to_string());
    match kind {
        resource_type::TOPIC => {}
        resource_type::BROKER => {
            return Err((
                ResponseError::InvalidRequest,
                "broker configs cannot be changed while the broker runs: set them in its config \
                 file, WEIR_* variables or flags, and restart it"
                    .into(),
            ));
        }
        other => {
            return Err((
                ResponseError::InvalidRequest,
                format!("resource type {other} has no configs; topics are type 2"),
            ));
        }
    }
    let metadata = context.controller.metadata();
    let record =
        decisions::alter_topic_configs(&metadata, name, &changes).map_err(|e| refused(e.into()))?;
    if validate_only {
        return Ok(());
    }
    context
        .controller
        .alter_topic_configs(name, changes)
        .await
        .map_err(refused)?;
    // Wait for the configs the change leads to (unless another change raced it, which the
    // bound covers), so the client reads its own write from this node.
    if let MetadataRecord::TopicConfigs { topic_id, configs } = record {
        let applied = context
            .controller
            .wait_for_metadata(
                |m| m.topic(topic_id).is_some_and(|t| t.configs == configs),
                APPLIED_WAIT,
            )
            .await;
        if !applied {
            tracing::warn!(
                topic = name,
                "configs changed, not yet in this node's metadata"
            );
        }
    }
    Ok(())
}
