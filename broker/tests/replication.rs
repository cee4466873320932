//! Replication across three brokers in one process (a controller-only node holds the quorum):
//! acks=all writes reach every replica byte for byte; the ISR shrinks as brokers stop and
//! acks=all keeps working down to `min.insync.replicas`, then is refused with
//! NOT_ENOUGH_REPLICAS; restarted brokers catch up, rejoin the ISR and converge.

mod common;

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::net::TcpStream;
use weir_broker::storage::TopicPartition;
use weir_proto::batch::{self, BatchHeader, EncodeOptions, Record};

use common::cluster::Cluster;

const TOPIC: &str = "replicated";
const PARTITIONS: i32 = 3;

fn tp(partition: i32) -> TopicPartition {
    TopicPartition::new(TOPIC, partition)
}

/// Produces `count` records to every partition with acks=all through librdkafka; every one
/// must be acknowledged.
async fn produce(cluster: &Cluster, round: &str, count: usize) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap())
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("a librdkafka producer");
    let mut deliveries = Vec::new();
    for partition in 0..PARTITIONS {
        for i in 0..count {
            let value = format!("{round}-{partition}-{i}");
            let record = FutureRecord::<(), _>::to(TOPIC)
                .partition(partition)
                .payload(&value);
            deliveries.push(producer.send_result(record).expect("queued"));
        }
    }
    for delivery in deliveries {
        delivery
            .await
            .expect("not cancelled")
            .unwrap_or_else(|(e, _)| panic!("an acks=all write in round {round} failed: {e}"));
    }
}

/// The bytes of `partition`'s batches below `upto`, read from its log.
fn log_bytes(partition: &weir_broker::partition::Partition, upto: i64) -> Vec<u8> {
    let log = partition.log();
    let mut offset = log.log_start_offset();
    let mut bytes = Vec::new();
    while offset < upto {
        let read = log.read_below(offset, 1 << 20, upto).expect("readable");
        if read.is_empty() {
            break;
        }
        for header in batch::batches(&read) {
            offset = header.expect("whole batches").1.next_offset();
        }
        bytes.extend_from_slice(&read);
    }
    bytes
}

/// Waits until every running replica of every partition has the leader's log end, and checks
/// that their logs are byte-identical up to the leader's high watermark, which no follower's
/// passes.
async fn assert_converged(cluster: &Cluster) {
    for partition in 0..PARTITIONS {
        let tp = tp(partition);
        cluster
            .wait_for("the replicas to reach the leader's log end", || async {
                let Some(leader) = cluster.leader(&tp).and_then(|id| cluster.replica(id, &tp))
                else {
                    return false;
                };
                let end = leader.log().log_end_offset();
                leader.high_watermark() == end
                    && cluster.running().iter().all(|(id, _)| {
                        cluster
                            .replica(*id, &tp)
                            .is_some_and(|r| r.log().log_end_offset() == end)
                    })
            })
            .await;
        let leader = cluster.replica(cluster.leader(&tp).unwrap(), &tp).unwrap();
        let high_watermark = leader.high_watermark();
        let expected = log_bytes(&leader, high_watermark);
        assert!(!expected.is_empty());
        for (id, _) in cluster.running() {
            let replica = cluster.replica(id, &tp).unwrap();
            assert!(replica.high_watermark() <= high_watermark, "{tp} on {id}");
            assert!(
                log_bytes(&replica, high_watermark) == expected,
                "{tp}: broker {id}'s log differs from the leader's below the high watermark"
            );
        }
    }
}

/// One acks=all produce of a record to `partition` on the bare protocol, through `node`.
async fn produce_raw(address: std::net::SocketAddr, partition: i32) -> (i16, Option<String>) {
    let record = Record {
        key: None,
        value: Some(Bytes::from_static(b"refused?")),
        headers: Vec::new(),
        timestamp: 1,
        offset: 0,
    };
    let records = batch::encode(&[record], &EncodeOptions::default()).unwrap();
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(records)),
                ]),
        ]);
    let mut stream = TcpStream::connect(address).await.unwrap();
    let response = common::wire::call(&mut stream, &request, 9).await;
    let answer = &response.responses[0].partition_responses[0];
    (
        answer.error_code,
        answer.error_message.as_ref().map(|m| m.to_string()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acks_all_survives_stopped_followers_and_the_logs_converge() {
    let mut cluster = Cluster::start(3, |config| {
        config.log_segment_bytes = 64 * 1024;
    })
    .await;
    cluster
        .create_topic(TOPIC, PARTITIONS, 3, &[("min.insync.replicas", "2")])
        .await;
    produce(&cluster, "all-three", 500).await;
    assert_converged(&cluster).await;

    // Stop broker 3: it leaves every ISR; writes go on with two in-sync replicas.
    cluster.stop_broker(3).await;
    cluster
        .wait_for("broker 3 to leave every ISR", || async {
            (0..PARTITIONS).all(|p| cluster.isr(&tp(p)).len() == 2)
        })
        .await;
    produce(&cluster, "two-left", 300).await;
    assert_converged(&cluster).await;

    // Stop broker 2: one in-sync replica is fewer than min.insync.replicas.
    cluster.stop_broker(2).await;
    cluster
        .wait_for("broker 1 to see broker 2 leave every ISR", || async {
            (0..PARTITIONS).all(|p| {
                cluster
                    .replica(1, &tp(p))
                    .is_some_and(|r| r.replicas_and_isr().1 == [1])
            })
        })
        .await;
    for partition in 0..PARTITIONS {
        let (code, message) = produce_raw(cluster.broker(1).kafka_addr(), partition).await;
        assert_eq!(
            code,
            ResponseError::NotEnoughReplicas.code(),
            "partition {partition}: {message:?}"
        );
    }
    let leader = cluster.replica(1, &tp(0)).unwrap();
    let end_before = leader.log().log_end_offset();

    // Both come back: they catch up, rejoin the ISR, and the logs converge.
    cluster.start_broker(2).await;
    cluster.start_broker(3).await;
    cluster
        .wait_for("the ISR to grow back to three", || async {
            (0..PARTITIONS).all(|p| cluster.isr(&tp(p)).len() == 3)
        })
        .await;
    assert_eq!(
        leader.log().log_end_offset(),
        end_before,
        "a refused write was not appended"
    );
    produce(&cluster, "back-again", 200).await;
    assert_converged(&cluster).await;
    for partition in 0..PARTITIONS {
        let tp = tp(partition);
        let leader = cluster.replica(cluster.leader(&tp).unwrap(), &tp).unwrap();
        let batches = log_bytes(&leader, leader.high_watermark());
        let records: usize = batch::batches(&batches)
            .map(|h| {
                let (_, h): (usize, BatchHeader) = h.unwrap();
                h.last_offset_delta as usize + 1
            })
            .sum();
        assert_eq!(
            records,
            500 + 300 + 200,
            "{tp} holds every acknowledged record"
        );
    }
    cluster.shutdown().await;
}

/// A broker restarted after a clean stop keeps its high watermark (it is checkpointed), so
/// it never shows a consumer less than before nor more than was replicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_high_watermark_survives_a_restart() {
    let mut cluster = Cluster::start(3, |_| {}).await;
    cluster.create_topic(TOPIC, 1, 3, &[]).await;
    produce_one_partition(&cluster).await;
    assert_converged_one(&cluster).await;
    let leader_id = cluster.leader(&tp(0)).unwrap();
    let before = cluster.replica(leader_id, &tp(0)).unwrap().high_watermark();
    let follower = (1..=3).find(|&id| id != leader_id).unwrap();
    cluster.stop_broker(follower).await;
    cluster.start_broker(follower).await;
    let restarted = cluster.replica(follower, &tp(0)).unwrap();
    assert!(
        restarted.high_watermark() > 0,
        "the checkpointed high watermark is read back"
    );
    assert!(restarted.high_watermark() <= before);
    tokio::time::sleep(Duration::from_millis(10)).await;
    cluster.shutdown().await;
}

async fn produce_one_partition(cluster: &Cluster) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap())
        .set("acks", "all")
        .create()
        .unwrap();
    for i in 0..100 {
        let value = format!("record-{i}");
        producer
            .send(
                FutureRecord::<(), _>::to(TOPIC)
                    .partition(0)
                    .payload(&value),
                Duration::from_secs(30),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("{e}"));
    }
}

async fn assert_converged_one(cluster: &Cluster) {
    cluster
        .wait_for("every replica to have the high watermark", || async {
            let leader = cluster
                .replica(cluster.leader(&tp(0)).unwrap(), &tp(0))
                .unwrap();
            let hw = leader.high_watermark();
            hw == leader.log().log_end_offset()
                && (1..=3).all(|id| {
                    cluster
                        .replica(id, &tp(0))
                        .is_some_and(|r| r.high_watermark() == hw)
                })
        })
        .await;
}
