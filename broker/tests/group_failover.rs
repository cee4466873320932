//! Coordinator failover on three brokers: a librdkafka consumer group consumes and commits
//! while the broker coordinating it stops (without a controlled shutdown); the group goes on
//! with the new coordinator, which replayed `__consumer_offsets`, and its committed offsets
//! are intact.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use weir_broker::config::NodeConfig;
use weir_broker::group::{OFFSETS_TOPIC, partition_for};
use weir_broker::storage::TopicPartition;

const WAIT: Duration = Duration::from_secs(90);
const TOPIC: &str = "stream";
const GROUP: &str = "failover";
const PARTITIONS: i32 = 6;

fn configure(config: &mut NodeConfig) {
    config.group_initial_rebalance_delay_ms = 300;
    config.offsets_topic_num_partitions = 3;
    config.offsets_topic_segment_bytes = 1024 * 1024;
    // Segments are preallocated: keep the test's files small.
    config.log_segment_bytes = 4 * 1024 * 1024;
    // The coordinator goes away as a failed broker does, not handing over first.
    config.controlled_shutdown_enable = false;
}

async fn produce(bootstrap: &str, from: usize, count: usize) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let mut deliveries = Vec::new();
    for i in from..from + count {
        let value = format!("record-{i:05}");
        let partition = i32::try_from(i).unwrap() % PARTITIONS;
        deliveries.push(
            producer
                .send_result::<(), String>(
                    FutureRecord::to(TOPIC).partition(partition).payload(&value),
                )
                .expect("queued"),
        );
    }
    for delivery in deliveries {
        tokio::time::timeout(WAIT, delivery)
            .await
            .expect("delivered in time")
            .expect("not cancelled")
            .unwrap_or_else(|(e, _)| panic!("{e}"));
    }
}

fn consumer(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", GROUP)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "300")
        .create()
        .unwrap()
}

/// The committed offsets of the group, asked by a consumer that does not join it.
fn committed(bootstrap: &str) -> BTreeMap<i32, i64> {
    let c = consumer(bootstrap);
    let mut list = rdkafka::TopicPartitionList::new();
    for p in 0..PARTITIONS {
        list.add_partition(TOPIC, p);
    }
    // Read out before the consumer goes: the list holds references into it.
    c.committed_offsets(list, WAIT)
        .expect("the committed offsets are read")
        .elements()
        .iter()
        .map(|e| (e.partition(), e.offset().to_raw().unwrap_or(-1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_carries_on_with_its_offsets_when_its_coordinator_fails() {
    let mut cluster = Cluster::start(3, configure).await;
    cluster
        .create_topic(TOPIC, PARTITIONS, 3, &[("min.insync.replicas", "2")])
        .await;
    let bootstrap = cluster.bootstrap();
    produce(&bootstrap, 0, 300).await;

    // The consumer commits every record it reads, synchronously.
    let received = Arc::new(AtomicUsize::new(0));
    let reader = tokio::task::spawn_blocking({
        let bootstrap = bootstrap.clone();
        let received = Arc::clone(&received);
        move || {
            let c = consumer(&bootstrap);
            c.subscribe(&[TOPIC]).unwrap();
            let mut values = Vec::new();
            let deadline = Instant::now() + WAIT;
            while values.iter().collect::<BTreeSet<_>>().len() < 600 {
                assert!(
                    Instant::now() < deadline,
                    "read {} distinct records of 600",
                    values.iter().collect::<BTreeSet<_>>().len()
                );
                // Errors while the coordinator moves are reported and retried.
                if let Some(Ok(message)) = c.poll(Duration::from_millis(50)) {
                    let value = String::from_utf8(message.payload().unwrap().to_vec()).unwrap();
                    // A commit during the failover may fail; the next one covers it.
                    let _retried = c.commit_message(&message, CommitMode::Sync);
                    values.push(value);
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
            values
        }
    });

    let deadline = Instant::now() + WAIT;
    while received.load(Ordering::Relaxed) < 300 {
        assert!(
            Instant::now() < deadline,
            "the group reads the first records"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = tokio::task::spawn_blocking({
        let bootstrap = bootstrap.clone();
        move || committed(&bootstrap)
    })
    .await
    .unwrap();
    assert_eq!(
        before.values().sum::<i64>(),
        300,
        "every record read was committed"
    );

    let offsets_partition = partition_for(GROUP, 3);
    let tp = TopicPartition::new(OFFSETS_TOPIC, offsets_partition);
    let coordinator = cluster
        .leader(&tp)
        .expect("the group's partition has a leader");
    cluster.stop_broker(coordinator).await;
    cluster
        .wait_for("a new coordinator", || async {
            cluster.leader(&tp).is_some_and(|l| l != coordinator)
        })
        .await;

    let bootstrap = cluster.bootstrap();
    produce(&bootstrap, 300, 300).await;
    let values = tokio::time::timeout(WAIT, reader)
        .await
        .expect("the group reads on")
        .unwrap();
    let distinct: BTreeSet<&String> = values.iter().collect();
    assert_eq!(distinct.len(), 600);
    // Only a record whose commit was cut off by the failover may come again.
    assert!(
        values.len() - distinct.len() <= PARTITIONS as usize,
        "{} records read twice",
        values.len() - distinct.len()
    );

    // The new coordinator has every offset: those committed before the failover, and after.
    let after = tokio::task::spawn_blocking(move || committed(&bootstrap))
        .await
        .unwrap();
    assert_eq!(after, (0..PARTITIONS).map(|p| (p, 100)).collect());
    cluster.shutdown().await;
}
