//! Tests of the server-side assignors: exact expectations for small groups, then properties.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

/// The topic id used for topic number `n` in these tests.
fn topic(n: u128) -> TopicId {
    Uuid::from_u128(n)
}

/// One member of a test spec: id, subscribed topic numbers, current `(topic, partitions)`.
type MemberRow<'a> = (&'a str, &'a [u128], &'a [(u128, &'a [i32])]);

/// Builds an assignment from `(topic number, partitions)` pairs.
fn assignment(rows: &[(u128, &[i32])]) -> Assignment {
    rows.iter()
        .map(|(t, partitions)| (topic(*t), partitions.iter().copied().collect()))
        .collect()
}

/// Builds a spec from member rows and `(topic number, partition count)` pairs.
fn spec(members: &[MemberRow<'_>], counts: &[(u128, i32)]) -> AssignmentSpec {
    AssignmentSpec {
        members: members
            .iter()
            .map(|(id, subscribed, current)| {
                let member = MemberSpec {
                    subscribed_topic_ids: subscribed.iter().map(|t| topic(*t)).collect(),
                    rack: None,
                    current: assignment(current),
                };
                (id.to_string(), member)
            })
            .collect(),
        partition_counts: counts.iter().map(|(t, n)| (topic(*t), *n)).collect(),
    }
}

/// One member of an expected output: id and `(topic number, partitions)`.
type ExpectedRow<'a> = (&'a str, &'a [(u128, &'a [i32])]);

/// Builds an expected output from member rows.
fn expected(rows: &[ExpectedRow<'_>]) -> GroupAssignment {
    rows.iter()
        .map(|(id, assigned)| (id.to_string(), assignment(assigned)))
        .collect()
}

/// Runs `assignor` on the spec and compares with the expected output.
fn check(
    assignor: Assignor,
    members: &[MemberRow<'_>],
    counts: &[(u128, i32)],
    want: GroupAssignment,
) {
    assert_eq!(assignor.assign(&spec(members, counts)), want);
}

#[test]
fn names() {
    assert_eq!(Assignor::by_name("uniform"), Some(Assignor::Uniform));
    assert_eq!(Assignor::by_name("range"), Some(Assignor::Range));
    assert_eq!(Assignor::by_name("sticky"), None);
    assert_eq!(Assignor::DEFAULT.name(), "uniform");
}

#[test]
fn uniform_one_member_gets_everything() {
    check(
        Assignor::Uniform,
        &[("a", &[1], &[])],
        &[(1, 3)],
        expected(&[("a", &[(1, &[0, 1, 2])])]),
    );
}

#[test]
fn uniform_fresh_two_members_alternate() {
    check(
        Assignor::Uniform,
        &[("a", &[1], &[]), ("b", &[1], &[])],
        &[(1, 4)],
        expected(&[("a", &[(1, &[0, 2])]), ("b", &[(1, &[1, 3])])]),
    );
}

#[test]
fn uniform_joining_member_takes_only_the_excess() {
    check(
        Assignor::Uniform,
        &[("a", &[1], &[(1, &[0, 1, 2, 3])]), ("b", &[1], &[])],
        &[(1, 4)],
        expected(&[("a", &[(1, &[0, 1])]), ("b", &[(1, &[2, 3])])]),
    );
}

#[test]
fn uniform_leaving_member_frees_only_its_own() {
    // "c" held 2 and 5; they go to the lightest members, nothing else moves.
    check(
        Assignor::Uniform,
        &[("a", &[1], &[(1, &[0, 3])]), ("b", &[1], &[(1, &[1, 4])])],
        &[(1, 6)],
        expected(&[("a", &[(1, &[0, 2, 3])]), ("b", &[(1, &[1, 4, 5])])]),
    );
}

#[test]
fn uniform_balances_as_far_as_subscriptions_allow() {
    check(
        Assignor::Uniform,
        &[("a", &[1], &[]), ("b", &[1, 2], &[])],
        &[(1, 2), (2, 4)],
        expected(&[("a", &[(1, &[0, 1])]), ("b", &[(2, &[0, 1, 2, 3])])]),
    );
}

#[test]
fn uniform_drops_invalid_current_partitions() {
    // Topic 9 does not exist, topic 2 is not subscribed, partition 7 is past topic 1's count, and
    // "b" claims a partition "a" already keeps.
    check(
        Assignor::Uniform,
        &[
            ("a", &[1, 9], &[(1, &[0, 7]), (2, &[0])]),
            ("b", &[1], &[(1, &[0])]),
        ],
        &[(1, 2), (2, 1)],
        expected(&[("a", &[(1, &[0])]), ("b", &[(1, &[1])])]),
    );
}

#[test]
fn uniform_member_without_valid_subscription_is_present_and_empty() {
    check(
        Assignor::Uniform,
        &[("a", &[1], &[]), ("b", &[9], &[])],
        &[(1, 1)],
        expected(&[("a", &[(1, &[0])]), ("b", &[])]),
    );
}

#[test]
fn range_fresh_gives_contiguous_ranges_extra_first() {
    check(
        Assignor::Range,
        &[("a", &[1], &[]), ("b", &[1], &[])],
        &[(1, 5)],
        expected(&[("a", &[(1, &[0, 1, 2])]), ("b", &[(1, &[3, 4])])]),
    );
}

#[test]
fn range_splits_each_topic_among_its_subscribers() {
    check(
        Assignor::Range,
        &[("a", &[1, 2], &[]), ("b", &[1], &[])],
        &[(1, 3), (2, 2)],
        expected(&[("a", &[(1, &[0, 1]), (2, &[0, 1])]), ("b", &[(1, &[2])])]),
    );
}

#[test]
fn range_joining_member_takes_the_upper_range() {
    check(
        Assignor::Range,
        &[("a", &[1], &[(1, &[0, 1, 2, 3])]), ("b", &[1], &[])],
        &[(1, 4)],
        expected(&[("a", &[(1, &[0, 1])]), ("b", &[(1, &[2, 3])])]),
    );
}

#[test]
fn range_is_sticky_within_quotas() {
    // "a" holds more than the base quota first, so it keeps the one extra partition.
    check(
        Assignor::Range,
        &[
            ("a", &[1], &[(1, &[1, 3])]),
            ("b", &[1], &[(1, &[0, 2])]),
            ("c", &[1], &[]),
        ],
        &[(1, 4)],
        expected(&[
            ("a", &[(1, &[1, 3])]),
            ("b", &[(1, &[0])]),
            ("c", &[(1, &[2])]),
        ]),
    );
}

/// Strategy: topics 1..=4 with 0..=6 partitions each (topic 5 never exists), and 1..=5 members
/// subscribing to random topics with random current assignments.
fn arb_spec() -> impl Strategy<Value = AssignmentSpec> {
    let counts = proptest::collection::vec(0..=6i32, 4);
    let member = (
        proptest::collection::btree_set(1..=5u128, 0..=4),
        proptest::collection::btree_map(
            1..=5u128,
            proptest::collection::btree_set(0..8i32, 0..4),
            0..3,
        ),
    );
    (counts, proptest::collection::vec(member, 1..=5)).prop_map(|(counts, members)| {
        AssignmentSpec {
            members: members
                .into_iter()
                .enumerate()
                .map(|(index, (subscribed, current))| {
                    let member = MemberSpec {
                        subscribed_topic_ids: subscribed.into_iter().map(topic).collect(),
                        rack: None,
                        current: current.into_iter().map(|(t, p)| (topic(t), p)).collect(),
                    };
                    (format!("m{index}"), member)
                })
                .collect(),
            partition_counts: counts
                .into_iter()
                .enumerate()
                .map(|(index, count)| (topic(index as u128 + 1), count))
                .collect(),
        }
    })
}

/// Checks the invariants every assignor's output keeps (see the module doc).
fn check_valid(spec: &AssignmentSpec, output: &GroupAssignment) {
    assert_eq!(
        output.keys().collect::<Vec<_>>(),
        spec.members.keys().collect::<Vec<_>>()
    );
    let mut owners: BTreeMap<(TopicId, i32), &str> = BTreeMap::new();
    for (id, assigned) in output {
        let member = &spec.members[id];
        for (topic, partitions) in assigned {
            assert!(
                !partitions.is_empty(),
                "{id} has an empty entry for {topic}"
            );
            assert!(
                member.subscribed_topic_ids.contains(topic),
                "{id} is not subscribed to {topic}"
            );
            let count = spec.partition_counts.get(topic).copied().unwrap_or(0);
            for &partition in partitions {
                assert!(
                    (0..count).contains(&partition),
                    "{topic}-{partition} does not exist"
                );
                let previous = owners.insert((*topic, partition), id);
                assert!(previous.is_none(), "{topic}-{partition} assigned twice");
            }
        }
    }
    for (topic, &count) in &spec.partition_counts {
        let subscribed = spec
            .members
            .values()
            .any(|member| member.subscribed_topic_ids.contains(topic));
        if subscribed {
            for partition in 0..count {
                assert!(
                    owners.contains_key(&(*topic, partition)),
                    "{topic}-{partition} unassigned"
                );
            }
        }
    }
}

/// The number of partitions each member is assigned.
fn counts(output: &GroupAssignment) -> BTreeMap<&str, usize> {
    output
        .iter()
        .map(|(id, assigned)| (id.as_str(), assigned.values().map(BTreeSet::len).sum()))
        .collect()
}

/// The spec whose current assignments are `output`.
fn with_current(spec: &AssignmentSpec, output: &GroupAssignment) -> AssignmentSpec {
    let mut next = spec.clone();
    for (id, member) in &mut next.members {
        member.current = output[id].clone();
    }
    next
}

proptest! {
    #[test]
    fn uniform_is_valid_balanced_and_stable(spec in arb_spec()) {
        let output = Assignor::Uniform.assign(&spec);
        check_valid(&spec, &output);
        let counts = counts(&output);
        for (heavy, &heavy_count) in &counts {
            for (light, &light_count) in &counts {
                if heavy_count >= light_count + 2 {
                    let subscribed = &spec.members[*light].subscribed_topic_ids;
                    prop_assert!(
                        output[*heavy].keys().all(|topic| !subscribed.contains(topic)),
                        "{light} could take a partition from {heavy}: {output:?}"
                    );
                }
            }
        }
        prop_assert_eq!(Assignor::Uniform.assign(&with_current(&spec, &output)), output);
    }

    #[test]
    fn range_is_valid_balanced_per_topic_and_stable(spec in arb_spec()) {
        let output = Assignor::Range.assign(&spec);
        check_valid(&spec, &output);
        for topic in spec.partition_counts.keys() {
            let sizes: Vec<usize> = spec
                .members
                .iter()
                .filter(|(_, member)| member.subscribed_topic_ids.contains(topic))
                .map(|(id, _)| output[id].get(topic).map_or(0, BTreeSet::len))
                .collect();
            if let (Some(max), Some(min)) = (sizes.iter().max(), sizes.iter().min()) {
                prop_assert!(max - min <= 1, "{topic}: {sizes:?}");
            }
        }
        prop_assert_eq!(Assignor::Range.assign(&with_current(&spec, &output)), output);
    }

    #[test]
    fn uniform_homogeneous_join_moves_at_most_a_share(
        members in 1..=6usize,
        topic_counts in proptest::collection::vec(0..=12i32, 1..=3),
    ) {
        let topics: BTreeSet<TopicId> = (1..=topic_counts.len() as u128).map(topic).collect();
        let mut spec = AssignmentSpec {
            members: (0..members)
                .map(|index| {
                    let member = MemberSpec {
                        subscribed_topic_ids: topics.clone(),
                        ..MemberSpec::default()
                    };
                    (format!("m{index}"), member)
                })
                .collect(),
            partition_counts: topics.iter().copied().zip(topic_counts.iter().copied()).collect(),
        };
        let before = Assignor::Uniform.assign(&spec);
        let before_counts = counts(&before);
        let max = before_counts.values().max().copied().unwrap_or(0);
        let min = before_counts.values().min().copied().unwrap_or(0);
        prop_assert!(max - min <= 1);

        spec = with_current(&spec, &before);
        let joiner = MemberSpec { subscribed_topic_ids: topics.clone(), ..MemberSpec::default() };
        spec.members.insert("new".to_string(), joiner);
        let after = Assignor::Uniform.assign(&spec);
        check_valid(&spec, &after);

        let total: usize = topic_counts.iter().map(|&count| count as usize).sum();
        let share = total.div_ceil(members + 1);
        let moved = before
            .iter()
            .flat_map(|(id, assigned)| {
                assigned.iter().flat_map(move |(topic, partitions)| {
                    partitions.iter().map(move |partition| (id, *topic, *partition))
                })
            })
            .filter(|(id, topic, partition)| {
                !after[*id].get(topic).is_some_and(|kept| kept.contains(partition))
            })
            .count();
        prop_assert!(moved <= share, "moved {moved} of {total} with share {share}");
    }
}
