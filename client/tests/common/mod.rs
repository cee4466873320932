//! A single broker in-process for the client's tests.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use weir_broker::clock::SystemClock;
use weir_broker::config::{NodeConfig, Voter};
use weir_broker::server::Node;

/// The bound on every wait of the tests.
pub const WAIT: Duration = Duration::from_secs(30);

/// A node and the directory its data lives in (removed when dropped).
pub struct TestNode {
    pub node: Node,
    pub dir: tempfile::TempDir,
}

impl TestNode {
    /// The node's gRPC address, the client's bootstrap.
    pub fn bootstrap(&self) -> String {
        self.node.grpc_addr().to_string()
    }

    /// The node's Kafka address.
    pub fn kafka(&self) -> String {
        self.node.kafka_addr().to_string()
    }

    pub async fn shutdown(self) {
        self.node.shutdown().await.expect("the node stops");
    }
}

/// The configuration of a single test node keeping its data in `dir`: every listener on a
/// free loopback port, small segments (they are preallocated), a small offsets topic, quick
/// heartbeats and rebalances, and no topic auto-creation.
pub fn config(dir: &std::path::Path) -> NodeConfig {
    let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
    NodeConfig {
        data_dir: dir.to_path_buf(),
        kafka_addr: any_port,
        grpc_addr: any_port,
        internal_addr: any_port,
        http_addr: any_port,
        advertised_kafka_addr: any_port.to_string(),
        advertised_grpc_addr: any_port.to_string(),
        advertised_internal_addr: any_port.to_string(),
        broker_heartbeat_interval_ms: 50,
        controller_heartbeat_interval_ms: 50,
        controller_election_timeout_min_ms: 150,
        controller_election_timeout_max_ms: 300,
        log_segment_bytes: 1024 * 1024,
        offsets_topic_num_partitions: 2,
        offsets_topic_segment_bytes: 1024 * 1024,
        group_initial_rebalance_delay_ms: 100,
        group_consumer_heartbeat_interval_ms: 100,
        auto_create_topics: false,
        controller_voters: vec![Voter {
            node_id: 1,
            address: any_port.to_string(),
        }],
        ..NodeConfig::default()
    }
}

/// Starts a single node with [`config`] and waits until it is a live broker.
pub async fn start() -> TestNode {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(config(dir.path()), Arc::new(SystemClock))
        .await
        .expect("the node starts");
    assert!(node.wait_until_live(WAIT).await, "the broker becomes live");
    TestNode { node, dir }
}
