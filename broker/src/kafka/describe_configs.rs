//! DescribeConfigs: a topic's configs (every per-topic config Weir knows, with the value the
//! topic has and where it comes from), and this broker's own topic defaults and limits under
//! Kafka's broker config names.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{KafkaContext, resource_type};
use crate::config::NodeConfig;
use crate::topic_config::{self, ConfigType};

/// Where a config's value comes from (Kafka's `DescribeConfigsResponse.ConfigSource`).
pub(crate) mod source {
    /// Set on the topic.
    pub(crate) const TOPIC: i8 = 1;
    /// Set in the broker's configuration (file, variables or flags).
    pub(crate) const STATIC_BROKER: i8 = 4;
    /// Kafka's default.
    pub(crate) const DEFAULT: i8 = 5;
}

/// One config as described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigEntry {
    /// Kafka's name for it.
    pub(crate) name: String,
    /// Its value.
    pub(crate) value: String,
    /// Where the value comes from (a [`source`] number).
    pub(crate) source: i8,
    /// The broker-level value under it, when the topic sets its own.
    pub(crate) default: Option<(String, i8)>,
    /// Kafka's number for its type.
    pub(crate) config_type: i8,
    /// What it does.
    pub(crate) documentation: &'static str,
}

/// Answers a DescribeConfigs request.
pub(super) fn handle(
    request: &DescribeConfigsRequest,
    context: &KafkaContext,
) -> DescribeConfigsResponse {
    let results = request
        .resources
        .iter()
        .map(|resource| describe(resource, request, context))
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn describe(
    resource: &DescribeConfigsResource,
    request: &DescribeConfigsRequest,
    context: &KafkaContext,
) -> DescribeConfigsResult {
    let result = DescribeConfigsResult::default()
        .with_resource_type(resource.resource_type)
        .with_resource_name(resource.resource_name.clone());
    let name = resource.resource_name.as_str();
    let entries = match resource.resource_type {
        resource_type::TOPIC => match context.controller.metadata().topic_by_name(name) {
            Some(topic) => topic_entries(&topic.configs, context),
            None => {
                return failed(
                    result,
                    ResponseError::UnknownTopicOrPartition,
                    format!("topic {name:?} does not exist"),
                );
            }
        },
        resource_type::BROKER => {
            let own = context.config.node_id.to_string();
            if !name.is_empty() && name != own {
                return failed(
                    result,
                    ResponseError::InvalidRequest,
                    format!("this is broker {own}; ask broker {name} for its own configs"),
                );
            }
            broker_entries(&context.config)
        }
        other => {
            return failed(
                result,
                ResponseError::InvalidRequest,
                format!(
                    "resource type {other} has no configs here; ask for a topic ({}) or a \
                     broker ({})",
                    resource_type::TOPIC,
                    resource_type::BROKER
                ),
            );
        }
    };
    let wanted = |entry: &ConfigEntry| {
        resource
            .configuration_keys
            .as_ref()
            .is_none_or(|keys| keys.iter().any(|k| k.as_str() == entry.name))
    };
    let configs = entries
        .into_iter()
        .filter(wanted)
        .map(|entry| to_result(entry, request))
        .collect();
    result.with_configs(configs)
}

fn failed(
    result: DescribeConfigsResult,
    error: ResponseError,
    message: String,
) -> DescribeConfigsResult {
    result
        .with_error_code(error.code())
        .with_error_message(Some(StrBytes::from_string(message)))
}

fn to_result(
    entry: ConfigEntry,
    request: &DescribeConfigsRequest,
) -> DescribeConfigsResourceResult {
    let mut synonyms = Vec::new();
    if request.include_synonyms {
        synonyms.push(
            DescribeConfigsSynonym::default()
                .with_name(StrBytes::from_string(entry.name.clone()))
                .with_value(Some(StrBytes::from_string(entry.value.clone())))
                .with_source(entry.source),
        );
        if let Some((value, source)) = &entry.default {
            synonyms.push(
                DescribeConfigsSynonym::default()
                    .with_name(StrBytes::from_string(entry.name.clone()))
                    .with_value(Some(StrBytes::from_string(value.clone())))
                    .with_source(*source),
            );
        }
    }
    let documentation = request
        .include_documentation
        .then(|| StrBytes::from_static_str(entry.documentation));
    DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_string(entry.name))
        .with_value(Some(StrBytes::from_string(entry.value)))
        .with_read_only(false)
        .with_config_source(entry.source)
        .with_is_sensitive(false)
        .with_synonyms(synonyms)
        .with_config_type(entry.config_type)
        .with_documentation(documentation)
}

/// Every per-topic config Weir knows, with the value a topic whose own configs are `own`
/// has: its own, else this broker's default, else Kafka's.
pub(crate) fn topic_entries(
    own: &BTreeMap<String, String>,
    context: &KafkaContext,
) -> Vec<ConfigEntry> {
    let broker_defaults = context.config.topic_config_defaults();
    topic_config::known()
        .map(|def| {
            let default = match broker_defaults.get(def.name) {
                Some(value) if value != def.default => (value.clone(), source::STATIC_BROKER),
                _ => (def.default.to_string(), source::DEFAULT),
            };
            let (value, source, default) = match own.get(def.name) {
                Some(value) => (value.clone(), source::TOPIC, Some(default)),
                None => (default.0, default.1, None),
            };
            ConfigEntry {
                name: def.name.to_string(),
                value,
                source,
                default,
                config_type: kafka_type(def.config_type()),
                documentation: def.doc,
            }
        })
        .collect()
}

/// This broker's topic defaults and limits, under Kafka's broker config names.
fn broker_entries(config: &NodeConfig) -> Vec<ConfigEntry> {
    let entry =
        |name: &str, value: String, config_type: ConfigType, doc: &'static str| ConfigEntry {
            name: name.to_string(),
            value,
            source: source::STATIC_BROKER,
            default: None,
            config_type: kafka_type(config_type),
            documentation: doc,
        };
    vec![
        entry(
            "auto.create.topics.enable",
            config.auto_create_topics.to_string(),
            ConfigType::Boolean,
            "Whether a Metadata request for an unknown topic creates it.",
        ),
        entry(
            "broker.id",
            config.node_id.to_string(),
            ConfigType::Int,
            "This broker's node id.",
        ),
        entry(
            "default.replication.factor",
            config.default_replication_factor.to_string(),
            ConfigType::Int,
            "The replication factor of a topic created without one.",
        ),
        entry(
            "log.retention.bytes",
            config.log_retention_bytes.to_string(),
            ConfigType::Long,
            "The size a partition is trimmed to, for topics that do not set retention.bytes.",
        ),
        entry(
            "log.retention.ms",
            config.log_retention_ms.to_string(),
            ConfigType::Long,
            "How long records are kept, for topics that do not set retention.ms.",
        ),
        entry(
            "log.segment.bytes",
            config.log_segment_bytes.to_string(),
            ConfigType::Int,
            "The segment size, for topics that do not set segment.bytes.",
        ),
        entry(
            "message.max.bytes",
            config.message_max_bytes.to_string(),
            ConfigType::Int,
            "The largest record batch, for topics that do not set max.message.bytes.",
        ),
        entry(
            "min.insync.replicas",
            config.min_insync_replicas.to_string(),
            ConfigType::Int,
            "The in-sync replicas acks=all needs, for topics that do not set it.",
        ),
        entry(
            "num.partitions",
            config.num_partitions.to_string(),
            ConfigType::Int,
            "The partition count of a topic created without one.",
        ),
    ]
}

/// Kafka's number for a config type (`DescribeConfigsResponse.ConfigType`).
fn kafka_type(config_type: ConfigType) -> i8 {
    match config_type {
        ConfigType::Boolean => 1,
        ConfigType::String => 2,
        ConfigType::Int => 3,
        ConfigType::Long => 5,
        ConfigType::Double => 6,
        ConfigType::List => 7,
    }
}
