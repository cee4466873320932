//! The controller quorum: how fast the active controller creates topics, and how long the
//! metadata log is unwritable after the active controller stops.
//!
//! ```text
//! cargo bench -p weir-benches --bench controller
//! ```
//!
//! Three controllers run in this process on `127.0.0.1`, each with its metadata log in a temp
//! directory on the real disk (every committed write is fsynced by a majority), with the
//! Raft timing a broker would use (heartbeat 100 ms, election timeout 0.3 to 0.6 s).
//!
//! - `create_topic`: topics of 3 partitions and replication factor 3 created one after the
//!   other through the active controller; criterion reports topics per second.
//! - `failover`: the active controller shuts down; the time until a write through one of the
//!   other two is committed. The node routes it as any request: it waits for a new active
//!   controller and retries. The goal is under 2 s with default timeouts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use weir_broker::clock::{Clock, SystemClock};
use weir_broker::config::Voter;
use weir_broker::controller::{BrokerRecord, Controller, ControllerConfig, Endpoints};

const WAIT: Duration = Duration::from_secs(30);
/// Topics created per timed iteration of `create_topic`.
const TOPICS_PER_ITERATION: u64 = 20;

/// A running quorum and the directories it keeps its logs in.
struct Quorum {
    controllers: Vec<Controller>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Quorum {
    async fn start() -> Quorum {
        let dirs: Vec<_> = (0..3)
            .map(|_| tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a temp dir"))
            .collect();
        let mut listeners = Vec::new();
        for _ in &dirs {
            listeners.push(
                TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind loopback"),
            );
        }
        let voters: Vec<Voter> = listeners
            .iter()
            .enumerate()
            .map(|(i, l)| Voter {
                node_id: i as u64 + 1,
                address: l.local_addr().expect("a bound address").to_string(),
            })
            .collect();
        let mut controllers = Vec::new();
        for (i, (listener, dir)) in listeners.into_iter().zip(&dirs).enumerate() {
            let config = ControllerConfig {
                node_id: i as u64 + 1,
                dir: dir.path().to_path_buf(),
                voters: voters.clone(),
                heartbeat_interval_ms: 100,
                election_timeout_min_ms: 300,
                election_timeout_max_ms: 600,
                broker_session_timeout_ms: 60_000,
                broker_heartbeat_interval_ms: 500,
                leader_balance_interval_ms: None,
                request_timeout_ms: 10_000,
                clock: Arc::new(SystemClock) as Arc<dyn Clock>,
            };
            controllers.push(
                Controller::start(config, listener)
                    .await
                    .expect("a controller starts"),
            );
        }
        let quorum = Quorum {
            controllers,
            _dirs: dirs,
        };
        for id in 1..=3 {
            let record = BrokerRecord {
                broker_id: id,
                incarnation: uuid::Uuid::new_v4(),
                endpoints: Endpoints {
                    kafka: format!("127.0.0.1:{}", 19_000 + id),
                    grpc: format!("127.0.0.1:{}", 19_100 + id),
                    internal: format!("127.0.0.1:{}", 19_200 + id),
                },
                rack: None,
            };
            let incarnation = record.incarnation;
            // Any node takes requests: it sends them on to the active controller.
            let node = &quorum.controllers[0];
            let registered_at = node.register_broker(record).await.expect("registered");
            node.heartbeat(id, incarnation, registered_at)
                .await
                .expect("unfenced");
        }
        quorum
    }

    async fn leader(&self) -> &Controller {
        let id = self.controllers[0]
            .wait_for_leader(WAIT)
            .await
            .expect("a leader");
        &self.controllers[id as usize - 1]
    }

    async fn stop(self) {
        for controller in self.controllers {
            controller.shutdown().await.expect("a clean shutdown");
        }
    }
}

fn create_topics(c: &mut Criterion, runtime: &Runtime) {
    let quorum = runtime.block_on(Quorum::start());
    let mut group = c.benchmark_group("controller");
    group.throughput(Throughput::Elements(TOPICS_PER_ITERATION));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    let mut created = 0u64;
    group.bench_function("create_topic", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iters * TOPICS_PER_ITERATION {
                    created += 1;
                    let name = format!("topic-{created}");
                    quorum
                        .leader()
                        .await
                        .view()
                        .create_topic(&name, 3, 3, BTreeMap::new())
                        .await
                        .expect("a topic is created");
                }
                start.elapsed()
            })
        });
    });
    group.finish();
    runtime.block_on(quorum.stop());
}

fn failover(c: &mut Criterion, runtime: &Runtime) {
    let mut group = c.benchmark_group("controller");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(30));
    group.bench_function("failover", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                total += runtime.block_on(one_failover());
            }
            total
        });
    });
    group.finish();
}

/// Starts a quorum, stops its leader, and times the first write committed after that.
async fn one_failover() -> Duration {
    let mut quorum = Quorum::start().await;
    let leader_id = quorum.leader().await.node_id();
    let position = quorum
        .controllers
        .iter()
        .position(|c| c.node_id() == leader_id)
        .expect("the leader");
    let leader = quorum.controllers.remove(position);
    leader.shutdown().await.expect("the leader stops");
    // Timed from the moment the leader is gone: its peers hear nothing more from it.
    let start = Instant::now();
    quorum.controllers[0]
        .view()
        .create_topic("after-failover", 1, 1, BTreeMap::new())
        .await
        .expect("a write after failover");
    let elapsed = start.elapsed();
    quorum.stop().await;
    elapsed
}

fn benches(c: &mut Criterion) {
    let runtime = Runtime::new().expect("a tokio runtime");
    create_topics(c, &runtime);
    failover(c, &runtime);
}

criterion_group!(controller, benches);
criterion_main!(controller);
