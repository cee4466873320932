//! The public gRPC API against a whole node, with the tonic-generated clients: the produce and
//! consume scenario (the same body as over Kafka), Subscribe, the Fetch long poll, errors that
//! name the Kafka error, topic administration and offset lookups.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::grpc_client::{Form, GrpcClient, to_pb};
use common::roundtrip::{self, Client, TestRecord};
use tonic::Code;
use weir_broker::server::Node;
use weir_proto::batch::Compression;
use weir_proto::v1 as pb;

const WAIT: Duration = Duration::from_secs(30);
/// Records per codec in the produce and consume scenario.
const SCENARIO_RECORDS: usize = 100_000;

async fn start(dir: &std::path::Path) -> (Node, GrpcClient) {
    let node = common::node::start(roundtrip::node_config(dir)).await;
    let client = GrpcClient::connect(node.grpc_addr(), Form::Records).await;
    (node, client)
}

/// Produces `records` to `topic`-0 as structured records with acks=all; returns the result.
async fn produce(
    client: &GrpcClient,
    topic: &str,
    data: pb::partition_records::Data,
) -> pb::PartitionProduceResult {
    let response = client
        .broker
        .clone()
        .produce(pb::ProduceRequest {
            partitions: vec![pb::PartitionRecords {
                topic: topic.to_string(),
                partition: 0,
                data: Some(data),
                compression: pb::Compression::Lz4 as i32,
            }],
            acks: pb::Acks::All as i32,
            timeout_ms: 10_000,
        })
        .await
        .expect("Produce answered")
        .into_inner();
    response.partitions.into_iter().next().unwrap()
}

fn records(values: &[&str]) -> pb::partition_records::Data {
    pb::partition_records::Data::Records(pb::RecordList {
        records: values
            .iter()
            .map(|v| pb::Record {
                key: Some(Bytes::from(format!("key-{v}"))),
                value: Some(Bytes::copy_from_slice(v.as_bytes())),
                ..pb::Record::default()
            })
            .collect(),
    })
}

fn values(records: &[pb::Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_produce_and_consume_scenario_passes_over_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let node = common::node::start(roundtrip::node_config(dir.path())).await;
    // RecordBatch v2 bytes compressed by weir_proto::batch, under every codec.
    let client = GrpcClient::connect(node.grpc_addr(), Form::Batches).await;
    roundtrip::round_trip_every_codec(&client, "events", SCENARIO_RECORDS).await;
    // Structured records, which the broker encodes and decodes.
    let client = GrpcClient::connect(node.grpc_addr(), Form::Records).await;
    roundtrip::round_trip(&client, "structured", Compression::Zstd, SCENARIO_RECORDS).await;
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_pushes_records_produced_after_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let (node, client) = start(dir.path()).await;
    client.create_topic("feed", 1).await;
    let first = produce(&client, "feed", records(&["a", "b"])).await;
    assert_eq!((first.base_offset, first.error), (0, None));

    // From the high watermark: only what comes next.
    let mut latest = client
        .broker
        .clone()
        .subscribe(pb::SubscribeRequest {
            topic: "feed".into(),
            offset: -1,
            format: pb::RecordFormat::Records as i32,
            ..pb::SubscribeRequest::default()
        })
        .await
        .expect("subscribed")
        .into_inner();
    // From the start, as batches.
    let mut earliest = client
        .broker
        .clone()
        .subscribe(pb::SubscribeRequest {
            topic: "feed".into(),
            offset: -2,
            format: pb::RecordFormat::Batches as i32,
            ..pb::SubscribeRequest::default()
        })
        .await
        .expect("subscribed")
        .into_inner();
    tokio::time::sleep(Duration::from_millis(200)).await;
    for value in ["c", "d", "e"] {
        let produced = produce(&client, "feed", records(&[value])).await;
        assert_eq!(produced.error, None);
    }

    let mut pushed = Vec::new();
    while pushed.len() < 3 {
        let message = tokio::time::timeout(WAIT, latest.message())
            .await
            .expect("pushed in time")
            .expect("the stream stays up")
            .expect("the stream goes on");
        assert!(message.batches.is_empty());
        pushed.extend(message.records);
    }
    assert_eq!(values(&pushed), ["c", "d", "e"]);
    let offsets: Vec<i64> = pushed.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, [2, 3, 4]);

    let mut all = Vec::new();
    while all.len() < 5 {
        let message = tokio::time::timeout(WAIT, earliest.message())
            .await
            .expect("pushed in time")
            .expect("the stream stays up")
            .expect("the stream goes on");
        let decoded = weir_proto::batch::decode(&message.batches).unwrap();
        assert_eq!(message.next_offset, decoded.last().unwrap().offset + 1);
        all.extend(decoded);
    }
    let all: Vec<(i64, Bytes)> = all
        .into_iter()
        .map(|r| (r.offset, r.value.unwrap()))
        .collect();
    assert_eq!(
        all,
        ["a", "b", "c", "d", "e"]
            .iter()
            .enumerate()
            .map(|(i, v)| (i as i64, Bytes::from_static(v.as_bytes())))
            .collect::<Vec<_>>()
    );

    // A deleted topic ends the subscription with a status that names the Kafka error.
    let deleted = client
        .admin
        .clone()
        .delete_topics(pb::DeleteTopicsRequest {
            topics: vec!["feed".into()],
            timeout_ms: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.topics[0].error, None);
    let ended = tokio::time::timeout(Duration::from_secs(15), latest.message())
        .await
        .expect("the stream ends in time")
        .expect_err("the stream ends with a status");
    assert!(
        ended.message().starts_with("UNKNOWN_TOPIC_OR_PARTITION: "),
        "{ended:?}"
    );
    drop(earliest);
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_long_poll_returns_as_soon_as_records_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let (node, client) = start(dir.path()).await;
    client.create_topic("poll", 1).await;
    let fetch = |max_wait_ms| pb::FetchRequest {
        partitions: vec![pb::FetchPartition {
            topic: "poll".into(),
            partition: 0,
            offset: 0,
            ..pb::FetchPartition::default()
        }],
        max_wait_ms,
        min_bytes: 1,
        format: pb::RecordFormat::Records as i32,
        ..pb::FetchRequest::default()
    };
    // Nothing to read: the poll waits its max_wait_ms, then answers empty.
    let started = Instant::now();
    let empty = client.broker.clone().fetch(fetch(300)).await.unwrap();
    let empty = &empty.get_ref().partitions[0];
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!((empty.error.clone(), empty.high_watermark), (None, 0));
    assert!(empty.records.is_empty());

    // A poll that may wait far longer than the test returns once a record is appended.
    let waiting = tokio::spawn({
        let mut broker = client.broker.clone();
        let request = fetch(60_000);
        async move {
            let started = Instant::now();
            let response = broker.fetch(request).await.unwrap().into_inner();
            (response, started.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "the poll waits for records");
    let produced = produce(&client, "poll", records(&["wake"])).await;
    assert_eq!(produced.error, None);
    let (response, waited) = tokio::time::timeout(WAIT, waiting).await.unwrap().unwrap();
    assert!(waited < Duration::from_secs(60), "woken by the append");
    let data = &response.partitions[0];
    assert_eq!(values(&data.records), ["wake"]);
    assert_eq!((data.high_watermark, data.next_offset), (1, 1));
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_statuses_that_name_the_kafka_error() {
    let dir = tempfile::tempdir().unwrap();
    let (node, client) = start(dir.path()).await;
    client.create_topic("strict", 1).await;
    let check = |error: Option<pb::Error>, code: Code, name: &str, kafka: i32| {
        let error = error.unwrap_or_else(|| panic!("{name} expected"));
        assert_eq!(error.code, code as i32, "{error:?}");
        assert!(error.message.starts_with(&format!("{name}: ")), "{error:?}");
        assert_eq!(error.kafka_error_code, kafka);
    };

    // An unknown topic, and a partition past the topic's count.
    let unknown = produce(&client, "missing", records(&["x"])).await;
    check(
        unknown.error,
        Code::NotFound,
        "UNKNOWN_TOPIC_OR_PARTITION",
        3,
    );
    let past = client
        .broker
        .clone()
        .produce(pb::ProduceRequest {
            partitions: vec![pb::PartitionRecords {
                topic: "strict".into(),
                partition: 7,
                data: Some(records(&["x"])),
                compression: 0,
            }],
            ..pb::ProduceRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    check(
        past.partitions[0].error.clone(),
        Code::NotFound,
        "UNKNOWN_TOPIC_OR_PARTITION",
        3,
    );

    // A batch whose CRC does not match.
    let mut batch = common::batch(10, 20, 1_000).to_vec();
    let last = batch.len() - 1;
    batch[last] ^= 0xff;
    let corrupt = produce(
        &client,
        "strict",
        pb::partition_records::Data::Batches(batch.into()),
    )
    .await;
    check(corrupt.error, Code::InvalidArgument, "CORRUPT_MESSAGE", 2);
    // Records the broker cannot make into a batch: none at all, or a header key twice.
    let empty = produce(&client, "strict", records(&[])).await;
    check(empty.error, Code::InvalidArgument, "INVALID_RECORD", 87);
    let mut twice = to_pb(&roundtrip::records(1, Compression::None)[0]);
    twice.headers.push(twice.headers[0].clone());
    let twice = produce(
        &client,
        "strict",
        pb::partition_records::Data::Records(pb::RecordList {
            records: vec![twice],
        }),
    )
    .await;
    check(twice.error, Code::InvalidArgument, "INVALID_RECORD", 87);
    // Nothing of the refused requests was appended.
    let good = produce(&client, "strict", records(&["ok-1", "ok-2"])).await;
    assert_eq!((good.base_offset, good.error), (0, None));

    // Whole requests that fail are statuses.
    let status = client
        .broker
        .clone()
        .produce(pb::ProduceRequest {
            acks: 7,
            ..pb::ProduceRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("INVALID_REQUIRED_ACKS: "),
        "{status:?}"
    );
    assert_eq!(
        status.metadata().get("weir-kafka-error-code").unwrap(),
        "21"
    );
    let status = client
        .admin
        .clone()
        .describe_topic(pb::DescribeTopicRequest {
            topic: "missing".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(
        status.message().starts_with("UNKNOWN_TOPIC_OR_PARTITION: "),
        "{status:?}"
    );
    let status = client
        .broker
        .clone()
        .subscribe(pb::SubscribeRequest {
            topic: "strict".into(),
            offset: 99,
            ..pb::SubscribeRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange);
    assert!(
        status.message().starts_with("OFFSET_OUT_OF_RANGE: "),
        "{status:?}"
    );

    // A fetch answers each partition: the one that fails says why, the other reads.
    let fetched = client
        .broker
        .clone()
        .fetch(pb::FetchRequest {
            partitions: vec![
                pb::FetchPartition {
                    topic: "strict".into(),
                    offset: 99,
                    ..pb::FetchPartition::default()
                },
                pb::FetchPartition {
                    topic: "strict".into(),
                    offset: 0,
                    ..pb::FetchPartition::default()
                },
            ],
            format: pb::RecordFormat::Records as i32,
            ..pb::FetchRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    check(
        fetched.partitions[0].error.clone(),
        Code::OutOfRange,
        "OFFSET_OUT_OF_RANGE",
        1,
    );
    assert_eq!(fetched.partitions[1].error, None);
    assert_eq!(fetched.partitions[1].records.len(), 2);

    // A topic that exists already.
    let again = client
        .admin
        .clone()
        .create_topics(pb::CreateTopicsRequest {
            topics: vec![pb::NewTopic {
                name: "strict".into(),
                ..pb::NewTopic::default()
            }],
            ..pb::CreateTopicsRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    check(
        again.topics[0].error.clone(),
        Code::AlreadyExists,
        "TOPIC_ALREADY_EXISTS",
        36,
    );
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_created_listed_described_grown_reconfigured_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let config = weir_broker::config::NodeConfig {
        num_partitions: 2,
        ..roundtrip::node_config(dir.path())
    };
    let node = common::node::start(config).await;
    let client = GrpcClient::connect(node.grpc_addr(), Form::Records).await;
    let mut admin = client.admin.clone();

    // The cluster: this broker at its gRPC address, and the controller.
    let metadata = admin
        .metadata(pb::MetadataRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(metadata.brokers.len(), 1);
    assert_eq!(metadata.brokers[0].id, 1);
    assert_eq!(
        metadata.brokers[0].grpc_address,
        node.grpc_addr().to_string()
    );
    assert_eq!(
        metadata.brokers[0].kafka_address,
        node.kafka_addr().to_string()
    );
    assert_eq!(metadata.controller_id, Some(1));
    assert!(metadata.topics.is_empty());

    // Created with the node's defaults (2 partitions), and with its own config.
    let created = admin
        .create_topics(pb::CreateTopicsRequest {
            topics: vec![
                pb::NewTopic {
                    name: "orders".into(),
                    configs: [("retention.ms".to_string(), "60000".to_string())].into(),
                    ..pb::NewTopic::default()
                },
                pb::NewTopic {
                    name: "audit".into(),
                    partitions: Some(1),
                    ..pb::NewTopic::default()
                },
            ],
            ..pb::CreateTopicsRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    let summary: Vec<_> = created
        .topics
        .iter()
        .map(|t| {
            (
                t.name.as_str(),
                t.partitions,
                t.replication_factor,
                t.error.clone(),
            )
        })
        .collect();
    assert_eq!(summary, [("orders", 2, 1, None), ("audit", 1, 1, None)]);
    assert!(uuid::Uuid::parse_str(&created.topics[0].topic_id).is_ok());
    // validate_only creates nothing.
    let validated = admin
        .create_topics(pb::CreateTopicsRequest {
            topics: vec![pb::NewTopic {
                name: "dry".into(),
                ..pb::NewTopic::default()
            }],
            validate_only: true,
            ..pb::CreateTopicsRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(validated.topics[0].error, None);

    let listed = admin
        .list_topics(pb::ListTopicsRequest {})
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = listed
        .topics
        .iter()
        .map(|t| (t.name.as_str(), t.partitions))
        .collect();
    assert_eq!(names, [("audit", 1), ("orders", 2)]);

    let described = admin
        .describe_topic(pb::DescribeTopicRequest {
            topic: "orders".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(described.topic_id, created.topics[0].topic_id);
    assert_eq!(described.partitions.len(), 2);
    for (index, partition) in described.partitions.iter().enumerate() {
        assert_eq!(partition.partition, index as i32);
        assert_eq!(partition.leader, Some(1));
        assert!(partition.leader_epoch >= 0 && partition.partition_epoch >= 0);
        assert_eq!(
            (partition.replicas.clone(), partition.isr.clone()),
            (vec![1], vec![1])
        );
        assert!(partition.offline_replicas.is_empty());
    }
    let config = |configs: &[pb::ConfigEntry], name: &str| {
        let entry = configs.iter().find(|c| c.name == name).unwrap();
        (entry.value.clone(), entry.source)
    };
    assert_eq!(
        config(&described.configs, "retention.ms"),
        ("60000".into(), pb::ConfigSource::Topic as i32)
    );
    assert_eq!(
        config(&described.configs, "cleanup.policy"),
        ("delete".into(), pb::ConfigSource::Default as i32)
    );

    // Grown to 3 partitions, which then take records.
    admin
        .create_partitions(pb::CreatePartitionsRequest {
            topic: "orders".into(),
            count: 3,
            ..pb::CreatePartitionsRequest::default()
        })
        .await
        .unwrap();
    let shrink = admin
        .create_partitions(pb::CreatePartitionsRequest {
            topic: "orders".into(),
            count: 1,
            ..pb::CreatePartitionsRequest::default()
        })
        .await
        .unwrap_err();
    assert!(
        shrink.message().starts_with("INVALID_PARTITIONS: "),
        "{shrink:?}"
    );
    client.wait_until_served("orders", 3).await;

    // Reconfigured: one config set, one back to its default.
    let altered = admin
        .alter_configs(pb::AlterConfigsRequest {
            topic: "orders".into(),
            changes: vec![
                pb::ConfigChange {
                    name: "cleanup.policy".into(),
                    operation: pb::ConfigOperation::Set as i32,
                    value: Some("compact".into()),
                },
                pb::ConfigChange {
                    name: "retention.ms".into(),
                    operation: pb::ConfigOperation::Delete as i32,
                    value: None,
                },
            ],
            validate_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        config(&altered.configs, "cleanup.policy"),
        ("compact".into(), pb::ConfigSource::Topic as i32)
    );
    assert_eq!(
        config(&altered.configs, "retention.ms").1,
        pb::ConfigSource::Default as i32
    );
    let bad = admin
        .alter_configs(pb::AlterConfigsRequest {
            topic: "orders".into(),
            changes: vec![pb::ConfigChange {
                name: "no.such.config".into(),
                operation: pb::ConfigOperation::Set as i32,
                value: Some("1".into()),
            }],
            validate_only: false,
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().starts_with("INVALID_CONFIG: "), "{bad:?}");

    // Deleted; a second delete names the error.
    let deleted = admin
        .delete_topics(pb::DeleteTopicsRequest {
            topics: vec!["orders".into(), "orders".into()],
            timeout_ms: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.topics[0].error, None);
    let second = deleted.topics[1].error.clone().unwrap();
    assert!(second.message.starts_with("UNKNOWN_TOPIC_OR_PARTITION: "));
    let metadata = admin
        .metadata(pb::MetadataRequest {
            topics: vec!["orders".into(), "audit".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        metadata.topics[0].error.as_ref().unwrap().code,
        Code::NotFound as i32
    );
    assert_eq!(metadata.topics[1].error, None);
    assert_eq!(metadata.topics[1].partitions.len(), 1);
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_finds_the_earliest_the_latest_and_by_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let (node, client) = start(dir.path()).await;
    client.create_topic("times", 1).await;
    let produced: Vec<TestRecord> = roundtrip::records(10, Compression::None)
        .into_iter()
        .map(|r| TestRecord { partition: 0, ..r })
        .collect();
    client.produce("times", &produced, Compression::Gzip).await;
    let base = produced[0].timestamp_ms;
    let query = |spec: pb::OffsetSpec, timestamp_ms: i64| pb::OffsetQuery {
        topic: "times".into(),
        partition: 0,
        spec: spec as i32,
        timestamp_ms,
    };
    let answer = client
        .broker
        .clone()
        .list_offsets(pb::ListOffsetsRequest {
            partitions: vec![
                query(pb::OffsetSpec::Earliest, 0),
                query(pb::OffsetSpec::Latest, 0),
                query(pb::OffsetSpec::Timestamp, base + 4),
                query(pb::OffsetSpec::Timestamp, base + 100),
                pb::OffsetQuery {
                    topic: "missing".into(),
                    ..pb::OffsetQuery::default()
                },
            ],
        })
        .await
        .unwrap()
        .into_inner();
    let found: Vec<(i64, i64)> = answer
        .partitions
        .iter()
        .take(4)
        .map(|p| (p.offset, p.timestamp_ms))
        .collect();
    assert_eq!(found, [(0, -1), (10, -1), (4, base + 4), (-1, -1)]);
    assert!(answer.partitions[..4].iter().all(|p| p.error.is_none()));
    assert!(
        answer.partitions[4]
            .error
            .as_ref()
            .unwrap()
            .message
            .starts_with("UNKNOWN_TOPIC_OR_PARTITION: ")
    );
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_ends_open_streams_and_completes() {
    let dir = tempfile::tempdir().unwrap();
    let (node, client) = start(dir.path()).await;
    client.create_topic("open", 1).await;
    let mut subscription = client
        .broker
        .clone()
        .subscribe(pb::SubscribeRequest {
            topic: "open".into(),
            format: pb::RecordFormat::Records as i32,
            ..pb::SubscribeRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    // A produce stream the client keeps open: one request answered, then nothing sent.
    let (requests, stream) = tokio::sync::mpsc::channel(1);
    let mut answers = client
        .broker
        .clone()
        .produce_stream(tokio_stream::wrappers::ReceiverStream::new(stream))
        .await
        .unwrap()
        .into_inner();
    requests
        .send(pb::ProduceStreamRequest {
            id: 7,
            request: Some(pb::ProduceRequest {
                partitions: vec![pb::PartitionRecords {
                    topic: "open".into(),
                    partition: 0,
                    data: Some(records(&["last"])),
                    compression: 0,
                }],
                ..pb::ProduceRequest::default()
            }),
        })
        .await
        .unwrap();
    let answer = answers.message().await.unwrap().unwrap();
    assert_eq!(answer.id, 7);
    let pushed = subscription.message().await.unwrap().unwrap();
    assert_eq!(values(&pushed.records), ["last"]);

    let shutdown = tokio::spawn(node.shutdown());
    let ended = tokio::time::timeout(WAIT, subscription.message())
        .await
        .expect("the subscription ends in time")
        .expect_err("with a status");
    assert_eq!(ended.code(), Code::Unavailable);
    assert!(
        ended.message().starts_with("BROKER_NOT_AVAILABLE: "),
        "{ended:?}"
    );
    let ended = tokio::time::timeout(WAIT, answers.message())
        .await
        .expect("the produce stream ends in time")
        .expect_err("with a status");
    assert_eq!(ended.code(), Code::Unavailable);
    tokio::time::timeout(WAIT, shutdown)
        .await
        .expect("the node stops in time")
        .unwrap()
        .unwrap();
    drop(requests);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_gets_every_record_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (node, client) = start(dir.path()).await;
    client.create_topic("slow", 1).await;
    let mut subscription = client
        .broker
        .clone()
        .subscribe(pb::SubscribeRequest {
            topic: "slow".into(),
            format: pb::RecordFormat::Records as i32,
            // One batch per message, so the server fills its buffer and waits for the client.
            max_bytes: 1,
            ..pb::SubscribeRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    let count = 10 * weir_broker::grpc::SUBSCRIBE_BUFFER;
    for i in 0..count {
        let produced = produce(&client, "slow", records(&[&i.to_string()])).await;
        assert_eq!(produced.error, None);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut got = Vec::new();
    while got.len() < count {
        let message = tokio::time::timeout(WAIT, subscription.message())
            .await
            .expect("pushed in time")
            .unwrap()
            .unwrap();
        assert_eq!(message.records.len(), 1, "one batch per message");
        got.extend(message.records);
    }
    let offsets: Vec<i64> = got.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (0..count as i64).collect::<Vec<_>>());
    let expected: Vec<String> = (0..count).map(|i| i.to_string()).collect();
    assert_eq!(values(&got), expected);
    node.shutdown().await.unwrap();
}
