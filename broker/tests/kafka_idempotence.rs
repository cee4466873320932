//! The idempotent producer over the Kafka protocol: librdkafka with `enable.idempotence=true`
//! writes every record once, in order; and on the bare protocol a batch sent twice is stored
//! once and answered with its first offset, while out-of-order sequences, stale epochs and
//! transactional producers are refused with Kafka's codes.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    InitProducerIdRequest, ProduceRequest, ProduceResponse, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::net::TcpStream;
use weir_broker::storage::TopicPartition;
use weir_proto::batch::{self, BatchHeader, EncodeOptions, Record};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_with_idempotence_writes_every_record_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let node = common::node::start(common::node::single_node_config(dir.path())).await;
    let bootstrap = node.kafka_addr().to_string();
    node.controller()
        .view()
        .create_topic("payments", 3, 1, BTreeMap::new())
        .await
        .unwrap();
    const RECORDS: usize = 3_000;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.num.messages", "100")
        .create()
        .unwrap();
    let mut deliveries = Vec::new();
    for i in 0..RECORDS {
        let key = format!("key-{}", i % 50);
        let value = format!("{i}");
        let record = FutureRecord::to("payments").key(&key).payload(&value);
        deliveries.push(producer.send_result(record).expect("queued"));
    }
    for delivery in deliveries {
        tokio::time::timeout(WAIT, delivery)
            .await
            .expect("delivered in time")
            .expect("not cancelled")
            .unwrap_or_else(|(e, _)| panic!("{e}"));
    }

    // One producer id for the session, every batch in sequence, every record once.
    let mut producer_ids = std::collections::BTreeSet::new();
    let mut seen = Vec::new();
    for index in 0..3 {
        let partition = node
            .replicas()
            .partition(&TopicPartition::new("payments", index))
            .unwrap();
        let bytes = partition.read(0, usize::MAX >> 1, None).unwrap().records;
        let mut next_sequence = 0;
        for item in batch::batches(&bytes) {
            let (_, header) = item.unwrap();
            assert_eq!(header.producer_epoch, 0);
            assert_eq!(header.base_sequence, next_sequence, "partition {index}");
            next_sequence += header.record_count;
            producer_ids.insert(header.producer_id);
        }
        let records = batch::decode(&bytes).unwrap();
        assert_eq!(records.len() as i32, next_sequence);
        let mut last_per_key: BTreeMap<Bytes, usize> = BTreeMap::new();
        for record in records {
            let value: usize = std::str::from_utf8(&record.value.unwrap())
                .unwrap()
                .parse()
                .unwrap();
            let key = record.key.unwrap();
            if let Some(&before) = last_per_key.get(&key) {
                assert!(before < value, "one key's records in the order produced");
            }
            last_per_key.insert(key, value);
            seen.push(value);
        }
        if next_sequence > 0 {
            let producer_id = *producer_ids.iter().next().unwrap();
            let state = partition.producer_state(producer_id).unwrap();
            assert_eq!(state.last_sequence(), next_sequence - 1);
        }
    }
    assert_eq!(producer_ids.len(), 1, "{producer_ids:?}");
    assert!(*producer_ids.iter().next().unwrap() >= 0);
    seen.sort_unstable();
    assert_eq!(seen, (0..RECORDS).collect::<Vec<_>>(), "every record once");
    drop(producer);
    node.shutdown().await.unwrap();
}

/// One batch of `count` records of producer `producer_id` at `epoch` from `sequence`.
fn idempotent_batch(producer_id: i64, epoch: i16, sequence: i32, count: usize) -> Bytes {
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("sequence {}", sequence + i as i32))),
            headers: Vec::new(),
            timestamp: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64,
            offset: i as i64,
        })
        .collect();
    let options = EncodeOptions {
        producer_id,
        producer_epoch: epoch,
        base_sequence: sequence,
        ..EncodeOptions::default()
    };
    batch::encode(&records, &options).unwrap()
}

/// Produces `records` to partition 0 of `topic` with acks=all at `version`; returns the
/// partition's response.
async fn produce(
    stream: &mut TcpStream,
    topic: &str,
    records: Bytes,
    version: i16,
) -> kafka_protocol::messages::produce_response::PartitionProduceResponse {
    let request = ProduceRequest::default()
        .with_transactional_id(None)
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records)),
                ]),
        ]);
    let response: ProduceResponse = common::wire::call(stream, &request, version).await;
    response.responses[0].partition_responses[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_sent_twice_is_stored_once_and_sequences_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let node = common::node::start(common::node::single_node_config(dir.path())).await;
    node.controller()
        .view()
        .create_topic("orders", 1, 1, BTreeMap::new())
        .await
        .unwrap();
    let mut stream = TcpStream::connect(node.kafka_addr()).await.unwrap();

    // InitProducerId, flexible (v4) and not (v1): two ids of this broker's block.
    let init = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(-1);
    let first = common::wire::call(&mut stream, &init, 4).await;
    assert_eq!(first.error_code, 0);
    assert_eq!(first.producer_epoch, 0);
    let second = common::wire::call(&mut stream, &init, 1).await;
    assert_eq!(second.producer_id.0, first.producer_id.0 + 1);
    let producer_id = first.producer_id.0;
    assert!(producer_id >= 0);

    // The topic exists once created; its partition opens as this node applies the change.
    let tp = TopicPartition::new("orders", 0);
    let deadline = tokio::time::Instant::now() + WAIT;
    let partition = loop {
        if let Some(partition) = Arc::clone(node.replicas()).partition(&tp) {
            break partition;
        }
        assert!(tokio::time::Instant::now() < deadline, "{tp} never opened");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let batch = idempotent_batch(producer_id, 0, 0, 4);
    let stored = produce(&mut stream, "orders", batch.clone(), 9).await;
    assert_eq!((stored.error_code, stored.base_offset), (0, 0));
    let next = produce(
        &mut stream,
        "orders",
        idempotent_batch(producer_id, 0, 4, 2),
        9,
    )
    .await;
    assert_eq!((next.error_code, next.base_offset), (0, 4));
    // The first batch again (a retry, at another version): its offset, nothing appended.
    let retried = produce(&mut stream, "orders", batch, 7).await;
    assert_eq!((retried.error_code, retried.base_offset), (0, 0));
    assert_eq!(partition.log().log_end_offset(), 6);
    let bytes = partition.read(0, 1 << 20, None).unwrap().records;
    assert_eq!(
        batch::decode(&bytes).unwrap().len(),
        6,
        "the log holds it once"
    );

    // A gap in the sequence: OUT_OF_ORDER_SEQUENCE_NUMBER, with what was expected.
    let gap = produce(
        &mut stream,
        "orders",
        idempotent_batch(producer_id, 0, 9, 1),
        9,
    )
    .await;
    assert_eq!(
        gap.error_code,
        ResponseError::OutOfOrderSequenceNumber.code()
    );
    let message = gap.error_message.unwrap();
    assert!(
        message.contains("sent sequence 9 but the next expected is 6"),
        "{message}"
    );
    // A new epoch from 0 is taken; the old epoch is then fenced.
    let bumped = produce(
        &mut stream,
        "orders",
        idempotent_batch(producer_id, 1, 0, 1),
        9,
    )
    .await;
    assert_eq!((bumped.error_code, bumped.base_offset), (0, 6));
    let stale = produce(
        &mut stream,
        "orders",
        idempotent_batch(producer_id, 0, 6, 1),
        9,
    )
    .await;
    assert_eq!(stale.error_code, ResponseError::InvalidProducerEpoch.code());
    assert_eq!(partition.log().log_end_offset(), 7);
    let header = BatchHeader::parse(&partition.read(6, 1 << 20, None).unwrap().records).unwrap();
    assert_eq!(
        (header.producer_id, header.producer_epoch),
        (producer_id, 1)
    );

    // A transactional producer is refused clearly; an empty transactional id is invalid.
    let transactional = init
        .clone()
        .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("tx-1"))));
    let refused = common::wire::call(&mut stream, &transactional, 4).await;
    assert_eq!(
        refused.error_code,
        ResponseError::TransactionalIdAuthorizationFailed.code()
    );
    assert_eq!(refused.producer_id.0, -1);
    let empty = common::wire::call(&mut stream, &InitProducerIdRequest::default(), 0).await;
    assert_eq!(empty.error_code, ResponseError::InvalidRequest.code());
    node.shutdown().await.unwrap();
}
