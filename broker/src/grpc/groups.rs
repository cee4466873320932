//! The `Groups` service: consumer groups through the node's [`GroupCoordinator`], the same
//! one the Kafka front end's group APIs use, so both decide alike. A request about a group
//! this broker does not coordinate is refused by the coordinator with NOT_COORDINATOR.
//! DescribeGroup adds each committed partition's high watermark (asked of its leader,
//! [`leader_offsets`]) and the lag; ResetOffsets is in [`reset`].
//!
//! [`GroupCoordinator`]: crate::group::GroupCoordinator

use std::sync::Arc;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::ConsumerProtocolAssignment;
use kafka_protocol::protocol::{Decodable, Message};
use tonic::{Request, Response, Status};
use weir_proto::v1 as pb;
use weir_proto::v1::groups_server::Groups;

use super::status::{error, status};
use super::{Shared, leader_offsets, reset};
use crate::group::OffsetCommit;
use crate::group::consumer::HeartbeatRequest;
use crate::group::records::CommittedOffset;
use crate::kafka::KafkaContext;

/// The `Groups` service.
#[derive(Debug)]
pub(super) struct GroupsService {
    context: Arc<KafkaContext>,
}

impl GroupsService {
    /// The service over the node's handles.
    pub(super) fn new(shared: Shared) -> GroupsService {
        GroupsService {
            context: shared.context,
        }
    }
}

#[tonic::async_trait]
impl Groups for GroupsService {
    async fn find_coordinator(
        &self,
        request: Request<pb::FindCoordinatorRequest>,
    ) -> Result<Response<pb::FindCoordinatorResponse>, Status> {
        let group = request.into_inner().group;
        let coordinator = self
            .context
            .groups
            .find_coordinator(&group)
            .await
            .map_err(|refusal| status(&refusal))?;
        Ok(Response::new(pb::FindCoordinatorResponse {
            node_id: coordinator.node_id,
            grpc_address: coordinator.endpoints.grpc,
        }))
    }

    async fn commit_offsets(
        &self,
        request: Request<pb::CommitOffsetsRequest>,
    ) -> Result<Response<pb::CommitOffsetsResponse>, Status> {
        let request = request.into_inner();
        let mut partitions: Vec<pb::PartitionResult> = Vec::with_capacity(request.offsets.len());
        let mut commits = Vec::with_capacity(request.offsets.len());
        for offset in request.offsets {
            partitions.push(pb::PartitionResult {
                topic: offset.topic.clone(),
                partition: offset.partition,
                error: None,
            });
            commits.push(OffsetCommit {
                topic: offset.topic,
                partition: offset.partition,
                offset: offset.offset,
                leader_epoch: offset.leader_epoch.unwrap_or(-1),
                metadata: offset.metadata,
            });
        }
        let results = self
            .context
            .groups
            .commit_offsets(
                &request.group,
                &request.member_id,
                request.group_instance_id.as_deref(),
                request.generation_id,
                commits,
            )
            .await
            .map_err(|refusal| status(&refusal))?;
        for (partition, result) in partitions.iter_mut().zip(results) {
            partition.error = result.map(|refusal| error(&refusal));
        }
        Ok(Response::new(pb::CommitOffsetsResponse { partitions }))
    }

    async fn fetch_offsets(
        &self,
        request: Request<pb::FetchOffsetsRequest>,
    ) -> Result<Response<pb::FetchOffsetsResponse>, Status> {
        let request = request.into_inner();
        // One entry per partition keeps the answers in request order.
        let asked = (!request.partitions.is_empty()).then(|| {
            request
                .partitions
                .into_iter()
                .map(|tp| (tp.topic, vec![tp.partition]))
                .collect()
        });
        let offsets = self
            .context
            .groups
            .fetch_offsets(&request.group, asked)
            .await
            .map_err(|refusal| status(&refusal))?
            .into_iter()
            .map(|(topic, partition, value)| committed(topic, partition, value))
            .collect();
        Ok(Response::new(pb::FetchOffsetsResponse { offsets }))
    }

    async fn list_groups(
        &self,
        request: Request<pb::ListGroupsRequest>,
    ) -> Result<Response<pb::ListGroupsResponse>, Status> {
        let states = request.into_inner().states;
        let groups = self
            .context
            .groups
            .list_groups()
            .await
            .into_iter()
            .map(|g| pb::GroupListing {
                group: g.group_id,
                state: state(g.state) as i32,
                protocol_type: g.protocol_type,
            })
            .filter(|g| states.is_empty() || states.contains(&g.state))
            .collect();
        Ok(Response::new(pb::ListGroupsResponse { groups }))
    }

    async fn describe_group(
        &self,
        request: Request<pb::DescribeGroupRequest>,
    ) -> Result<Response<pb::GroupDescription>, Status> {
        let group_id = request.into_inner().group;
        let groups = &self.context.groups;
        let group = groups
            .describe_group(&group_id)
            .await
            .map_err(|refusal| status(&refusal))?;
        let consumer = group.protocol_type == "consumer";
        let members = group
            .members
            .into_iter()
            .map(|m| pb::GroupMember {
                member_id: m.member_id,
                group_instance_id: m.instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                assignment: if consumer {
                    assignment(m.assignment)
                } else {
                    Vec::new()
                },
            })
            .collect();
        let committed = groups
            .fetch_offsets(&group_id, None)
            .await
            .map_err(|refusal| status(&refusal))?;
        let offsets = lag(committed, &self.context).await;
        Ok(Response::new(pb::GroupDescription {
            group: group.group_id,
            state: state(group.state) as i32,
            protocol_type: group.protocol_type,
            protocol: group.protocol,
            members,
            offsets,
        }))
    }

    async fn delete_groups(
        &self,
        request: Request<pb::DeleteGroupsRequest>,
    ) -> Result<Response<pb::DeleteGroupsResponse>, Status> {
        let names = request.into_inner().groups;
        let mut groups = Vec::with_capacity(names.len());
        for group in names {
            let deleted = self.context.groups.delete_group(&group).await;
            groups.push(pb::DeleteGroupResult {
                group,
                error: deleted.err().map(|refusal| error(&refusal)),
            });
        }
        Ok(Response::new(pb::DeleteGroupsResponse { groups }))
    }

    async fn reset_offsets(
        &self,
        request: Request<pb::ResetOffsetsRequest>,
    ) -> Result<Response<pb::ResetOffsetsResponse>, Status> {
        let partitions = reset::reset_offsets(request.into_inner(), &self.context)
            .await
            .map_err(|refusal| status(&refusal))?;
        Ok(Response::new(pb::ResetOffsetsResponse { partitions }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let client_host = request
            .remote_addr()
            .map(|peer| format!("/{}", peer.ip()))
            .unwrap_or_default();
        let request = request.into_inner();
        let metadata = self.context.controller.metadata();
        // The consumer protocol names topics by id; this API by name.
        let owned = match request.owned {
            Some(owned) => {
                let mut by_id = Vec::with_capacity(owned.topics.len());
                for topic in owned.topics {
                    let id = metadata
                        .topic_by_name(&topic.topic)
                        .map(|t| t.id)
                        .ok_or_else(|| {
                            Status::not_found(format!(
                                "UNKNOWN_TOPIC_OR_PARTITION: the member owns partitions of \
                                 {:?}, which does not exist",
                                topic.topic
                            ))
                        })?;
                    by_id.push((id, topic.partitions));
                }
                Some(by_id)
            }
            None => None,
        };
        let heartbeat = HeartbeatRequest {
            member_id: request.member_id,
            member_epoch: request.member_epoch,
            instance_id: request.instance_id,
            rack_id: request.rack_id,
            rebalance_timeout_ms: request.rebalance_timeout_ms,
            subscribed_topic_names: request.subscribed_topics.map(|t| t.names),
            server_assignor: request.server_assignor,
            topic_partitions: owned,
            client_id: request.client_id,
            client_host,
        };
        let result = self
            .context
            .groups
            .consumer_heartbeat(&request.group, heartbeat)
            .await
            .map_err(|refusal| status(&refusal))?;
        let assignment = result.assignment.map(|assignment| pb::Assignment {
            topics: assignment
                .into_iter()
                .filter_map(|(id, partitions)| {
                    Some(pb::AssignedPartitions {
                        topic: metadata.topic(id)?.name.clone(),
                        partitions: partitions.into_iter().collect(),
                    })
                })
                .collect(),
        });
        Ok(Response::new(pb::HeartbeatResponse {
            member_id: result.member_id,
            member_epoch: result.member_epoch,
            heartbeat_interval_ms: result.heartbeat_interval_ms,
            assignment,
        }))
    }
}

/// A group state by the name the coordinator gives it.
pub(super) fn state(name: &str) -> pb::GroupState {
    match name {
        "Empty" => pb::GroupState::Empty,
        "PreparingRebalance" => pb::GroupState::PreparingRebalance,
        "CompletingRebalance" => pb::GroupState::CompletingRebalance,
        "Stable" => pb::GroupState::Stable,
        "Dead" => pb::GroupState::Dead,
        "Assigning" => pb::GroupState::Assigning,
        "Reconciling" => pb::GroupState::Reconciling,
        _ => pb::GroupState::Unknown,
    }
}

/// One partition's committed offset (or its absence, as -1).
fn committed(topic: String, partition: i32, value: Option<CommittedOffset>) -> pb::CommittedOffset {
    match value {
        Some(value) => pb::CommittedOffset {
            topic,
            partition,
            offset: value.offset,
            leader_epoch: value.leader_epoch,
            metadata: value.metadata,
            commit_timestamp_ms: value.commit_timestamp_ms,
        },
        None => pb::CommittedOffset {
            topic,
            partition,
            offset: -1,
            leader_epoch: -1,
            metadata: None,
            commit_timestamp_ms: -1,
        },
    }
}

/// The partitions of a consumer's assignment: Kafka's ConsumerProtocolAssignment after an
/// i16 version. Bytes that do not decode (another client's format) give no partitions.
fn assignment(mut bytes: Bytes) -> Vec<pb::TopicPartition> {
    if bytes.remaining() < 2 {
        return Vec::new();
    }
    // A newer client's version is read as the newest this crate knows, as Kafka's
    // ConsumerProtocol does: later versions only add fields at the end.
    let version = bytes
        .get_i16()
        .min(ConsumerProtocolAssignment::VERSIONS.max);
    let Ok(decoded) = ConsumerProtocolAssignment::decode(&mut bytes, version) else {
        return Vec::new();
    };
    decoded
        .assigned_partitions
        .into_iter()
        .flat_map(|topic| {
            let name = topic.topic.to_string();
            topic
                .partitions
                .into_iter()
                .map(move |partition| pb::TopicPartition {
                    topic: name.clone(),
                    partition,
                })
        })
        .collect()
}

/// Each committed partition with its high watermark and the group's lag behind it.
async fn lag(
    committed: Vec<crate::group::OffsetFetchResult>,
    context: &KafkaContext,
) -> Vec<pb::PartitionLag> {
    let committed: Vec<(String, i32, CommittedOffset)> = committed
        .into_iter()
        .filter_map(|(topic, partition, value)| Some((topic, partition, value?)))
        .collect();
    let queries = committed
        .iter()
        .map(|(topic, partition, _)| pb::OffsetQuery {
            topic: topic.clone(),
            partition: *partition,
            spec: pb::OffsetSpec::Latest as i32,
            timestamp_ms: -1,
        })
        .collect();
    let high_watermarks = leader_offsets::list(queries, context).await;
    committed
        .into_iter()
        .zip(high_watermarks)
        .map(|((topic, partition, value), high_watermark)| {
            let mut lag = pb::PartitionLag {
                topic,
                partition,
                committed_offset: value.offset,
                high_watermark: -1,
                lag: -1,
                metadata: value.metadata,
                error: None,
            };
            match high_watermark {
                Ok(offset) => {
                    lag.high_watermark = offset;
                    lag.lag = (offset - value.offset).max(0);
                }
                Err(refusal) => lag.error = Some(error(&refusal)),
            }
            lag
        })
        .collect()
}
