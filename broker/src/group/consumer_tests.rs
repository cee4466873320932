//! Tests of the consumer group state machine: exact records and responses for each scenario,
//! then a seeded simulation of members that always report what they were last told to own.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::ResponseError;
use proptest::prelude::*;
use uuid::Uuid;

use super::*;

const FOO: TopicId = Uuid::from_u128(1);
const BAR: TopicId = Uuid::from_u128(2);
const REBALANCE_TIMEOUT_MS: i32 = 60_000;

/// Topic `foo` with 4 partitions and `bar` with 2.
fn topics() -> TopicsView {
    let mut topics = TopicsView::new();
    topics.insert("foo", FOO, 4);
    topics.insert("bar", BAR, 2);
    topics
}

/// An assignment from `(topic, partitions)` rows.
fn assignment(rows: &[(TopicId, &[i32])]) -> Assignment {
    rows.iter()
        .map(|(topic, partitions)| (*topic, partitions.iter().copied().collect()))
        .collect()
}

/// The owned partitions of a request from `(topic, partitions)` rows.
fn owned(rows: &[(TopicId, &[i32])]) -> Option<Vec<(TopicId, Vec<i32>)>> {
    Some(
        rows.iter()
            .map(|(topic, partitions)| (*topic, partitions.to_vec()))
            .collect(),
    )
}

/// A join (epoch 0) of `member_id` subscribing to `names`.
fn join(member_id: &str, names: &[&str]) -> HeartbeatRequest {
    HeartbeatRequest {
        member_id: member_id.to_string(),
        member_epoch: JOIN_GROUP_MEMBER_EPOCH,
        rebalance_timeout_ms: REBALANCE_TIMEOUT_MS,
        subscribed_topic_names: Some(names.iter().map(|name| name.to_string()).collect()),
        topic_partitions: Some(Vec::new()),
        client_id: "client".to_string(),
        client_host: "/127.0.0.1".to_string(),
        ..HeartbeatRequest::default()
    }
}

/// A join of a static member.
fn join_static(member_id: &str, instance_id: &str, names: &[&str]) -> HeartbeatRequest {
    HeartbeatRequest {
        instance_id: Some(instance_id.to_string()),
        ..join(member_id, names)
    }
}

/// A plain heartbeat at `epoch` reporting `owned`.
fn beat(member_id: &str, epoch: i32, rows: &[(TopicId, &[i32])]) -> HeartbeatRequest {
    HeartbeatRequest {
        member_id: member_id.to_string(),
        member_epoch: epoch,
        rebalance_timeout_ms: -1,
        topic_partitions: owned(rows),
        client_id: "client".to_string(),
        client_host: "/127.0.0.1".to_string(),
        ..HeartbeatRequest::default()
    }
}

/// A leave with epoch -1.
fn leave(member_id: &str) -> HeartbeatRequest {
    beat(member_id, LEAVE_GROUP_MEMBER_EPOCH, &[])
}

/// A group with a clock and the log of every record it emitted.
struct Harness {
    group: ConsumerGroup,
    topics: TopicsView,
    now_ms: i64,
    log: Vec<ConsumerGroupRecord>,
}

impl Harness {
    /// A group `g` with the default config.
    fn new() -> Harness {
        Harness::with_config(ConsumerGroupConfig::default())
    }

    /// A group `g` with `config`.
    fn with_config(config: ConsumerGroupConfig) -> Harness {
        Harness {
            group: ConsumerGroup::new("g", config),
            topics: topics(),
            now_ms: 0,
            log: Vec::new(),
        }
    }

    /// Sends a heartbeat; returns the response's epoch and assignment, or the error code. An error
    /// must leave the group unchanged.
    fn send(
        &mut self,
        request: HeartbeatRequest,
    ) -> Result<(i32, Option<Assignment>), ResponseError> {
        self.outcome(request)
            .map(|outcome| (outcome.member_epoch, outcome.assignment))
    }

    /// Sends a heartbeat and returns the whole outcome.
    fn outcome(&mut self, request: HeartbeatRequest) -> Result<HeartbeatOutcome, ResponseError> {
        let before = self.group.clone();
        let result = self.group.heartbeat(request, &self.topics, self.now_ms);
        self.group.validate();
        match result {
            Ok(outcome) => {
                self.log.extend(outcome.records.iter().cloned());
                Ok(outcome)
            }
            Err(error) => {
                assert_eq!(self.group, before, "a refused heartbeat changed the group");
                Err(error.code())
            }
        }
    }

    /// Runs the timers at the current time.
    fn expire(&mut self) -> Vec<ConsumerGroupRecord> {
        let records = self.group.expire(self.now_ms);
        self.group.validate();
        self.log.extend(records.iter().cloned());
        records
    }

    /// A group rebuilt from the log, as a new coordinator would, loaded at the current time; the
    /// original's timers are restarted the same way so the two compare equal.
    fn check_replay(&mut self) {
        let mut replayed = ConsumerGroup::new("g", self.group.config);
        for record in self.log.clone() {
            replayed.replay(record);
        }
        replayed.loaded(self.now_ms);
        replayed.validate();
        self.group.loaded(self.now_ms);
        assert_eq!(replayed, self.group);
    }
}

/// A member's current assignment record.
fn current(
    member_id: &str,
    epochs: (i32, i32),
    state: MemberState,
    assigned: Assignment,
    pending_revocation: Assignment,
) -> ConsumerGroupRecord {
    ConsumerGroupRecord::CurrentAssignment(CurrentAssignment {
        member_id: member_id.to_string(),
        member_epoch: epochs.0,
        previous_member_epoch: epochs.1,
        state,
        assigned,
        pending_revocation,
    })
}

/// A target assignment record.
fn target(member_id: &str, partitions: Assignment) -> ConsumerGroupRecord {
    ConsumerGroupRecord::TargetAssignmentMember {
        member_id: member_id.to_string(),
        partitions,
    }
}

/// A harness where `a` then `b` joined `foo` and both reconciled: `a` owns 0 and 1, `b` 2 and 3,
/// at group epoch 2.
fn two_stable_members() -> Harness {
    let mut h = Harness::new();
    h.send(join("a", &["foo"])).unwrap();
    h.send(join("b", &["foo"])).unwrap();
    h.send(beat("a", 1, &[(FOO, &[0, 1, 2, 3])])).unwrap();
    h.send(beat("a", 1, &[(FOO, &[0, 1])])).unwrap();
    h.send(beat("b", 2, &[])).unwrap();
    assert_eq!(h.group.state(), GroupState::Stable);
    h
}

#[test]
fn first_member_gets_every_partition_at_epoch_1() {
    let mut h = Harness::new();
    let outcome = h.outcome(join("a", &["foo"])).unwrap();
    let all = assignment(&[(FOO, &[0, 1, 2, 3])]);
    assert_eq!(outcome.member_id, "a");
    assert_eq!(outcome.member_epoch, 1);
    assert_eq!(outcome.heartbeat_interval_ms, 5_000);
    assert_eq!(outcome.assignment, Some(all.clone()));
    let foo = TopicMetadata {
        id: FOO,
        partition_count: 4,
    };
    assert_eq!(
        outcome.records,
        vec![
            ConsumerGroupRecord::MemberMetadata(MemberMetadata {
                member_id: "a".to_string(),
                instance_id: None,
                rack_id: None,
                client_id: "client".to_string(),
                client_host: "/127.0.0.1".to_string(),
                subscribed_topic_names: BTreeSet::from(["foo".to_string()]),
                server_assignor: None,
                rebalance_timeout_ms: REBALANCE_TIMEOUT_MS,
            }),
            ConsumerGroupRecord::SubscriptionMetadata {
                topics: BTreeMap::from([("foo".to_string(), foo)]),
            },
            ConsumerGroupRecord::GroupMetadata { group_epoch: 1 },
            target("a", all.clone()),
            ConsumerGroupRecord::TargetAssignmentMetadata {
                assignment_epoch: 1
            },
            current("a", (1, 0), MemberState::Stable, all, Assignment::new()),
        ]
    );
    assert_eq!(h.group.state(), GroupState::Stable);
    // A heartbeat that changes nothing writes nothing and repeats no assignment.
    let outcome = h.outcome(beat("a", 1, &[(FOO, &[0, 1, 2, 3])])).unwrap();
    assert_eq!(
        (outcome.member_epoch, &outcome.assignment, &outcome.records),
        (1, &None, &vec![])
    );
}

#[test]
fn second_member_waits_for_the_first_to_revoke() {
    let mut h = Harness::new();
    h.send(join("a", &["foo"])).unwrap();

    // "b" joins: epoch 2, target a={0,1} b={2,3}; 2 and 3 are still a's, so b gets nothing yet.
    let outcome = h.outcome(join("b", &["foo"])).unwrap();
    assert_eq!(
        (outcome.member_epoch, outcome.assignment),
        (2, Some(Assignment::new()))
    );
    assert_eq!(
        outcome.records[1..],
        [
            ConsumerGroupRecord::GroupMetadata { group_epoch: 2 },
            target("a", assignment(&[(FOO, &[0, 1])])),
            target("b", assignment(&[(FOO, &[2, 3])])),
            ConsumerGroupRecord::TargetAssignmentMetadata {
                assignment_epoch: 2
            },
            current(
                "b",
                (2, 0),
                MemberState::UnreleasedPartitions,
                Assignment::new(),
                Assignment::new()
            ),
        ]
    );
    assert_eq!(h.group.state(), GroupState::Reconciling);

    // "a" is told to keep only 0 and 1, at its old epoch.
    let outcome = h.outcome(beat("a", 1, &[(FOO, &[0, 1, 2, 3])])).unwrap();
    assert_eq!(
        (outcome.member_epoch, outcome.assignment.clone()),
        (1, Some(assignment(&[(FOO, &[0, 1])])))
    );
    assert_eq!(
        outcome.records,
        vec![current(
            "a",
            (1, 0),
            MemberState::UnrevokedPartitions,
            assignment(&[(FOO, &[0, 1])]),
            assignment(&[(FOO, &[2, 3])]),
        )]
    );
    // Until a reports them gone, b still waits, and a is told again.
    assert_eq!(h.send(beat("b", 2, &[])), Ok((2, None)));
    assert_eq!(
        h.send(beat("a", 1, &[(FOO, &[0, 1, 2, 3])])),
        Ok((1, Some(assignment(&[(FOO, &[0, 1])]))))
    );

    // a revoked: it moves to epoch 2; then b gets 2 and 3.
    let outcome = h.outcome(beat("a", 1, &[(FOO, &[0, 1])])).unwrap();
    assert_eq!((outcome.member_epoch, outcome.assignment), (2, None));
    assert_eq!(
        outcome.records,
        vec![current(
            "a",
            (2, 1),
            MemberState::Stable,
            assignment(&[(FOO, &[0, 1])]),
            Assignment::new()
        )]
    );
    assert_eq!(
        h.send(beat("b", 2, &[])),
        Ok((2, Some(assignment(&[(FOO, &[2, 3])]))))
    );
    assert_eq!(h.group.state(), GroupState::Stable);
    h.check_replay();
}

#[test]
fn leaving_member_frees_its_partitions_for_the_others() {
    let mut h = two_stable_members();
    let outcome = h.outcome(leave("b")).unwrap();
    assert_eq!(
        (outcome.member_epoch, outcome.assignment.clone()),
        (-1, None)
    );
    assert_eq!(
        outcome.records,
        vec![
            ConsumerGroupRecord::MemberRemoved {
                member_id: "b".to_string()
            },
            ConsumerGroupRecord::GroupMetadata { group_epoch: 3 },
            target("a", assignment(&[(FOO, &[0, 1, 2, 3])])),
            ConsumerGroupRecord::TargetAssignmentMetadata {
                assignment_epoch: 3
            },
        ]
    );
    assert_eq!(
        h.send(beat("a", 2, &[(FOO, &[0, 1])])),
        Ok((3, Some(assignment(&[(FOO, &[0, 1, 2, 3])]))))
    );
    assert_eq!(h.group.state(), GroupState::Stable);
    assert_eq!(h.send(leave("a")).map(|(epoch, _)| epoch), Ok(-1));
    assert_eq!(h.group.state(), GroupState::Empty);
    h.check_replay();
}

#[test]
fn epochs_other_than_current_are_fenced() {
    let mut h = two_stable_members();
    // "a" is at epoch 2 and was at 1 before.
    assert_eq!(
        h.send(beat("a", 3, &[(FOO, &[0, 1])])),
        Err(ResponseError::FencedMemberEpoch)
    );
    assert_eq!(
        h.send(beat("b", 1, &[(FOO, &[2, 3])])),
        Err(ResponseError::FencedMemberEpoch)
    );
    // The previous epoch is fine when the member owns a subset of its assignment (the response
    // moving it on was lost), not otherwise, nor without owned partitions.
    assert_eq!(
        h.send(beat("a", 1, &[(FOO, &[0])])),
        Ok((2, Some(assignment(&[(FOO, &[0, 1])]))))
    );
    assert_eq!(
        h.send(beat("a", 1, &[(FOO, &[0, 2])])),
        Err(ResponseError::FencedMemberEpoch)
    );
    let no_owned = HeartbeatRequest {
        topic_partitions: None,
        ..beat("a", 1, &[])
    };
    assert_eq!(h.send(no_owned), Err(ResponseError::FencedMemberEpoch));
    assert_eq!(
        h.send(beat("zz", 2, &[])),
        Err(ResponseError::UnknownMemberId)
    );
}

#[test]
fn fenced_member_rejoins_with_epoch_zero_and_its_id() {
    let mut h = two_stable_members();
    assert_eq!(
        h.send(beat("b", 7, &[])),
        Err(ResponseError::FencedMemberEpoch)
    );
    // It gave up its partitions; rejoining frees them and gives them straight back.
    assert_eq!(
        h.send(join("b", &["foo"])),
        Ok((2, Some(assignment(&[(FOO, &[2, 3])]))))
    );
    assert_eq!(h.group.group_epoch(), 2);
    assert_eq!(h.group.state(), GroupState::Stable);
    h.check_replay();
}

#[test]
fn malformed_requests_are_refused() {
    let mut h = Harness::new();
    let no_topics = HeartbeatRequest {
        subscribed_topic_names: None,
        ..join("a", &[])
    };
    assert_eq!(h.send(no_topics), Err(ResponseError::InvalidRequest));
    let no_timeout = HeartbeatRequest {
        rebalance_timeout_ms: -1,
        ..join("a", &["foo"])
    };
    assert_eq!(h.send(no_timeout), Err(ResponseError::InvalidRequest));
    let owning = HeartbeatRequest {
        topic_partitions: owned(&[(FOO, &[0])]),
        ..join("a", &["foo"])
    };
    assert_eq!(h.send(owning), Err(ResponseError::InvalidRequest));
    assert_eq!(h.send(beat("", 1, &[])), Err(ResponseError::InvalidRequest));
    assert_eq!(
        h.send(beat("a", -3, &[])),
        Err(ResponseError::InvalidRequest)
    );
    assert_eq!(
        h.send(beat("a", -2, &[])),
        Err(ResponseError::InvalidRequest)
    );
    let sticky = HeartbeatRequest {
        server_assignor: Some("sticky".to_string()),
        ..join("a", &["foo"])
    };
    assert_eq!(h.send(sticky), Err(ResponseError::UnsupportedAssignor));
    assert_eq!(h.send(leave("a")), Err(ResponseError::UnknownMemberId));
    assert!(h.log.is_empty());
}

#[test]
fn v0_member_without_id_gets_one() {
    let mut h = Harness::new();
    let outcome = h.outcome(join("", &["foo"])).unwrap();
    assert!(
        Uuid::parse_str(&outcome.member_id).is_ok(),
        "{}",
        outcome.member_id
    );
    assert_eq!(outcome.member_epoch, 1);
    assert_eq!(
        h.send(beat(&outcome.member_id, 1, &[(FOO, &[0, 1, 2, 3])])),
        Ok((1, None))
    );
}

#[test]
fn full_group_refuses_new_members() {
    let mut h = Harness::with_config(ConsumerGroupConfig {
        max_size: 1,
        ..ConsumerGroupConfig::default()
    });
    h.send(join("a", &["foo"])).unwrap();
    assert_eq!(
        h.send(join("b", &["foo"])),
        Err(ResponseError::GroupMaxSizeReached)
    );
    // A member already in the group may still rejoin.
    assert!(h.send(join("a", &["foo"])).is_ok());
}

#[test]
fn silent_member_is_removed_when_its_session_ends() {
    let mut h = two_stable_members();
    h.now_ms = 10_000;
    h.send(beat("a", 2, &[(FOO, &[0, 1])])).unwrap();
    assert_eq!(h.group.next_deadline(), Some(45_000));
    h.now_ms = 44_999;
    assert_eq!(h.expire(), vec![]);
    h.now_ms = 45_000;
    assert_eq!(
        h.expire(),
        vec![
            ConsumerGroupRecord::MemberRemoved {
                member_id: "b".to_string()
            },
            ConsumerGroupRecord::GroupMetadata { group_epoch: 3 },
            target("a", assignment(&[(FOO, &[0, 1, 2, 3])])),
            ConsumerGroupRecord::TargetAssignmentMetadata {
                assignment_epoch: 3
            },
        ]
    );
    assert_eq!(h.group.next_deadline(), Some(55_000));
    h.check_replay();
}

#[test]
fn member_that_does_not_revoke_in_time_is_removed() {
    let mut h = Harness::new();
    h.send(join("a", &["foo"])).unwrap();
    h.send(join("b", &["foo"])).unwrap();
    h.now_ms = 1_000;
    h.send(beat("a", 1, &[(FOO, &[0, 1, 2, 3])])).unwrap();
    assert_eq!(
        h.group.member("a").unwrap().revocation_deadline_ms,
        Some(61_000)
    );
    // Heartbeats keep the session alive but do not restart the revocation timer.
    for now_ms in [20_000, 40_000, 60_000] {
        h.now_ms = now_ms;
        h.send(beat("a", 1, &[(FOO, &[0, 1, 2, 3])])).unwrap();
        h.send(beat("b", 2, &[])).unwrap();
    }
    assert_eq!(h.group.next_deadline(), Some(61_000));
    h.now_ms = 61_000;
    let records = h.expire();
    assert_eq!(
        records[0],
        ConsumerGroupRecord::MemberRemoved {
            member_id: "a".to_string()
        }
    );
    assert_eq!(
        h.send(beat("b", 2, &[])),
        Ok((3, Some(assignment(&[(FOO, &[0, 1, 2, 3])]))))
    );
    h.check_replay();
}

#[test]
fn static_member_restarts_and_takes_back_its_assignment() {
    let mut h = Harness::new();
    h.send(join_static("a", "i-a", &["foo"])).unwrap();
    h.send(join("b", &["foo"])).unwrap();
    h.send(beat("a", 1, &[(FOO, &[0, 1, 2, 3])])).unwrap();
    h.send(beat("a", 1, &[(FOO, &[0, 1])])).unwrap();
    h.send(beat("b", 2, &[])).unwrap();

    // Another process with the same instance id cannot join while "a" is alive.
    assert_eq!(
        h.send(join_static("a2", "i-a", &["foo"])),
        Err(ResponseError::UnreleasedInstanceId)
    );

    // "a" leaves for a restart: it keeps its partitions; nobody else gets them.
    let static_leave = HeartbeatRequest {
        instance_id: Some("i-a".to_string()),
        ..beat("a", LEAVE_GROUP_STATIC_MEMBER_EPOCH, &[])
    };
    let outcome = h.outcome(static_leave).unwrap();
    assert_eq!(outcome.member_epoch, -2);
    assert_eq!(
        outcome.records,
        vec![current(
            "a",
            (-2, 2),
            MemberState::Stable,
            assignment(&[(FOO, &[0, 1])]),
            Assignment::new()
        )]
    );
    assert_eq!(h.send(beat("b", 2, &[(FOO, &[2, 3])])), Ok((2, None)));

    // The restarted process joins with a new member id and the same instance id: it takes over
    // without a rebalance.
    let outcome = h.outcome(join_static("a2", "i-a", &["foo"])).unwrap();
    assert_eq!(
        (outcome.member_epoch, outcome.assignment),
        (2, Some(assignment(&[(FOO, &[0, 1])])))
    );
    assert_eq!(h.group.group_epoch(), 2);
    assert_eq!(
        h.group.target_assignment("a2"),
        assignment(&[(FOO, &[0, 1])])
    );
    assert!(h.group.member("a").is_none());
    assert_eq!(h.group.state(), GroupState::Stable);

    // The old member id is fenced by the instance id.
    let old = HeartbeatRequest {
        instance_id: Some("i-a".to_string()),
        ..beat("a", 2, &[(FOO, &[0, 1])])
    };
    assert_eq!(h.send(old), Err(ResponseError::FencedInstanceId));
    h.check_replay();
}

#[test]
fn departed_static_member_is_removed_after_its_session() {
    let mut h = Harness::new();
    h.send(join_static("a", "i-a", &["foo"])).unwrap();
    h.send(join("b", &["foo"])).unwrap();
    let static_leave = HeartbeatRequest {
        instance_id: Some("i-a".to_string()),
        ..beat("a", LEAVE_GROUP_STATIC_MEMBER_EPOCH, &[])
    };
    h.now_ms = 5_000;
    h.send(static_leave).unwrap();
    h.now_ms = 40_000;
    h.send(beat("b", 2, &[])).unwrap();
    h.now_ms = 50_000;
    let records = h.expire();
    assert_eq!(
        records[0],
        ConsumerGroupRecord::MemberRemoved {
            member_id: "a".to_string()
        }
    );
    assert_eq!(
        h.send(beat("b", 2, &[])),
        Ok((3, Some(assignment(&[(FOO, &[0, 1, 2, 3])]))))
    );
    h.check_replay();
}

#[test]
fn changing_subscription_bumps_the_epoch_and_revokes() {
    let mut h = Harness::new();
    h.send(join("a", &["foo", "bar"])).unwrap();
    assert_eq!(h.group.member("a").unwrap().current.assigned.len(), 2);
    let resubscribe = HeartbeatRequest {
        subscribed_topic_names: Some(vec!["bar".to_string()]),
        ..beat("a", 1, &[(FOO, &[0, 1, 2, 3]), (BAR, &[0, 1])])
    };
    assert_eq!(
        h.send(resubscribe),
        Ok((1, Some(assignment(&[(BAR, &[0, 1])]))))
    );
    assert_eq!(h.group.group_epoch(), 2);
    assert_eq!(h.send(beat("a", 1, &[(BAR, &[0, 1])])), Ok((2, None)));
    h.check_replay();
}

#[test]
fn topic_metadata_changes_bump_the_epoch() {
    let mut h = Harness::new();
    h.send(join("a", &["foo", "baz"])).unwrap();
    assert_eq!(h.group.metadata_changed(&h.topics), vec![]);

    // foo grows to 6 partitions, and baz is created.
    h.topics.insert("foo", FOO, 6);
    h.topics.insert("baz", Uuid::from_u128(3), 1);
    let records = h.group.metadata_changed(&h.topics);
    h.log.extend(records.iter().cloned());
    assert_eq!(records.len(), 4, "{records:?}");
    assert_eq!(
        records[1],
        ConsumerGroupRecord::GroupMetadata { group_epoch: 2 }
    );
    assert_eq!(
        h.send(beat("a", 1, &[(FOO, &[0, 1, 2, 3])])),
        Ok((
            2,
            Some(assignment(&[
                (FOO, &[0, 1, 2, 3, 4, 5]),
                (Uuid::from_u128(3), &[0])
            ]))
        ))
    );
    // A heartbeat notices a deleted topic on its own.
    h.topics.remove("baz");
    assert_eq!(
        h.send(beat("a", 2, &[])),
        Ok((3, Some(assignment(&[(FOO, &[0, 1, 2, 3, 4, 5])]))))
    );
    h.check_replay();
}

#[test]
fn members_choose_the_server_assignor() {
    let mut h = Harness::new();
    let range = |id: &str| HeartbeatRequest {
        server_assignor: Some("range".to_string()),
        ..join(id, &["foo"])
    };
    h.send(range("a")).unwrap();
    h.send(range("b")).unwrap();
    assert_eq!(
        h.group.target_assignment("a"),
        assignment(&[(FOO, &[0, 1])])
    );
    assert_eq!(
        h.group.target_assignment("b"),
        assignment(&[(FOO, &[2, 3])])
    );
    assert_eq!(h.group.describe().assignor_name, "range");
}

#[test]
fn offset_commits_are_validated_against_member_epochs() {
    let mut h = Harness::new();
    assert_eq!(h.group.validate_offset_commit("", -1), Ok(()));
    h.send(join("a", &["foo"])).unwrap();
    assert_eq!(h.group.validate_offset_commit("a", 1), Ok(()));
    let code = |result: Result<(), GroupError>| result.map_err(|error| error.code());
    assert_eq!(
        code(h.group.validate_offset_commit("a", 0)),
        Err(ResponseError::StaleMemberEpoch)
    );
    assert_eq!(
        code(h.group.validate_offset_commit("", -1)),
        Err(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        code(h.group.validate_offset_commit("b", 1)),
        Err(ResponseError::UnknownMemberId)
    );
    assert_eq!(h.group.validate_offset_fetch(None, -1), Ok(()));
    assert_eq!(h.group.validate_offset_fetch(Some("a"), 1), Ok(()));
    assert_eq!(
        code(h.group.validate_offset_fetch(Some("a"), 2)),
        Err(ResponseError::StaleMemberEpoch)
    );
    assert_eq!(
        code(h.group.validate_offset_fetch(Some("b"), 1)),
        Err(ResponseError::UnknownMemberId)
    );
}

#[test]
fn describe_shows_members_and_targets() {
    let mut h = Harness::new();
    h.send(join("a", &["foo"])).unwrap();
    h.send(join("b", &["foo"])).unwrap();
    assert_eq!((h.group.group_id(), h.group.assignment_epoch()), ("g", 2));
    let description = h.group.describe();
    assert_eq!(description.group_id, "g");
    assert_eq!(
        (
            description.state,
            description.group_epoch,
            description.assignment_epoch
        ),
        (GroupState::Reconciling, 2, 2)
    );
    assert_eq!(description.assignor_name, "uniform");
    let b = &description.members[1];
    assert_eq!(b.member_id, "b");
    assert_eq!(b.member_epoch, 2);
    assert_eq!(
        (b.client_id.as_str(), b.client_host.as_str()),
        ("client", "/127.0.0.1")
    );
    assert_eq!(
        b.subscribed_topic_names,
        BTreeSet::from(["foo".to_string()])
    );
    assert_eq!(b.assignment, Assignment::new());
    assert_eq!(b.target_assignment, assignment(&[(FOO, &[2, 3])]));
}

#[test]
fn only_an_empty_group_is_deleted() {
    let mut h = Harness::new();
    h.send(join("a", &["foo"])).unwrap();
    assert_eq!(
        h.group.delete().map_err(|error| error.code()),
        Err(ResponseError::NonEmptyGroup)
    );
    h.send(leave("a")).unwrap();
    let records = h.group.delete().unwrap();
    assert_eq!(records, vec![ConsumerGroupRecord::GroupDeleted]);
    h.log.extend(records);
    assert_eq!(h.group.state(), GroupState::Dead);
    assert_eq!(
        h.send(join("a", &["foo"])),
        Err(ResponseError::CoordinatorNotAvailable)
    );
    // Records of a group created again under the same id bring it back.
    let mut replayed = ConsumerGroup::new("g", ConsumerGroupConfig::default());
    for record in h.log.clone() {
        replayed.replay(record);
    }
    assert_eq!(replayed, h.group);
    replayed.replay(ConsumerGroupRecord::GroupMetadata { group_epoch: 1 });
    assert_eq!(replayed.state(), GroupState::Empty);
}

/// One step of the simulation.
#[derive(Debug, Clone)]
enum Step {
    /// Client `n` heartbeats (joining if it is not in the group) and reads the response.
    Beat(usize),
    /// Client `n` heartbeats but the response is lost.
    Lost(usize),
    /// Client `n` finishes revoking what it was told to give up.
    Revoke(usize),
    /// Client `n` leaves.
    Leave(usize),
    /// Client `n` changes its subscription: bit 0 is foo, bit 1 bar.
    Subscribe(usize, u8),
    /// Client `n` asks for a server assignor.
    Assignor(usize, &'static str),
    /// The clock moves on.
    Tick,
}

/// A client in the simulation. Like a real consumer it starts consuming newly assigned
/// partitions at once but gives up revoked ones only later, once its callback has run, and it
/// reports what it really owns.
#[derive(Debug, Clone)]
struct Client {
    member_id: String,
    epoch: i32,
    /// What the client consumes now.
    owned: Assignment,
    /// What it was last told to own.
    assigned: Assignment,
    subscription: Vec<String>,
}

/// The topic names for a subscription mask.
fn names(mask: u8) -> Vec<String> {
    let mut names = Vec::new();
    if mask & 1 != 0 {
        names.push("foo".to_string());
    }
    if mask & 2 != 0 {
        names.push("bar".to_string());
    }
    names
}

/// Sends one heartbeat for a client, changed by `edit`, and, when `delivered`, applies the
/// response as the client would. A fenced client gives up everything and rejoins under its id on
/// its next heartbeat.
fn drive(
    h: &mut Harness,
    slot: &mut Option<Client>,
    id: usize,
    edit: impl FnOnce(&mut HeartbeatRequest),
    delivered: bool,
) {
    let mut request = match slot {
        Some(client) if client.epoch != JOIN_GROUP_MEMBER_EPOCH => {
            let owned_rows: Vec<(TopicId, Vec<i32>)> = client
                .owned
                .iter()
                .map(|(topic, partitions)| (*topic, partitions.iter().copied().collect()))
                .collect();
            HeartbeatRequest {
                topic_partitions: Some(owned_rows),
                ..beat(&client.member_id, client.epoch, &[])
            }
        }
        _ => {
            let previous = slot.as_ref().map(|client| client.subscription.clone());
            let names = previous.unwrap_or_else(|| names(1));
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            join(&format!("m{id}"), &names)
        }
    };
    edit(&mut request);
    let subscribed = request.subscribed_topic_names.clone();
    let outcome = match h.outcome(request) {
        Ok(outcome) => outcome,
        Err(ResponseError::FencedMemberEpoch) if delivered => {
            if let Some(client) = slot {
                client.epoch = JOIN_GROUP_MEMBER_EPOCH;
                client.owned.clear();
                client.assigned.clear();
            }
            return;
        }
        // The client never sees the error; it will heartbeat again and get it then.
        Err(_) if !delivered => return,
        Err(code) => panic!("m{id}: {code:?}"),
    };
    if !delivered {
        // A client whose join response was lost joins again under the same id.
        slot.get_or_insert_with(|| Client {
            member_id: format!("m{id}"),
            epoch: JOIN_GROUP_MEMBER_EPOCH,
            owned: Assignment::new(),
            assigned: Assignment::new(),
            subscription: subscribed.unwrap_or_default(),
        });
        return;
    }
    let client = slot.get_or_insert_with(|| Client {
        member_id: outcome.member_id.clone(),
        epoch: 0,
        owned: Assignment::new(),
        assigned: Assignment::new(),
        subscription: Vec::new(),
    });
    client.epoch = outcome.member_epoch;
    if let Some(assignment) = outcome.assignment {
        for (topic, partitions) in &assignment {
            client
                .owned
                .entry(*topic)
                .or_default()
                .extend(partitions.iter().copied());
        }
        client.assigned = assignment;
    }
    if let Some(subscribed) = subscribed {
        client.subscription = subscribed;
    }
}

/// The client gives up the partitions it was told to.
fn revoke(slot: &mut Option<Client>) {
    if let Some(client) = slot {
        client.owned = client.assigned.clone();
    }
}

/// No partition is owned by two clients.
fn check_exclusive(clients: &[Option<Client>]) {
    let mut owners = BTreeMap::new();
    for client in clients.iter().flatten() {
        for (topic, partition) in partitions_of(&client.owned) {
            let previous = owners.insert((topic, partition), &client.member_id);
            assert!(
                previous.is_none(),
                "{topic}-{partition} owned by {previous:?} and {}",
                client.member_id
            );
        }
    }
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..4usize).prop_map(Step::Beat),
        1 => (0..4usize).prop_map(Step::Lost),
        3 => (0..4usize).prop_map(Step::Revoke),
        1 => (0..4usize).prop_map(Step::Leave),
        1 => (0..4usize, 1..=3u8).prop_map(|(id, mask)| Step::Subscribe(id, mask)),
        1 => (0..4usize, prop_oneof![Just("uniform"), Just("range")])
            .prop_map(|(id, name)| Step::Assignor(id, name)),
        1 => Just(Step::Tick),
    ]
}

proptest! {
    #[test]
    fn members_never_share_a_partition_and_converge(steps in proptest::collection::vec(arb_step(), 1..80)) {
        let mut h = Harness::new();
        h.topics.insert("bar", BAR, 3);
        let mut clients: Vec<Option<Client>> = vec![None; 4];
        for step in steps {
            match step {
                Step::Beat(id) => drive(&mut h, &mut clients[id], id, |_| {}, true),
                Step::Lost(id) => drive(&mut h, &mut clients[id], id, |_| {}, false),
                Step::Revoke(id) => revoke(&mut clients[id]),
                Step::Subscribe(id, mask) => {
                    let subscribe = |request: &mut HeartbeatRequest| {
                        request.subscribed_topic_names = Some(names(mask));
                    };
                    drive(&mut h, &mut clients[id], id, subscribe, true);
                }
                Step::Assignor(id, name) => {
                    let choose = |request: &mut HeartbeatRequest| {
                        request.server_assignor = Some(name.to_string());
                    };
                    drive(&mut h, &mut clients[id], id, choose, true);
                }
                Step::Leave(id) => {
                    if let Some(client) = clients[id].take() {
                        // A fenced client that has not rejoined is no longer a member.
                        let left = h.send(leave(&client.member_id));
                        prop_assert!(left.is_ok() || client.epoch == JOIN_GROUP_MEMBER_EPOCH);
                    }
                }
                Step::Tick => h.now_ms += 1_000,
            }
            check_exclusive(&clients);
        }

        // Everyone keeps heartbeating and revoking: the group must settle on its target.
        for _ in 0..6 {
            for id in 0..clients.len() {
                if clients[id].is_some() {
                    drive(&mut h, &mut clients[id], id, |_| {}, true);
                    check_exclusive(&clients);
                    revoke(&mut clients[id]);
                }
            }
        }
        let state = h.group.state();
        prop_assert!(matches!(state, GroupState::Stable | GroupState::Empty), "{state:?}");
        for client in clients.iter().flatten() {
            prop_assert_eq!(&client.owned, &h.group.target_assignment(&client.member_id));
            prop_assert_eq!(client.epoch, h.group.group_epoch());
        }
        // The target is the assignor's fixed point, and every partition of a subscribed topic
        // is owned.
        if state == GroupState::Stable {
            let spec = h.group.assignment_spec();
            prop_assert_eq!(&h.group.preferred_assignor().assign(&spec), &h.group.target);
        }
        let owned: BTreeSet<(TopicId, i32)> = clients
            .iter()
            .flatten()
            .flat_map(|client| partitions_of(&client.owned).collect::<Vec<_>>())
            .collect();
        let subscribed: BTreeSet<String> =
            clients.iter().flatten().flat_map(|client| client.subscription.clone()).collect();
        let expected: BTreeSet<(TopicId, i32)> = subscribed
            .iter()
            .filter_map(|name| h.topics.get(name))
            .flat_map(|topic| (0..topic.partition_count).map(move |p| (topic.id, p)))
            .collect();
        prop_assert_eq!(owned, expected);
        h.check_replay();
    }
}

#[test]
fn errors_say_what_was_wrong_and_what_to_do() {
    let mut h = two_stable_members();
    let error = h
        .group
        .heartbeat(beat("a", 5, &[]), &topics(), 0)
        .unwrap_err();
    assert_eq!(error.code(), ResponseError::FencedMemberEpoch);
    assert_eq!(
        error.to_string(),
        "member a of group g sent epoch 5, but its epoch is 2; it must give up all its \
         partitions and rejoin with epoch 0"
    );
}

#[test]
fn static_member_rejoining_under_its_own_id_gets_its_partitions_back() {
    let mut h = Harness::new();
    h.send(join_static("a", "i-a", &["foo"])).unwrap();
    let static_leave = HeartbeatRequest {
        instance_id: Some("i-a".to_string()),
        ..beat("a", LEAVE_GROUP_STATIC_MEMBER_EPOCH, &[])
    };
    h.send(static_leave).unwrap();
    assert_eq!(
        h.send(join_static("a", "i-a", &["foo"])),
        Ok((1, Some(assignment(&[(FOO, &[0, 1, 2, 3])]))))
    );
    assert_eq!(h.group.group_epoch(), 1);
    assert_eq!(h.group.state(), GroupState::Stable);
    h.check_replay();
}
