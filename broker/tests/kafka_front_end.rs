//! The Kafka listener against a real client (librdkafka, through the `rdkafka` crate) and
//! against malformed input: metadata lists the brokers and partitions, and a broken request
//! closes only its own connection.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir_broker::server::Node;

const WAIT: Duration = Duration::from_secs(30);

/// A whole single node, and its Kafka listener's address.
async fn start_node(dir: &std::path::Path) -> (Node, String) {
    let node = common::node::start(common::node::single_node_config(dir)).await;
    let bootstrap = node.kafka_addr().to_string();
    (node, bootstrap)
}

fn client(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "metadata-test")
        .create()
        .expect("a librdkafka client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_reads_brokers_and_partitions_from_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let (node, bootstrap) = start_node(dir.path()).await;
    node.controller()
        .view()
        .create_topic("orders", 3, 1, BTreeMap::new())
        .await
        .unwrap();

    let metadata = tokio::task::spawn_blocking(move || {
        let client = client(&bootstrap);
        let all = client.fetch_metadata(None, WAIT).expect("metadata");
        let missing = client
            .fetch_metadata(Some("missing"), WAIT)
            .expect("metadata for an unknown topic");
        (all, missing, bootstrap)
    })
    .await
    .unwrap();
    let (all, missing, bootstrap) = metadata;
    let brokers: Vec<_> = all
        .brokers()
        .iter()
        .map(|b| (b.id(), format!("{}:{}", b.host(), b.port())))
        .collect();
    assert_eq!(brokers, [(1, bootstrap)]);
    // The client has a group.id, so its group client may have created the internal
    // __consumer_offsets already: only the topics of users count here.
    let user_topics: Vec<_> = all
        .topics()
        .iter()
        .filter(|t| t.name() != weir_broker::group::OFFSETS_TOPIC)
        .collect();
    let topics: Vec<_> = user_topics.iter().map(|t| t.name().to_string()).collect();
    assert_eq!(topics, ["orders"]);
    let orders = user_topics[0];
    assert!(orders.error().is_none());
    assert_eq!(orders.partitions().len(), 3);
    for (index, partition) in orders.partitions().iter().enumerate() {
        assert_eq!(partition.id(), index as i32);
        assert_eq!(partition.leader(), 1);
        assert_eq!(partition.replicas(), [1]);
        assert_eq!(partition.isr(), [1]);
    }
    let unknown = &missing.topics()[0];
    assert_eq!(unknown.name(), "missing");
    assert_eq!(
        unknown.error(),
        Some(rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
    );
    node.shutdown().await.unwrap();
}

/// Sends `frame` (length prefix included) and reads one framed response, or `None` if the
/// broker closed the connection.
async fn exchange(stream: &mut TcpStream, frame: &[u8]) -> Option<Vec<u8>> {
    stream.write_all(frame).await.ok()?;
    let read = async {
        let length = stream.read_i32().await.ok()?;
        let mut body = vec![0; usize::try_from(length).ok()?];
        stream.read_exact(&mut body).await.ok()?;
        Some(body)
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("an answer or a close, not a hang")
}

/// A request frame: header v1 (key, version, correlation id, no client id) and `body`.
fn request(key: i16, version: i16, correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    let length = (2 + 2 + 4 + 2 + body.len()) as i32;
    frame.extend(length.to_be_bytes());
    frame.extend(key.to_be_bytes());
    frame.extend(version.to_be_bytes());
    frame.extend(correlation_id.to_be_bytes());
    frame.extend((-1i16).to_be_bytes());
    frame.extend(body);
    frame
}

/// A Produce request (acks=all) of `records` to partition 0 of `topic`.
fn produce_request(topic: &str, records: bytes::Bytes) -> kafka_protocol::messages::ProduceRequest {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.into())))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records)),
                ]),
        ])
}

/// Produces numbered records to `topic` with acks=all, one at a time, and consumes each back,
/// until `stop`; returns how many were produced and how many consumed. Panics on any error.
fn produce_and_consume_until(
    bootstrap: &str,
    topic: &str,
    stop: &std::sync::atomic::AtomicBool,
    progress: &std::sync::atomic::AtomicUsize,
) -> (usize, usize) {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    use rdkafka::{Message, Offset, TopicPartitionList};
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "0")
        .create()
        .unwrap();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "steady")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Offset(0))
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let (mut produced, mut consumed) = (0, 0);
    let deadline = std::time::Instant::now() + WAIT;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let value = format!("steady-{produced}");
        producer
            .send(BaseRecord::<(), _>::to(topic).payload(&value))
            .map_err(|(e, _)| e)
            .unwrap();
        producer.flush(WAIT).unwrap();
        produced += 1;
        progress.store(produced, std::sync::atomic::Ordering::Relaxed);
        while consumed < produced {
            assert!(std::time::Instant::now() < deadline, "consumed in time");
            let Some(message) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let message = message.expect("a record, not an error");
            // The raw produce of this test lands in the same partition; skip its records.
            if message.payload().is_some_and(|p| p.starts_with(b"steady-")) {
                assert_eq!(
                    message.payload(),
                    Some(format!("steady-{consumed}").as_bytes())
                );
                consumed += 1;
            }
        }
    }
    (produced, consumed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_close_their_own_connection_only() {
    let dir = tempfile::tempdir().unwrap();
    let (node, bootstrap) = start_node(dir.path()).await;
    common::node::create_topic(&node, "steady", 1).await;
    let mut healthy = TcpStream::connect(&bootstrap).await.unwrap();
    let api_versions = request(18, 0, 1, &[]);
    assert!(exchange(&mut healthy, &api_versions).await.is_some());
    // A real client produces and consumes throughout.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let progress = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let steady = std::thread::spawn({
        let (bootstrap, stop, progress) =
            (bootstrap.clone(), Arc::clone(&stop), Arc::clone(&progress));
        move || produce_and_consume_until(&bootstrap, "steady", &stop, &progress)
    });
    // The malformed requests come while the client is working, not before it started.
    let deadline = std::time::Instant::now() + WAIT;
    while progress.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        assert!(std::time::Instant::now() < deadline, "the client produces");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // ApiVersions at a version we do not know: UNSUPPORTED_VERSION (35) at v0, with our ranges.
    let mut stream = TcpStream::connect(&bootstrap).await.unwrap();
    let reply = exchange(&mut stream, &request(18, 99, 7, &[]))
        .await
        .unwrap();
    assert_eq!(reply[..4], 7i32.to_be_bytes(), "the correlation id");
    assert_eq!(reply[4..6], 35i16.to_be_bytes(), "UNSUPPORTED_VERSION");
    let keys = i32::from_be_bytes(reply[6..10].try_into().unwrap());
    assert!(keys >= 2, "our ranges: {keys} APIs");

    // Each of these closes its connection.
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("an unknown API key", request(999, 0, 2, &[])),
        ("an unsupported version", request(3, 99, 3, &[])),
        (
            "a frame over the limit",
            (200 * 1024 * 1024i32).to_be_bytes().to_vec(),
        ),
        ("a negative length", (-5i32).to_be_bytes().to_vec()),
        ("a header cut short", [0, 0, 0, 3, 0, 18, 0].to_vec()),
        ("a body that does not decode", request(3, 9, 4, &[0xff; 3])),
    ];
    for (what, frame) in cases {
        let mut stream = TcpStream::connect(&bootstrap).await.unwrap();
        assert!(
            exchange(&mut stream, &frame).await.is_none(),
            "{what} closes the connection"
        );
    }
    let mut stream = TcpStream::connect(&bootstrap).await.unwrap();
    let mut garbage = vec![0, 0, 0, 64];
    garbage.extend((0..64u8).map(|i| i.wrapping_mul(97)));
    assert!(
        exchange(&mut stream, &garbage).await.is_none(),
        "random bytes close it"
    );

    // A batch whose CRC does not match: CORRUPT_MESSAGE, and the connection stays usable.
    let mut stream = TcpStream::connect(&bootstrap).await.unwrap();
    let mut batch = common::batch(10, 20, 1_000).to_vec();
    let last = batch.len() - 1;
    batch[last] ^= 0xff;
    let produce = produce_request("steady", batch.into());
    let response = common::wire::call(&mut stream, &produce, 9).await;
    assert_eq!(response.responses[0].partition_responses[0].error_code, 2);
    let produce = produce_request("steady", common::batch(10, 20, 1_000));
    let response = common::wire::call(&mut stream, &produce, 9).await;
    assert_eq!(response.responses[0].partition_responses[0].error_code, 0);

    // The other clients never noticed.
    assert!(exchange(&mut healthy, &api_versions).await.is_some());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (produced, consumed) = steady.join().unwrap();
    assert!(produced > 0);
    assert_eq!(
        consumed, produced,
        "every record the client produced came back"
    );
    node.shutdown().await.unwrap();
}

/// Records per codec in the produce and consume scenario.
const SCENARIO_RECORDS: usize = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_round_trips_keyed_records_with_acks_all_under_every_codec() {
    let dir = tempfile::tempdir().unwrap();
    let node = common::node::start(common::roundtrip::node_config(dir.path())).await;
    let bootstrap = node.kafka_addr().to_string();
    let client = common::kafka_client::KafkaClient { bootstrap };
    common::roundtrip::round_trip_every_codec(&client, "events", SCENARIO_RECORDS).await;
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_answers_the_request_in_flight_before_closing() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{FetchRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;

    let dir = tempfile::tempdir().unwrap();
    let (node, bootstrap) = start_node(dir.path()).await;
    common::node::create_topic(&node, "quiet", 1).await;
    // A fetch at the end of an empty partition waits up to its max_wait_ms for records.
    let fetch = FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(3_000)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("quiet")))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ]);
    let mut stream = TcpStream::connect(&bootstrap).await.unwrap();
    let waiting = tokio::spawn(async move {
        let response = common::wire::call(&mut stream, &fetch, 12).await;
        // Then the connection is closed.
        let mut byte = [0u8; 1];
        let closed = stream.read(&mut byte).await.map_or(true, |n| n == 0);
        (response, closed)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    node.shutdown().await.unwrap();
    let (response, closed) = tokio::time::timeout(WAIT, waiting).await.unwrap().unwrap();
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    assert_eq!(partition.high_watermark, 0);
    assert!(closed, "closed after the answer");
    assert!(started.elapsed() < WAIT);
}
