//! The HTTP admin endpoints of real `weir-broker` processes (each process has its own
//! metrics recorder, which in-process nodes would share): `/metrics` parsed as Prometheus
//! text moves as librdkafka produces and fetches, the under-replicated partition count rises
//! on a leader when a follower stops, and `/readyz` says 503 until a restarted broker has
//! caught up with the metadata log, then 200.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::broker_process::{BrokerProcess, Ports};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

/// The bound on every wait.
const WAIT: Duration = Duration::from_secs(60);

/// `GET path` over a fresh connection: the status code and the body.
fn get(address: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).expect("connect to the HTTP endpoints");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("an HTTP status line in {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The broker's metrics, parsed as Prometheus text.
fn scrape(address: &str) -> prometheus_parse::Scrape {
    let (status, body) = get(address, "/metrics");
    assert_eq!(status, 200, "{body}");
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
        .expect("/metrics is Prometheus text")
}

/// The value of series `name` whose labels include `labels` (a counter, a gauge, or a
/// histogram's count), or `None` if there is none.
fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .find(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .map(|s| match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            prometheus_parse::Value::Summary(_) => f64::NAN,
        })
}

/// Polls `condition` every 100 ms until it holds, for at most [`WAIT`].
fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "{what} within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Produces `count` records of `value_len` bytes to partition 0 of `topic` (created by the
/// broker on first use) with acks=all, and waits until all are delivered.
fn produce(bootstrap: &str, topic: &str, count: usize, value_len: usize) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("a librdkafka producer");
    let value = vec![b'v'; value_len];
    for i in 0..count {
        let key = format!("key-{i}");
        producer
            .send(BaseRecord::to(topic).partition(0).key(&key).payload(&value))
            .expect("queued");
    }
    producer.flush(WAIT).expect("every record delivered");
}

/// Consumes `count` records from the start of partition 0 of `topic`; returns their offsets.
fn consume(bootstrap: &str, topic: &str, count: usize) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "metrics-test")
        .set("enable.auto.commit", "false")
        .create()
        .expect("a librdkafka consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    // The list must not outlive the consumer, or the consumer's drop hangs.
    drop(assignment);
    let deadline = Instant::now() + WAIT;
    let mut offsets = Vec::with_capacity(count);
    while offsets.len() < count {
        assert!(
            Instant::now() < deadline,
            "{count} records consumed in time"
        );
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            offsets.push(message.expect("a record, not an error").offset());
        }
    }
    offsets
}

#[test]
fn produce_and_fetch_move_the_topic_and_request_series() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = BrokerProcess::start(dir.path(), &[], &[]);
    let http = broker.http_addr();
    let bootstrap = broker.wait_until_serving();
    assert_eq!(get(&http, "/healthz"), (200, "ok\n".to_string()));
    eventually("/readyz says ready", || get(&http, "/readyz").0 == 200);

    let before = scrape(&http);
    assert_eq!(
        value(
            &before,
            "weir_topic_records_in_total",
            &[("topic", "metered")]
        ),
        None
    );

    produce(&bootstrap, "metered", 20, 100);
    assert_eq!(
        consume(&bootstrap, "metered", 20),
        (0..20).collect::<Vec<_>>()
    );

    let after = scrape(&http);
    for name in [
        "weir_topic_records_in_total",
        "weir_topic_bytes_out_total",
        "weir_kafka_requests_total",
    ] {
        assert!(after.docs.contains_key(name), "{name} is described");
    }
    let topic = [("topic", "metered")];
    assert_eq!(
        value(&after, "weir_topic_records_in_total", &topic),
        Some(20.0)
    );
    let bytes_in = value(&after, "weir_topic_bytes_in_total", &topic).unwrap();
    assert!(bytes_in >= 20.0 * 100.0, "bytes in: {bytes_in}");
    let records_out = value(&after, "weir_topic_records_out_total", &topic).unwrap();
    assert!(records_out >= 20.0, "records out: {records_out}");
    let bytes_out = value(&after, "weir_topic_bytes_out_total", &topic).unwrap();
    assert!(
        bytes_out >= bytes_in,
        "bytes out {bytes_out}, in {bytes_in}"
    );
    for api in ["Produce", "Fetch", "Metadata", "ApiVersions"] {
        let requests = value(&after, "weir_kafka_requests_total", &[("api", api)]);
        assert!(requests.is_some_and(|n| n >= 1.0), "{api}: {requests:?}");
        let timed = value(
            &after,
            "weir_kafka_request_duration_seconds",
            &[("api", api)],
        );
        assert!(timed.is_some_and(|n| n >= 1.0), "{api} timed: {timed:?}");
    }

    // The per-partition gauges follow within their refresh interval.
    let partition = [("topic", "metered"), ("partition", "0")];
    eventually("the partition gauges show the records", || {
        let now = scrape(&http);
        value(&now, "weir_partition_log_end_offset", &partition) == Some(20.0)
            && value(&now, "weir_partition_high_watermark", &partition) == Some(20.0)
            && value(&now, "weir_partition_isr_size", &partition) == Some(1.0)
    });
    broker.stop();
}

/// Three voters that are brokers too, each started on ports chosen beforehand.
fn start_cluster(root: &Path, env: &[(&str, &str)]) -> (Vec<BrokerProcess>, Vec<Ports>) {
    let ports: Vec<Ports> = (0..3).map(|_| Ports::free()).collect();
    let voters = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}@{}", i + 1, p.internal_addr()))
        .collect::<Vec<_>>()
        .join(",");
    let brokers = ports
        .iter()
        .enumerate()
        .map(|(i, p)| start_node(root, i + 1, p, &voters, env))
        .collect();
    (brokers, ports)
}

fn start_node(
    root: &Path,
    id: usize,
    ports: &Ports,
    voters: &str,
    env: &[(&str, &str)],
) -> BrokerProcess {
    let dir = root.join(format!("node-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let node_id = id.to_string();
    BrokerProcess::start_on(
        &dir,
        ports,
        &["--node-id", &node_id, "--controller-voters", voters],
        env,
        &root.join(format!("node-{id}.log")),
    )
}

#[test]
fn a_stopped_follower_makes_its_leader_report_under_replicated_partitions() {
    let root = tempfile::tempdir().unwrap();
    let env = [
        ("WEIR_REPLICA_LAG_TIME_MAX_MS", "1000"),
        ("WEIR_REPLICA_FETCH_WAIT_MAX_MS", "100"),
        ("WEIR_DEFAULT_REPLICATION_FACTOR", "3"),
        ("WEIR_MIN_INSYNC_REPLICAS", "1"),
    ];
    let (mut brokers, ports) = start_cluster(root.path(), &env);
    for broker in &mut brokers {
        broker.wait_until_serving();
    }
    produce(&ports[0].kafka_addr(), "replicated", 10, 50);

    // The leader is the one broker whose ISR size series is not 0.
    let partition = [("topic", "replicated"), ("partition", "0")];
    let mut leader = None;
    eventually("one broker reports the full ISR as leader", || {
        leader = ports.iter().position(|p| {
            value(
                &scrape(&p.http_addr()),
                "weir_partition_isr_size",
                &partition,
            ) == Some(3.0)
        });
        leader.is_some()
    });
    let leader = leader.unwrap();
    let leader_http = ports[leader].http_addr();
    let under_replicated =
        |http: &str| value(&scrape(http), "weir_under_replicated_partitions", &[]).unwrap_or(-1.0);
    assert_eq!(under_replicated(&leader_http), 0.0);

    let follower = (leader + 1) % 3;
    brokers[follower].pause();
    eventually("the leader reports an under-replicated partition", || {
        under_replicated(&leader_http) >= 1.0
    });
    let shrinks = value(&scrape(&leader_http), "weir_isr_shrinks_total", &[]);
    assert!(
        shrinks.is_some_and(|n| n >= 1.0),
        "ISR shrinks: {shrinks:?}"
    );

    brokers[follower].resume();
    eventually("the follower rejoins the ISR", || {
        under_replicated(&leader_http) == 0.0
    });
    for broker in brokers {
        broker.stop();
    }
}

#[test]
fn readyz_waits_for_a_restarted_broker_to_catch_up_with_the_metadata_log() {
    let root = tempfile::tempdir().unwrap();
    // Node 1 is the only voter; node 2 a broker that follows its metadata log.
    let ports = [Ports::free(), Ports::free()];
    let voters = format!("1@{}", ports[0].internal_addr());
    let mut controller = start_node(root.path(), 1, &ports[0], &voters, &[]);
    let mut broker = start_node(root.path(), 2, &ports[1], &voters, &[]);
    controller.wait_until_serving();
    broker.wait_until_serving();
    let broker_http = ports[1].http_addr();
    eventually("the broker is ready", || {
        get(&broker_http, "/readyz").0 == 200
    });

    // Metadata the broker has not seen: it is stopped while a topic is created.
    broker.stop();
    produce(&ports[0].kafka_addr(), "created-while-down", 1, 10);
    controller.stop();

    // Restarted with no controller to catch up from, the broker is alive but not ready, for
    // as long as the controller stays away.
    let mut broker = start_node(root.path(), 2, &ports[1], &voters, &[]);
    broker.http_addr();
    for _ in 0..20 {
        assert_eq!(get(&broker_http, "/healthz").0, 200);
        let (status, body) = get(&broker_http, "/readyz");
        assert_eq!(status, 503, "{body}");
        assert!(body.starts_with("not ready: "), "{body}");
        std::thread::sleep(Duration::from_millis(100));
    }

    let controller = start_node(root.path(), 1, &ports[0], &voters, &[]);
    eventually("the restarted broker is ready", || {
        get(&broker_http, "/readyz").0 == 200
    });
    // Ready means caught up: it knows the topic created while it was down.
    let applied = value(&scrape(&broker_http), "weir_controller_applied_index", &[]);
    assert!(applied.is_some_and(|i| i > 0.0), "applied: {applied:?}");
    broker.wait_for_text("broker is live");
    broker.stop();
    controller.stop();
}
