//! Bad group requests over the bare Kafka protocol: an unknown member id, a stale
//! generation, a commit while the group waits for its assignment, and a session timeout
//! outside the broker's range each get Kafka's error, and the group carries on unharmed.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::wire::call;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    DescribeGroupsRequest, FindCoordinatorRequest, GroupId, HeartbeatRequest, JoinGroupRequest,
    JoinGroupResponse, OffsetCommitRequest, SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tokio::net::TcpStream;

const GROUP: &str = "strict";

fn code(error: ResponseError) -> i16 {
    error.code()
}

fn join_request(member_id: &str, session_timeout_ms: i32) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
        .with_session_timeout_ms(session_timeout_ms)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(StrBytes::from_string(member_id.to_string()))
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(Bytes::from_static(b"subscription")),
        ])
}

/// Joins as a new member: MEMBER_ID_REQUIRED first, then the join with the id given,
/// answered when the join phase ends.
async fn join(stream: &mut TcpStream) -> JoinGroupResponse {
    let first = call(stream, &join_request("", 10_000), 7).await;
    assert_eq!(first.error_code, code(ResponseError::MemberIdRequired));
    let joined = call(stream, &join_request(&first.member_id, 10_000), 7).await;
    assert_eq!(joined.error_code, 0);
    joined
}

fn heartbeat(member_id: &str, generation: i32) -> HeartbeatRequest {
    HeartbeatRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
        .with_member_id(StrBytes::from_string(member_id.to_string()))
        .with_generation_id(generation)
}

fn commit(member_id: &str, generation: i32, offset: i64) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
        .with_member_id(StrBytes::from_string(member_id.to_string()))
        .with_generation_id_or_member_epoch(generation)
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("events")))
                .with_partitions(vec![
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(offset),
                ]),
        ])
}

fn commit_error(response: &kafka_protocol::messages::OffsetCommitResponse) -> i16 {
    response.topics[0].partitions[0].error_code
}

fn sync(member_id: &str, generation: i32, assignments: &[&str]) -> SyncGroupRequest {
    SyncGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
        .with_member_id(StrBytes::from_string(member_id.to_string()))
        .with_generation_id(generation)
        .with_assignments(
            assignments
                .iter()
                .map(|m| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(StrBytes::from_string((*m).to_string()))
                        .with_assignment(Bytes::from_static(b"assigned"))
                })
                .collect(),
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_group_requests_get_kafkas_errors_and_leave_the_group_unharmed() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::node::single_node_config(dir.path());
    config.group_initial_rebalance_delay_ms = 100;
    config.offsets_topic_num_partitions = 2;
    config.offsets_topic_segment_bytes = 1024 * 1024;
    config.log_segment_bytes = 1024 * 1024;
    let node = common::node::start(config).await;
    common::node::create_topic(&node, "events", 1).await;
    let address = node.kafka_addr();
    let mut first = TcpStream::connect(address).await.unwrap();

    // The coordinator: the offsets topic is created on first use, then loaded.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let find = FindCoordinatorRequest::default().with_key(StrBytes::from_static_str(GROUP));
        let found = call(&mut first, &find, 3).await;
        if found.error_code == 0 {
            let probe = call(&mut first, &heartbeat("nobody", 0), 4).await;
            if probe.error_code != code(ResponseError::CoordinatorLoadInProgress) {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the coordinator is ready in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A session timeout outside group_min/max_session_timeout_ms.
    for timeout in [1000, 3_600_000] {
        let refused = call(&mut first, &join_request("", timeout), 7).await;
        assert_eq!(
            refused.error_code,
            code(ResponseError::InvalidSessionTimeout)
        );
    }

    // One member: generation 1, stable once it synced.
    let one = join(&mut first).await;
    assert_eq!(one.generation_id, 1);
    assert_eq!(one.leader, one.member_id);
    let m1 = one.member_id.to_string();
    let synced = call(&mut first, &sync(&m1, 1, &[&m1]), 5).await;
    assert_eq!(synced.error_code, 0);
    assert_eq!(&synced.assignment[..], b"assigned");

    // An unknown member, and a stale generation.
    let unknown = call(&mut first, &heartbeat("nobody", 1), 4).await;
    assert_eq!(unknown.error_code, code(ResponseError::UnknownMemberId));
    let stale = call(&mut first, &heartbeat(&m1, 0), 4).await;
    assert_eq!(stale.error_code, code(ResponseError::IllegalGeneration));
    let stale = call(&mut first, &commit(&m1, 0, 5), 8).await;
    assert_eq!(commit_error(&stale), code(ResponseError::IllegalGeneration));
    let unknown = call(&mut first, &commit("nobody", 1, 5), 8).await;
    assert_eq!(commit_error(&unknown), code(ResponseError::UnknownMemberId));
    let committed = call(&mut first, &commit(&m1, 1, 5), 8).await;
    assert_eq!(commit_error(&committed), 0);

    // A second member joins: the first learns of the rebalance and rejoins; both wait.
    let mut second = TcpStream::connect(address).await.unwrap();
    let joining = tokio::spawn(async move {
        let joined = join(&mut second).await;
        (second, joined)
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let beat = call(&mut first, &heartbeat(&m1, 1), 4).await;
        if beat.error_code == code(ResponseError::RebalanceInProgress) {
            break;
        }
        assert_eq!(beat.error_code, 0);
        assert!(Instant::now() < deadline, "the rebalance starts");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rejoined = call(&mut first, &join_request(&m1, 10_000), 7).await;
    assert_eq!(rejoined.error_code, 0);
    assert_eq!(rejoined.generation_id, 2);
    let (mut second, two) = joining.await.unwrap();
    let m2 = two.member_id.to_string();
    let leader = rejoined.leader.to_string();
    assert_eq!(leader, m1, "the first member stays the leader");

    // While the assignment is awaited, commits are refused: the partitions may move.
    let during = call(&mut second, &commit(&m2, 2, 7), 8).await;
    assert_eq!(
        commit_error(&during),
        code(ResponseError::RebalanceInProgress)
    );

    // The group completes its rebalance and works as before.
    let follower_sync = tokio::spawn(async move {
        let synced = call(&mut second, &sync(&m2, 2, &[]), 5).await;
        (second, synced)
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let synced = call(&mut first, &sync(&m1, 2, &[&m1, &two.member_id]), 5).await;
    assert_eq!(synced.error_code, 0);
    let (_second, follower) = follower_sync.await.unwrap();
    assert_eq!(follower.error_code, 0);
    assert_eq!(&follower.assignment[..], b"assigned");
    let committed = call(&mut first, &commit(&m1, 2, 9), 8).await;
    assert_eq!(commit_error(&committed), 0);
    let described = call(
        &mut first,
        &DescribeGroupsRequest::default()
            .with_groups(vec![GroupId(StrBytes::from_static_str(GROUP))]),
        5,
    )
    .await;
    let group = &described.groups[0];
    assert_eq!(group.error_code, 0);
    assert_eq!(&*group.group_state, "Stable");
    assert_eq!(group.members.len(), 2);
    node.shutdown().await.unwrap();
}
