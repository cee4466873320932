//! Metadata: the live brokers, and the topics asked for (or all) with their partitions'
//! leaders, leader epochs, replicas and in-sync replicas, from the committed metadata.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::KafkaContext;
use crate::controller::{ClusterMetadata, Topic};

/// Answers a Metadata request at `version`.
pub(super) fn handle(
    request: &MetadataRequest,
    version: i16,
    context: &KafkaContext,
) -> MetadataResponse {
    let metadata = context.controller.metadata();
    let brokers = metadata
        .brokers()
        .filter(|b| !b.fenced)
        .filter_map(|b| {
            let (host, port) = b.endpoints.kafka.rsplit_once(':')?;
            let port = port.parse::<u16>().ok()?;
            Some(
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(b.id))
                    .with_host(StrBytes::from_string(
                        host.trim_start_matches('[')
                            .trim_end_matches(']')
                            .to_string(),
                    ))
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
                match found {
                    Some(t) => topic(&metadata, t),
                    None => MetadataResponseTopic::default()
                        .with_name(wanted.name.clone())
                        .with_topic_id(wanted.topic_id)
                        .with_error_code(ResponseError::UnknownTopicOrPartition.code()),
                }
            })
            .collect()
    };
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_controller_id(BrokerId(controller_id(context)))
        .with_topics(topics)
}

/// The active controller as a broker id, or -1 while none is known.
fn controller_id(context: &KafkaContext) -> i32 {
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
        .with_partitions(partitions)
}
