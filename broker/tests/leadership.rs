//! Where partition leadership goes when brokers stop and return, across three brokers in one
//! process (a controller-only node holds the quorum): a controlled shutdown hands a stopping
//! broker's leaderships to other in-sync replicas while clients keep writing; a broker that
//! stops without one is fenced as soon as its session stream closes, long before its session
//! times out; and partitions go back to their preferred leaders once those return.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use weir_broker::partition::Role;
use weir_broker::storage::TopicPartition;

use common::cluster::{Cluster, WAIT};

const TOPIC: &str = "leaders";
const PARTITIONS: i32 = 3;

fn tp(partition: i32) -> TopicPartition {
    TopicPartition::new(TOPIC, partition)
}

/// The leader of every partition, by partition.
fn leaders(cluster: &Cluster) -> Vec<Option<i32>> {
    (0..PARTITIONS).map(|p| cluster.leader(&tp(p))).collect()
}

/// Writes numbered records round-robin over the partitions with an idempotent acks=all
/// producer until `stop` is set; returns how many were acknowledged, and every failure.
async fn produce_until(bootstrap: String, stop: Arc<AtomicBool>) -> (usize, Vec<String>) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "1")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("a librdkafka producer");
    let mut deliveries = Vec::new();
    let mut sent: i32 = 0;
    while !stop.load(Ordering::Relaxed) {
        let value = sent.to_string();
        let partition = sent % PARTITIONS;
        let record = FutureRecord::<(), _>::to(TOPIC)
            .partition(partition)
            .payload(&value);
        deliveries.push(producer.send_result(record).expect("queued"));
        sent += 1;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut acknowledged = 0;
    let mut failures = Vec::new();
    for delivery in deliveries {
        match delivery.await.expect("not cancelled") {
            Ok(_) => acknowledged += 1,
            Err((e, _)) => failures.push(e.to_string()),
        }
    }
    (acknowledged, failures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_controlled_shutdown_moves_leadership_while_producers_write() {
    let mut cluster = Cluster::start(3, |_| {}).await;
    cluster
        .create_topic(TOPIC, PARTITIONS, 3, &[("min.insync.replicas", "2")])
        .await;
    let stopping = cluster.leader(&tp(0)).expect("partition 0 has a leader");

    let stop = Arc::new(AtomicBool::new(false));
    let producer = tokio::spawn(produce_until(cluster.bootstrap(), Arc::clone(&stop)));
    tokio::time::sleep(Duration::from_millis(500)).await;

    // What `Node::shutdown` does first, on its own, so the broker can be watched after it.
    let moves = cluster
        .broker(stopping)
        .controller()
        .controlled_shutdown(WAIT)
        .await
        .expect("the controlled shutdown completes");
    assert!(moves.moved >= 1 && moves.offline == 0, "{moves:?}");
    // Once it returns, the committed metadata has the broker fenced, leading nothing and in
    // no ISR, while it still runs and answers clients.
    assert!(cluster.is_fenced(stopping));
    for partition in 0..PARTITIONS {
        let leader = cluster.leader(&tp(partition));
        assert!(leader.is_some() && leader != Some(stopping), "{leader:?}");
        assert!(!cluster.isr(&tp(partition)).contains(&stopping));
    }
    let replica = cluster.replica(stopping, &tp(0)).unwrap();
    cluster
        .wait_for("the stopping broker to follow the new leader", || async {
            replica.role() != Role::Leader
        })
        .await;
    cluster.stop_broker(stopping).await;
    // Keep writing through the new leaders for a while.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    let (acknowledged, failures) = producer.await.unwrap();

    assert!(
        failures.is_empty(),
        "a controlled shutdown must cost clients no failed write, only a metadata refresh: \
         {failures:?}"
    );
    assert!(acknowledged > 0);
    assert!(cluster.is_fenced(stopping));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_stopping_without_controlled_shutdown_is_fenced_when_its_session_stream_closes() {
    // Sessions of ten minutes: only the closed session stream can fence the broker in time.
    let mut cluster = Cluster::start(3, |config| {
        config.broker_session_timeout_ms = 600_000;
        config.controlled_shutdown_enable = false;
    })
    .await;
    cluster.create_topic(TOPIC, PARTITIONS, 3, &[]).await;
    let stopping = cluster.leader(&tp(0)).expect("partition 0 has a leader");
    cluster.stop_broker(stopping).await;
    cluster
        .wait_for(
            "the stopped broker fenced and its leadership moved",
            || async {
                cluster.is_fenced(stopping)
                    && cluster
                        .leader(&tp(0))
                        .is_some_and(|leader| leader != stopping)
            },
        )
        .await;
    // The others keep their sessions: their streams are open.
    for (id, _) in cluster.running() {
        assert!(!cluster.is_fenced(id), "broker {id} was fenced");
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partitions_go_back_to_their_preferred_leaders() {
    let mut cluster = Cluster::start(3, |config| {
        config.leader_imbalance_check_interval_ms = 100;
    })
    .await;
    cluster.create_topic(TOPIC, PARTITIONS, 3, &[]).await;
    let preferred = leaders(&cluster);
    let metadata = cluster.metadata();
    let topic = metadata.topic_by_name(TOPIC).unwrap();
    for (partition, leader) in topic.partitions.iter().zip(&preferred) {
        assert_eq!(partition.replicas.first(), leader.as_ref());
    }

    let returning = preferred[0].unwrap();
    cluster.stop_broker(returning).await;
    assert!(!leaders(&cluster).contains(&Some(returning)));
    cluster.start_broker(returning).await;
    cluster
        .wait_for(
            "the restarted broker leading its preferred partitions",
            || async { leaders(&cluster) == preferred },
        )
        .await;
    // It leads them as a replica in sync: the leader serves the partition.
    let replica = cluster.replica(returning, &tp(0)).unwrap();
    cluster
        .wait_for("the restarted broker's replica leading", || async {
            replica.role() == Role::Leader
        })
        .await;
    cluster.shutdown().await;
}
