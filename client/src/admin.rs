//! Cluster, topic and group administration.

use std::collections::BTreeMap;
use std::sync::Arc;

use weir_proto::v1 as pb;
use weir_proto::v1::admin_client::AdminClient;
use weir_proto::v1::broker_client::BrokerClient;
use weir_proto::v1::groups_client::GroupsClient;

use crate::cluster::Cluster;
use crate::error::{Error, Result, check};

/// Administration of a cluster: its brokers and controller quorum, topics and their configs,
/// and consumer groups. Made by [`Client::admin`](crate::Client::admin); cheap to clone.
///
/// ```no_run
/// # async fn example() -> weir_client::Result<()> {
/// let client = weir_client::Client::connect("127.0.0.1:9093").await?;
/// let admin = client.admin();
/// admin.create_topic(weir_client::NewTopic::new("events").partitions(6)).await?;
/// for topic in admin.list_topics().await? {
///     println!("{} has {} partitions", topic.name, topic.partitions);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Admin {
    cluster: Arc<Cluster>,
}

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// Its name.
    pub name: String,
    /// How many partitions; `None` takes the broker's `num_partitions`.
    pub partitions: Option<i32>,
    /// How many replicas of each; `None` takes the broker's `default_replication_factor`.
    pub replication_factor: Option<i32>,
    /// Per-topic configs by Kafka's names (`retention.ms`, `cleanup.policy`, ...).
    pub configs: BTreeMap<String, String>,
}

impl NewTopic {
    /// A topic with the broker's defaults.
    pub fn new(name: impl Into<String>) -> NewTopic {
        NewTopic {
            name: name.into(),
            partitions: None,
            replication_factor: None,
            configs: BTreeMap::new(),
        }
    }

    /// With `count` partitions.
    pub fn partitions(mut self, count: i32) -> NewTopic {
        self.partitions = Some(count);
        self
    }

    /// With `factor` replicas of each partition.
    pub fn replication_factor(mut self, factor: i32) -> NewTopic {
        self.replication_factor = Some(factor);
        self
    }

    /// With a per-topic config.
    pub fn config(mut self, name: impl Into<String>, value: impl Into<String>) -> NewTopic {
        self.configs.insert(name.into(), value.into());
        self
    }
}

/// The brokers and the active controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    /// The live brokers, by id.
    pub brokers: Vec<pb::BrokerInfo>,
    /// The active controller's node id, if one is known.
    pub controller_id: Option<i32>,
}

/// Where [`Admin::reset_offsets`] moves a group's committed offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTarget {
    /// Each partition's log start offset.
    Earliest,
    /// Each partition's high watermark.
    Latest,
    /// The first record at or after this time (ms since the Unix epoch).
    Timestamp(i64),
    /// The committed offset moved by this many records (negative: back).
    ShiftBy(i64),
}

impl Admin {
    pub(crate) fn new(cluster: Arc<Cluster>) -> Admin {
        Admin { cluster }
    }

    async fn admin_client(&self) -> Result<AdminClient<tonic::transport::Channel>> {
        // Changes go to any broker: it forwards them to the active controller.
        self.cluster
            .any_broker(|channel| async move { Ok(AdminClient::new(channel)) })
            .await
    }

    /// The live brokers and the active controller.
    pub async fn cluster(&self) -> Result<ClusterInfo> {
        let metadata = self.cluster.metadata(Vec::new()).await?;
        let mut brokers = metadata.brokers;
        brokers.sort_by_key(|b| b.id);
        Ok(ClusterInfo {
            brokers,
            controller_id: metadata.controller_id,
        })
    }

    /// The controller quorum: the Raft leader, term, voters and learners.
    pub async fn describe_quorum(&self) -> Result<pb::QuorumDescription> {
        let mut admin = self.admin_client().await?;
        Ok(admin
            .describe_quorum(pb::DescribeQuorumRequest {})
            .await?
            .into_inner())
    }

    /// Every topic, in name order.
    pub async fn list_topics(&self) -> Result<Vec<pb::TopicSummary>> {
        let mut admin = self.admin_client().await?;
        Ok(admin
            .list_topics(pb::ListTopicsRequest {})
            .await?
            .into_inner()
            .topics)
    }

    /// One topic's partitions (leaders, replicas, ISR) and configs.
    pub async fn describe_topic(&self, topic: &str) -> Result<pb::TopicDescription> {
        let mut admin = self.admin_client().await?;
        admin
            .describe_topic(pb::DescribeTopicRequest {
                topic: topic.to_string(),
            })
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| not_found_as_unknown_topic(status.into(), topic))
    }

    /// Creates a topic; answers its id once the broker asked has it.
    pub async fn create_topic(&self, topic: NewTopic) -> Result<pb::CreateTopicResult> {
        self.create_topics(vec![topic], false)
            .await?
            .pop()
            .expect("one result per topic")
    }

    /// Creates topics (or with `validate_only` only checks that they could be); one result
    /// per topic, in order.
    pub async fn create_topics(
        &self,
        topics: Vec<NewTopic>,
        validate_only: bool,
    ) -> Result<Vec<Result<pb::CreateTopicResult>>> {
        let mut admin = self.admin_client().await?;
        let request = pb::CreateTopicsRequest {
            topics: topics
                .into_iter()
                .map(|t| pb::NewTopic {
                    name: t.name,
                    partitions: t.partitions,
                    replication_factor: t.replication_factor,
                    configs: t.configs.into_iter().collect(),
                })
                .collect(),
            validate_only,
            timeout_ms: 0,
        };
        let response = admin.create_topics(request).await?.into_inner();
        Ok(response
            .topics
            .into_iter()
            .map(|mut result| {
                check(result.error.take())?;
                Ok(result)
            })
            .collect())
    }

    /// Deletes a topic and its records.
    pub async fn delete_topic(&self, topic: &str) -> Result<()> {
        let mut admin = self.admin_client().await?;
        let response = admin
            .delete_topics(pb::DeleteTopicsRequest {
                topics: vec![topic.to_string()],
                timeout_ms: 0,
            })
            .await?
            .into_inner();
        self.cluster.invalidate(topic);
        for result in response.topics {
            check(result.error).map_err(|e| not_found_as_unknown_topic(e, topic))?;
        }
        Ok(())
    }

    /// Grows a topic to `count` partitions.
    pub async fn add_partitions(&self, topic: &str, count: i32) -> Result<()> {
        let mut admin = self.admin_client().await?;
        admin
            .create_partitions(pb::CreatePartitionsRequest {
                topic: topic.to_string(),
                count,
                validate_only: false,
                timeout_ms: 0,
            })
            .await
            .map_err(|status| not_found_as_unknown_topic(status.into(), topic))?;
        self.cluster.invalidate(topic);
        Ok(())
    }

    /// Changes a topic's configs, all of them or none; answers every config after the change.
    pub async fn alter_configs(
        &self,
        topic: &str,
        changes: Vec<pb::ConfigChange>,
    ) -> Result<Vec<pb::ConfigEntry>> {
        let mut admin = self.admin_client().await?;
        let response = admin
            .alter_configs(pb::AlterConfigsRequest {
                topic: topic.to_string(),
                changes,
                validate_only: false,
            })
            .await
            .map_err(|status| not_found_as_unknown_topic(status.into(), topic))?;
        Ok(response.into_inner().configs)
    }

    /// Offsets of a partition: the earliest, the latest, or the first at a time.
    pub async fn list_offset(
        &self,
        topic: &str,
        partition: i32,
        spec: crate::OffsetSpec,
    ) -> Result<i64> {
        crate::offsets::list_offset(&self.cluster, topic, partition, spec).await
    }

    /// The consumer groups of the whole cluster (every broker is asked for those it
    /// coordinates), in group order.
    pub async fn list_groups(&self) -> Result<Vec<pb::GroupListing>> {
        // Learn the current brokers first.
        self.cluster.metadata(Vec::new()).await?;
        let mut groups = Vec::new();
        for (_, address) in self.cluster.broker_addresses() {
            let channel = self.cluster.channel(&address).await?;
            let listed = GroupsClient::new(channel)
                .list_groups(pb::ListGroupsRequest { states: Vec::new() })
                .await?
                .into_inner();
            groups.extend(listed.groups);
        }
        groups.sort_by(|a, b| a.group.cmp(&b.group));
        groups.dedup_by(|a, b| a.group == b.group);
        Ok(groups)
    }

    /// A group's state, members and their assignments, and committed offsets with lag.
    pub async fn describe_group(&self, group: &str) -> Result<pb::GroupDescription> {
        self.cluster
            .on_coordinator(group, "the group's coordinator", |mut groups| async move {
                Ok(groups
                    .describe_group(pb::DescribeGroupRequest {
                        group: group.to_string(),
                    })
                    .await?
                    .into_inner())
            })
            .await
    }

    /// A group's committed offsets (every partition it committed for).
    pub async fn fetch_offsets(&self, group: &str) -> Result<Vec<pb::CommittedOffset>> {
        self.cluster
            .on_coordinator(group, "the group's coordinator", |mut groups| async move {
                Ok(groups
                    .fetch_offsets(pb::FetchOffsetsRequest {
                        group: group.to_string(),
                        partitions: Vec::new(),
                    })
                    .await?
                    .into_inner()
                    .offsets)
            })
            .await
    }

    /// Deletes a group that has no members, with its committed offsets.
    pub async fn delete_group(&self, group: &str) -> Result<()> {
        let results = self
            .cluster
            .on_coordinator(group, "the group's coordinator", |mut groups| async move {
                Ok(groups
                    .delete_groups(pb::DeleteGroupsRequest {
                        groups: vec![group.to_string()],
                    })
                    .await?
                    .into_inner()
                    .groups)
            })
            .await?;
        for result in results {
            check(result.error)?;
        }
        Ok(())
    }

    /// Moves a group's committed offsets of `topic` (all its partitions when `partitions` is
    /// empty), or with `dry_run` only says where they would go. The group must have no
    /// members.
    pub async fn reset_offsets(
        &self,
        group: &str,
        topic: &str,
        partitions: Vec<i32>,
        target: ResetTarget,
        dry_run: bool,
    ) -> Result<Vec<pb::OffsetReset>> {
        let target = match target {
            ResetTarget::Earliest => {
                pb::reset_offsets_request::Target::ToEarliest(pb::ResetToEarliest {})
            }
            ResetTarget::Latest => {
                pb::reset_offsets_request::Target::ToLatest(pb::ResetToLatest {})
            }
            ResetTarget::Timestamp(ms) => pb::reset_offsets_request::Target::ToTimestampMs(ms),
            ResetTarget::ShiftBy(n) => pb::reset_offsets_request::Target::ShiftBy(n),
        };
        let request = pb::ResetOffsetsRequest {
            group: group.to_string(),
            topic: topic.to_string(),
            partitions,
            target: Some(target),
            dry_run,
        };
        self.cluster
            .on_coordinator(group, "the group's coordinator", |mut groups| {
                let request = request.clone();
                async move {
                    Ok(groups
                        .reset_offsets(request)
                        .await
                        .map_err(|status| not_found_as_unknown_topic(status.into(), topic))?
                        .into_inner()
                        .partitions)
                }
            })
            .await
    }

    /// A `Broker` service stub on any broker (for tools that speak the API directly).
    pub async fn broker_client(&self) -> Result<BrokerClient<tonic::transport::Channel>> {
        self.cluster
            .any_broker(|channel| async move { Ok(BrokerClient::new(channel)) })
            .await
    }
}

/// NOT_FOUND about a topic as [`Error::UnknownTopic`], which says how to create it.
fn not_found_as_unknown_topic(error: Error, topic: &str) -> Error {
    match &error {
        Error::Broker(broker)
            if broker.kafka_error()
                == Some(kafka_protocol::ResponseError::UnknownTopicOrPartition) =>
        {
            Error::UnknownTopic(topic.to_string())
        }
        _ => error,
    }
}
