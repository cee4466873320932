//! The `Admin` service: the cluster's brokers and topics from this node's committed metadata,
//! and topic changes through the active controller by the Kafka front end's own admin paths
//! (`kafka::create_topics::create`, `delete_topics::delete`, `create_partitions::grow`,
//! `alter_configs::alter`), so both APIs decide and wait alike.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use tonic::{Request, Response, Status};
use weir_proto::v1 as pb;
use weir_proto::v1::admin_server::Admin;

use super::status::{error, invalid, status};
use super::{Shared, convert};
use crate::controller::{ClusterMetadata, ConfigChange, Topic};
use crate::kafka::create_topics::{self, Settings};
use crate::kafka::{
    KafkaContext, Refusal, admin_timeout, alter_configs, create_partitions, delete_topics,
    describe_configs, resource_type,
};

/// The `Admin` service.
#[derive(Debug)]
pub(super) struct AdminService {
    context: Arc<KafkaContext>,
}

impl AdminService {
    /// The service over the node's handles.
    pub(super) fn new(shared: Shared) -> AdminService {
        AdminService {
            context: shared.context,
        }
    }
}

/// An admin request's timeout: 0 means the default.
fn timeout(timeout_ms: u32) -> std::time::Duration {
    admin_timeout(i32::try_from(timeout_ms).unwrap_or(i32::MAX))
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn metadata(
        &self,
        request: Request<pb::MetadataRequest>,
    ) -> Result<Response<pb::MetadataResponse>, Status> {
        let request = request.into_inner();
        let metadata = self.context.controller.metadata();
        let brokers = metadata
            .brokers()
            .filter(|b| !b.fenced)
            .map(|b| pb::BrokerInfo {
                id: b.id,
                grpc_address: b.endpoints.grpc.clone(),
                kafka_address: b.endpoints.kafka.clone(),
                rack: b.rack.clone(),
            })
            .collect();
        let topics = if request.topics.is_empty() {
            metadata.topics().map(|t| describe(&metadata, t)).collect()
        } else {
            request
                .topics
                .into_iter()
                .map(|name| match metadata.topic_by_name(&name) {
                    Some(topic) => describe(&metadata, topic),
                    None => pb::TopicDescription {
                        error: Some(error(&unknown_topic(&name))),
                        name,
                        ..pb::TopicDescription::default()
                    },
                })
                .collect()
        };
        let controller_id = self
            .context
            .controller
            .leader()
            .and_then(|id| i32::try_from(id).ok());
        Ok(Response::new(pb::MetadataResponse {
            brokers,
            controller_id,
            topics,
        }))
    }

    async fn list_topics(
        &self,
        _request: Request<pb::ListTopicsRequest>,
    ) -> Result<Response<pb::ListTopicsResponse>, Status> {
        let metadata = self.context.controller.metadata();
        let mut topics: Vec<pb::TopicSummary> = metadata
            .topics()
            .map(|t| pb::TopicSummary {
                name: t.name.clone(),
                topic_id: t.id.to_string(),
                partitions: i32::try_from(t.partitions.len()).unwrap_or(i32::MAX),
                replication_factor: t
                    .partitions
                    .first()
                    .map_or(0, |p| i32::try_from(p.replicas.len()).unwrap_or(i32::MAX)),
            })
            .collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Response::new(pb::ListTopicsResponse { topics }))
    }

    async fn describe_topic(
        &self,
        request: Request<pb::DescribeTopicRequest>,
    ) -> Result<Response<pb::TopicDescription>, Status> {
        let name = request.into_inner().topic;
        let metadata = self.context.controller.metadata();
        let topic = metadata
            .topic_by_name(&name)
            .ok_or_else(|| status(&unknown_topic(&name)))?;
        Ok(Response::new(pb::TopicDescription {
            configs: configs(topic, &self.context),
            ..describe(&metadata, topic)
        }))
    }

    async fn create_topics(
        &self,
        request: Request<pb::CreateTopicsRequest>,
    ) -> Result<Response<pb::CreateTopicsResponse>, Status> {
        let request = request.into_inner();
        let timeout = timeout(request.timeout_ms);
        let context = &self.context;
        let mut results = Vec::with_capacity(request.topics.len());
        for topic in request.topics {
            let settings = Settings {
                partitions: topic.partitions.unwrap_or(context.config.num_partitions),
                replication_factor: topic
                    .replication_factor
                    .unwrap_or(context.config.default_replication_factor),
                configs: topic.configs,
            };
            let mut result = pb::CreateTopicResult {
                name: topic.name.clone(),
                partitions: settings.partitions,
                replication_factor: settings.replication_factor,
                ..pb::CreateTopicResult::default()
            };
            match create_topics::create(&topic.name, settings, request.validate_only, context).await
            {
                Ok((topic_id, _)) => {
                    if !request.validate_only {
                        result.topic_id = topic_id.to_string();
                        create_topics::wait_until_known(&topic.name, timeout, context).await;
                    }
                }
                Err(refusal) => {
                    result.partitions = -1;
                    result.replication_factor = -1;
                    result.error = Some(error(&refusal));
                }
            }
            results.push(result);
        }
        Ok(Response::new(pb::CreateTopicsResponse { topics: results }))
    }

    async fn delete_topics(
        &self,
        request: Request<pb::DeleteTopicsRequest>,
    ) -> Result<Response<pb::DeleteTopicsResponse>, Status> {
        let request = request.into_inner();
        let timeout = timeout(request.timeout_ms);
        let mut results = Vec::with_capacity(request.topics.len());
        for name in request.topics {
            let id = self
                .context
                .controller
                .metadata()
                .topic_by_name(&name)
                .map(|t| t.id);
            let deleted = match id {
                Some(id) => delete_topics::delete(&name, id, timeout, &self.context).await,
                None => Err(unknown_topic(&name)),
            };
            results.push(pb::DeleteTopicResult {
                name,
                error: deleted.err().map(|refusal| error(&refusal)),
            });
        }
        Ok(Response::new(pb::DeleteTopicsResponse { topics: results }))
    }

    async fn create_partitions(
        &self,
        request: Request<pb::CreatePartitionsRequest>,
    ) -> Result<Response<pb::CreatePartitionsResponse>, Status> {
        let request = request.into_inner();
        create_partitions::grow(
            &request.topic,
            request.count,
            request.validate_only,
            timeout(request.timeout_ms),
            &self.context,
        )
        .await
        .map_err(|refusal| status(&refusal))?;
        Ok(Response::new(pb::CreatePartitionsResponse {}))
    }

    async fn alter_configs(
        &self,
        request: Request<pb::AlterConfigsRequest>,
    ) -> Result<Response<pb::AlterConfigsResponse>, Status> {
        let request = request.into_inner();
        let changes = request
            .changes
            .into_iter()
            .map(config_change)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|refusal| status(&refusal))?;
        alter_configs::alter(
            resource_type::TOPIC,
            &request.topic,
            changes,
            request.validate_only,
            &self.context,
        )
        .await
        .map_err(|refusal| status(&refusal))?;
        let metadata = self.context.controller.metadata();
        let topic = metadata
            .topic_by_name(&request.topic)
            .ok_or_else(|| status(&unknown_topic(&request.topic)))?;
        Ok(Response::new(pb::AlterConfigsResponse {
            configs: configs(topic, &self.context),
        }))
    }

    async fn describe_quorum(
        &self,
        _request: Request<pb::DescribeQuorumRequest>,
    ) -> Result<Response<pb::QuorumDescription>, Status> {
        let controller = &self.context.controller;
        let quorum = controller.quorum_status();
        let members = |list: Vec<(u64, String)>| {
            list.into_iter()
                .filter_map(|(id, address)| {
                    Some(pb::QuorumMember {
                        node_id: i32::try_from(id).ok()?,
                        internal_address: address,
                    })
                })
                .collect()
        };
        Ok(Response::new(pb::QuorumDescription {
            leader_id: quorum.leader.and_then(|id| i32::try_from(id).ok()),
            term: quorum.term,
            voters: members(quorum.voters),
            learners: members(quorum.learners),
            applied_index: controller.applied_index(),
        }))
    }
}

fn unknown_topic(name: &str) -> Refusal {
    (
        ResponseError::UnknownTopicOrPartition,
        format!("topic {name:?} does not exist"),
    )
}

/// A topic's partitions, as the metadata has them (no configs).
fn describe(metadata: &ClusterMetadata, topic: &Topic) -> pb::TopicDescription {
    let partitions = topic
        .partitions
        .iter()
        .zip(0..)
        .map(|(p, index)| pb::PartitionInfo {
            partition: index,
            leader: p.leader,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            replicas: p.replicas.clone(),
            isr: p.isr.clone(),
            offline_replicas: p
                .replicas
                .iter()
                .copied()
                .filter(|&id| !metadata.is_live(id))
                .collect(),
        })
        .collect();
    pb::TopicDescription {
        name: topic.name.clone(),
        topic_id: topic.id.to_string(),
        partitions,
        configs: Vec::new(),
        error: None,
    }
}

/// Every per-topic config with the value `topic` has.
fn configs(topic: &Topic, context: &KafkaContext) -> Vec<pb::ConfigEntry> {
    describe_configs::topic_entries(&topic.configs, context)
        .into_iter()
        .map(convert::config_entry)
        .collect()
}

fn config_change(change: pb::ConfigChange) -> Result<ConfigChange, Refusal> {
    let operation = pb::ConfigOperation::try_from(change.operation).map_err(|_| {
        invalid(format!(
            "config {:?}: operation {} is not SET (0), DELETE (1), APPEND (2) or SUBTRACT (3)",
            change.name, change.operation
        ))
    })?;
    let name = change.name;
    let value = || {
        change
            .value
            .clone()
            .ok_or_else(|| invalid(format!("config {name:?}: this operation needs a value")))
    };
    Ok(match operation {
        pb::ConfigOperation::Set => ConfigChange::Set(name.clone(), value()?),
        pb::ConfigOperation::Delete => ConfigChange::Delete(name),
        pb::ConfigOperation::Append => ConfigChange::Append(name.clone(), value()?),
        pb::ConfigOperation::Subtract => ConfigChange::Subtract(name.clone(), value()?),
    })
}
