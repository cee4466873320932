//! A single node, its own controller voter and a live broker, on loopback ports: the
//! controller alone (`start_single_node`), or the whole node (`start`).

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use uuid::Uuid;
use weir_broker::clock::{Clock, SystemClock};
use weir_broker::config::{NodeConfig, Voter};
use weir_broker::controller::{
    BrokerRecord, BrokerStatus, Controller, ControllerConfig, Endpoints,
};
use weir_broker::server::Node;

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
        broker_heartbeat_interval_ms: 50,
        leader_balance_interval_ms: None,
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

/// The configuration of a single test node keeping its data in `dir`: every listener on a
/// free loopback port, and heartbeats and elections fast enough for tests.
pub fn single_node_config(dir: &std::path::Path) -> NodeConfig {
    NodeConfig::single_node_on_loopback(dir)
}

/// Starts a whole node (storage, controller, broker, front ends) with `config` and waits
/// until it is a live broker.
pub async fn start(config: NodeConfig) -> Node {
    let node = Node::start(config, Arc::new(SystemClock))
        .await
        .expect("the node starts");
    assert!(node.wait_until_live(WAIT).await, "the broker becomes live");
    node
}

/// Creates topic `name` with `partitions` partitions of one replica through `node`'s
/// controller, and waits until the node serves all of them.
pub async fn create_topic(node: &Node, name: &str, partitions: i32) {
    node.controller()
        .view()
        .create_topic(name, partitions, 1, std::collections::BTreeMap::new())
        .await
        .expect("the topic is created");
    let deadline = std::time::Instant::now() + WAIT;
    for partition in 0..partitions {
        let tp = weir_broker::storage::TopicPartition::new(name, partition);
        while node.replicas().partition(&tp).is_none() {
            assert!(std::time::Instant::now() < deadline, "{tp} opens in time");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
