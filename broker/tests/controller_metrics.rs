//! The controller's metrics, as an exporter would see them: a single-node quorum records its
//! Raft term, commit and applied index, leadership, records applied and brokers.
//!
//! This test installs the process-wide metrics recorder, so it lives in a test binary of its
//! own.

mod common;

use std::collections::{BTreeMap, HashMap};

use metrics_util::debugging::{DebugValue, DebuggingRecorder};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_reports_its_raft_state_and_the_brokers() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this test binary");

    let dir = tempfile::tempdir().unwrap();
    let controller = common::node::start_single_node(dir.path(), "127.0.0.1:9092").await;
    controller
        .view()
        .create_topic("metered", 2, 1, BTreeMap::new())
        .await
        .unwrap();

    let values: HashMap<String, (DebugValue, bool)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _unit, description, value)| {
            (key.key().name().to_string(), (value, description.is_some()))
        })
        .collect();
    let gauge = |name: &str| match &values.get(name) {
        Some((DebugValue::Gauge(value), described)) => {
            assert!(described, "{name} has a description");
            value.into_inner()
        }
        other => panic!("{name} is not a recorded gauge: {other:?}"),
    };
    assert!(gauge("weir_controller_raft_term") >= 1.0);
    assert_eq!(gauge("weir_controller_is_leader"), 1.0);
    let applied = gauge("weir_controller_applied_index");
    assert!(
        applied >= 3.0,
        "initial membership, registration, topic: {applied}"
    );
    assert!(gauge("weir_controller_commit_index") >= applied - 1.0);
    assert_eq!(gauge("weir_controller_brokers_registered"), 1.0);
    assert_eq!(gauge("weir_controller_brokers_fenced"), 0.0);
    // One broker leads every partition, and it is every partition's first replica.
    assert_eq!(gauge("weir_controller_preferred_leader_imbalance"), 0.0);
    match &values.get("weir_controller_metadata_records_applied_total") {
        // Registration, unfencing, and the topic with its two partitions.
        Some((DebugValue::Counter(n), true)) => assert!(*n >= 5, "{n}"),
        other => panic!("records applied is not a described counter: {other:?}"),
    }
    controller.shutdown().await.unwrap();
}
