//! The controller's metrics, as an exporter would see them: a single-node quorum records its
//! Raft term, commit and applied index, leadership, records applied and brokers.
//!
//! This test installs the process-wide metrics recorder, so it lives in a test binary of its
//! own.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tokio::net::TcpListener;
use uuid::Uuid;
use weir_broker::clock::{Clock, SystemClock};
use weir_broker::config::Voter;
use weir_broker::controller::{
    BrokerRecord, BrokerStatus, Controller, ControllerConfig, Endpoints,
};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_reports_its_raft_state_and_the_brokers() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this test binary");

    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let config = ControllerConfig {
        node_id: 1,
        dir: dir.path().to_path_buf(),
        voters: vec![Voter {
            node_id: 1,
            address: address.clone(),
        }],
        heartbeat_interval_ms: 50,
        election_timeout_min_ms: 150,
        election_timeout_max_ms: 300,
        broker_session_timeout_ms: 10_000,
        request_timeout_ms: 10_000,
        clock: Arc::new(SystemClock) as Arc<dyn Clock>,
    };
    let controller = Controller::start(config, listener).await.unwrap();
    controller.start_broker(
        BrokerRecord {
            broker_id: 1,
            incarnation: Uuid::new_v4(),
            endpoints: Endpoints {
                kafka: "127.0.0.1:9092".into(),
                grpc: "127.0.0.1:9093".into(),
                internal: address,
            },
            rack: None,
        },
        Duration::from_millis(50),
    );
    let mut status = controller.broker_status();
    tokio::time::timeout(WAIT, status.wait_for(|s| *s == BrokerStatus::Live))
        .await
        .expect("the broker becomes live")
        .unwrap();
    controller
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
    match &values.get("weir_controller_metadata_records_applied_total") {
        // Registration, unfencing, and the topic with its two partitions.
        Some((DebugValue::Counter(n), true)) => assert!(*n >= 5, "{n}"),
        other => panic!("records applied is not a described counter: {other:?}"),
    }
    controller.shutdown().await.unwrap();
}
