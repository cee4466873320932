//! The `Groups` gRPC service against whole nodes: finding a group's coordinator, committing
//! and fetching offsets, listing, describing with lag, deleting, and resetting offsets to the
//! earliest, the latest, a timestamp or by a shift (and as a dry run); the refusals of an
//! unknown group, of a group with members (an rdkafka consumer), and of a broker that is not
//! the coordinator; and on two brokers, a reset and a lag that need the other broker's
//! offsets.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tonic::transport::Channel;
use tonic::{Code, Status};
use weir_broker::config::NodeConfig;
use weir_broker::server::Node;
use weir_proto::v1 as pb;
use weir_proto::v1::broker_client::BrokerClient;
use weir_proto::v1::groups_client::GroupsClient;
use weir_proto::v1::reset_offsets_request::Target;

const WAIT: Duration = Duration::from_secs(60);
/// Kafka's numbers for the errors the tests expect.
const NOT_COORDINATOR: &str = "16";
const NON_EMPTY_GROUP: &str = "68";
const GROUP_ID_NOT_FOUND: i32 = 69;

/// Small files (segments are preallocated) and groups that settle quickly.
fn fast_groups(config: &mut NodeConfig) {
    config.log_segment_bytes = 1024 * 1024;
    config.group_initial_rebalance_delay_ms = 300;
    config.offsets_topic_num_partitions = 4;
    config.offsets_topic_segment_bytes = 1024 * 1024;
}

/// A time shortly before now: records this old are far from any retention limit.
fn recent_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(now.as_millis()).unwrap() - 60_000
}

async fn start_node(dir: &std::path::Path) -> Node {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut config = common::node::single_node_config(dir);
    fast_groups(&mut config);
    common::node::start(config).await
}

async fn channel(address: &str) -> Channel {
    Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .expect("connected to the gRPC listener")
}

async fn groups_client(address: &str) -> GroupsClient<Channel> {
    GroupsClient::new(channel(address).await)
}

async fn broker_client(address: &str) -> BrokerClient<Channel> {
    BrokerClient::new(channel(address).await)
}

fn kafka_code(status: &Status) -> &str {
    status
        .metadata()
        .get("weir-kafka-error-code")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
}

/// Finds `group`'s coordinator, retrying while `__consumer_offsets` is created and its
/// leadership loads, and waits until the coordinator serves the group.
async fn coordinator(
    client: &mut GroupsClient<Channel>,
    group: &str,
) -> pb::FindCoordinatorResponse {
    let deadline = Instant::now() + WAIT;
    loop {
        let found = client
            .find_coordinator(pb::FindCoordinatorRequest {
                group: group.to_string(),
            })
            .await;
        if let Ok(found) = found {
            let found = found.into_inner();
            // The coordinator answers for the group once its shard is loaded.
            let mut there = groups_client(&found.grpc_address).await;
            let described = there
                .describe_group(pb::DescribeGroupRequest {
                    group: group.to_string(),
                })
                .await;
            if described.is_ok() {
                return found;
            }
        }
        assert!(
            Instant::now() < deadline,
            "group {group} has a coordinator in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Produces `count` records to `topic`-`partition` with timestamps `base_ms`, `base_ms`+1000,
/// ... (acks=all).
async fn produce(
    client: &mut BrokerClient<Channel>,
    topic: &str,
    partition: i32,
    count: i64,
    base_ms: i64,
) {
    let records = (0..count)
        .map(|i| pb::Record {
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(format!("value-{i}"))),
            timestamp_ms: Some(base_ms + i * 1000),
            ..pb::Record::default()
        })
        .collect();
    let answer = client
        .produce(pb::ProduceRequest {
            partitions: vec![pb::PartitionRecords {
                topic: topic.to_string(),
                partition,
                data: Some(pb::partition_records::Data::Records(pb::RecordList {
                    records,
                })),
                compression: pb::Compression::None as i32,
            }],
            acks: pb::Acks::All as i32,
            timeout_ms: 10_000,
        })
        .await
        .expect("Produce answered")
        .into_inner();
    assert_eq!(
        answer.partitions[0].error, None,
        "{topic}-{partition} appended"
    );
}

/// Commits `offsets` (partition, offset) of `topic` for `group` without a member.
async fn commit(
    client: &mut GroupsClient<Channel>,
    group: &str,
    topic: &str,
    offsets: &[(i32, i64)],
) {
    let answer = client
        .commit_offsets(pb::CommitOffsetsRequest {
            group: group.to_string(),
            member_id: String::new(),
            generation_id: -1,
            group_instance_id: None,
            offsets: offsets
                .iter()
                .map(|&(partition, offset)| pb::OffsetCommit {
                    topic: topic.to_string(),
                    partition,
                    offset,
                    leader_epoch: None,
                    metadata: Some(format!("at {offset}")),
                })
                .collect(),
        })
        .await
        .expect("CommitOffsets answered")
        .into_inner();
    for result in &answer.partitions {
        assert_eq!(
            result.error, None,
            "{}-{} committed",
            result.topic, result.partition
        );
    }
}

/// The group's committed offsets as (topic, partition) → offset.
async fn committed(
    client: &mut GroupsClient<Channel>,
    group: &str,
) -> BTreeMap<(String, i32), i64> {
    client
        .fetch_offsets(pb::FetchOffsetsRequest {
            group: group.to_string(),
            partitions: Vec::new(),
        })
        .await
        .expect("FetchOffsets answered")
        .into_inner()
        .offsets
        .into_iter()
        .map(|o| ((o.topic, o.partition), o.offset))
        .collect()
}

fn reset_request(
    group: &str,
    topic: &str,
    partitions: &[i32],
    target: Target,
) -> pb::ResetOffsetsRequest {
    pb::ResetOffsetsRequest {
        group: group.to_string(),
        topic: topic.to_string(),
        partitions: partitions.to_vec(),
        target: Some(target),
        dry_run: false,
    }
}

/// The plan of a reset as (partition, current, new).
async fn reset(
    client: &mut GroupsClient<Channel>,
    request: pb::ResetOffsetsRequest,
) -> Vec<(i32, i64, i64)> {
    client
        .reset_offsets(request)
        .await
        .expect("ResetOffsets answered")
        .into_inner()
        .partitions
        .into_iter()
        .map(|p| (p.partition, p.current_offset, p.new_offset))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_are_committed_fetched_listed_described_with_lag_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path()).await;
    let address = node.grpc_addr().to_string();
    let mut groups = groups_client(&address).await;
    let mut broker = broker_client(&address).await;
    common::node::create_topic(&node, "events", 3).await;
    produce(&mut broker, "events", 0, 10, recent_ms()).await;
    produce(&mut broker, "events", 1, 5, recent_ms()).await;

    let found = coordinator(&mut groups, "audit").await;
    assert_eq!(found.node_id, 1);
    assert_eq!(found.grpc_address, address);

    commit(&mut groups, "audit", "events", &[(0, 4), (1, 5)]).await;
    let all = committed(&mut groups, "audit").await;
    let expected = BTreeMap::from([
        (("events".to_string(), 0), 4),
        (("events".to_string(), 1), 5),
    ]);
    assert_eq!(all, expected);
    let some = groups
        .fetch_offsets(pb::FetchOffsetsRequest {
            group: "audit".to_string(),
            partitions: vec![
                pb::TopicPartition {
                    topic: "events".to_string(),
                    partition: 2,
                },
                pb::TopicPartition {
                    topic: "events".to_string(),
                    partition: 0,
                },
            ],
        })
        .await
        .unwrap()
        .into_inner()
        .offsets;
    let some: Vec<(i32, i64, Option<String>)> = some
        .into_iter()
        .map(|o| (o.partition, o.offset, o.metadata))
        .collect();
    assert_eq!(some, vec![(2, -1, None), (0, 4, Some("at 4".to_string()))]);

    // A commit for a partition that does not exist is refused alone.
    let answer = groups
        .commit_offsets(pb::CommitOffsetsRequest {
            group: "audit".to_string(),
            generation_id: -1,
            offsets: vec![pb::OffsetCommit {
                topic: "events".to_string(),
                partition: 9,
                offset: 1,
                ..pb::OffsetCommit::default()
            }],
            ..pb::CommitOffsetsRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    let error = answer.partitions[0].error.clone().expect("refused");
    assert_eq!(error.code, Code::NotFound as i32);
    assert!(
        error.message.starts_with("UNKNOWN_TOPIC_OR_PARTITION: "),
        "{}",
        error.message
    );

    let listed = groups
        .list_groups(pb::ListGroupsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .groups;
    assert_eq!(
        listed,
        vec![pb::GroupListing {
            group: "audit".to_string(),
            state: pb::GroupState::Empty as i32,
            protocol_type: String::new(),
        }]
    );
    let stable_only = groups
        .list_groups(pb::ListGroupsRequest {
            states: vec![pb::GroupState::Stable as i32],
        })
        .await
        .unwrap()
        .into_inner()
        .groups;
    assert_eq!(stable_only, Vec::new());

    let described = groups
        .describe_group(pb::DescribeGroupRequest {
            group: "audit".to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(described.state, pb::GroupState::Empty as i32);
    assert!(described.members.is_empty());
    let lag: Vec<(i32, i64, i64, i64)> = described
        .offsets
        .iter()
        .map(|o| (o.partition, o.committed_offset, o.high_watermark, o.lag))
        .collect();
    assert_eq!(lag, vec![(0, 4, 10, 6), (1, 5, 5, 0)]);
    assert!(described.offsets.iter().all(|o| o.error.is_none()));

    let deleted = groups
        .delete_groups(pb::DeleteGroupsRequest {
            groups: vec!["audit".to_string(), "never-seen".to_string()],
        })
        .await
        .unwrap()
        .into_inner()
        .groups;
    assert_eq!(deleted[0].error, None, "audit is deleted");
    let unknown = deleted[1]
        .error
        .clone()
        .expect("an unknown group is refused");
    assert_eq!(unknown.kafka_error_code, GROUP_ID_NOT_FOUND);
    assert_eq!(unknown.code, Code::NotFound as i32);
    assert!(
        unknown.message.starts_with("GROUP_ID_NOT_FOUND: "),
        "{}",
        unknown.message
    );
    assert_eq!(committed(&mut groups, "audit").await, BTreeMap::new());
    let gone = groups
        .describe_group(pb::DescribeGroupRequest {
            group: "audit".to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(gone.state, pb::GroupState::Dead as i32);

    // An empty group id is the client's mistake.
    let empty = groups
        .describe_group(pb::DescribeGroupRequest::default())
        .await
        .expect_err("no group id");
    assert_eq!(empty.code(), Code::InvalidArgument);
    assert!(
        empty.message().starts_with("INVALID_GROUP_ID: "),
        "{}",
        empty.message()
    );

    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_reset_to_earliest_latest_a_timestamp_or_by_a_shift() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path()).await;
    let address = node.grpc_addr().to_string();
    let mut groups = groups_client(&address).await;
    let mut broker = broker_client(&address).await;
    common::node::create_topic(&node, "clicks", 2).await;
    let base_ms = recent_ms();
    produce(&mut broker, "clicks", 0, 10, base_ms).await;
    produce(&mut broker, "clicks", 1, 5, base_ms).await;
    coordinator(&mut groups, "reporting").await;
    commit(&mut groups, "reporting", "clicks", &[(0, 5), (1, 2)]).await;
    let offsets = |p0: i64, p1: i64| {
        BTreeMap::from([
            (("clicks".to_string(), 0), p0),
            (("clicks".to_string(), 1), p1),
        ])
    };

    // A dry run plans without committing.
    let mut dry = reset_request(
        "reporting",
        "clicks",
        &[],
        Target::ToEarliest(pb::ResetToEarliest {}),
    );
    dry.dry_run = true;
    assert_eq!(reset(&mut groups, dry).await, vec![(0, 5, 0), (1, 2, 0)]);
    assert_eq!(committed(&mut groups, "reporting").await, offsets(5, 2));

    let latest = reset_request(
        "reporting",
        "clicks",
        &[],
        Target::ToLatest(pb::ResetToLatest {}),
    );
    assert_eq!(
        reset(&mut groups, latest).await,
        vec![(0, 5, 10), (1, 2, 5)]
    );
    assert_eq!(committed(&mut groups, "reporting").await, offsets(10, 5));

    let earliest = reset_request(
        "reporting",
        "clicks",
        &[1],
        Target::ToEarliest(pb::ResetToEarliest {}),
    );
    assert_eq!(reset(&mut groups, earliest).await, vec![(1, 5, 0)]);
    assert_eq!(committed(&mut groups, "reporting").await, offsets(10, 0));

    // Record i has timestamp base + i s; past the last record, the group starts at the end.
    let at = reset_request(
        "reporting",
        "clicks",
        &[],
        Target::ToTimestampMs(base_ms + 3_500),
    );
    assert_eq!(reset(&mut groups, at).await, vec![(0, 10, 4), (1, 0, 4)]);
    let later = reset_request(
        "reporting",
        "clicks",
        &[],
        Target::ToTimestampMs(base_ms + 7_000),
    );
    assert_eq!(reset(&mut groups, later).await, vec![(0, 4, 7), (1, 4, 5)]);
    assert_eq!(committed(&mut groups, "reporting").await, offsets(7, 5));

    // Shifts stay within the log start and the high watermark.
    let back = reset_request("reporting", "clicks", &[0, 1], Target::ShiftBy(-3));
    assert_eq!(reset(&mut groups, back).await, vec![(0, 7, 4), (1, 5, 2)]);
    let far_back = reset_request("reporting", "clicks", &[0], Target::ShiftBy(-100));
    assert_eq!(reset(&mut groups, far_back).await, vec![(0, 4, 0)]);
    let far_on = reset_request("reporting", "clicks", &[], Target::ShiftBy(100));
    assert_eq!(
        reset(&mut groups, far_on).await,
        vec![(0, 0, 10), (1, 2, 5)]
    );
    assert_eq!(committed(&mut groups, "reporting").await, offsets(10, 5));

    // A new group (unknown to the coordinator) may be reset to an offset, not shifted.
    coordinator(&mut groups, "fresh").await;
    let shift = groups
        .reset_offsets(reset_request("fresh", "clicks", &[], Target::ShiftBy(1)))
        .await
        .expect_err("nothing to shift");
    assert_eq!(shift.code(), Code::InvalidArgument);
    assert!(
        shift.message().starts_with("INVALID_REQUEST: clicks-0 "),
        "{}",
        shift.message()
    );
    let fresh = reset_request(
        "fresh",
        "clicks",
        &[],
        Target::ToLatest(pb::ResetToLatest {}),
    );
    assert_eq!(
        reset(&mut groups, fresh).await,
        vec![(0, -1, 10), (1, -1, 5)]
    );

    // Requests the client must fix.
    let mut no_target = reset_request("fresh", "clicks", &[], Target::ShiftBy(1));
    no_target.target = None;
    let refused = groups
        .reset_offsets(no_target)
        .await
        .expect_err("no target");
    assert_eq!(refused.code(), Code::InvalidArgument);
    let no_partition = groups
        .reset_offsets(reset_request("fresh", "clicks", &[2], Target::ShiftBy(1)))
        .await
        .expect_err("no partition 2");
    assert_eq!(no_partition.code(), Code::NotFound);
    assert!(
        no_partition
            .message()
            .starts_with("UNKNOWN_TOPIC_OR_PARTITION: clicks-2 "),
        "{}",
        no_partition.message()
    );

    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_with_members_is_described_and_cannot_be_reset_or_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path()).await;
    let address = node.grpc_addr().to_string();
    let mut groups = groups_client(&address).await;
    common::node::create_topic(&node, "jobs", 2).await;
    coordinator(&mut groups, "workers").await;

    let bootstrap = node.kafka_addr().to_string();
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let (assigned_tx, assigned_rx) = tokio::sync::oneshot::channel::<Vec<(String, i32)>>();
    // The consumer stays in the group, polled on its own thread, until the test is done.
    let member = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "workers")
            .set("client.id", "worker-1")
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "300")
            .create()
            .expect("the consumer is created");
        consumer.subscribe(&["jobs"]).unwrap();
        let deadline = Instant::now() + WAIT;
        let mut assigned_tx = Some(assigned_tx);
        loop {
            if let Some(Err(e)) = consumer.poll(Duration::from_millis(50)) {
                panic!("the consumer failed: {e}");
            }
            // Plain data only: a list must not outlive its consumer.
            let assignment: Vec<(String, i32)> = consumer
                .assignment()
                .map(|list| {
                    list.elements()
                        .iter()
                        .map(|e| (e.topic().to_string(), e.partition()))
                        .collect()
                })
                .unwrap_or_default();
            if assignment.len() == 2
                && let Some(tx) = assigned_tx.take()
            {
                let _ = tx.send(assignment);
            }
            if stopped.try_recv().is_ok() || Instant::now() > deadline {
                break;
            }
        }
        consumer.unsubscribe();
    });
    let assignment = tokio::time::timeout(WAIT, assigned_rx)
        .await
        .expect("assigned in time")
        .expect("the consumer assigned");

    // The group is stable once the member has its assignment; the description says so.
    let deadline = Instant::now() + WAIT;
    let described = loop {
        let described = groups
            .describe_group(pb::DescribeGroupRequest {
                group: "workers".to_string(),
            })
            .await
            .unwrap()
            .into_inner();
        if described.state == pb::GroupState::Stable as i32 {
            break described;
        }
        assert!(Instant::now() < deadline, "the group becomes stable");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(described.protocol_type, "consumer");
    assert!(!described.protocol.is_empty());
    assert_eq!(described.members.len(), 1);
    let member_described = &described.members[0];
    assert_eq!(member_described.client_id, "worker-1");
    let mut decoded: Vec<(String, i32)> = member_described
        .assignment
        .iter()
        .map(|tp| (tp.topic.clone(), tp.partition))
        .collect();
    decoded.sort();
    let mut expected = assignment;
    expected.sort();
    assert_eq!(decoded, expected);
    assert_eq!(
        decoded,
        vec![("jobs".to_string(), 0), ("jobs".to_string(), 1)]
    );

    let refused = groups
        .reset_offsets(reset_request(
            "workers",
            "jobs",
            &[],
            Target::ToEarliest(pb::ResetToEarliest {}),
        ))
        .await
        .expect_err("a group with members is not reset");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(kafka_code(&refused), NON_EMPTY_GROUP);
    assert!(
        refused.message().starts_with("NON_EMPTY_GROUP: "),
        "{}",
        refused.message()
    );
    let not_deleted = groups
        .delete_groups(pb::DeleteGroupsRequest {
            groups: vec!["workers".to_string()],
        })
        .await
        .unwrap()
        .into_inner();
    let error = not_deleted.groups[0].error.clone().expect("refused");
    assert!(
        error.message.starts_with("NON_EMPTY_GROUP: "),
        "{}",
        error.message
    );

    stop.send(()).unwrap();
    tokio::time::timeout(WAIT, member)
        .await
        .expect("the consumer stops in time")
        .unwrap();
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_two_brokers_the_coordinator_asks_the_other_leader_and_others_refuse() {
    let cluster = common::cluster::Cluster::start(2, fast_groups).await;
    cluster.create_topic("metrics", 4, 1, &[]).await;
    let leaders: Vec<i32> = (0..4)
        .map(|p| {
            cluster
                .leader(&weir_broker::storage::TopicPartition::new("metrics", p))
                .expect("a leader")
        })
        .collect();
    for (partition, &leader) in leaders.iter().enumerate() {
        let address = cluster.broker(leader).grpc_addr().to_string();
        let mut broker = broker_client(&address).await;
        let partition = i32::try_from(partition).unwrap();
        produce(
            &mut broker,
            "metrics",
            partition,
            i64::from(partition) + 1,
            recent_ms(),
        )
        .await;
    }

    let first = cluster.broker(1).grpc_addr().to_string();
    let found = coordinator(&mut groups_client(&first).await, "dashboards").await;
    let coordinator_id = found.node_id;
    assert!(
        leaders.iter().any(|&l| l != coordinator_id),
        "some partition of metrics is led by the other broker: {leaders:?}"
    );
    assert_eq!(
        found.grpc_address,
        cluster.broker(coordinator_id).grpc_addr().to_string()
    );
    let mut groups = groups_client(&found.grpc_address).await;

    let latest = reset_request(
        "dashboards",
        "metrics",
        &[],
        Target::ToLatest(pb::ResetToLatest {}),
    );
    assert_eq!(
        reset(&mut groups, latest).await,
        vec![(0, -1, 1), (1, -1, 2), (2, -1, 3), (3, -1, 4)]
    );
    let back = reset_request("dashboards", "metrics", &[], Target::ShiftBy(-1));
    assert_eq!(
        reset(&mut groups, back).await,
        vec![(0, 1, 0), (1, 2, 1), (2, 3, 2), (3, 4, 3)]
    );
    let described = groups
        .describe_group(pb::DescribeGroupRequest {
            group: "dashboards".to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    let lag: Vec<(i32, i64, i64)> = described
        .offsets
        .iter()
        .map(|o| (o.partition, o.high_watermark, o.lag))
        .collect();
    assert_eq!(lag, vec![(0, 1, 1), (1, 2, 1), (2, 3, 1), (3, 4, 1)]);

    // The other broker is not the coordinator: it says so, and FindCoordinator points back.
    let other = if coordinator_id == 1 { 2 } else { 1 };
    let mut elsewhere = groups_client(&cluster.broker(other).grpc_addr().to_string()).await;
    let refused = elsewhere
        .describe_group(pb::DescribeGroupRequest {
            group: "dashboards".to_string(),
        })
        .await
        .expect_err("not the coordinator");
    assert_eq!(refused.code(), Code::Unavailable);
    assert_eq!(kafka_code(&refused), NOT_COORDINATOR);
    assert!(
        refused.message().starts_with("NOT_COORDINATOR: "),
        "{}",
        refused.message()
    );
    let pointed = elsewhere
        .find_coordinator(pb::FindCoordinatorRequest {
            group: "dashboards".to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pointed, found);

    cluster.shutdown().await;
}

/// One consumer-protocol heartbeat over gRPC.
async fn heartbeat(
    client: &mut GroupsClient<Channel>,
    member_id: &str,
    member_epoch: i32,
    subscribe: bool,
    owned: Option<&BTreeMap<String, Vec<i32>>>,
) -> pb::HeartbeatResponse {
    client
        .heartbeat(pb::HeartbeatRequest {
            group: "assigned".to_string(),
            member_id: member_id.to_string(),
            member_epoch,
            rebalance_timeout_ms: if subscribe { 30_000 } else { -1 },
            subscribed_topics: subscribe.then(|| pb::TopicNames {
                names: vec!["work".to_string()],
            }),
            owned: owned.map(|owned| pb::Assignment {
                topics: owned
                    .iter()
                    .map(|(topic, partitions)| pb::AssignedPartitions {
                        topic: topic.clone(),
                        partitions: partitions.clone(),
                    })
                    .collect(),
            }),
            client_id: "grpc-test".to_string(),
            ..Default::default()
        })
        .await
        .expect("the heartbeat is answered")
        .into_inner()
}

fn owned_of(assignment: &pb::Assignment) -> BTreeMap<String, Vec<i32>> {
    assignment
        .topics
        .iter()
        .map(|t| (t.topic.clone(), t.partitions.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_on_the_consumer_protocol_get_partitions_only_once_released() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path()).await;
    let address = node.grpc_addr().to_string();
    common::node::create_topic(&node, "work", 4).await;
    let mut groups = groups_client(&address).await;
    coordinator(&mut groups, "assigned").await;

    // The first member joins and is given every partition.
    let first = heartbeat(&mut groups, "", 0, true, None).await;
    assert_eq!(first.member_epoch, 1);
    let a = first.member_id.clone();
    let mut owned_a = owned_of(first.assignment.as_ref().expect("an assignment"));
    assert_eq!(owned_a["work"], vec![0, 1, 2, 3]);

    // A second joins: it waits for partitions the first still owns.
    let second = heartbeat(&mut groups, "", 0, true, None).await;
    let b = second.member_id.clone();
    let owned_b = second.assignment.as_ref().map(owned_of).unwrap_or_default();
    assert!(
        owned_b.values().all(Vec::is_empty),
        "nothing is given before it is released: {owned_b:?}"
    );
    // The first is told to keep two; once it says it gave the others up, the second gets them.
    let told = heartbeat(&mut groups, &a, first.member_epoch, false, Some(&owned_a)).await;
    owned_a = owned_of(told.assignment.as_ref().expect("a smaller assignment"));
    assert_eq!(owned_a["work"].len(), 2);
    let released = heartbeat(&mut groups, &a, told.member_epoch, false, Some(&owned_a)).await;
    assert_eq!(released.member_epoch, 2);
    let given = heartbeat(&mut groups, &b, second.member_epoch, false, Some(&owned_b)).await;
    let owned_b = owned_of(given.assignment.as_ref().expect("the released partitions"));
    assert_eq!(owned_b["work"].len(), 2);
    let mut all: Vec<i32> = owned_a["work"]
        .iter()
        .chain(&owned_b["work"])
        .copied()
        .collect();
    all.sort_unstable();
    assert_eq!(all, vec![0, 1, 2, 3], "each partition has one owner");

    // A stale epoch is fenced; the second leaves and the first gets everything back.
    let fenced = groups
        .heartbeat(pb::HeartbeatRequest {
            group: "assigned".to_string(),
            member_id: b.clone(),
            member_epoch: 99,
            rebalance_timeout_ms: -1,
            ..Default::default()
        })
        .await
        .expect_err("a wrong epoch is fenced");
    assert_eq!(kafka_code(&fenced), "110", "FENCED_MEMBER_EPOCH");
    let left = heartbeat(&mut groups, &b, -1, false, None).await;
    assert_eq!(left.member_epoch, -1);
    let back = heartbeat(
        &mut groups,
        &a,
        released.member_epoch,
        false,
        Some(&owned_a),
    )
    .await;
    assert_eq!(
        owned_of(back.assignment.as_ref().expect("all partitions"))["work"],
        vec![0, 1, 2, 3]
    );
    let described = groups
        .describe_group(pb::DescribeGroupRequest {
            group: "assigned".to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(described.members.len(), 1);
    node.shutdown().await.unwrap();
}
