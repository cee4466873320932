//! The classic group state machine, by exact expectations: each test feeds requests and the
//! time, and checks the answers and the state.

use bytes::Bytes;
use kafka_protocol::ResponseError;

use super::*;

const LIMITS: ClassicLimits = ClassicLimits {
    min_session_timeout_ms: 6000,
    max_session_timeout_ms: 300_000,
    initial_rebalance_delay_ms: 100,
    max_size: 3,
};

fn join(request: RequestId, member_id: &str) -> Join {
    Join {
        request,
        member_id: member_id.to_string(),
        instance_id: None,
        require_known_member_id: true,
        client_id: "client".to_string(),
        client_host: "/127.0.0.1".to_string(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 30_000,
        protocol_type: "consumer".to_string(),
        protocols: vec![
            ("range".to_string(), Bytes::from_static(b"range-meta")),
            ("roundrobin".to_string(), Bytes::from_static(b"rr-meta")),
        ],
    }
}

fn sync(request: RequestId, member_id: &str, generation: i32) -> Sync {
    Sync {
        request,
        member_id: member_id.to_string(),
        instance_id: None,
        generation,
        protocol_type: Some("consumer".to_string()),
        protocol_name: Some("range".to_string()),
        assignments: Vec::new(),
    }
}

fn only_join(effects: &Effects) -> (&RequestId, &Joined) {
    match effects.replies.as_slice() {
        [Reply::Join(request, joined)] => (request, joined),
        other => panic!("expected one JoinGroup answer, got {other:?}"),
    }
}

/// A member gets its id (MEMBER_ID_REQUIRED) and joins with it; returns the id.
fn new_member(group: &mut ClassicGroup, request: RequestId, now: i64) -> String {
    let effects = group.join(join(request, ""), &LIMITS, now).unwrap();
    let (_, joined) = only_join(&effects);
    assert_eq!(joined.error, Some(ResponseError::MemberIdRequired));
    assert!(joined.member_id.starts_with("client-"));
    let id = joined.member_id.clone();
    let effects = group.join(join(request + 1, &id), &LIMITS, now).unwrap();
    assert!(
        effects.replies.is_empty(),
        "the join waits for the rebalance"
    );
    id
}

/// Two members joined and synced: a stable group at generation 1. Returns the leader's
/// and the follower's ids.
fn stable_pair(group: &mut ClassicGroup) -> (String, String) {
    let a = new_member(group, 10, 0);
    let b = new_member(group, 20, 50);
    // The first rebalance waits out its initial delay (100 ms after the last join).
    assert!(group.tick(100, &LIMITS).replies.is_empty());
    let effects = group.tick(150, &LIMITS);
    assert_eq!(effects.replies.len(), 2);
    assert_eq!(group.state(), ClassicState::CompletingRebalance);
    assert_eq!(group.generation(), 1);
    let leader = group.leader().unwrap().to_string();
    let follower = if leader == a { b } else { a };
    let mut leader_sync = sync(30, &leader, 1);
    leader_sync.assignments = vec![
        (leader.clone(), Bytes::from_static(b"p0")),
        (follower.clone(), Bytes::from_static(b"p1")),
    ];
    let effects = group.sync(sync(31, &follower, 1), 160).unwrap();
    assert!(
        effects.replies.is_empty(),
        "the follower waits for the leader"
    );
    let effects = group.sync(leader_sync, 170).unwrap();
    assert!(
        effects.persist,
        "the assignment is written before anyone hears it"
    );
    assert_eq!(group.state(), ClassicState::Stable);
    let mut answers: Vec<(RequestId, Bytes)> = effects
        .replies
        .into_iter()
        .map(|r| match r {
            Reply::Sync(request, synced) => {
                assert_eq!(synced.error, None);
                (request, synced.assignment)
            }
            other => panic!("{other:?}"),
        })
        .collect();
    answers.sort();
    assert_eq!(
        answers,
        vec![
            (30, Bytes::from_static(b"p0")),
            (31, Bytes::from_static(b"p1"))
        ]
    );
    (leader, follower)
}

#[test]
fn the_first_rebalance_waits_for_more_members_then_answers_all_with_one_leader() {
    let mut group = ClassicGroup::new("g", 0);
    let a = new_member(&mut group, 1, 0);
    assert_eq!(group.state(), ClassicState::PreparingRebalance);
    let b = new_member(&mut group, 3, 60);
    // The delay runs from the last member's join (60 + 100).
    assert!(group.tick(120, &LIMITS).replies.is_empty());
    let effects = group.tick(160, &LIMITS);
    let mut joined: Vec<(RequestId, Joined)> = effects
        .replies
        .into_iter()
        .map(|r| match r {
            Reply::Join(request, joined) => (request, joined),
            other => panic!("{other:?}"),
        })
        .collect();
    joined.sort_by_key(|(request, _)| *request);
    assert_eq!(joined.len(), 2);
    let leader = &joined[0].1.leader;
    for (request, answer) in &joined {
        assert_eq!(answer.error, None);
        assert_eq!(answer.generation, 1);
        assert_eq!(answer.protocol_name.as_deref(), Some("range"));
        assert_eq!(&answer.leader, leader);
        let expected_id = if *request == 2 { &a } else { &b };
        assert_eq!(&answer.member_id, expected_id);
        // Only the leader gets the members and their metadata.
        if &answer.member_id == leader {
            assert_eq!(answer.members.len(), 2);
            assert!(
                answer
                    .members
                    .iter()
                    .all(|m| m.2 == Bytes::from_static(b"range-meta"))
            );
        } else {
            assert!(answer.members.is_empty());
        }
    }
}

#[test]
fn the_protocol_most_members_prefer_among_those_all_support_is_chosen() {
    let mut group = ClassicGroup::new("g", 0);
    let mut first = join(1, "");
    first.require_known_member_id = false;
    first.protocols = vec![
        ("roundrobin".into(), Bytes::new()),
        ("range".into(), Bytes::new()),
    ];
    group.join(first, &LIMITS, 0).unwrap();
    let mut second = join(2, "");
    second.require_known_member_id = false;
    second.protocols = vec![("range".into(), Bytes::new())];
    group.join(second.clone(), &LIMITS, 0).unwrap();
    let mut third = second;
    third.request = 3;
    group.join(third, &LIMITS, 0).unwrap();
    group.tick(1000, &LIMITS);
    assert_eq!(group.protocol(), Some("range"));
}

#[test]
fn a_member_of_another_protocol_type_or_without_a_shared_protocol_is_refused() {
    let mut group = ClassicGroup::new("g", 0);
    new_member(&mut group, 1, 0);
    let mut other_type = join(5, "");
    other_type.protocol_type = "connect".into();
    let (error, _) = group.join(other_type, &LIMITS, 0).unwrap_err();
    assert_eq!(error, ResponseError::InconsistentGroupProtocol);
    let mut no_shared = join(6, "");
    no_shared.protocols = vec![("sticky".into(), Bytes::new())];
    let (error, _) = group.join(no_shared, &LIMITS, 0).unwrap_err();
    assert_eq!(error, ResponseError::InconsistentGroupProtocol);
}

#[test]
fn a_session_timeout_outside_the_range_is_refused_and_changes_nothing() {
    let mut group = ClassicGroup::new("g", 0);
    let before = group.clone();
    for timeout in [5999, 300_001] {
        let mut request = join(1, "");
        request.session_timeout_ms = timeout;
        let (error, message) = group.join(request, &LIMITS, 0).unwrap_err();
        assert_eq!(error, ResponseError::InvalidSessionTimeout);
        assert!(
            message.contains("group_min_session_timeout_ms"),
            "{message}"
        );
    }
    assert_eq!(group, before);
}

#[test]
fn unknown_members_and_stale_generations_get_kafkas_errors() {
    let mut group = ClassicGroup::new("g", 0);
    let (leader, _) = stable_pair(&mut group);
    let (error, _) = group.heartbeat("nobody", None, 1, 200).unwrap_err();
    assert_eq!(error, ResponseError::UnknownMemberId);
    let (error, _) = group.heartbeat(&leader, None, 0, 200).unwrap_err();
    assert_eq!(error, ResponseError::IllegalGeneration);
    let (error, _) = group.sync(sync(40, &leader, 7), 200).unwrap_err();
    assert_eq!(error, ResponseError::IllegalGeneration);
    let (error, _) = group.validate_commit("nobody", None, 1).unwrap_err();
    assert_eq!(error, ResponseError::UnknownMemberId);
    let (error, _) = group.validate_commit(&leader, None, 0).unwrap_err();
    assert_eq!(error, ResponseError::IllegalGeneration);
    // Still stable, both members in place.
    assert_eq!(group.state(), ClassicState::Stable);
    assert_eq!(group.members().len(), 2);
    assert_eq!(group.heartbeat(&leader, None, 1, 200), Ok(()));
}

#[test]
fn a_commit_while_the_group_waits_for_its_assignment_is_refused() {
    let mut group = ClassicGroup::new("g", 0);
    let (leader, follower) = stable_pair(&mut group);
    // The follower rejoins with new metadata: a rebalance starts.
    let mut rejoin = join(50, &follower);
    rejoin.protocols = vec![("range".into(), Bytes::from_static(b"new"))];
    assert!(
        group
            .join(rejoin, &LIMITS, 1000)
            .unwrap()
            .replies
            .is_empty()
    );
    assert_eq!(group.state(), ClassicState::PreparingRebalance);
    // During the join phase a commit of the current generation is still allowed...
    assert_eq!(group.validate_commit(&leader, None, 1), Ok(()));
    let (error, _) = group.heartbeat(&leader, None, 1, 1000).unwrap_err();
    assert_eq!(error, ResponseError::RebalanceInProgress);
    let effects = group.join(join(51, &leader), &LIMITS, 1001).unwrap();
    assert_eq!(
        effects.replies.len(),
        2,
        "everyone rejoined: the join phase ends"
    );
    assert_eq!(group.state(), ClassicState::CompletingRebalance);
    // ...but not while the new assignment is awaited.
    let (error, _) = group.validate_commit(&leader, None, 2).unwrap_err();
    assert_eq!(error, ResponseError::RebalanceInProgress);
    assert_eq!(group.members().len(), 2);
}

#[test]
fn a_member_whose_session_ends_is_removed_and_the_rest_rebalance() {
    let mut group = ClassicGroup::new("g", 0);
    let (leader, follower) = stable_pair(&mut group);
    // Only the leader heartbeats.
    group.heartbeat(&leader, None, 1, 9000).unwrap();
    let effects = group.tick(10_170, &LIMITS);
    assert!(effects.replies.is_empty());
    assert_eq!(group.state(), ClassicState::PreparingRebalance);
    assert!(!group.members().contains_key(&follower));
    // The leader learns of it from its heartbeat and rejoins: generation 2 of one member.
    let (error, _) = group.heartbeat(&leader, None, 1, 10_200).unwrap_err();
    assert_eq!(error, ResponseError::RebalanceInProgress);
    let effects = group.join(join(60, &leader), &LIMITS, 10_300).unwrap();
    let (_, joined) = only_join(&effects);
    assert_eq!(joined.generation, 2);
    assert_eq!(joined.members.len(), 1);
}

#[test]
fn members_that_do_not_rejoin_in_time_are_dropped_when_the_join_phase_ends() {
    let mut group = ClassicGroup::new("g", 0);
    let (leader, follower) = stable_pair(&mut group);
    group.leave(&follower, None, 1000, &LIMITS).unwrap();
    // The follower leaves; the leader does not rejoin within the rebalance timeout.
    let effects = group.tick(1000 + 30_000, &LIMITS);
    assert!(
        effects.persist,
        "an empty group is written with its new generation"
    );
    assert_eq!(group.state(), ClassicState::Empty);
    assert!(group.members().is_empty());
    assert_eq!(group.generation(), 2);
    let (error, _) = group.heartbeat(&leader, None, 1, 31_001).unwrap_err();
    assert_eq!(error, ResponseError::UnknownMemberId);
}

#[test]
fn leaving_answers_the_parked_join_and_lets_the_rest_complete() {
    let mut group = ClassicGroup::new("g", 0);
    let (leader, follower) = stable_pair(&mut group);
    // The leader rejoins (a leader's join always rebalances) and waits for the follower.
    assert!(
        group
            .join(join(70, &leader), &LIMITS, 500)
            .unwrap()
            .replies
            .is_empty()
    );
    let (left, effects) = group.leave(&follower, None, 600, &LIMITS).unwrap();
    assert_eq!(left, follower);
    let (request, joined) = only_join(&effects);
    assert_eq!(*request, 70);
    assert_eq!(joined.generation, 2);
    assert_eq!(group.members().len(), 1);
    let (error, _) = group.leave("nobody", None, 700, &LIMITS).unwrap_err();
    assert_eq!(error, ResponseError::UnknownMemberId);
}

#[test]
fn a_follower_rejoining_with_the_same_metadata_causes_no_rebalance() {
    let mut group = ClassicGroup::new("g", 0);
    let (_, follower) = stable_pair(&mut group);
    let effects = group.join(join(80, &follower), &LIMITS, 500).unwrap();
    let (_, joined) = only_join(&effects);
    assert_eq!(joined.error, None);
    assert_eq!(joined.generation, 1);
    assert_eq!(group.state(), ClassicState::Stable);
}

#[test]
fn a_static_member_that_restarts_takes_its_old_place_without_a_rebalance() {
    let mut group = ClassicGroup::new("g", 0);
    let mut first = join(1, "");
    first.instance_id = Some("worker-1".into());
    let effects = group.join(first.clone(), &LIMITS, 0).unwrap();
    assert!(
        effects.replies.is_empty(),
        "static members join at once, no MEMBER_ID_REQUIRED"
    );
    let effects = group.tick(100, &LIMITS);
    let (_, joined) = only_join(&effects);
    let old_id = joined.member_id.clone();
    let mut leader_sync = sync(2, &old_id, 1);
    leader_sync.assignments = vec![(old_id.clone(), Bytes::from_static(b"mine"))];
    group.sync(leader_sync, 110).unwrap();
    assert_eq!(group.state(), ClassicState::Stable);

    // It restarts: a new join with the same instance id and no member id.
    let mut again = first;
    again.request = 3;
    let effects = group.join(again, &LIMITS, 5000).unwrap();
    assert!(
        effects.persist,
        "the new member id is written before it is handed out"
    );
    let (_, joined) = only_join(&effects);
    assert_eq!(joined.error, None);
    assert_ne!(joined.member_id, old_id);
    assert_eq!(joined.generation, 1);
    assert!(
        joined.skip_assignment,
        "the leader keeps the assignment it made"
    );
    assert_eq!(group.state(), ClassicState::Stable);
    assert_eq!(
        group.members()[&joined.member_id].assignment,
        Bytes::from_static(b"mine")
    );
    // The old incarnation is fenced.
    let (error, _) = group
        .heartbeat(&old_id, Some("worker-1"), 1, 5001)
        .unwrap_err();
    assert_eq!(error, ResponseError::FencedInstanceId);
}

#[test]
fn the_group_size_limit_holds() {
    let mut group = ClassicGroup::new("g", 0);
    for i in 0..3 {
        new_member(&mut group, 10 * i, 0);
    }
    let (error, _) = group.join(join(99, ""), &LIMITS, 0).unwrap_err();
    assert_eq!(error, ResponseError::GroupMaxSizeReached);
}

#[test]
fn a_stable_group_reads_back_from_its_record_as_it_was() {
    let mut group = ClassicGroup::new("g", 0);
    let (leader, follower) = stable_pair(&mut group);
    let loaded = ClassicGroup::from_value("g", group.value(), 5000);
    assert_eq!(loaded.state(), ClassicState::Stable);
    assert_eq!(loaded.generation(), 1);
    assert_eq!(loaded.leader(), Some(leader.as_str()));
    assert_eq!(loaded.protocol(), Some("range"));
    assert_eq!(
        loaded.members()[&follower].assignment,
        Bytes::from_static(b"p1")
    );
    assert_eq!(
        loaded.members()[&leader].metadata("range"),
        Bytes::from_static(b"range-meta")
    );
    // Its members carry on: heartbeats and syncs of generation 1 work.
    let mut loaded = loaded;
    assert_eq!(loaded.heartbeat(&follower, None, 1, 5001), Ok(()));
    let effects = loaded.sync(sync(90, &follower, 1), 5002).unwrap();
    match effects.replies.as_slice() {
        [Reply::Sync(90, synced)] => assert_eq!(synced.assignment, Bytes::from_static(b"p1")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unloading_tells_parked_requests_to_find_the_coordinator() {
    let mut group = ClassicGroup::new("g", 0);
    let a = new_member(&mut group, 1, 0);
    let effects = group.shut(10);
    let (request, joined) = only_join(&effects);
    assert_eq!(*request, 2);
    assert_eq!(joined.error, Some(ResponseError::NotCoordinator));
    assert_eq!(joined.member_id, a);
    assert_eq!(group.state(), ClassicState::Dead);
}
