//! Consumer groups on the classic protocol with librdkafka, on one node: members split a
//! topic's partitions and consume every record exactly once; members joining and leaving
//! rebalance the group so every partition always has exactly one owner; committed offsets
//! outlive the consumer that committed them; the cooperative-sticky assignor moves only the
//! partitions it must.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Message};
use weir_broker::config::NodeConfig;
use weir_broker::server::Node;

const WAIT: Duration = Duration::from_secs(60);
const PARTITIONS: i32 = 6;

/// A node whose groups rebalance quickly: a short wait for the first members, few
/// partitions of `__consumer_offsets`.
async fn start_node(dir: &std::path::Path) -> Node {
    // `RUST_LOG=weir_broker::group=debug` shows what the coordinator does.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut config = common::node::single_node_config(dir);
    fast_groups(&mut config);
    common::node::start(config).await
}

fn fast_groups(config: &mut NodeConfig) {
    // Segments are preallocated: keep the test's files small.
    config.log_segment_bytes = 4 * 1024 * 1024;
    config.group_initial_rebalance_delay_ms = 500;
    config.offsets_topic_num_partitions = 4;
    config.offsets_topic_segment_bytes = 1024 * 1024;
    config.group_consumer_heartbeat_interval_ms = 300;
}

/// The client settings of the classic protocol (the default) and of the consumer protocol
/// (KIP-848), which takes no session or heartbeat settings from the client.
const CLASSIC: &[(&str, &str)] = &[
    ("session.timeout.ms", "6000"),
    ("heartbeat.interval.ms", "300"),
];
const CONSUMER_PROTOCOL: &[(&str, &str)] = &[("group.protocol", "consumer")];

/// Records the partitions each rebalance revoked from a consumer.
#[derive(Default)]
struct Revocations {
    revoked: Mutex<Vec<(String, i32)>>,
}

impl ClientContext for Revocations {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        eprintln!("librdkafka {level:?} {facility}: {message}");
    }
}

impl ConsumerContext for Revocations {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let mut revoked = self.revoked.lock().unwrap();
            for element in list.elements() {
                revoked.push((element.topic().to_string(), element.partition()));
            }
        }
    }
}

type TestConsumer = BaseConsumer<Revocations>;

fn consumer(bootstrap: &str, group: &str, extra: &[(&str, &str)]) -> TestConsumer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("topic.metadata.refresh.interval.ms", "1000");
    for (key, value) in extra {
        config.set(*key, *value);
    }
    // `WEIR_TEST_RDKAFKA_DEBUG=cgrp` shows what librdkafka's group client does.
    if let Ok(debug) = std::env::var("WEIR_TEST_RDKAFKA_DEBUG") {
        config.set("debug", debug);
    }
    config
        .create_with_context(Revocations::default())
        .expect("the consumer is created")
}

fn assigned(consumer: &TestConsumer) -> BTreeSet<i32> {
    consumer
        .assignment()
        .map(|list| list.elements().iter().map(|e| e.partition()).collect())
        .unwrap_or_default()
}

/// Polls every consumer until their assignments are `sizes` (in order) and together cover
/// every partition once; returns the assignments.
fn poll_until_assigned(consumers: &[&TestConsumer], sizes: &[usize]) -> Vec<BTreeSet<i32>> {
    let deadline = Instant::now() + WAIT;
    loop {
        for c in consumers {
            // Polling drives the group protocol; nothing has been produced yet.
            if let Some(Err(e)) = c.poll(Duration::from_millis(20)) {
                panic!("a consumer failed: {e}");
            }
        }
        let sets: Vec<BTreeSet<i32>> = consumers.iter().map(|c| assigned(c)).collect();
        let union: BTreeSet<i32> = sets.iter().flatten().copied().collect();
        let total: usize = sets.iter().map(BTreeSet::len).sum();
        let got: Vec<usize> = sets.iter().map(BTreeSet::len).collect();
        if got == sizes && total == union.len() && union.len() == PARTITIONS as usize {
            return sets;
        }
        assert!(
            Instant::now() < deadline,
            "assignments {sets:?}, expected sizes {sizes:?} covering {PARTITIONS} partitions"
        );
    }
}

async fn create_topic(node: &Node, topic: &str) {
    common::node::create_topic(node, topic, PARTITIONS).await;
}

/// Produces `count` records spread over the partitions; returns their values.
async fn produce(bootstrap: &str, topic: &str, from: usize, count: usize) -> BTreeSet<String> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let mut values = BTreeSet::new();
    let mut deliveries = Vec::new();
    for i in from..from + count {
        let value = format!("record-{i:05}");
        let partition = i32::try_from(i).unwrap() % PARTITIONS;
        deliveries.push(
            producer
                .send_result::<(), String>(
                    FutureRecord::to(topic).partition(partition).payload(&value),
                )
                .expect("queued"),
        );
        values.insert(value);
    }
    for delivery in deliveries {
        tokio::time::timeout(WAIT, delivery)
            .await
            .expect("delivered in time")
            .expect("not cancelled")
            .unwrap_or_else(|(e, _)| panic!("{e}"));
    }
    values
}

/// Polls the consumers until they received `count` records between them; returns what
/// each received.
fn consume(consumers: &[&TestConsumer], count: usize) -> Vec<Vec<(i32, String)>> {
    let mut received = vec![Vec::new(); consumers.len()];
    let deadline = Instant::now() + WAIT;
    while received.iter().map(Vec::len).sum::<usize>() < count {
        assert!(
            Instant::now() < deadline,
            "received {} of {count} records",
            received.iter().map(Vec::len).sum::<usize>()
        );
        for (i, c) in consumers.iter().enumerate() {
            match c.poll(Duration::from_millis(20)) {
                Some(Ok(message)) => {
                    let value = String::from_utf8(message.payload().unwrap().to_vec()).unwrap();
                    received[i].push((message.partition(), value));
                }
                Some(Err(e)) => panic!("a consumer failed: {e}"),
                None => {}
            }
        }
    }
    received
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_consumers_split_six_partitions_and_rebalance_as_members_come_and_go() {
    split_and_rebalance(CLASSIC).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_protocol_splits_and_rebalances_with_server_side_assignment() {
    split_and_rebalance(CONSUMER_PROTOCOL).await;
}

/// Three consumers share six partitions and read every record once; a fourth joins and one
/// leaves, and after each change every partition has exactly one owner.
async fn split_and_rebalance(protocol: &'static [(&'static str, &'static str)]) {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path()).await;
    let bootstrap = node.kafka_addr().to_string();
    create_topic(&node, "orders").await;

    let (sent, first) = tokio::task::spawn_blocking({
        let bootstrap = bootstrap.clone();
        move || {
            let members: Vec<TestConsumer> = (0..3)
                .map(|_| {
                    let c = consumer(&bootstrap, "split", protocol);
                    c.subscribe(&["orders"]).unwrap();
                    c
                })
                .collect();
            let refs: Vec<&TestConsumer> = members.iter().collect();
            let sets = poll_until_assigned(&refs, &[2, 2, 2]);
            (members, sets)
        }
    })
    .await
    .unwrap();
    let members = sent;
    assert_eq!(first.len(), 3);

    let values = produce(&bootstrap, "orders", 0, 600).await;
    let (members, received) = tokio::task::spawn_blocking(move || {
        let refs: Vec<&TestConsumer> = members.iter().collect();
        let received = consume(&refs, 600);
        (members, received)
    })
    .await
    .unwrap();
    // Exactly once: every record, none twice, each from a partition its consumer owns.
    let all: Vec<&String> = received.iter().flatten().map(|(_, v)| v).collect();
    assert_eq!(all.len(), 600);
    assert_eq!(
        all.iter().copied().cloned().collect::<BTreeSet<_>>(),
        values
    );
    for (i, got) in received.iter().enumerate() {
        assert!(got.iter().all(|(p, _)| first[i].contains(p)));
        assert_eq!(got.len(), 200, "consumer {i} owns two of six partitions");
    }

    // A fourth member joins: 2+2+1+1 (in some order), each partition owned once.
    let (members, fourth) = tokio::task::spawn_blocking({
        let bootstrap = bootstrap.clone();
        move || {
            let fourth = consumer(&bootstrap, "split", protocol);
            fourth.subscribe(&["orders"]).unwrap();
            let deadline = Instant::now() + WAIT;
            loop {
                let mut all: Vec<&TestConsumer> = members.iter().collect();
                all.push(&fourth);
                for c in &all {
                    assert!(c.poll(Duration::from_millis(20)).is_none_or(|m| m.is_ok()));
                }
                let sets: Vec<BTreeSet<i32>> = all.iter().map(|c| assigned(c)).collect();
                let mut sizes: Vec<usize> = sets.iter().map(BTreeSet::len).collect();
                sizes.sort_unstable();
                let union: BTreeSet<i32> = sets.iter().flatten().copied().collect();
                if sizes == [1, 1, 2, 2] && union.len() == PARTITIONS as usize {
                    break;
                }
                assert!(Instant::now() < deadline, "four members: {sets:?}");
            }
            (members, fourth)
        }
    })
    .await
    .unwrap();

    // One of the first three leaves: the three left own two partitions each again.
    tokio::task::spawn_blocking(move || {
        let mut members = members;
        let leaving = members.remove(0);
        leaving.unsubscribe();
        drop(leaving);
        members.push(fourth);
        let refs: Vec<&TestConsumer> = members.iter().collect();
        poll_until_assigned(&refs, &[2, 2, 2]);
    })
    .await
    .unwrap();
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_outlive_the_consumer_that_committed_them() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path()).await;
    let bootstrap = node.kafka_addr().to_string();
    create_topic(&node, "payments").await;
    produce(&bootstrap, "payments", 0, 300).await;

    let first_read = tokio::task::spawn_blocking({
        let bootstrap = bootstrap.clone();
        move || {
            let c = consumer(&bootstrap, "billing", CLASSIC);
            c.subscribe(&["payments"]).unwrap();
            let read = consume(&[&c], 300);
            c.commit_consumer_state(CommitMode::Sync)
                .expect("the offsets are committed");
            // Read out before the consumer goes: the list holds references into it, and
            // librdkafka's shutdown waits for them.
            let committed: BTreeMap<i32, i64> = c
                .committed(WAIT)
                .expect("the committed offsets are read")
                .elements()
                .iter()
                .map(|e| (e.partition(), e.offset().to_raw().unwrap()))
                .collect();
            (read, committed)
        }
    })
    .await
    .unwrap();
    let (read, committed) = first_read;
    assert_eq!(read[0].len(), 300);
    assert_eq!(committed, (0..PARTITIONS).map(|p| (p, 50)).collect());

    let later = produce(&bootstrap, "payments", 300, 120).await;
    let second_read = tokio::task::spawn_blocking({
        let bootstrap = bootstrap.clone();
        move || {
            let c = consumer(&bootstrap, "billing", CLASSIC);
            c.subscribe(&["payments"]).unwrap();
            let read = consume(&[&c], 120);
            // Nothing more arrives: nothing committed is delivered again.
            let extra = c.poll(Duration::from_secs(1));
            assert!(extra.is_none(), "an extra record after the 120 new ones");
            read
        }
    })
    .await
    .unwrap();
    let got: BTreeSet<String> = second_read[0].iter().map(|(_, v)| v.clone()).collect();
    assert_eq!(got, later, "only the records after the committed offsets");
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cooperative_sticky_assignor_moves_only_the_partitions_it_must() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path()).await;
    let bootstrap = node.kafka_addr().to_string();
    create_topic(&node, "events").await;
    let cooperative = [
        ("partition.assignment.strategy", "cooperative-sticky"),
        CLASSIC[0],
        CLASSIC[1],
    ];
    tokio::task::spawn_blocking(move || {
        let a = consumer(&bootstrap, "sticky", &cooperative);
        let b = consumer(&bootstrap, "sticky", &cooperative);
        a.subscribe(&["events"]).unwrap();
        b.subscribe(&["events"]).unwrap();
        let before = poll_until_assigned(&[&a, &b], &[3, 3]);
        let revoked_before =
            a.context().revoked.lock().unwrap().len() + b.context().revoked.lock().unwrap().len();

        let c = consumer(&bootstrap, "sticky", &cooperative);
        c.subscribe(&["events"]).unwrap();
        let after = poll_until_assigned(&[&a, &b, &c], &[2, 2, 2]);
        // Each first member kept two of its three partitions; only two moved, to the third.
        assert!(after[0].is_subset(&before[0]), "{before:?} then {after:?}");
        assert!(after[1].is_subset(&before[1]), "{before:?} then {after:?}");
        let revoked = a.context().revoked.lock().unwrap().len()
            + b.context().revoked.lock().unwrap().len()
            - revoked_before;
        assert_eq!(
            revoked, 2,
            "only the two partitions that moved were revoked"
        );
    })
    .await
    .unwrap();
    node.shutdown().await.unwrap();
}
