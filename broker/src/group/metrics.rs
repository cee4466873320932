//! The group coordinator's metrics, through the `metrics` facade: members and state of each
//! group this broker coordinates, rebalances, and each group's lag per partition.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Once;

use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};

const GROUPS: &str = "weir_groups";
const MEMBERS: &str = "weir_group_members";
const REBALANCES: &str = "weir_group_rebalances_total";
const LAG: &str = "weir_group_lag_records";
const COMMITTED: &str = "weir_group_committed_offset";

/// Every state a group may be reported in (so a state with no group reads 0, not stale).
pub(crate) const STATES: &[&str] = &[
    "Empty",
    "PreparingRebalance",
    "CompletingRebalance",
    "Stable",
];

/// Registers each metric's description and unit, once per process.
pub(crate) fn describe() {
    static DESCRIBED: Once = Once::new();
    DESCRIBED.call_once(|| {
        describe_gauge!(
            GROUPS,
            Unit::Count,
            "Groups this broker coordinates, by state (label state)."
        );
        describe_gauge!(
            MEMBERS,
            Unit::Count,
            "Members of each group this broker coordinates (label group)."
        );
        describe_counter!(
            REBALANCES,
            Unit::Count,
            "Rebalances completed by groups this broker coordinated (label group)."
        );
        describe_gauge!(
            LAG,
            Unit::Count,
            "Per group and partition: the partition's high watermark (the end consumers read \
             to) minus the group's committed offset (labels group, topic, partition), for \
             partitions with a replica on the coordinator's broker."
        );
        describe_gauge!(
            COMMITTED,
            Unit::Count,
            "Per group and partition: the group's committed offset (labels group, topic, \
             partition)."
        );
    });
}

/// A group completed `count` more rebalances.
pub(crate) fn rebalanced(group: &str, count: u64) {
    if count > 0 {
        counter!(REBALANCES, "group" => group.to_string()).increment(count);
    }
}

/// One group as the report sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupSample {
    pub(crate) group: String,
    pub(crate) state: &'static str,
    pub(crate) members: usize,
    /// Per committed partition: (topic, partition) → (committed offset, log end offset if a
    /// replica is here).
    pub(crate) offsets: BTreeMap<(String, i32), (i64, Option<i64>)>,
}

/// The per-group series last reported, so those of groups no longer here are zeroed
/// rather than left at a stale value.
#[derive(Debug, Default)]
pub(crate) struct GroupReport {
    groups: BTreeSet<String>,
    partitions: BTreeSet<(String, String, String)>,
}

impl GroupReport {
    /// Reports the groups this broker coordinates now.
    pub(crate) fn report(&mut self, samples: &[GroupSample]) {
        let mut by_state: BTreeMap<&str, u32> = STATES.iter().map(|s| (*s, 0)).collect();
        let mut groups = BTreeSet::new();
        let mut partitions = BTreeSet::new();
        for sample in samples {
            *by_state.entry(sample.state).or_default() += 1;
            gauge!(MEMBERS, "group" => sample.group.clone()).set(sample.members as f64);
            groups.insert(sample.group.clone());
            for ((topic, partition), (committed, end)) in &sample.offsets {
                let labels = (sample.group.clone(), topic.clone(), partition.to_string());
                let pairs = label_pairs(&labels);
                gauge!(COMMITTED, &pairs).set(*committed as f64);
                if let Some(end) = end {
                    gauge!(LAG, &pairs).set((end - committed).max(0) as f64);
                }
                partitions.insert(labels);
            }
        }
        for (state, count) in by_state {
            gauge!(GROUPS, "state" => state).set(f64::from(count));
        }
        for gone in self.groups.difference(&groups) {
            gauge!(MEMBERS, "group" => gone.clone()).set(0.0);
        }
        for gone in self.partitions.difference(&partitions) {
            let pairs = label_pairs(gone);
            gauge!(LAG, &pairs).set(0.0);
            gauge!(COMMITTED, &pairs).set(0.0);
        }
        self.groups = groups;
        self.partitions = partitions;
    }
}

fn label_pairs(labels: &(String, String, String)) -> [(&'static str, String); 3] {
    [
        ("group", labels.0.clone()),
        ("topic", labels.1.clone()),
        ("partition", labels.2.clone()),
    ]
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::*;

    fn sample(group: &str, state: &'static str, members: usize, end: Option<i64>) -> GroupSample {
        GroupSample {
            group: group.to_string(),
            state,
            members,
            offsets: [(("t".to_string(), 0), (40, end))].into(),
        }
    }

    /// Every gauge by name and sorted labels.
    fn gauges(recorder: &DebuggingRecorder) -> HashMap<String, f64> {
        recorder
            .snapshotter()
            .snapshot()
            .into_vec()
            .into_iter()
            .filter_map(|(key, _, _, value)| {
                let mut labels: Vec<String> = key
                    .key()
                    .labels()
                    .map(|l| format!("{}={}", l.key(), l.value()))
                    .collect();
                labels.sort();
                let name = format!("{}{{{}}}", key.key().name(), labels.join(","));
                match value {
                    DebugValue::Gauge(v) => Some((name, v.into_inner())),
                    _ => None,
                }
            })
            .collect()
    }

    #[test]
    fn groups_are_reported_by_state_with_lag_and_zeroed_once_gone() {
        let recorder = DebuggingRecorder::new();
        let mut report = GroupReport::default();
        metrics::with_local_recorder(&recorder, || {
            report.report(&[
                sample("a", "Stable", 3, Some(100)),
                sample("b", "Empty", 0, None),
            ]);
        });
        let values = gauges(&recorder);
        assert_eq!(values["weir_groups{state=Stable}"], 1.0);
        assert_eq!(values["weir_groups{state=Empty}"], 1.0);
        assert_eq!(values["weir_groups{state=PreparingRebalance}"], 0.0);
        assert_eq!(values["weir_group_members{group=a}"], 3.0);
        assert_eq!(
            values["weir_group_lag_records{group=a,partition=0,topic=t}"],
            60.0
        );
        assert_eq!(
            values["weir_group_committed_offset{group=b,partition=0,topic=t}"],
            40.0
        );
        // No replica of the partition here: no lag is claimed.
        assert!(!values.contains_key("weir_group_lag_records{group=b,partition=0,topic=t}"));

        metrics::with_local_recorder(&recorder, || {
            report.report(&[sample("b", "Empty", 0, None)]);
        });
        let values = gauges(&recorder);
        assert_eq!(values["weir_groups{state=Stable}"], 0.0);
        assert_eq!(values["weir_group_members{group=a}"], 0.0);
        assert_eq!(
            values["weir_group_lag_records{group=a,partition=0,topic=t}"],
            0.0
        );
    }

    #[test]
    fn rebalances_are_counted_per_group() {
        let recorder = DebuggingRecorder::new();
        metrics::with_local_recorder(&recorder, || {
            rebalanced("a", 1);
            rebalanced("a", 2);
            rebalanced("b", 0);
        });
        let counters: Vec<(String, u64)> = recorder
            .snapshotter()
            .snapshot()
            .into_vec()
            .into_iter()
            .filter_map(|(key, _, _, value)| match value {
                DebugValue::Counter(n) => Some((key.key().name().to_string(), n)),
                _ => None,
            })
            .collect();
        assert_eq!(counters, vec![(REBALANCES.to_string(), 3)]);
    }
}
