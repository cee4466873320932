//! Replication's metrics, as an exporter would see them, on three brokers in one process
//! (they share this test binary's recorder, so counters add up across brokers).
//!
//! This test installs the process-wide metrics recorder, so it lives in a test binary of its
//! own.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

use common::cluster::Cluster;

/// Every recorded metric by name and labels (`name{label=value,...}`), with whether it has
/// a description.
fn snapshot(snapshotter: &Snapshotter) -> HashMap<String, (DebugValue, bool)> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _unit, description, value)| {
            let mut labels: Vec<String> = key
                .key()
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            let name = if labels.is_empty() {
                key.key().name().to_string()
            } else {
                format!("{}{{{}}}", key.key().name(), labels.join(","))
            };
            (name, (value, description.is_some()))
        })
        .collect()
}

fn counter(values: &HashMap<String, (DebugValue, bool)>, name: &str) -> u64 {
    match values.get(name) {
        Some((DebugValue::Counter(n), true)) => *n,
        None => 0,
        other => panic!("{name} is not a described counter: {other:?}"),
    }
}

async fn wait_until(
    what: &str,
    snapshotter: &Snapshotter,
    check: impl Fn(&HashMap<String, (DebugValue, bool)>) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if check(&snapshot(snapshotter)) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replication_reports_bytes_isr_changes_and_follower_lag() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this test binary");

    let mut cluster = Cluster::start(3, |_| {}).await;
    cluster.create_topic("metered", 1, 3, &[]).await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap())
        .set("acks", "all")
        .create()
        .unwrap();
    for i in 0..50 {
        let value = format!("record-{i}");
        producer
            .send(
                FutureRecord::<(), _>::to("metered")
                    .partition(0)
                    .payload(&value),
                Duration::from_secs(30),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("{e}"));
    }
    wait_until("bytes copied both ways", &snapshotter, |values| {
        counter(values, "weir_replication_bytes_in_total") > 0
            && counter(values, "weir_replication_bytes_out_total") > 0
    })
    .await;

    // The leader reports each follower's lag, labelled by follower.
    let tp = weir_broker::storage::TopicPartition::new("metered", 0);
    let leader = cluster.leader(&tp).unwrap();
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    let lag = format!("weir_replica_lag_records{{follower={follower},partition=0,topic=metered}}");
    wait_until("the follower's lag", &snapshotter, |values| {
        matches!(values.get(&lag), Some((DebugValue::Gauge(v), true)) if v.into_inner() == 0.0)
    })
    .await;
    let values = snapshot(&snapshotter);
    assert!(matches!(
        values.get("weir_under_replicated_partitions"),
        Some((DebugValue::Gauge(_), true))
    ));
    assert!(matches!(
        values.get("weir_controller_offline_partitions"),
        Some((DebugValue::Gauge(v), true)) if v.into_inner() == 0.0
    ));

    // A follower stops: the ISR shrinks; it comes back: the ISR grows.
    let shrinks = counter(&values, "weir_isr_shrinks_total");
    let expands = counter(&values, "weir_isr_expands_total");
    cluster.stop_broker(follower).await;
    wait_until("an ISR shrink", &snapshotter, |values| {
        counter(values, "weir_isr_shrinks_total") > shrinks
    })
    .await;
    cluster.start_broker(follower).await;
    wait_until("an ISR expansion", &snapshotter, |values| {
        counter(values, "weir_isr_expands_total") > expands
    })
    .await;
    cluster.shutdown().await;
}
