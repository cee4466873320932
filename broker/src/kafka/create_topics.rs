//! CreateTopics: each topic is created by the active controller (or, with `validate_only`,
//! checked against this node's metadata by the same decision), then the answer waits, within
//! the request's timeout, until this node's metadata has it, so a Metadata request that
//! follows sees it.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::{KafkaContext, Refusal, admin_timeout, controller_error, describe_configs};
use crate::controller::{ControllerError, decisions};

/// Answers a CreateTopics request.
pub(super) async fn handle(
    request: CreateTopicsRequest,
    context: &KafkaContext,
) -> CreateTopicsResponse {
    let timeout = admin_timeout(request.timeout_ms);
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let result = CreatableTopicResult::default().with_name(topic.name.clone());
        let created = match settings(&topic, context) {
            Ok(settings) => create(&name, settings, request.validate_only, context).await,
            Err(refusal) => Err(refusal),
        };
        let result = match created {
            Ok((topic_id, settings)) => {
                if !request.validate_only {
                    wait_until_known(&name, timeout, context).await;
                }
                let configs = describe_configs::topic_entries(&settings.configs, context)
                    .into_iter()
                    .map(|entry| {
                        CreatableTopicConfigs::default()
                            .with_name(StrBytes::from_string(entry.name))
                            .with_value(Some(StrBytes::from_string(entry.value)))
                            .with_config_source(entry.source)
                    })
                    .collect();
                result
                    .with_topic_id(topic_id)
                    .with_num_partitions(settings.partitions)
                    .with_replication_factor(
                        i16::try_from(settings.replication_factor).unwrap_or(i16::MAX),
                    )
                    .with_configs(Some(configs))
            }
            Err((error, message)) => result
                .with_error_code(error.code())
                .with_error_message(Some(StrBytes::from_string(message)))
                .with_num_partitions(-1)
                .with_replication_factor(-1),
        };
        topics.push(result);
    }
    CreateTopicsResponse::default().with_topics(topics)
}

/// What a topic is created with, once the request's -1s take the node's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    /// The partition count.
    pub(crate) partitions: i32,
    /// The replicas of each partition.
    pub(crate) replication_factor: i32,
    /// The topic's own configs.
    pub(crate) configs: BTreeMap<String, String>,
}

fn settings(topic: &CreatableTopic, context: &KafkaContext) -> Result<Settings, Refusal> {
    if !topic.assignments.is_empty() {
        return Err((
            ResponseError::InvalidRequest,
            "manual replica assignment is not supported; give num_partitions and \
             replication_factor and the controller places the replicas"
                .into(),
        ));
    }
    let partitions = match topic.num_partitions {
        -1 => context.config.num_partitions,
        n => n,
    };
    let replication_factor = match topic.replication_factor {
        -1 => context.config.default_replication_factor,
        n => i32::from(n),
    };
    let mut configs = BTreeMap::new();
    for config in &topic.configs {
        let Some(value) = &config.value else {
            // A null value means "the default", which is what leaving it out gives.
            continue;
        };
        configs.insert(config.name.to_string(), value.to_string());
    }
    Ok(Settings {
        partitions,
        replication_factor,
        configs,
    })
}

/// Creates the topic through the active controller, or with `validate_only` checks that it
/// could be created now; returns its id (nil when only validated).
pub(crate) async fn create(
    name: &str,
    settings: Settings,
    validate_only: bool,
    context: &KafkaContext,
) -> Result<(Uuid, Settings), Refusal> {
    let refused = |e: ControllerError| (controller_error(&e), e.to_string());
    if validate_only {
        let metadata = context.controller.metadata();
        decisions::create_topic(
            &metadata,
            name,
            Uuid::nil(),
            settings.partitions,
            settings.replication_factor,
            settings.configs.clone(),
            0,
        )
        .map_err(|e| refused(e.into()))?;
        return Ok((Uuid::nil(), settings));
    }
    let topic_id = context
        .controller
        .create_topic(
            name,
            settings.partitions,
            settings.replication_factor,
            settings.configs.clone(),
        )
        .await
        .map_err(refused)?;
    Ok((topic_id, settings))
}

/// Waits, within `timeout`, until this node's metadata holds topic `name`.
pub(crate) async fn wait_until_known(
    name: &str,
    timeout: std::time::Duration,
    context: &KafkaContext,
) {
    let known = context
        .controller
        .wait_for_metadata(|m| m.topic_by_name(name).is_some(), timeout)
        .await;
    if !known {
        tracing::warn!(topic = name, "created, but not yet in this node's metadata");
    }
}
