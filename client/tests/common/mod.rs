//! A single broker in-process for the client's tests.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use weir_broker::clock::SystemClock;
use weir_broker::config::NodeConfig;
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
    NodeConfig {
        log_segment_bytes: 1024 * 1024,
        offsets_topic_num_partitions: 2,
        offsets_topic_segment_bytes: 1024 * 1024,
        group_initial_rebalance_delay_ms: 100,
        group_consumer_heartbeat_interval_ms: 100,
        auto_create_topics: false,
        ..NodeConfig::single_node_on_loopback(dir)
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
