//! The leader's ISR changes: every half `replica_lag_time_max_ms` (and whenever a replica
//! outside an ISR fetches), each partition this broker leads is asked whether a member fell
//! behind or a replica caught up ([`Partition::propose_isr_change`]); a change is proposed to
//! the active controller and takes effect only when the metadata log commits it, which the
//! partition then applies like any other metadata. A refused proposal (made at stale epochs,
//! or adding a fenced broker) is dropped, and the next check proposes afresh.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::metrics;

use crate::controller::ControllerView;
use crate::controller::decisions::IsrProposal;
use crate::partition::{IsrChange, Partition, ReplicaManager};

/// Checks the ISRs of the partitions `replicas` leads until the task is dropped, proposing
/// changes through `controller`; `wake` asks for a check now. Every second, also reports the
/// replication and per-partition metrics, the per-partition series only while this broker
/// holds at most `partition_series_max` partitions.
pub async fn run_isr_changes(
    replicas: Arc<ReplicaManager>,
    controller: ControllerView,
    lag_max_ms: u64,
    wake: Arc<Notify>,
    partition_series_max: usize,
) {
    let lag_max = i64::try_from(lag_max_ms).unwrap_or(i64::MAX);
    let mut interval = tokio::time::interval(Duration::from_millis((lag_max_ms / 2).max(1)));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut lag_report = tokio::time::interval(Duration::from_secs(1));
    lag_report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reported = metrics::LagReport::default();
    let mut partitions_reported = crate::metrics::PartitionReport::new(partition_series_max);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = wake.notified() => {}
            _ = lag_report.tick() => {
                let per_partition = partitions_reported.report(&replicas);
                reported.report(&replicas, per_partition);
                continue;
            }
        }
        let metadata = replicas.metadata();
        let now_ms = replicas.now_ms();
        for partition in replicas.partitions() {
            let change = partition.propose_isr_change(now_ms, lag_max, |id| metadata.is_live(id));
            if let Some(change) = change {
                tokio::spawn(propose(
                    Arc::clone(&partition),
                    controller.clone(),
                    replicas.broker_id(),
                    change,
                ));
            }
        }
    }
}

/// Sends one ISR change to the active controller and reports what became of it.
async fn propose(
    partition: Arc<Partition>,
    controller: ControllerView,
    broker: i32,
    change: IsrChange,
) {
    let tp = partition.topic_partition().clone();
    let proposal = IsrProposal {
        topic_id: partition.topic_id(),
        partition: tp.partition,
        proposer: broker,
        leader_epoch: change.leader_epoch,
        partition_epoch: change.partition_epoch,
        isr: change.isr.clone(),
    };
    match controller.alter_partition(proposal).await {
        Ok(altered) => {
            tracing::info!(%tp, isr = ?altered.isr, shrunk = ?change.shrunk,
                expanded = ?change.expanded, partition_epoch = altered.partition_epoch,
                "the ISR changed");
        }
        Err(e) => {
            tracing::info!(%tp, proposed = ?change.isr, error = %e, "an ISR change was refused");
            partition.isr_change_failed(&change);
        }
    }
}
