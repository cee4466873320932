//! openraft's own storage test suite, run against the log store and state machine, and the
//! store's recovery from a torn write.

use openraft::StorageIOError;
use openraft::testing::{StoreBuilder, Suite};

use super::{LogStore, StateMachine, StorageError, TypeConfig};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let log_store = LogStore::open(dir.path()).map_err(|e| StorageIOError::read_logs(&e))?;
        let state_machine =
            StateMachine::open(dir.path()).map_err(|e| StorageIOError::read_state_machine(&e))?;
        Ok((dir, log_store, state_machine))
    }
}

#[test]
fn passes_openraft_storage_suite() {
    Suite::test_all(Builder).unwrap();
}

mod quorum {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    use openraft::{BasicNode, Config, Raft};
    use tonic::transport::Server;
    use tonic::transport::server::TcpIncoming;
    use uuid::Uuid;
    use weir_proto::internal::v1::controller_raft_server::ControllerRaftServer;

    use crate::controller::ClusterMetadata;
    use crate::controller::decisions;
    use crate::controller::raft::{
        LogStore, MetadataBatch, NetworkFactory, RaftService, StateMachine, TypeConfig,
    };
    use crate::controller::records::{BrokerRecord, Endpoints, MetadataRecord};

    const WAIT: Option<Duration> = Some(Duration::from_secs(20));

    struct Node {
        id: u64,
        raft: Raft<TypeConfig>,
        state_machine: StateMachine,
        server: tokio::task::JoinHandle<()>,
        _dir: tempfile::TempDir,
    }

    async fn start(id: u64, listener: tokio::net::TcpListener) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            cluster_name: "test".into(),
            heartbeat_interval: 50,
            election_timeout_min: 200,
            election_timeout_max: 400,
            ..Config::default()
        };
        let config = Arc::new(config.validate().unwrap());
        let log_store = LogStore::open(dir.path()).unwrap();
        let state_machine = StateMachine::open(dir.path()).unwrap();
        let raft = Raft::new(id, config, NetworkFactory, log_store, state_machine.clone())
            .await
            .unwrap();
        let service = ControllerRaftServer::new(RaftService::new(raft.clone()));
        let server = tokio::spawn(async move {
            let serving = Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpIncoming::from(listener));
            serving.await.unwrap();
        });
        Node {
            id,
            raft,
            state_machine,
            server,
            _dir: dir,
        }
    }

    async fn leader_among(nodes: &[&Node]) -> u64 {
        let metrics = nodes[0]
            .raft
            .wait(WAIT)
            .metrics(
                |m| {
                    m.current_leader
                        .is_some_and(|l| nodes.iter().any(|n| n.id == l))
                },
                "a leader",
            )
            .await
            .unwrap();
        metrics.current_leader.unwrap()
    }

    /// Records that register and unfence broker `broker_id`, then create `topic` on it.
    fn broker_and_topic(broker_id: i32, topic: &str, topic_id: u128) -> Vec<MetadataRecord> {
        let incarnation = Uuid::from_u128(broker_id as u128);
        let mut records = vec![
            MetadataRecord::RegisterBroker(BrokerRecord {
                broker_id,
                incarnation,
                endpoints: Endpoints {
                    kafka: "k:1".into(),
                    grpc: "g:1".into(),
                    internal: "i:1".into(),
                },
                rack: None,
            }),
            MetadataRecord::UnfenceBroker {
                broker_id,
                incarnation,
            },
        ];
        // The topic is placed on this broker alone, as the controller would decide it.
        let mut metadata = ClusterMetadata::default();
        metadata.apply_batch(&records).unwrap();
        let id = Uuid::from_u128(topic_id);
        records.extend(
            decisions::create_topic(&metadata, topic, id, 2, 1, BTreeMap::new(), 0).unwrap(),
        );
        records
    }

    /// Writes `records` through the leader and waits until every node in `nodes` applied them.
    async fn write(nodes: &[&Node], leader: u64, records: Vec<MetadataRecord>) {
        let leader = nodes.iter().find(|n| n.id == leader).unwrap();
        let written = leader
            .raft
            .client_write(MetadataBatch(records))
            .await
            .unwrap();
        assert_eq!(written.data.refused, None);
        for node in nodes {
            node.raft
                .wait(WAIT)
                .applied_index_at_least(Some(written.log_id.index), "the write")
                .await
                .unwrap();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_controllers_elect_a_leader_replicate_and_survive_its_loss() {
        let mut listeners = Vec::new();
        for _ in 0..3 {
            listeners.push(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
        }
        let members: BTreeMap<u64, BasicNode> = listeners
            .iter()
            .enumerate()
            .map(|(i, l)| {
                (
                    i as u64 + 1,
                    BasicNode {
                        addr: l.local_addr().unwrap().to_string(),
                    },
                )
            })
            .collect();
        let mut nodes = Vec::new();
        for (i, listener) in listeners.into_iter().enumerate() {
            nodes.push(start(i as u64 + 1, listener).await);
        }
        nodes[0].raft.initialize(members).await.unwrap();

        let all: Vec<&Node> = nodes.iter().collect();
        let leader = leader_among(&all).await;
        write(&all, leader, broker_and_topic(1, "first", 1)).await;
        let metadata = nodes[0].state_machine.metadata();
        assert!(metadata.topic_by_name("first").is_some());
        for node in &nodes {
            assert_eq!(node.state_machine.metadata(), metadata, "node {}", node.id);
        }

        // The leader stops: the other two elect a new one and keep writing.
        let stopped = nodes.iter().position(|n| n.id == leader).unwrap();
        nodes[stopped].raft.shutdown().await.unwrap();
        nodes[stopped].server.abort();
        let rest: Vec<&Node> = nodes.iter().filter(|n| n.id != leader).collect();
        let new_leader = leader_among(&rest).await;
        assert_ne!(new_leader, leader);
        write(&rest, new_leader, broker_and_topic(2, "second", 2)).await;
        assert_eq!(
            rest[0].state_machine.metadata(),
            rest[1].state_machine.metadata()
        );
        assert!(
            rest[0]
                .state_machine
                .metadata()
                .topic_by_name("second")
                .is_some()
        );
        for node in &nodes {
            if node.id != leader {
                node.raft.shutdown().await.unwrap();
            }
            node.server.abort();
        }
    }
}
