//! Replication's metrics, through the `metrics` facade: bytes copied, ISR changes,
//! under-replicated partitions and each follower's lag.

use std::collections::BTreeSet;
use std::sync::Once;

use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};

use crate::partition::{ReplicaManager, Role};

const BYTES_IN: &str = "weir_replication_bytes_in_total";
const BYTES_OUT: &str = "weir_replication_bytes_out_total";
const ISR_SHRINKS: &str = "weir_isr_shrinks_total";
const ISR_EXPANDS: &str = "weir_isr_expands_total";
const UNDER_REPLICATED: &str = "weir_under_replicated_partitions";
const LAG_RECORDS: &str = "weir_replica_lag_records";
const LAG_SECONDS: &str = "weir_replica_lag_seconds";

/// Registers each metric's description and unit, once per process.
pub(crate) fn describe() {
    static DESCRIBED: Once = Once::new();
    DESCRIBED.call_once(|| {
        describe_counter!(
            BYTES_IN,
            Unit::Bytes,
            "Record bytes this broker appended as a follower, copied from leaders."
        );
        describe_counter!(
            BYTES_OUT,
            Unit::Bytes,
            "Record bytes this broker sent to followers as a leader."
        );
        describe_counter!(
            ISR_SHRINKS,
            Unit::Count,
            "Committed ISR changes that removed a follower (fell behind, or its broker was \
             fenced), of partitions this broker leads."
        );
        describe_counter!(
            ISR_EXPANDS,
            Unit::Count,
            "Committed ISR changes that added a follower back, of partitions this broker leads."
        );
        describe_gauge!(
            UNDER_REPLICATED,
            Unit::Count,
            "Partitions this broker leads whose ISR is smaller than their replica set."
        );
        describe_gauge!(
            LAG_RECORDS,
            Unit::Count,
            "Per partition this broker leads and follower: offsets between the leader's log \
             end and the follower's (labels topic, partition, follower)."
        );
        describe_gauge!(
            LAG_SECONDS,
            Unit::Seconds,
            "Per partition this broker leads and follower: time since the follower was last \
             caught up with the leader's log end (labels topic, partition, follower)."
        );
    });
}

/// Record bytes appended as a follower.
pub(crate) fn bytes_in(bytes: usize) {
    counter!(BYTES_IN).increment(bytes as u64);
}

/// Record bytes sent to a follower.
pub(crate) fn bytes_out(bytes: usize) {
    if bytes > 0 {
        counter!(BYTES_OUT).increment(bytes as u64);
    }
}

/// A committed ISR change of a partition this broker leads, which removed members
/// (`shrunk`) or added some (`expanded`), whoever proposed it.
pub(crate) fn isr_changed(shrunk: bool, expanded: bool) {
    if shrunk {
        counter!(ISR_SHRINKS).increment(1);
    }
    if expanded {
        counter!(ISR_EXPANDS).increment(1);
    }
}

/// The per-follower lag series last reported, so the series of a partition no longer led
/// here are set to zero rather than left at a stale value.
#[derive(Debug, Default)]
pub(crate) struct LagReport {
    series: BTreeSet<(String, String, String)>,
}

impl LagReport {
    /// Reports under-replicated partitions and, with `per_partition` (the node's
    /// `metrics_partition_series_max` allows it), every follower's lag, from the partitions
    /// `replicas` leads now.
    pub(crate) fn report(&mut self, replicas: &ReplicaManager, per_partition: bool) {
        let now_ms = replicas.now_ms();
        let mut under_replicated = 0u32;
        let mut series = BTreeSet::new();
        for partition in replicas.partitions() {
            if partition.role() != Role::Leader {
                continue;
            }
            let (members, isr) = partition.replicas_and_isr();
            under_replicated += u32::from(isr.len() < members.len());
            if !per_partition {
                continue;
            }
            let tp = partition.topic_partition();
            let log_end = partition.log().log_end_offset();
            for (follower, state) in partition.followers() {
                let labels = (
                    tp.topic.clone(),
                    tp.partition.to_string(),
                    follower.to_string(),
                );
                let records = state.log_end_offset.map_or(log_end, |end| log_end - end);
                let seconds = (now_ms - state.last_caught_up_ms).max(0) as f64 / 1000.0;
                set_lag(&labels, records as f64, seconds);
                series.insert(labels);
            }
        }
        for gone in self.series.difference(&series) {
            set_lag(gone, 0.0, 0.0);
        }
        self.series = series;
        gauge!(UNDER_REPLICATED).set(f64::from(under_replicated));
    }
}

fn set_lag(labels: &(String, String, String), records: f64, seconds: f64) {
    let labels = [
        ("topic", labels.0.clone()),
        ("partition", labels.1.clone()),
        ("follower", labels.2.clone()),
    ];
    gauge!(LAG_RECORDS, &labels).set(records);
    gauge!(LAG_SECONDS, &labels).set(seconds);
}
