//! The Kafka listener against a real client (librdkafka, through the `rdkafka` crate) and
//! against malformed input: metadata lists the brokers and partitions, and a broken request
//! closes only its own connection.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;
use weir_broker::clock::{Clock, SystemClock};
use weir_broker::config::Voter;
use weir_broker::controller::{
    BrokerRecord, BrokerStatus, Controller, ControllerConfig, Endpoints,
};
use weir_broker::kafka::{self, KafkaContext};

const WAIT: Duration = Duration::from_secs(30);

/// A single node: its controller, and its Kafka listener's address.
async fn start_node(dir: &std::path::Path) -> (Controller, String) {
    let internal = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let internal_addr = internal.local_addr().unwrap().to_string();
    let kafka_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let kafka_addr = kafka_listener.local_addr().unwrap().to_string();
    let config = ControllerConfig {
        node_id: 1,
        dir: dir.to_path_buf(),
        voters: vec![Voter {
            node_id: 1,
            address: internal_addr.clone(),
        }],
        heartbeat_interval_ms: 50,
        election_timeout_min_ms: 150,
        election_timeout_max_ms: 300,
        broker_session_timeout_ms: 10_000,
        request_timeout_ms: 10_000,
        clock: Arc::new(SystemClock) as Arc<dyn Clock>,
    };
    let controller = Controller::start(config, internal).await.unwrap();
    controller.start_broker(
        BrokerRecord {
            broker_id: 1,
            incarnation: Uuid::new_v4(),
            endpoints: Endpoints {
                kafka: kafka_addr.clone(),
                grpc: "127.0.0.1:9093".into(),
                internal: internal_addr,
            },
            rack: Some("rack-a".into()),
        },
        Duration::from_millis(50),
    );
    let mut status = controller.broker_status();
    tokio::time::timeout(WAIT, status.wait_for(|s| *s == BrokerStatus::Live))
        .await
        .expect("the broker becomes live")
        .unwrap();
    let context = KafkaContext {
        controller: controller.view(),
    };
    tokio::spawn(kafka::serve(
        kafka_listener,
        context,
        std::future::pending(),
    ));
    (controller, kafka_addr)
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
    let (controller, bootstrap) = start_node(dir.path()).await;
    controller
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
    let topics: Vec<_> = all.topics().iter().map(|t| t.name().to_string()).collect();
    assert_eq!(topics, ["orders"]);
    let orders = &all.topics()[0];
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
    controller.shutdown().await.unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_close_their_own_connection_only() {
    let dir = tempfile::tempdir().unwrap();
    let (controller, bootstrap) = start_node(dir.path()).await;
    let mut healthy = TcpStream::connect(&bootstrap).await.unwrap();
    let api_versions = request(18, 0, 1, &[]);
    assert!(exchange(&mut healthy, &api_versions).await.is_some());

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

    // The first client never noticed.
    assert!(exchange(&mut healthy, &api_versions).await.is_some());
    controller.shutdown().await.unwrap();
}
