//! A controller quorum of 3 voters with 2 brokers that follow the metadata log as learners,
//! all in one process on loopback: they agree on the metadata through the loss of the Raft
//! leader, restarts of single nodes and of all of them, and the fencing of a broker whose
//! heartbeats stop.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use uuid::Uuid;
use weir_broker::clock::{Clock, ManualClock};
use weir_broker::config::Voter;
use weir_broker::controller::decisions::IsrProposal;
use weir_broker::controller::{
    BrokerRecord, BrokerStatus, ClusterMetadata, Controller, ControllerConfig, Endpoints, ErrorKind,
};

/// The bound on every wait.
const WAIT: Duration = Duration::from_secs(30);
const SESSION_MS: i64 = 10_000;
const HEARTBEAT: Duration = Duration::from_millis(50);
const VOTERS: u64 = 3;
const NODES: u64 = 5;

struct Node {
    id: u64,
    dir: tempfile::TempDir,
    address: String,
    controller: Option<Controller>,
}

struct Cluster {
    nodes: Vec<Node>,
    voters: Vec<Voter>,
    clock: Arc<ManualClock>,
}

impl Cluster {
    /// Starts `NODES` nodes on fresh ports; the first `VOTERS` are the voters.
    async fn start() -> Cluster {
        let mut listeners = Vec::new();
        for _ in 0..NODES {
            listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
        }
        let addresses: Vec<String> = listeners
            .iter()
            .map(|l| l.local_addr().unwrap().to_string())
            .collect();
        let voters = (1..=VOTERS)
            .map(|id| Voter {
                node_id: id,
                address: addresses[id as usize - 1].clone(),
            })
            .collect();
        let mut cluster = Cluster {
            nodes: Vec::new(),
            voters,
            clock: Arc::new(ManualClock::new(0)),
        };
        for (i, (listener, address)) in listeners.into_iter().zip(addresses).enumerate() {
            let mut node = Node {
                id: i as u64 + 1,
                dir: tempfile::tempdir().unwrap(),
                address,
                controller: None,
            };
            node.controller = Some(cluster.run(&node, listener).await);
            cluster.nodes.push(node);
        }
        cluster
    }

    async fn run(&self, node: &Node, listener: TcpListener) -> Controller {
        let config = ControllerConfig {
            node_id: node.id,
            dir: node.dir.path().to_path_buf(),
            voters: self.voters.clone(),
            heartbeat_interval_ms: 50,
            election_timeout_min_ms: 200,
            election_timeout_max_ms: 400,
            broker_session_timeout_ms: SESSION_MS as u64,
            broker_heartbeat_interval_ms: 50,
            leader_balance_interval_ms: None,
            request_timeout_ms: 20_000,
            clock: Arc::clone(&self.clock) as Arc<dyn Clock>,
        };
        let controller = Controller::start(config, listener).await.unwrap();
        let id = i32::try_from(node.id).unwrap();
        controller.start_broker(
            BrokerRecord {
                broker_id: id,
                incarnation: Uuid::new_v4(),
                endpoints: Endpoints {
                    kafka: format!("127.0.0.1:{}", 19000 + id),
                    grpc: format!("127.0.0.1:{}", 19100 + id),
                    internal: node.address.clone(),
                },
                rack: None,
            },
            HEARTBEAT,
        );
        controller
    }

    fn node(&self, id: u64) -> &Controller {
        self.nodes[id as usize - 1].controller.as_ref().unwrap()
    }

    fn running(&self) -> impl Iterator<Item = &Controller> {
        self.nodes.iter().filter_map(|n| n.controller.as_ref())
    }

    async fn stop(&mut self, id: u64) {
        let controller = self.nodes[id as usize - 1].controller.take().unwrap();
        controller.shutdown().await.unwrap();
    }

    /// Starts a stopped node again, on its old address and directory.
    async fn restart(&mut self, id: u64) {
        let node = &self.nodes[id as usize - 1];
        let listener = TcpListener::bind(&node.address).await.unwrap();
        let controller = self.run(node, listener).await;
        self.nodes[id as usize - 1].controller = Some(controller);
    }

    async fn leader(&self) -> u64 {
        let any = self.running().next().unwrap();
        eventually("a leader among the running voters", || async {
            any.leader()
                .filter(|&l| self.nodes[l as usize - 1].controller.is_some())
        })
        .await
    }

    /// Waits until every running node holds the metadata the leader has applied, and
    /// returns it.
    async fn converged(&self) -> Arc<ClusterMetadata> {
        let leader = self.node(self.leader().await);
        let index = leader.applied_index().unwrap();
        for node in self.running() {
            node.wait_for_applied(index, WAIT).await.unwrap();
        }
        let metadata = leader.metadata();
        for node in self.running() {
            assert_eq!(node.metadata(), metadata, "node {}", node.node_id());
        }
        metadata
    }

    /// Waits until every running node is a live broker.
    async fn all_live(&self) {
        for node in self.running() {
            let mut status = node.broker_status();
            tokio::time::timeout(WAIT, status.wait_for(|s| *s == BrokerStatus::Live))
                .await
                .unwrap_or_else(|_| panic!("node {} never became live", node.node_id()))
                .unwrap();
        }
    }

    async fn shutdown(mut self) {
        for id in 1..=NODES {
            if self.nodes[id as usize - 1].controller.is_some() {
                self.stop(id).await;
            }
        }
    }
}

/// Has the active controller fence the brokers whose sessions expired; returns them. A
/// leader that cannot confirm its leadership in time (a loaded machine) is asked again.
async fn expire_sessions(cluster: &Cluster) -> Vec<i32> {
    eventually("the active controller checking sessions", || async {
        let leader = cluster.leader().await;
        match cluster.node(leader).expire_sessions().await {
            Ok(expired) => Some(expired),
            Err(e)
                if e.kind() == ErrorKind::Unavailable || e.kind() == ErrorKind::NotController =>
            {
                None
            }
            Err(e) => panic!("checking sessions failed: {e}"),
        }
    })
    .await
}

/// Polls `check` until it gives a value, for at most [`WAIT`].
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_voters_and_two_learners_hold_the_same_metadata_through_failures() {
    let mut cluster = Cluster::start().await;
    cluster.all_live().await;
    let status = cluster.node(4).view().quorum_status();
    assert_eq!(
        status.voters.iter().map(|v| v.0).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(
        status.learners.iter().map(|v| v.0).collect::<Vec<_>>(),
        [4, 5]
    );
    assert!(!cluster.node(4).is_voter() && cluster.node(3).is_voter());

    // Topics created through every node, voters and learners alike.
    for n in 0..20u64 {
        let via = cluster.node(n % NODES + 1);
        via.view()
            .create_topic(&format!("topic-{n}"), 3, 3, BTreeMap::new())
            .await
            .unwrap();
    }
    // One replica each, on every broker in turn: some partition has broker 5 alone.
    cluster
        .node(5)
        .view()
        .create_topic("single", 5, 1, BTreeMap::new())
        .await
        .unwrap();
    let metadata = cluster.converged().await;
    assert_eq!(metadata.topics().count(), 21);
    assert_eq!(metadata.brokers().filter(|b| !b.fenced).count(), 5);

    // The Raft leader stops: another voter takes over and topics can be created again, even
    // through a learner; the old leader catches up when it restarts.
    let old_leader = cluster.leader().await;
    cluster.stop(old_leader).await;
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, old_leader);
    cluster
        .node(4)
        .view()
        .create_topic("after-failover", 2, 2, BTreeMap::new())
        .await
        .unwrap();
    cluster.restart(old_leader).await;
    cluster.all_live().await;
    let metadata = cluster.converged().await;
    assert!(metadata.topic_by_name("after-failover").is_some());

    // Bad requests through a learner: clear errors, nothing changed.
    let learner = cluster.node(5);
    let error = learner
        .view()
        .create_topic("bad/name", 1, 1, BTreeMap::new())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidTopicName, "{error}");
    let error = learner
        .view()
        .create_topic("too-wide", 1, 6, BTreeMap::new())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidReplicationFactor, "{error}");
    assert!(
        error.to_string().contains("above the 5 live brokers"),
        "{error}"
    );
    let error = learner
        .view()
        .create_topic("topic-1", 1, 1, BTreeMap::new())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::TopicExists, "{error}");
    let error = learner.view().delete_topic("missing").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::UnknownTopic, "{error}");
    assert_eq!(cluster.converged().await, metadata);

    // A topic grows, through a learner.
    learner
        .view()
        .create_partitions("topic-1", 5)
        .await
        .unwrap();
    let metadata = cluster.converged().await;
    assert_eq!(
        metadata.topic_by_name("topic-1").unwrap().partitions.len(),
        5
    );

    // A partition leader shrinks its ISR through its own node; the same proposal again is
    // stale (the partition epoch moved) and refused.
    let (topic_id, index, partition) = metadata
        .topics()
        .flat_map(|t| {
            let partitions = t.partitions.iter().enumerate();
            partitions.map(move |(i, p)| (t.id, i as i32, p.clone()))
        })
        .find(|(_, _, p)| p.leader == Some(4) && p.isr.len() >= 2)
        .expect("broker 4 leads a partition with others in sync");
    let proposal = IsrProposal {
        topic_id,
        partition: index,
        proposer: 4,
        leader_epoch: partition.leader_epoch,
        partition_epoch: partition.partition_epoch,
        isr: vec![4],
    };
    let altered = cluster
        .node(4)
        .view()
        .alter_partition(proposal.clone())
        .await
        .unwrap();
    assert_eq!(altered.isr, [4]);
    assert_eq!(altered.partition_epoch, partition.partition_epoch + 1);
    assert_eq!(altered.leader_epoch, partition.leader_epoch);
    let error = cluster
        .node(4)
        .view()
        .alter_partition(proposal)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::StaleIsrChange, "{error}");
    let metadata = cluster.converged().await;

    // Broker 5's heartbeats stop, its session stream still open (as a hung process's is).
    // Time moves in three steps of 0.6 sessions, the others heartbeating after each, so only
    // broker 5's session expires: a heartbeat of broker 5 still in flight when they stopped
    // (late on a loaded machine) is heard after the first step at the latest.
    cluster.node(5).stop_heartbeats();
    for _ in 0..3 {
        cluster.clock.advance_ms(SESSION_MS * 6 / 10);
        tokio::time::sleep(HEARTBEAT * 6).await;
    }
    let expired = expire_sessions(&cluster).await;
    let fenced = cluster.converged().await;
    // The background check may have fenced it first.
    assert!(
        expired == [5] || fenced.broker(5).unwrap().fenced,
        "{expired:?}"
    );
    assert!(fenced.broker(5).unwrap().fenced);
    assert_eq!(fenced.brokers().filter(|b| b.fenced).count(), 1);
    let (mut moved, mut offline) = (0, 0);
    for (after, before) in fenced.topics().zip(metadata.topics()) {
        for (now, then) in after.partitions.iter().zip(&before.partitions) {
            if then.leader != Some(5) {
                assert_eq!(now.leader, then.leader);
                continue;
            }
            assert!(now.leader_epoch > then.leader_epoch, "{now:?}");
            if then.isr == [5] {
                assert_eq!(now.leader, None, "{now:?}");
                offline += 1;
            } else {
                assert!(now.leader.is_some_and(|l| l != 5 && then.isr.contains(&l)));
                moved += 1;
            }
        }
    }
    assert!(moved > 0 && offline > 0, "{moved} moved, {offline} offline");

    // Every node restarts: the metadata is intact, and the quorum works again.
    for id in 1..=NODES {
        cluster.stop(id).await;
    }
    for id in 1..=NODES {
        cluster.restart(id).await;
    }
    cluster.all_live().await;
    let restarted = cluster.converged().await;
    // Broker 5 came back as a new incarnation and leads what only it held in sync again.
    let shape = |metadata: &ClusterMetadata| {
        let topics = metadata.topics();
        topics
            .map(|t| {
                let replicas: Vec<_> = t.partitions.iter().map(|p| p.replicas.clone()).collect();
                (t.name.clone(), t.id, replicas)
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(shape(&restarted), shape(&fenced));
    let single = restarted.topic_by_name("single").unwrap();
    assert!(single.partitions.iter().all(|p| p.leader.is_some()));
    cluster
        .node(2)
        .view()
        .create_topic("after-restart", 1, 3, BTreeMap::new())
        .await
        .unwrap();
    assert!(
        cluster
            .converged()
            .await
            .topic_by_name("after-restart")
            .is_some()
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_ids_are_never_given_twice_across_brokers_failover_and_restarts() {
    let mut cluster = Cluster::start().await;
    cluster.all_live().await;
    let mut given = std::collections::BTreeSet::new();
    let mut take = |id: i64| assert!(given.insert(id), "producer id {id} was given twice");

    // Every broker takes ids from a block of its own; a learner's request goes to the leader.
    for node in cluster.running() {
        for _ in 0..3 {
            take(node.view().next_producer_id().await.unwrap());
        }
    }
    let metadata = cluster.converged().await;
    assert_eq!(
        metadata.next_producer_id(),
        5 * 1000,
        "one block per broker"
    );

    // The active controller stops: the next one continues after the last block handed out.
    let old_leader = cluster.leader().await;
    cluster.stop(old_leader).await;
    let learner = cluster.node(5).view();
    let block = learner.allocate_producer_ids(5, Uuid::from_u128(1)).await;
    assert_eq!(
        block.unwrap_err().kind(),
        ErrorKind::UnregisteredBroker,
        "only the registered incarnation gets ids"
    );
    for node in cluster.running() {
        take(node.view().next_producer_id().await.unwrap());
    }
    // A restarted broker has lost its block: it takes a new one, never the old ids.
    cluster.restart(old_leader).await;
    cluster.all_live().await;
    let restarted = cluster
        .node(old_leader)
        .view()
        .next_producer_id()
        .await
        .unwrap();
    take(restarted);
    assert_eq!(restarted, 5000, "the first id of the sixth block");
    let metadata = cluster.converged().await;
    assert_eq!(metadata.next_producer_id(), 6000);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_dies_with_the_active_controller_is_fenced_after_two_heartbeats() {
    let mut cluster = Cluster::start().await;
    cluster.all_live().await;
    // The active controller is a broker too; it dies, with no session stream of its own for
    // anyone to see close.
    let old_leader = cluster.leader().await;
    cluster.stop(old_leader).await;
    let new_leader = cluster.leader().await;
    // The others heartbeat to the new controller as soon as they learn of it.
    let survivors: Vec<i32> = (1..=NODES as i32)
        .filter(|&id| id as u64 != old_leader)
        .collect();
    eventually("the new controller hearing from every survivor", || async {
        let heard = cluster.node(new_leader).brokers_heard_from();
        survivors.iter().all(|id| heard.contains(id)).then_some(())
    })
    .await;
    assert!(
        !cluster
            .converged()
            .await
            .broker(old_leader as i32)
            .unwrap()
            .fenced,
        "no time has passed on the sessions' clock"
    );
    // Two heartbeat intervals, not a whole session: the new controller never heard from it.
    cluster
        .clock
        .advance_ms(2 * i64::try_from(HEARTBEAT.as_millis()).unwrap() + 1);
    let expired = expire_sessions(&cluster).await;
    let metadata = cluster.converged().await;
    assert!(
        expired == [old_leader as i32] || metadata.broker(old_leader as i32).unwrap().fenced,
        "{expired:?}"
    );
    let fenced: Vec<i32> = metadata
        .brokers()
        .filter(|b| b.fenced)
        .map(|b| b.id)
        .collect();
    assert_eq!(fenced, [old_leader as i32]);
    cluster.shutdown().await;
}
