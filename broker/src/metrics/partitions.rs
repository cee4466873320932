//! Per-partition gauges (log end offset, high watermark, ISR size) of the partitions this
//! broker holds, refreshed periodically, and the count of leader elections it won.
//!
//! A broker with many partitions would export three series per partition (and the
//! replication lag series, per follower): above `metrics_partition_series_max` partitions
//! none of them are exported, and the totals still are.

use std::collections::BTreeSet;
use std::sync::Once;

use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};

use crate::partition::{ReplicaManager, Role};

const PARTITIONS: &str = "weir_partitions";
const LEADER_PARTITIONS: &str = "weir_leader_partitions";
const LOG_END_OFFSET: &str = "weir_partition_log_end_offset";
const HIGH_WATERMARK: &str = "weir_partition_high_watermark";
const ISR_SIZE: &str = "weir_partition_isr_size";
const LEADER_ELECTIONS: &str = "weir_leader_elections_total";

/// Registers each metric's description and unit, once per process.
pub(super) fn describe() {
    static DESCRIBED: Once = Once::new();
    DESCRIBED.call_once(|| {
        describe_gauge!(
            PARTITIONS,
            Unit::Count,
            "Partition replicas this broker holds, as leader or follower."
        );
        describe_gauge!(
            LEADER_PARTITIONS,
            Unit::Count,
            "Partitions this broker leads."
        );
        describe_gauge!(
            LOG_END_OFFSET,
            Unit::Count,
            "Per partition this broker holds: the offset after its last record here (labels \
             topic, partition); exported while the broker holds at most \
             metrics_partition_series_max partitions, 0 once it no longer holds one."
        );
        describe_gauge!(
            HIGH_WATERMARK,
            Unit::Count,
            "Per partition this broker holds: its high watermark as this replica knows it \
             (labels topic, partition); limited like weir_partition_log_end_offset."
        );
        describe_gauge!(
            ISR_SIZE,
            Unit::Count,
            "Per partition this broker leads: replicas in its ISR (labels topic, partition); \
             0 where this broker is not the leader; limited like \
             weir_partition_log_end_offset."
        );
        describe_counter!(
            LEADER_ELECTIONS,
            Unit::Count,
            "Times this broker became the leader of a partition it held, at a new leader \
             epoch (an election after a failure, a controlled shutdown or a preferred leader \
             election); partitions created with it as leader do not count."
        );
    });
}

/// This broker became the leader of a partition it held, at a new leader epoch.
pub(crate) fn leader_elected() {
    counter!(LEADER_ELECTIONS).increment(1);
}

/// The per-partition series last exported, so that those of a partition no longer held
/// (or all, once over the limit) are set to zero rather than left at stale values.
#[derive(Debug)]
pub(crate) struct PartitionReport {
    series_max: usize,
    series: BTreeSet<(String, String)>,
}

impl PartitionReport {
    /// Exports per-partition series while this broker holds at most `series_max`
    /// partitions (0: never).
    pub(crate) fn new(series_max: usize) -> PartitionReport {
        PartitionReport {
            series_max,
            series: BTreeSet::new(),
        }
    }

    /// Reports the partitions `replicas` holds now; returns whether per-partition series are
    /// exported (the other reports follow the same limit).
    pub(crate) fn report(&mut self, replicas: &ReplicaManager) -> bool {
        let partitions = replicas.partitions();
        let leaders = partitions
            .iter()
            .filter(|p| p.role() == Role::Leader)
            .count();
        gauge!(PARTITIONS).set(partitions.len() as f64);
        gauge!(LEADER_PARTITIONS).set(leaders as f64);
        let per_partition = self.series_enabled(partitions.len());
        let mut series = BTreeSet::new();
        if per_partition {
            for partition in &partitions {
                let tp = partition.topic_partition();
                let labels = (tp.topic.clone(), tp.partition.to_string());
                let isr_size = if partition.role() == Role::Leader {
                    partition.replicas_and_isr().1.len() as f64
                } else {
                    0.0
                };
                set(
                    &labels,
                    partition.log().log_end_offset() as f64,
                    partition.high_watermark() as f64,
                    isr_size,
                );
                series.insert(labels);
            }
        }
        for gone in self.series.difference(&series) {
            set(gone, 0.0, 0.0, 0.0);
        }
        self.series = series;
        per_partition
    }

    fn series_enabled(&self, partitions: usize) -> bool {
        self.series_max > 0 && partitions <= self.series_max
    }
}

fn set(labels: &(String, String), log_end_offset: f64, high_watermark: f64, isr_size: f64) {
    let labels = [("topic", labels.0.clone()), ("partition", labels.1.clone())];
    gauge!(LOG_END_OFFSET, &labels).set(log_end_offset);
    gauge!(HIGH_WATERMARK, &labels).set(high_watermark);
    gauge!(ISR_SIZE, &labels).set(isr_size);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_stop_above_the_limit_and_zero_means_never() {
        let report = PartitionReport::new(2);
        assert!(report.series_enabled(0));
        assert!(report.series_enabled(2));
        assert!(!report.series_enabled(3));
        assert!(!PartitionReport::new(0).series_enabled(1));
    }
}
