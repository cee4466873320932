//! The metadata state machine and the controller's decisions, fed records and checked exactly.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::decisions::{self, DecisionError, IsrProposal};
use super::testing::{incarnation, register, topic};
use super::*;

fn topic_id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

fn unfence(broker_id: BrokerId) -> MetadataRecord {
    MetadataRecord::UnfenceBroker {
        broker_id,
        incarnation: incarnation(broker_id),
    }
}

/// Metadata with live brokers 1..=n (racks from `racks`, cycled, if given).
fn cluster(n: BrokerId, racks: &[&str]) -> ClusterMetadata {
    let mut metadata = ClusterMetadata::default();
    for id in 1..=n {
        let rack = (!racks.is_empty()).then(|| racks[(id as usize - 1) % racks.len()]);
        apply_all(&mut metadata, &[register(id, rack), unfence(id)]);
    }
    metadata
}

fn apply_all(metadata: &mut ClusterMetadata, records: &[MetadataRecord]) {
    for record in records {
        metadata
            .apply(record)
            .unwrap_or_else(|e| panic!("{record:?}: {e}"));
    }
}

fn partition(replicas: &[BrokerId], isr: &[BrokerId], leader: Option<BrokerId>) -> Partition {
    Partition {
        replicas: replicas.to_vec(),
        isr: isr.to_vec(),
        leader,
        leader_epoch: 0,
        partition_epoch: 0,
    }
}

/// Creates topic `name` with the given replica lists (partition i gets `assignments[i]`).
fn with_topic(metadata: &mut ClusterMetadata, name: &str, id: Uuid, assignments: &[&[BrokerId]]) {
    apply_all(metadata, &topic(name, id, BTreeMap::new(), assignments));
}

#[test]
fn brokers_register_fenced_and_a_new_incarnation_replaces_the_old() {
    let mut metadata = ClusterMetadata::default();
    metadata.apply(&register(1, Some("a"))).unwrap();
    assert_eq!(metadata.broker(1).map(|b| b.fenced), Some(true));
    metadata.apply(&unfence(1)).unwrap();
    assert!(metadata.is_live(1));

    // A restart registers a new incarnation, fenced again; the old one's records are stale.
    let mut restarted = register(1, Some("a"));
    if let MetadataRecord::RegisterBroker(record) = &mut restarted {
        record.incarnation = Uuid::from_u128(7);
    }
    metadata.apply(&restarted).unwrap();
    assert!(!metadata.is_live(1));
    let before = metadata.clone();
    assert_eq!(
        metadata.apply(&unfence(1)),
        Err(ApplyError::StaleIncarnation {
            broker_id: 1,
            current: Uuid::from_u128(7),
            given: incarnation(1),
        })
    );
    assert_eq!(metadata, before, "a refused record changes nothing");
    assert_eq!(
        metadata.apply(&unfence(9)),
        Err(ApplyError::UnknownBroker(9))
    );
}

#[test]
fn partition_changes_bump_epochs_exactly() {
    let mut metadata = cluster(3, &[]);
    with_topic(&mut metadata, "t", topic_id(1), &[&[1, 2, 3]]);
    let change = |leader, isr: Option<&[BrokerId]>| {
        MetadataRecord::PartitionChange(PartitionChangeRecord {
            topic_id: topic_id(1),
            partition: 0,
            leader,
            isr: isr.map(<[BrokerId]>::to_vec),
            replicas: None,
        })
    };
    let state =
        |metadata: &ClusterMetadata| metadata.topic(topic_id(1)).unwrap().partitions[0].clone();

    metadata.apply(&change(None, Some(&[1, 2]))).unwrap();
    let expected = Partition {
        partition_epoch: 1,
        ..partition(&[1, 2, 3], &[1, 2], Some(1))
    };
    assert_eq!(state(&metadata), expected);

    metadata.apply(&change(Some(Some(2)), Some(&[2]))).unwrap();
    let expected = Partition {
        leader_epoch: 1,
        partition_epoch: 2,
        ..partition(&[1, 2, 3], &[2], Some(2))
    };
    assert_eq!(state(&metadata), expected);

    metadata.apply(&change(Some(None), None)).unwrap();
    let expected = Partition {
        leader_epoch: 2,
        partition_epoch: 3,
        ..partition(&[1, 2, 3], &[2], None)
    };
    assert_eq!(state(&metadata), expected);

    // Impossible states are refused: a leader outside the ISR, an empty ISR.
    let before = metadata.clone();
    assert!(metadata.apply(&change(Some(Some(3)), None)).is_err());
    assert!(metadata.apply(&change(None, Some(&[]))).is_err());
    assert_eq!(metadata, before);
}

#[test]
fn topics_are_created_and_removed_by_record() {
    let mut metadata = cluster(3, &[]);
    with_topic(&mut metadata, "orders", topic_id(1), &[&[1, 2], &[2, 3]]);
    let topic = metadata.topic_by_name("orders").unwrap();
    assert_eq!(topic.id, topic_id(1));
    assert_eq!(
        topic.partitions,
        vec![
            partition(&[1, 2], &[1, 2], Some(1)),
            partition(&[2, 3], &[2, 3], Some(2))
        ]
    );

    let duplicate = MetadataRecord::Topic(TopicRecord {
        name: "orders".into(),
        topic_id: topic_id(2),
        configs: BTreeMap::new(),
    });
    assert_eq!(
        metadata.apply(&duplicate),
        Err(ApplyError::DuplicateTopicName("orders".into()))
    );
    let out_of_order = MetadataRecord::Partition(PartitionRecord {
        topic_id: topic_id(1),
        partition: 5,
        replicas: vec![1],
        isr: vec![1],
        leader: Some(1),
        leader_epoch: 0,
        partition_epoch: 0,
    });
    assert!(matches!(
        metadata.apply(&out_of_order),
        Err(ApplyError::BadPartition { partition: 5, .. })
    ));

    metadata
        .apply(&MetadataRecord::RemoveTopic {
            topic_id: topic_id(1),
        })
        .unwrap();
    assert!(metadata.topic_by_name("orders").is_none());
    assert_eq!(
        metadata.apply(&MetadataRecord::RemoveTopic {
            topic_id: topic_id(1)
        }),
        Err(ApplyError::UnknownTopic(topic_id(1)))
    );
}

#[test]
fn fencing_a_leader_elects_the_next_isr_member_or_takes_the_partition_offline() {
    let mut metadata = cluster(3, &[]);
    // p0: led by 1, ISR {1,2,3}; p1: led by 2, 1 a follower; p2: only 1 in sync; p3: no 1.
    with_topic(
        &mut metadata,
        "t",
        topic_id(1),
        &[&[1, 2, 3], &[2, 1, 3], &[1, 3], &[2, 3]],
    );
    let shrink = |partition: i32, isr: &[BrokerId]| {
        MetadataRecord::PartitionChange(PartitionChangeRecord {
            topic_id: topic_id(1),
            partition,
            leader: None,
            isr: Some(isr.to_vec()),
            replicas: None,
        })
    };
    apply_all(&mut metadata, &[shrink(2, &[1])]);

    let records = decisions::fence_broker(&metadata, 1);
    let change = |partition, leader, isr: Option<&[BrokerId]>| {
        MetadataRecord::PartitionChange(PartitionChangeRecord {
            topic_id: topic_id(1),
            partition,
            leader,
            isr: isr.map(<[BrokerId]>::to_vec),
            replicas: None,
        })
    };
    assert_eq!(
        records,
        vec![
            MetadataRecord::FenceBroker {
                broker_id: 1,
                incarnation: incarnation(1)
            },
            change(0, Some(Some(2)), Some(&[2, 3])),
            change(1, None, Some(&[2, 3])),
            change(2, Some(None), None),
        ]
    );
    apply_all(&mut metadata, &records);
    let partitions = &metadata.topic(topic_id(1)).unwrap().partitions;
    assert_eq!(
        (partitions[0].leader, partitions[0].leader_epoch),
        (Some(2), 1)
    );
    assert_eq!(
        (partitions[2].leader, partitions[2].isr.clone()),
        (None, vec![1])
    );
    assert_eq!(partitions[3].partition_epoch, 0, "untouched");

    // When 1 comes back, it leads the partition it was the last in-sync replica of.
    let records = decisions::unfence_broker(&metadata, 1);
    assert_eq!(records, vec![unfence(1), change(2, Some(Some(1)), None)]);
    apply_all(&mut metadata, &records);
    assert_eq!(
        metadata.topic(topic_id(1)).unwrap().partitions[2].leader,
        Some(1)
    );
}

#[test]
fn unclean_election_picks_a_live_out_of_sync_replica_when_the_topic_allows_it() {
    let mut metadata = cluster(2, &[]);
    let configs = BTreeMap::from([(
        decisions::UNCLEAN_LEADER_ELECTION.to_string(),
        "true".to_string(),
    )]);
    apply_all(
        &mut metadata,
        &[
            MetadataRecord::Topic(TopicRecord {
                name: "u".into(),
                topic_id: topic_id(3),
                configs,
            }),
            MetadataRecord::Partition(PartitionRecord {
                topic_id: topic_id(3),
                partition: 0,
                replicas: vec![1, 2],
                isr: vec![1],
                leader: Some(1),
                leader_epoch: 0,
                partition_epoch: 0,
            }),
        ],
    );
    let records = decisions::fence_broker(&metadata, 1);
    assert_eq!(
        records[1],
        MetadataRecord::PartitionChange(PartitionChangeRecord {
            topic_id: topic_id(3),
            partition: 0,
            leader: Some(Some(2)),
            isr: Some(vec![2]),
            replicas: None,
        })
    );
}

#[test]
fn stale_isr_proposals_are_refused() {
    let mut metadata = cluster(3, &[]);
    with_topic(&mut metadata, "t", topic_id(1), &[&[1, 2, 3]]);
    let proposal = IsrProposal {
        topic_id: topic_id(1),
        partition: 0,
        proposer: 1,
        leader_epoch: 0,
        partition_epoch: 0,
        isr: vec![3, 1],
    };
    let accepted = decisions::change_isr(&metadata, &proposal).unwrap();
    assert_eq!(
        accepted,
        MetadataRecord::PartitionChange(PartitionChangeRecord {
            topic_id: topic_id(1),
            partition: 0,
            leader: None,
            isr: Some(vec![1, 3]),
            replicas: None,
        })
    );
    apply_all(&mut metadata, &[accepted]);

    let check = |metadata: &ClusterMetadata, proposal: IsrProposal, reason: &str| {
        match decisions::change_isr(metadata, &proposal) {
            Err(DecisionError::IsrChange(why)) => assert!(why.contains(reason), "{why}"),
            other => panic!("expected a refusal ({reason}), got {other:?}"),
        }
    };
    // The same proposal again: the partition epoch moved on.
    check(&metadata, proposal.clone(), "stale partition epoch");
    let current = IsrProposal {
        partition_epoch: 1,
        ..proposal.clone()
    };
    check(
        &metadata,
        IsrProposal {
            proposer: 2,
            ..current.clone()
        },
        "not the leader",
    );
    check(
        &metadata,
        IsrProposal {
            leader_epoch: 1,
            ..current.clone()
        },
        "not the leader",
    );
    check(
        &metadata,
        IsrProposal {
            isr: vec![2, 3],
            ..current.clone()
        },
        "must hold the leader",
    );
    check(
        &metadata,
        IsrProposal {
            isr: vec![1, 4],
            ..current.clone()
        },
        "not a replica",
    );
    apply_all(
        &mut metadata,
        &[MetadataRecord::FenceBroker {
            broker_id: 2,
            incarnation: incarnation(2),
        }],
    );
    check(
        &metadata,
        IsrProposal {
            isr: vec![1, 2, 3],
            ..current
        },
        "adds a fenced broker",
    );
}

#[test]
fn replicas_are_spread_over_brokers_and_racks() {
    let metadata = cluster(6, &["a", "b", "c"]);
    let placement = decisions::place_replicas(&metadata, 6, 3, 0).unwrap();
    let rack = |id: BrokerId| ["a", "b", "c"][(id as usize - 1) % 3];
    for replicas in &placement {
        let mut racks: Vec<&str> = replicas.iter().map(|&id| rack(id)).collect();
        racks.sort_unstable();
        assert_eq!(racks, ["a", "b", "c"], "{replicas:?}");
    }
    let mut leaders: Vec<BrokerId> = placement.iter().map(|r| r[0]).collect();
    leaders.sort_unstable();
    assert_eq!(
        leaders,
        [1, 2, 3, 4, 5, 6],
        "leaders rotate over every broker"
    );
    let mut load = BTreeMap::new();
    for id in placement.iter().flatten() {
        *load.entry(*id).or_insert(0) += 1;
    }
    assert!(
        load.values().all(|&n| n == 3),
        "every broker holds 3 replicas: {load:?}"
    );

    assert_eq!(
        decisions::place_replicas(&metadata, 1, 7, 0),
        Err(DecisionError::ReplicationFactorTooHigh {
            requested: 7,
            live: 6
        })
    );
    assert_eq!(
        decisions::place_replicas(&metadata, 0, 1, 0),
        Err(DecisionError::InvalidPartitionCount(0))
    );
    let error = decisions::place_replicas(&metadata, 10_001, 1, 0).unwrap_err();
    assert_eq!(error, DecisionError::TooManyPartitions(10_001));
    assert!(
        error.to_string().contains("create them in steps"),
        "{error}"
    );
}

#[test]
fn topic_creation_checks_its_input_and_changes_nothing_when_refused() {
    let mut metadata = cluster(3, &[]);
    let create = |metadata: &ClusterMetadata, name: &str, partitions, factor| {
        decisions::create_topic(
            metadata,
            name,
            topic_id(9),
            partitions,
            factor,
            BTreeMap::new(),
            0,
        )
    };
    let records = create(&metadata, "events", 2, 2).unwrap();
    assert_eq!(records.len(), 3);
    apply_all(&mut metadata, &records);
    let topic = metadata.topic_by_name("events").unwrap();
    assert_eq!(topic.partitions.len(), 2);
    assert!(
        topic
            .partitions
            .iter()
            .all(|p| p.leader == Some(p.replicas[0]) && p.isr == p.replicas)
    );

    assert_eq!(
        create(&metadata, "events", 1, 1),
        Err(DecisionError::TopicExists("events".into()))
    );
    assert!(matches!(
        create(&metadata, "bad name", 1, 1),
        Err(DecisionError::InvalidTopicName { .. })
    ));
    assert!(matches!(
        create(&metadata, "..", 1, 1),
        Err(DecisionError::InvalidTopicName { .. })
    ));
    assert!(matches!(
        create(&metadata, &"x".repeat(250), 1, 1),
        Err(DecisionError::InvalidTopicName { .. })
    ));
    assert_eq!(
        create(&metadata, "big", 1, 4),
        Err(DecisionError::ReplicationFactorTooHigh {
            requested: 4,
            live: 3
        })
    );
    let message = create(&metadata, "bad/name", 1, 1).unwrap_err().to_string();
    assert_eq!(
        message,
        "invalid topic name \"bad/name\": only ASCII letters, digits, '.', '_' and '-' are allowed"
    );
}

#[test]
fn sessions_expire_for_live_brokers_not_heard_from_in_time() {
    let mut metadata = cluster(4, &[]);
    apply_all(
        &mut metadata,
        &[MetadataRecord::FenceBroker {
            broker_id: 4,
            incarnation: incarnation(4),
        }],
    );
    // 1: too long ago; 2: exactly the timeout (not expired); 3: never heard from; 4: fenced.
    let last = BTreeMap::from([(1, 0), (2, 500), (4, 0)]);
    assert_eq!(
        decisions::expired_sessions(&metadata, &last, 1_500, 1_000),
        vec![1]
    );
}
