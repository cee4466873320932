//! The controller's metrics, recorded through the `metrics` facade (the exporter is installed
//! by the binary; without one, recording costs next to nothing).

use std::sync::Once;

use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};

use super::metadata::ClusterMetadata;

const RAFT_TERM: &str = "weir_controller_raft_term";
const COMMIT_INDEX: &str = "weir_controller_commit_index";
const APPLIED_INDEX: &str = "weir_controller_applied_index";
const IS_LEADER: &str = "weir_controller_is_leader";
const RECORDS_APPLIED: &str = "weir_controller_metadata_records_applied_total";
const BROKERS_REGISTERED: &str = "weir_controller_brokers_registered";
const BROKERS_FENCED: &str = "weir_controller_brokers_fenced";
const OFFLINE_PARTITIONS: &str = "weir_controller_offline_partitions";
const PREFERRED_LEADER_IMBALANCE: &str = "weir_controller_preferred_leader_imbalance";
const FENCES: &str = "weir_controller_broker_fences_total";
const PREFERRED_ELECTIONS: &str = "weir_controller_preferred_leader_elections_total";

/// Registers each metric's description and unit, once per process.
pub(crate) fn describe() {
    static DESCRIBED: Once = Once::new();
    DESCRIBED.call_once(|| {
        describe_gauge!(
            RAFT_TERM,
            Unit::Count,
            "The controller quorum's current Raft term, as this node knows it."
        );
        describe_gauge!(
            COMMIT_INDEX,
            Unit::Count,
            "The index of the last metadata log entry known to be committed."
        );
        describe_gauge!(
            APPLIED_INDEX,
            Unit::Count,
            "The index of the last metadata log entry this node has applied."
        );
        describe_gauge!(
            IS_LEADER,
            Unit::Count,
            "1 while this node is the active controller (the Raft leader), else 0."
        );
        describe_counter!(
            RECORDS_APPLIED,
            Unit::Count,
            "Metadata records this node has applied."
        );
        describe_gauge!(
            BROKERS_REGISTERED,
            Unit::Count,
            "Brokers registered in the cluster metadata, fenced or not."
        );
        describe_gauge!(
            BROKERS_FENCED,
            Unit::Count,
            "Registered brokers that are fenced (not heartbeating, or not caught up)."
        );
        describe_gauge!(
            OFFLINE_PARTITIONS,
            Unit::Count,
            "Partitions with no leader (every ISR member is fenced), in the metadata this \
             node applied."
        );
        describe_gauge!(
            PREFERRED_LEADER_IMBALANCE,
            Unit::Count,
            "Partitions led by a replica other than their first (preferred) one, in the \
             metadata this node applied."
        );
        describe_counter!(
            FENCES,
            Unit::Count,
            "Brokers this node fenced as the active controller, by reason: session_expired \
             (heartbeats stopped), session_closed (its session stream closed: the process \
             stopped), controlled_shutdown, reregistered (a new incarnation replaced a live \
             one) or requested."
        );
        describe_counter!(
            PREFERRED_ELECTIONS,
            Unit::Count,
            "Partitions this node gave back to their preferred leader as the active controller."
        );
    });
}

/// Why the active controller fenced a broker.
#[derive(Debug, Clone, Copy)]
pub(crate) enum FenceReason {
    SessionExpired,
    SessionClosed,
    ControlledShutdown,
    Reregistered,
    Requested,
}

/// The active controller fenced a broker.
pub(crate) fn broker_fenced(reason: FenceReason) {
    let reason = match reason {
        FenceReason::SessionExpired => "session_expired",
        FenceReason::SessionClosed => "session_closed",
        FenceReason::ControlledShutdown => "controlled_shutdown",
        FenceReason::Reregistered => "reregistered",
        FenceReason::Requested => "requested",
    };
    counter!(FENCES, "reason" => reason).increment(1);
}

/// The active controller gave `count` partitions back to their preferred leaders.
pub(crate) fn preferred_leaders_elected(count: usize) {
    counter!(PREFERRED_ELECTIONS).increment(count as u64);
}

/// The Raft state as this node last saw it.
pub(crate) fn record_raft(term: u64, is_leader: bool) {
    gauge!(RAFT_TERM).set(term as f64);
    gauge!(IS_LEADER).set(if is_leader { 1.0 } else { 0.0 });
}

/// A commit index saved by the log store.
pub(crate) fn record_committed(index: u64) {
    gauge!(COMMIT_INDEX).set(index as f64);
}

/// The state machine after applying entries.
pub(crate) fn record_applied(index: Option<u64>, metadata: &ClusterMetadata) {
    if let Some(index) = index {
        gauge!(APPLIED_INDEX).set(index as f64);
    }
    let (registered, fenced) = metadata
        .brokers()
        .fold((0u32, 0u32), |(r, f), b| (r + 1, f + u32::from(b.fenced)));
    gauge!(BROKERS_REGISTERED).set(f64::from(registered));
    gauge!(BROKERS_FENCED).set(f64::from(fenced));
    let offline = metadata
        .topics()
        .flat_map(|topic| &topic.partitions)
        .filter(|partition| partition.leader.is_none())
        .count();
    gauge!(OFFLINE_PARTITIONS).set(offline as f64);
    let imbalanced = metadata
        .topics()
        .flat_map(|topic| &topic.partitions)
        .filter(|partition| {
            partition.leader.is_some() && partition.leader != partition.replicas.first().copied()
        })
        .count();
    gauge!(PREFERRED_LEADER_IMBALANCE).set(imbalanced as f64);
}

/// `count` metadata records applied.
pub(crate) fn records_applied(count: usize) {
    counter!(RECORDS_APPLIED).increment(count as u64);
}
