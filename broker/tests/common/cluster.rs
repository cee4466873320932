//! A cluster in one process: a controller-only node (the quorum's one voter, so stopping
//! brokers never costs the quorum) and brokers 1..=N, each a whole `Node` on loopback ports
//! with its own data directory, stopped and started again on that directory.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use weir_broker::config::{NodeConfig, ProcessRoles, Voter};
use weir_broker::controller::ClusterMetadata;
use weir_broker::partition::Partition;
use weir_broker::server::Node;
use weir_broker::storage::TopicPartition;

use super::node::{single_node_config, start};

/// The bound on every wait of the cluster's helpers.
pub const WAIT: Duration = Duration::from_secs(60);

/// Every node's settings before a test's own: fast sessions and replica fetches.
fn test_defaults(config: &mut NodeConfig) {
    config.broker_session_timeout_ms = 1000;
    config.replica_fetch_wait_max_ms = 100;
    config.replica_lag_time_max_ms = 3000;
}

/// The controller node's id.
const CONTROLLER_ID: i32 = 100;

/// A controller and brokers `1..=N`; a stopped broker's slot is `None`.
pub struct Cluster {
    controller: Node,
    brokers: Vec<Option<Node>>,
    dirs: Vec<PathBuf>,
    configure: fn(&mut NodeConfig),
    _root: tempfile::TempDir,
}

impl Cluster {
    /// Starts the controller and `brokers` brokers, each node configured by `configure`
    /// after the test defaults (fast heartbeats and a 1 s session timeout), and waits until
    /// every broker is live.
    pub async fn start(brokers: usize, configure: fn(&mut NodeConfig)) -> Cluster {
        let root = tempfile::tempdir().unwrap();
        let mut config = single_node_config(&root.path().join("controller"));
        config.node_id = CONTROLLER_ID;
        config.controller_voters[0].node_id = CONTROLLER_ID as u64;
        config.process_roles = ProcessRoles {
            broker: false,
            controller: true,
        };
        // The controller keeps the sessions and balances leaders: it gets the same settings.
        test_defaults(&mut config);
        configure(&mut config);
        let controller = Node::start(config, std::sync::Arc::new(weir_broker::clock::SystemClock))
            .await
            .expect("the controller starts");
        let dirs: Vec<PathBuf> = (1..=brokers)
            .map(|id| root.path().join(format!("broker-{id}")))
            .collect();
        let mut cluster = Cluster {
            controller,
            brokers: (0..brokers).map(|_| None).collect(),
            dirs,
            configure,
            _root: root,
        };
        for id in 1..=brokers {
            cluster.start_broker(id as i32).await;
        }
        cluster
    }

    fn broker_config(&self, id: i32) -> NodeConfig {
        let dir = &self.dirs[usize::try_from(id - 1).unwrap()];
        let mut config = single_node_config(dir);
        config.node_id = id;
        config.controller_voters = vec![Voter {
            node_id: CONTROLLER_ID as u64,
            address: self.controller.internal_addr().to_string(),
        }];
        config.process_roles = ProcessRoles {
            broker: true,
            controller: false,
        };
        test_defaults(&mut config);
        (self.configure)(&mut config);
        config
    }

    /// Starts broker `id` (again, on its data directory) and waits until it is live.
    pub async fn start_broker(&mut self, id: i32) {
        let config = self.broker_config(id);
        let node = start(config).await;
        self.brokers[usize::try_from(id - 1).unwrap()] = Some(node);
    }

    /// Whether broker `id` is fenced in the committed metadata.
    pub fn is_fenced(&self, id: i32) -> bool {
        self.metadata().broker(id).is_some_and(|b| b.fenced)
    }

    /// Stops broker `id` cleanly (with a controlled shutdown, unless configured off).
    pub async fn stop_broker(&mut self, id: i32) {
        let node = self.brokers[usize::try_from(id - 1).unwrap()]
            .take()
            .expect("the broker runs");
        node.shutdown().await.expect("a clean stop");
    }

    /// Broker `id`, which must be running.
    pub fn broker(&self, id: i32) -> &Node {
        self.brokers[usize::try_from(id - 1).unwrap()]
            .as_ref()
            .expect("the broker runs")
    }

    /// The running brokers, by id.
    pub fn running(&self) -> Vec<(i32, &Node)> {
        self.brokers
            .iter()
            .enumerate()
            .filter_map(|(i, node)| Some((i as i32 + 1, node.as_ref()?)))
            .collect()
    }

    /// The Kafka addresses of the running brokers, for a client's bootstrap list.
    pub fn bootstrap(&self) -> String {
        let addresses: Vec<SocketAddr> =
            self.running().iter().map(|(_, n)| n.kafka_addr()).collect();
        addresses
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The committed metadata, as the controller has it.
    pub fn metadata(&self) -> std::sync::Arc<ClusterMetadata> {
        self.controller.controller().metadata()
    }

    /// Creates `name` with `partitions` partitions of `replication_factor` replicas and
    /// `configs`, and waits until every replica is open and in the ISR.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i32,
        configs: &[(&str, &str)],
    ) {
        let configs: BTreeMap<String, String> = configs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.controller
            .controller()
            .view()
            .create_topic(name, partitions, replication_factor, configs)
            .await
            .expect("the topic is created");
        let full = replication_factor as usize;
        self.wait_for("every replica open and in the ISR", || async {
            let metadata = self.metadata();
            let Some(topic) = metadata.topic_by_name(name) else {
                return false;
            };
            topic.partitions.iter().enumerate().all(|(i, p)| {
                p.isr.len() == full
                    && p.replicas.iter().all(|&id| {
                        self.replica(id, &TopicPartition::new(name, i as i32))
                            .is_some()
                    })
            })
        })
        .await;
    }

    /// Broker `id`'s replica of `tp`, if the broker runs and holds it.
    pub fn replica(&self, id: i32, tp: &TopicPartition) -> Option<std::sync::Arc<Partition>> {
        self.brokers
            .get(usize::try_from(id - 1).ok()?)?
            .as_ref()?
            .replicas()
            .partition(tp)
    }

    /// The leader of `tp` in the committed metadata.
    pub fn leader(&self, tp: &TopicPartition) -> Option<i32> {
        let metadata = self.metadata();
        let topic = metadata.topic_by_name(&tp.topic)?;
        topic
            .partitions
            .get(usize::try_from(tp.partition).ok()?)?
            .leader
    }

    /// The ISR of `tp` in the committed metadata.
    pub fn isr(&self, tp: &TopicPartition) -> Vec<i32> {
        let metadata = self.metadata();
        metadata
            .topic_by_name(&tp.topic)
            .and_then(|t| t.partitions.get(tp.partition as usize))
            .map(|p| p.isr.clone())
            .unwrap_or_default()
    }

    /// Waits, within [`WAIT`], until `condition` holds.
    pub async fn wait_for<F, Fut>(&self, what: &str, condition: F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = Instant::now() + WAIT;
        while !condition().await {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops every node.
    pub async fn shutdown(mut self) {
        for node in self.brokers.iter_mut().filter_map(Option::take) {
            node.shutdown().await.expect("a clean stop");
        }
        self.controller.shutdown().await.expect("a clean stop");
    }
}
