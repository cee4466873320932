//! Metadata: the live brokers, and the topics asked for (or all) with their partitions'
//! leaders, leader epochs, replicas and in-sync replicas, from the committed metadata.
//!
//! A topic asked for that does not exist is created with the node's defaults when
//! `auto_create_topics` is on and the client allows it (always before version 4), as Kafka's
//! `auto.create.topics.enable` does; the answer then carries the new topic, or
//! LEADER_NOT_AVAILABLE while this node has not applied it yet, and the client asks again.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::{KafkaContext, host_and_port};
use crate::controller::{ClusterMetadata, ErrorKind, Topic, decisions};

/// How long a Metadata request waits for a topic it created to reach this node.
const AUTO_CREATE_WAIT: Duration = Duration::from_secs(5);

/// Answers a Metadata request at `version`.
pub(super) async fn handle(
    request: &MetadataRequest,
    version: i16,
    context: &KafkaContext,
) -> MetadataResponse {
    let auto_create =
        context.config.auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
    let mut creating = Vec::new();
    if auto_create {
        creating = create_missing(request, context).await;
    }
    let metadata = context.controller.metadata();
    let brokers = metadata
        .brokers()
        .filter(|b| !b.fenced)
        .filter_map(|b| {
            let (host, port) = host_and_port(&b.endpoints.kafka)?;
            Some(
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(b.id))
                    .with_host(StrBytes::from_string(host))
                    .with_port(i32::from(port))
                    .with_rack(b.rack.clone().map(StrBytes::from_string)),
            )
        })
        .collect();
    // Version 0 asks for every topic with an empty list; later versions with none.
    let all = match &request.topics {
        None => true,
        Some(topics) => version == 0 && topics.is_empty(),
    };
    let topics = if all {
        metadata.topics().map(|t| topic(&metadata, t)).collect()
    } else {
        request
            .topics
            .iter()
            .flatten()
            .map(|wanted| {
                let found = match &wanted.name {
                    Some(name) => metadata.topic_by_name(name.as_str()),
                    None => metadata.topic(wanted.topic_id),
                };
                let error = match &wanted.name {
                    Some(name) if creating.iter().any(|c| c == name.as_str()) => {
                        ResponseError::LeaderNotAvailable
                    }
                    Some(name) if auto_create && decisions::validate_topic_name(name).is_err() => {
                        ResponseError::InvalidTopicException
                    }
                    _ => ResponseError::UnknownTopicOrPartition,
                };
                match found {
                    Some(t) => topic(&metadata, t),
                    None => MetadataResponseTopic::default()
                        .with_name(wanted.name.clone())
                        .with_topic_id(wanted.topic_id)
                        .with_error_code(error.code()),
                }
            })
            .collect()
    };
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(StrBytes::from_string(context.cluster_id.clone())))
        .with_controller_id(BrokerId(controller_id(context)))
        .with_topics(topics)
}

/// Creates the topics `request` names that do not exist (and have valid names) with the
/// node's defaults, and waits a little for this node to apply them; returns those it has not
/// applied yet.
async fn create_missing(request: &MetadataRequest, context: &KafkaContext) -> Vec<String> {
    let metadata = context.controller.metadata();
    let missing: Vec<String> = request
        .topics
        .iter()
        .flatten()
        .filter_map(|t| t.name.as_ref())
        .map(|name| name.as_str().to_string())
        .filter(|name| metadata.topic_by_name(name).is_none())
        .filter(|name| decisions::validate_topic_name(name).is_ok())
        .collect();
    let mut creating = Vec::new();
    for name in missing {
        let created = context
            .controller
            .create_topic(
                &name,
                context.config.num_partitions,
                context.config.default_replication_factor,
                BTreeMap::new(),
            )
            .await;
        match created {
            Ok(_) => tracing::info!(topic = name, "created a topic a client asked for"),
            // Another client's request created it first.
            Err(e) if e.kind() == ErrorKind::TopicExists => {}
            Err(e) => {
                tracing::warn!(topic = name, error = %e, "could not create a topic a client asked for");
                continue;
            }
        }
        creating.push(name);
    }
    let applied = |m: &crate::controller::ClusterMetadata| {
        creating.iter().all(|name| m.topic_by_name(name).is_some())
    };
    if creating.is_empty()
        || context
            .controller
            .wait_for_metadata(applied, AUTO_CREATE_WAIT)
            .await
    {
        return Vec::new();
    }
    creating
}

/// The active controller as a broker id, or -1 while none is known.
pub(super) fn controller_id(context: &KafkaContext) -> i32 {
    context
        .controller
        .leader()
        .and_then(|id| i32::try_from(id).ok())
        .unwrap_or(-1)
}

fn topic(metadata: &ClusterMetadata, topic: &Topic) -> MetadataResponseTopic {
    let ids = |list: &[i32]| list.iter().copied().map(BrokerId).collect::<Vec<_>>();
    let partitions = topic
        .partitions
        .iter()
        .enumerate()
        .map(|(index, p)| {
            let offline: Vec<i32> = p
                .replicas
                .iter()
                .copied()
                .filter(|&id| !metadata.is_live(id))
                .collect();
            let error = match p.leader {
                Some(_) => 0,
                None => ResponseError::LeaderNotAvailable.code(),
            };
            MetadataResponsePartition::default()
                .with_error_code(error)
                .with_partition_index(i32::try_from(index).expect("partition count is an i32"))
                .with_leader_id(BrokerId(p.leader.unwrap_or(-1)))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(ids(&p.replicas))
                .with_isr_nodes(ids(&p.isr))
                .with_offline_replicas(ids(&offline))
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_topic_id(Uuid::from_bytes(*topic.id.as_bytes()))
        .with_is_internal(topic.name == crate::group::OFFSETS_TOPIC)
        .with_partitions(partitions)
}
