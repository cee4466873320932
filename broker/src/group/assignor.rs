//! Server-side assignors: given who subscribes to what and who holds what, decide which member of
//! a consumer group owns each partition (the model of Kafka's KIP-848 `uniform` and `range`).
//!
//! An assignor is a pure function of an [`AssignmentSpec`]; the group coordinator runs it when the
//! group epoch is bumped and stores the result as the group's target assignment.
//!
//! Invariants of every assignor's output:
//! - every partition of every existing topic that some member subscribes to is assigned to exactly
//!   one member subscribed to that topic;
//! - nothing else is assigned (no unknown topic, no partition past the topic's count, no topic the
//!   member does not subscribe to);
//! - every member of the spec appears in the output, possibly with an empty assignment, and a topic
//!   appears in a member's assignment only with at least one partition;
//! - the output depends only on the spec (no randomness, no hash-map order), and running the
//!   assignor again on a spec whose current assignments are its own output changes nothing.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

/// A topic's id, as in Kafka's metadata (KIP-516).
pub(crate) type TopicId = Uuid;

/// The partitions of each topic that one member owns or should own.
pub(crate) type Assignment = BTreeMap<TopicId, BTreeSet<i32>>;

/// The assignment of every member of a group, by member id.
pub(crate) type GroupAssignment = BTreeMap<String, Assignment>;

/// What an assignor knows about one member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct MemberSpec {
    /// The topics the member subscribes to; ids of topics that do not exist are ignored.
    pub(crate) subscribed_topic_ids: BTreeSet<TopicId>,
    /// The member's rack; the assignors here do not use it yet.
    pub(crate) rack: Option<String>,
    /// The member's current target assignment, which the assignors try to keep (stickiness).
    pub(crate) current: Assignment,
}

/// Everything an assignor decides from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AssignmentSpec {
    /// The members, by member id; the order of the map is the order ties are broken in.
    pub(crate) members: BTreeMap<String, MemberSpec>,
    /// The partition count of every existing topic; a topic not here does not exist.
    pub(crate) partition_counts: BTreeMap<TopicId, i32>,
}

/// A server-side assignor, chosen by name in the `ConsumerGroupHeartbeat` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Assignor {
    /// Balanced and sticky across all of a member's topics (Kafka's `uniform`).
    Uniform,
    /// Contiguous ranges of each topic, sticky within each member's quota (Kafka's `range`).
    Range,
}

impl Assignor {
    /// The assignor used when no member names one, as in Kafka.
    pub(crate) const DEFAULT: Assignor = Assignor::Uniform;

    /// Every assignor, in the order the coordinator lists them.
    pub(crate) const ALL: [Assignor; 2] = [Assignor::Uniform, Assignor::Range];

    /// The assignor a client names, or `None` when this broker does not know it.
    pub(crate) fn by_name(name: &str) -> Option<Assignor> {
        Self::ALL
            .into_iter()
            .find(|assignor| assignor.name() == name)
    }

    /// The name clients use for this assignor.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Assignor::Uniform => "uniform",
            Assignor::Range => "range",
        }
    }

    /// Computes the target assignment of every member of `spec`.
    pub(crate) fn assign(self, spec: &AssignmentSpec) -> GroupAssignment {
        match self {
            Assignor::Uniform => assign_uniform(spec),
            Assignor::Range => assign_range(spec),
        }
    }
}

/// The partition count of `topic`, or `None` when it does not exist or has no partitions.
fn existing_count(spec: &AssignmentSpec, topic: &TopicId) -> Option<i32> {
    spec.partition_counts
        .get(topic)
        .copied()
        .filter(|&count| count > 0)
}

/// Each member's subscriptions restricted to topics that exist, in member order.
fn valid_subscriptions(spec: &AssignmentSpec) -> Vec<BTreeSet<TopicId>> {
    spec.members
        .values()
        .map(|member| {
            member
                .subscribed_topic_ids
                .iter()
                .filter(|topic| existing_count(spec, topic).is_some())
                .copied()
                .collect()
        })
        .collect()
}

/// Turns per-member assignments (in member order) into the output map.
fn into_group_assignment(spec: &AssignmentSpec, assigned: Vec<Assignment>) -> GroupAssignment {
    spec.members
        .keys()
        .cloned()
        .zip(assigned.into_iter().map(|mut assignment| {
            // A topic with no partition left must not show up as an empty entry.
            assignment.retain(|_, partitions| !partitions.is_empty());
            assignment
        }))
        .collect()
}

/// The `uniform` assignor.
///
/// 1. Every member keeps the partitions of its current assignment that are still valid (the topic
///    exists and is subscribed, the partition is within its count) and that no earlier member (in
///    member-id order) already kept.
/// 2. Each partition left over goes to the subscribed member with the fewest partitions.
/// 3. While some member has at least two partitions more than another member that subscribes to a
///    topic of one of them, one such partition moves to the lighter member, heaviest first.
///
/// Step 3 strictly lowers the sum of squared counts, so it ends; when it ends, no member can take a
/// partition it subscribes to from a member with two more, which with identical subscriptions
/// means counts differ by at most one. Partitions move only in step 3, and only away from members
/// above their share, which makes the assignor sticky: a joining member takes its share from the
/// heaviest members, and a leaving member's partitions go to the lightest.
fn assign_uniform(spec: &AssignmentSpec) -> GroupAssignment {
    let subscriptions = valid_subscriptions(spec);
    let member_count = spec.members.len();
    let mut assigned: Vec<Assignment> = vec![Assignment::new(); member_count];
    let mut counts = vec![0usize; member_count];
    let mut owned: BTreeSet<(TopicId, i32)> = BTreeSet::new();

    // Step 1: keep what is still valid.
    for (index, member) in spec.members.values().enumerate() {
        for (topic, partitions) in &member.current {
            let Some(count) = existing_count(spec, topic) else {
                continue;
            };
            if !subscriptions[index].contains(topic) {
                continue;
            }
            for &partition in partitions {
                if (0..count).contains(&partition) && owned.insert((*topic, partition)) {
                    assigned[index].entry(*topic).or_default().insert(partition);
                    counts[index] += 1;
                }
            }
        }
    }

    // Step 2: hand out the free partitions to the lightest subscribed member.
    let mut subscribers: BTreeMap<TopicId, Vec<usize>> = BTreeMap::new();
    for (index, topics) in subscriptions.iter().enumerate() {
        for topic in topics {
            subscribers.entry(*topic).or_default().push(index);
        }
    }
    for (topic, members) in &subscribers {
        let count = existing_count(spec, topic).unwrap_or(0);
        for partition in 0..count {
            if owned.contains(&(*topic, partition)) {
                continue;
            }
            let lightest = members
                .iter()
                .copied()
                .min_by_key(|&index| (counts[index], index));
            if let Some(index) = lightest {
                owned.insert((*topic, partition));
                assigned[index].entry(*topic).or_default().insert(partition);
                counts[index] += 1;
            }
        }
    }

    // Step 3: move partitions from heavy members to light ones until no move helps.
    while let Some((from, to, topic, partition)) =
        find_balancing_move(&subscriptions, &assigned, &counts)
    {
        if let Some(partitions) = assigned[from].get_mut(&topic) {
            partitions.remove(&partition);
        }
        assigned[to].entry(topic).or_default().insert(partition);
        counts[from] -= 1;
        counts[to] += 1;
    }

    into_group_assignment(spec, assigned)
}

/// The move of step 3 of [`assign_uniform`]: from the heaviest member that can give a partition to
/// a member with at least two fewer, to the lightest such member; `None` when balanced.
fn find_balancing_move(
    subscriptions: &[BTreeSet<TopicId>],
    assigned: &[Assignment],
    counts: &[usize],
) -> Option<(usize, usize, TopicId, i32)> {
    let mut heaviest_first: Vec<usize> = (0..counts.len()).collect();
    heaviest_first.sort_by_key(|&index| (std::cmp::Reverse(counts[index]), index));
    let mut lightest_first: Vec<usize> = (0..counts.len()).collect();
    lightest_first.sort_by_key(|&index| (counts[index], index));

    for &from in &heaviest_first {
        for &to in &lightest_first {
            if counts[to] + 2 > counts[from] {
                // Every later `to` is at least as heavy, so none can take from `from`.
                break;
            }
            let movable = assigned[from].iter().find_map(|(topic, partitions)| {
                if !subscriptions[to].contains(topic) {
                    return None;
                }
                // The highest partition moves so the lower ones stay where they are.
                partitions.last().map(|&partition| (*topic, partition))
            });
            if let Some((topic, partition)) = movable {
                return Some((from, to, topic, partition));
            }
        }
    }
    None
}

/// The `range` assignor, sticky like Kafka's server-side `range`.
///
/// For each topic, the `m` members subscribed to it, in member-id order, share its `n`
/// partitions: each gets a quota of `n / m`, and `n % m` of them one more. The extra partitions go
/// first to members that currently hold more than `n / m` partitions of the topic, then to the
/// first members in order. Each member keeps its lowest current partitions up to its quota; the
/// partitions left over are handed out in ascending order to the members below quota, in member
/// order. Without a current assignment this gives Kafka's contiguous ranges (the first `n % m`
/// members get one extra); with one, a member keeps what fits in its quota, so its range may have
/// holes.
fn assign_range(spec: &AssignmentSpec) -> GroupAssignment {
    let subscriptions = valid_subscriptions(spec);
    let mut assigned: Vec<Assignment> = vec![Assignment::new(); spec.members.len()];
    let currents: Vec<&Assignment> = spec
        .members
        .values()
        .map(|member| &member.current)
        .collect();

    for (&topic, &count) in &spec.partition_counts {
        if count <= 0 {
            continue;
        }
        let members: Vec<usize> = (0..subscriptions.len())
            .filter(|&index| subscriptions[index].contains(&topic))
            .collect();
        if members.is_empty() {
            continue;
        }
        let partitions = usize::try_from(count).unwrap_or(0);
        let base = partitions / members.len();
        let mut extra = partitions % members.len();

        // What each member could keep, lowest first; a partition claimed by two members is kept
        // only by the first, so the output never assigns it twice.
        let mut claimed: BTreeSet<i32> = BTreeSet::new();
        let retained: Vec<Vec<i32>> = members
            .iter()
            .map(|&index| {
                currents[index]
                    .get(&topic)
                    .into_iter()
                    .flatten()
                    .copied()
                    .filter(|&partition| (0..count).contains(&partition))
                    .filter(|&partition| claimed.insert(partition))
                    .collect()
            })
            .collect();

        let mut quotas = vec![base; members.len()];
        for (slot, kept) in retained.iter().enumerate() {
            if extra > 0 && kept.len() > base {
                quotas[slot] += 1;
                extra -= 1;
            }
        }
        for quota in &mut quotas {
            if extra > 0 && *quota == base {
                *quota += 1;
                extra -= 1;
            }
        }

        let mut taken: BTreeSet<i32> = BTreeSet::new();
        let mut topic_assignment: Vec<BTreeSet<i32>> = vec![BTreeSet::new(); members.len()];
        for (slot, kept) in retained.iter().enumerate() {
            for &partition in kept.iter().take(quotas[slot]) {
                taken.insert(partition);
                topic_assignment[slot].insert(partition);
            }
        }
        let mut free = (0..count).filter(|partition| !taken.contains(partition));
        for (slot, partitions) in topic_assignment.iter_mut().enumerate() {
            while partitions.len() < quotas[slot] {
                match free.next() {
                    Some(partition) => partitions.insert(partition),
                    None => break,
                };
            }
        }
        for (slot, partitions) in topic_assignment.into_iter().enumerate() {
            assigned[members[slot]].insert(topic, partitions);
        }
    }

    into_group_assignment(spec, assigned)
}

#[cfg(test)]
#[path = "assignor_tests.rs"]
mod tests;
