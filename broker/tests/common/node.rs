//! A single node, its own controller voter and a live broker, on loopback ports.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use uuid::Uuid;
use weir_broker::clock::{Clock, SystemClock};
use weir_broker::config::Voter;
use weir_broker::controller::{
    BrokerRecord, BrokerStatus, Controller, ControllerConfig, Endpoints,
};

/// The bound on the wait for the broker to become live.
const WAIT: Duration = Duration::from_secs(30);

/// Starts node 1 as the only voter, with its metadata log in `dir`, and waits until it is a
/// live broker advertising `kafka_addr` to clients.
pub async fn start_single_node(dir: &std::path::Path, kafka_addr: &str) -> Controller {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let internal = listener.local_addr().unwrap().to_string();
    let config = ControllerConfig {
        node_id: 1,
        dir: dir.to_path_buf(),
        voters: vec![Voter {
            node_id: 1,
            address: internal.clone(),
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
                kafka: kafka_addr.to_string(),
                grpc: "127.0.0.1:9093".into(),
                internal,
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
}
