//! IncrementalAlterConfigs: a topic's configs changed by Kafka's operations (set, delete,
//! append, subtract) through the active controller, all of one resource's changes or none;
//! with `validate_only`, checked against this node's metadata by the same decision. Broker
//! configs are static (file, variables, flags) and cannot be changed here.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{KafkaContext, alter_configs};
use crate::controller::ConfigChange;

/// Answers an IncrementalAlterConfigs request.
pub(super) async fn handle(
    request: IncrementalAlterConfigsRequest,
    context: &KafkaContext,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let response = AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        let altered = match changes(&resource) {
            Ok(changes) => {
                alter_configs::alter(
                    resource.resource_type,
                    resource.resource_name.as_str(),
                    changes,
                    request.validate_only,
                    context,
                )
                .await
            }
            Err(refusal) => Err(refusal),
        };
        responses.push(match altered {
            Ok(()) => response,
            Err((error, message)) => response
                .with_error_code(error.code())
                .with_error_message(Some(StrBytes::from_string(message))),
        });
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// The resource's changes, from Kafka's operation codes.
fn changes(resource: &AlterConfigsResource) -> Result<Vec<ConfigChange>, (ResponseError, String)> {
    resource
        .configs
        .iter()
        .map(|config| {
            let name = config.name.to_string();
            let value = config.value.as_ref().map(ToString::to_string);
            let needs_value = |value: Option<String>| {
                value.ok_or_else(|| {
                    (
                        ResponseError::InvalidRequest,
                        format!("config {name:?}: this operation needs a value"),
                    )
                })
            };
            Ok(match config.config_operation {
                0 => ConfigChange::Set(name.clone(), needs_value(value)?),
                1 => ConfigChange::Delete(name),
                2 => ConfigChange::Append(name.clone(), needs_value(value)?),
                3 => ConfigChange::Subtract(name.clone(), needs_value(value)?),
                other => {
                    return Err((
                        ResponseError::InvalidRequest,
                        format!(
                            "config {name:?}: operation {other} is not one of SET (0), DELETE \
                             (1), APPEND (2) or SUBTRACT (3)"
                        ),
                    ));
                }
            })
        })
        .collect()
}
