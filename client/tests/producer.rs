//! The producer against one in-process broker: records read back with the raw `Broker.Fetch`
//! RPC, batching, compression, partitioning (also against librdkafka), idempotence, bad
//! input, backpressure, flush and close.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use futures_util::FutureExt;
use kafka_protocol::ResponseError;
use tempfile::TempDir;
use tonic::transport::Channel;
use weir_broker::clock::SystemClock;
use weir_broker::server::Node;
use weir_client::proto as pb;
use weir_client::{
    Acks, Client, Compression, Error, NewTopic, ProducerConfig, ProducerRecord, RecordMetadata,
    murmur2_partition,
};
use weir_proto::batch::{self, BatchHeader, EncodeOptions, Record};
use weir_proto::v1::broker_client::BrokerClient;

/// The bound on every wait.
const WAIT: Duration = Duration::from_secs(15);

/// One broker node with its data in a temporary directory, and a client of it.
struct TestNode {
    node: Node,
    client: Client,
    _dir: TempDir,
}

impl TestNode {
    async fn start() -> Result<TestNode> {
        let dir = tempfile::tempdir()?;
        let node = Node::start(common::config(dir.path()), Arc::new(SystemClock)).await?;
        ensure!(node.wait_until_live(WAIT).await, "the broker becomes live");
        let client = Client::connect(&node.grpc_addr().to_string()).await?;
        Ok(TestNode {
            node,
            client,
            _dir: dir,
        })
    }

    async fn create_topic(&self, name: &str, partitions: i32) -> Result<()> {
        self.create(NewTopic::new(name).partitions(partitions))
            .await
    }

    async fn create(&self, topic: NewTopic) -> Result<()> {
        self.client.admin().create_topic(topic).await?;
        Ok(())
    }

    async fn broker(&self) -> Result<BrokerClient<Channel>> {
        Ok(BrokerClient::connect(format!("http://{}", self.node.grpc_addr())).await?)
    }

    async fn stop(self) -> Result<()> {
        self.node.shutdown().await?;
        Ok(())
    }
}

/// Every record of a partition, read with Fetch in RECORDS format.
async fn read_records(
    broker: &mut BrokerClient<Channel>,
    topic: &str,
    partition: i32,
) -> Result<Vec<pb::Record>> {
    let mut records = Vec::new();
    let mut offset = 0;
    loop {
        let data = fetch(broker, topic, partition, offset, pb::RecordFormat::Records).await?;
        records.extend(data.records);
        if data.next_offset >= data.high_watermark || data.next_offset == offset {
            return Ok(records);
        }
        offset = data.next_offset;
    }
}

/// The batches of a partition, read with Fetch in BATCHES format.
async fn read_batches(
    broker: &mut BrokerClient<Channel>,
    topic: &str,
    partition: i32,
) -> Result<Vec<(BatchHeader, Bytes)>> {
    let data = fetch(broker, topic, partition, 0, pb::RecordFormat::Batches).await?;
    let mut batches = Vec::new();
    for item in batch::batches(&data.batches) {
        let (position, header) = item?;
        let bytes = data.batches.slice(position..position + header.size());
        batches.push((header, bytes));
    }
    Ok(batches)
}

async fn fetch(
    broker: &mut BrokerClient<Channel>,
    topic: &str,
    partition: i32,
    offset: i64,
    format: pb::RecordFormat,
) -> Result<pb::PartitionData> {
    let response = broker
        .fetch(pb::FetchRequest {
            partitions: vec![pb::FetchPartition {
                topic: topic.to_string(),
                partition,
                offset,
                max_bytes: 4 * 1024 * 1024,
                leader_epoch: None,
            }],
            max_wait_ms: 0,
            min_bytes: 0,
            max_bytes: 4 * 1024 * 1024,
            format: format as i32,
        })
        .await?
        .into_inner();
    let data = response
        .partitions
        .into_iter()
        .next()
        .context("a fetch answers its partition")?;
    if let Some(error) = data.error {
        bail!("fetching {topic}-{partition}: {}", error.message);
    }
    Ok(data)
}

/// Awaits every delivery, each within [`WAIT`].
async fn delivered(deliveries: Vec<weir_client::DeliveryFuture>) -> Result<Vec<RecordMetadata>> {
    let mut metadata = Vec::with_capacity(deliveries.len());
    for delivery in deliveries {
        metadata.push(tokio::time::timeout(WAIT, delivery).await??);
    }
    Ok(metadata)
}

fn header_value(value: &str) -> Option<Bytes> {
    Some(Bytes::from(value.to_string()))
}

#[tokio::test]
async fn keyed_and_unkeyed_records_round_trip() -> Result<()> {
    let node = TestNode::start().await?;
    node.create_topic("round", 3).await?;
    let producer = node.client.producer(ProducerConfig::default())?;
    let mut sent = Vec::new();
    let mut deliveries = Vec::new();
    for i in 0..30 {
        let mut record = ProducerRecord::new("round")
            .value(format!("value-{i}"))
            .header("index", Some(i.to_string()))
            .header("null", None::<Bytes>);
        if i % 2 == 0 {
            record = record.key(format!("key-{i}"));
        }
        if i % 3 == 0 {
            record = record.timestamp_ms(1_700_000_000_000 + i64::from(i));
        }
        sent.push(record.clone());
        deliveries.push(producer.send(record).await?);
    }
    let metadata = delivered(deliveries).await?;

    let mut broker = node.broker().await?;
    let mut stored = BTreeMap::new();
    for partition in 0..3 {
        for record in read_records(&mut broker, "round", partition).await? {
            stored.insert((partition, record.offset), record);
        }
    }
    ensure!(
        stored.len() == sent.len(),
        "{} records stored",
        stored.len()
    );
    for (record, metadata) in sent.iter().zip(&metadata) {
        ensure!(metadata.topic == "round");
        if let Some(key) = &record.key {
            ensure!(
                metadata.partition == murmur2_partition(key, 3),
                "{metadata:?}"
            );
        }
        if let Some(timestamp) = record.timestamp_ms {
            ensure!(metadata.timestamp_ms == timestamp, "{metadata:?}");
        }
        let read = stored
            .get(&(metadata.partition, metadata.offset))
            .with_context(|| format!("no record where {metadata:?} says"))?;
        ensure!(read.key == record.key, "{read:?} vs {record:?}");
        ensure!(read.value == record.value, "{read:?} vs {record:?}");
        ensure!(read.timestamp_ms == Some(metadata.timestamp_ms), "{read:?}");
        let headers: Vec<(String, Option<Bytes>)> = read
            .headers
            .iter()
            .map(|h| (h.key.clone(), h.value.clone()))
            .collect();
        ensure!(
            headers == record.headers,
            "{headers:?} vs {:?}",
            record.headers
        );
    }
    producer.close().await?;
    node.stop().await
}

#[tokio::test]
async fn sticky_partitioning_sticks_then_moves_on() -> Result<()> {
    let node = TestNode::start().await?;
    node.create_topic("sticky", 4).await?;
    let producer = node.client.producer(ProducerConfig {
        linger: Duration::from_millis(200),
        ..ProducerConfig::default()
    })?;
    // A burst within one linger shares a batch, so a partition.
    let mut deliveries = Vec::new();
    for i in 0..20 {
        let record = ProducerRecord::new("sticky").value(format!("burst-{i}"));
        deliveries.push(producer.send(record).await?);
    }
    let burst = delivered(deliveries).await?;
    let partitions: BTreeSet<i32> = burst.iter().map(|m| m.partition).collect();
    ensure!(partitions.len() == 1, "one burst on {partitions:?}");
    let offsets: Vec<i64> = burst.iter().map(|m| m.offset).collect();
    ensure!(offsets == (0..20).collect::<Vec<_>>(), "{offsets:?}");

    // Each batch sent moves the next records elsewhere.
    let mut used = Vec::new();
    for i in 0..12 {
        let record = ProducerRecord::new("sticky").value(format!("one-{i}"));
        let delivery = producer.send(record).await?;
        producer.flush().await?;
        used.push(tokio::time::timeout(WAIT, delivery).await??.partition);
    }
    ensure!(
        used.windows(2).all(|w| w[0] != w[1]),
        "consecutive batches on other partitions: {used:?}"
    );
    let spread: BTreeSet<i32> = used.iter().copied().collect();
    ensure!(spread.len() >= 3, "spread over {spread:?}");
    producer.close().await?;
    node.stop().await
}

#[tokio::test]
async fn linger_and_batch_size_make_numbered_multi_record_batches() -> Result<()> {
    let node = TestNode::start().await?;
    node.create_topic("batched", 1).await?;
    let producer = node.client.producer(ProducerConfig {
        linger: Duration::from_millis(100),
        batch_size: 2048,
        ..ProducerConfig::default()
    })?;
    let mut deliveries = Vec::new();
    for i in 0..60 {
        let record = ProducerRecord::new("batched").value(format!("{i:0>100}"));
        deliveries.push(producer.send(record).await?);
    }
    let metadata = delivered(deliveries).await?;
    let offsets: Vec<i64> = metadata.iter().map(|m| m.offset).collect();
    ensure!(offsets == (0..60).collect::<Vec<_>>(), "{offsets:?}");

    let mut broker = node.broker().await?;
    let batches = read_batches(&mut broker, "batched", 0).await?;
    let counts: Vec<i32> = batches.iter().map(|(h, _)| h.record_count).collect();
    ensure!(counts.iter().sum::<i32>() == 60, "{counts:?}");
    ensure!(
        counts.len() >= 3,
        "batch_size splits the records: {counts:?}"
    );
    ensure!(
        counts.iter().all(|&c| c > 1),
        "every batch has several: {counts:?}"
    );
    // Idempotent: one producer id, sequences that follow each other.
    let producer_id = batches[0].0.producer_id;
    ensure!(producer_id >= 0, "an idempotent producer id");
    let mut sequence = 0;
    for (header, bytes) in &batches {
        ensure!(header.size() <= 2048 + 200, "{} bytes", header.size());
        ensure!(header.producer_id == producer_id);
        ensure!(header.base_sequence == sequence, "{header:?}");
        sequence += header.record_count;
        ensure!(batch::decode(bytes)?.len() == usize::try_from(header.record_count)?);
    }
    producer.close().await?;
    node.stop().await
}

#[tokio::test]
async fn every_codec_round_trips() -> Result<()> {
    let node = TestNode::start().await?;
    let mut broker = node.broker().await?;
    for codec in Compression::ALL {
        let topic = format!("codec-{codec}");
        node.create_topic(&topic, 1).await?;
        let producer = node.client.producer(ProducerConfig {
            compression: codec,
            linger: Duration::from_millis(50),
            ..ProducerConfig::default()
        })?;
        let mut deliveries = Vec::new();
        for i in 0..25 {
            let record = ProducerRecord::new(&topic)
                .key(format!("k{i}"))
                .value(format!("{codec} record {i} {}", "compressible ".repeat(20)));
            deliveries.push(producer.send(record).await?);
        }
        delivered(deliveries).await?;
        producer.close().await?;
        let batches = read_batches(&mut broker, &topic, 0).await?;
        ensure!(!batches.is_empty());
        for (header, _) in &batches {
            ensure!(header.compression()? == codec, "{codec}: {header:?}");
        }
        let records = read_records(&mut broker, &topic, 0).await?;
        ensure!(records.len() == 25, "{codec}: {} records", records.len());
        for (i, record) in records.iter().enumerate() {
            let value = format!("{codec} record {i} {}", "compressible ".repeat(20));
            ensure!(
                record.value.as_deref() == Some(value.as_bytes()),
                "{codec}: {record:?}"
            );
        }
    }
    node.stop().await
}

#[tokio::test]
async fn librdkafka_puts_each_key_where_the_rust_producer_does() -> Result<()> {
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let node = TestNode::start().await?;
    node.create_topic("keys", 7).await?;
    let kafka: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", node.node.kafka_addr().to_string())
        .set("partitioner", "murmur2_random")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()?;
    let producer = node.client.producer(ProducerConfig::default())?;
    let mut partitions = BTreeSet::new();
    for i in 0..50 {
        let key = format!("user-{i}-{}", i * 7919);
        let record = FutureRecord::to("keys")
            .key(&key)
            .payload("from librdkafka");
        let by_librdkafka = kafka
            .send(record, WAIT)
            .await
            .map_err(|(e, _)| anyhow::anyhow!("librdkafka could not produce {key}: {e}"))?;
        let record = ProducerRecord::new("keys")
            .key(key.clone())
            .value("from weir-client");
        let by_rust = tokio::time::timeout(WAIT, producer.send(record).await?).await??;
        ensure!(
            by_rust.partition == by_librdkafka.partition,
            "{key}: librdkafka chose {}, weir-client {}",
            by_librdkafka.partition,
            by_rust.partition
        );
        partitions.insert(by_rust.partition);
    }
    ensure!(partitions.len() >= 5, "keys spread: {partitions:?}");
    producer.close().await?;
    drop(kafka);
    node.stop().await
}

#[tokio::test]
async fn the_broker_drops_a_resent_batch_of_an_idempotent_producer() -> Result<()> {
    let node = TestNode::start().await?;
    node.create_topic("dedup", 1).await?;
    let mut broker = node.broker().await?;
    let id = broker
        .init_producer_id(pb::InitProducerIdRequest {})
        .await?
        .into_inner();
    let records: Vec<Record> = (0..3)
        .map(|i| Record {
            value: Some(Bytes::from(format!("once-{i}"))),
            timestamp: 1_700_000_000_000,
            offset: i,
            ..Record::default()
        })
        .collect();
    let options = EncodeOptions {
        producer_id: id.producer_id,
        producer_epoch: i16::try_from(id.producer_epoch)?,
        base_sequence: 0,
        ..EncodeOptions::default()
    };
    let bytes = batch::encode(&records, &options)?;
    let produce = |bytes: Bytes| pb::ProduceRequest {
        partitions: vec![pb::PartitionRecords {
            topic: "dedup".to_string(),
            partition: 0,
            data: Some(pb::partition_records::Data::Batches(bytes)),
            compression: 0,
        }],
        acks: pb::Acks::All as i32,
        timeout_ms: 0,
    };
    let mut offsets = Vec::new();
    for _ in 0..2 {
        let response = broker.produce(produce(bytes.clone())).await?.into_inner();
        let result = &response.partitions[0];
        ensure!(result.error.is_none(), "{result:?}");
        offsets.push(result.base_offset);
    }
    ensure!(
        offsets == [0, 0],
        "the retry gets the first append's offset: {offsets:?}"
    );
    ensure!(
        read_records(&mut broker, "dedup", 0).await?.len() == 3,
        "written once"
    );

    // A batch that skips sequences is refused.
    let skipping = batch::encode(
        &records,
        &EncodeOptions {
            base_sequence: 10,
            ..options
        },
    )?;
    let response = broker.produce(produce(skipping)).await?.into_inner();
    let error = response.partitions[0].error.clone().context("refused")?;
    ensure!(
        error.kafka_error_code == i32::from(ResponseError::OutOfOrderSequenceNumber.code()),
        "{error:?}"
    );
    node.stop().await
}

#[tokio::test]
async fn bad_records_and_settings_are_refused() -> Result<()> {
    let node = TestNode::start().await?;
    node.create(
        NewTopic::new("small")
            .partitions(2)
            .config("max.message.bytes", "1024"),
    )
    .await?;
    let producer = node.client.producer(ProducerConfig::default())?;

    let error = producer
        .send(ProducerRecord::new("no-such-topic").value("x"))
        .await
        .err()
        .context("an unknown topic is refused")?;
    ensure!(
        matches!(&error, Error::UnknownTopic(t) if t == "no-such-topic"),
        "{error:?}"
    );
    ensure!(error.to_string().contains("weir topic create"), "{error}");

    let error = producer
        .send(ProducerRecord::new("small").partition(5).value("x"))
        .await
        .err()
        .context("a partition out of range is refused")?;
    ensure!(
        matches!(
            error,
            Error::UnknownPartition {
                partition: 5,
                count: 2,
                ..
            }
        ),
        "{error:?}"
    );

    let error = producer
        .send(
            ProducerRecord::new("small")
                .value("x")
                .header("h", header_value("1"))
                .header("h", header_value("2")),
        )
        .await
        .err()
        .context("a repeated header key is refused")?;
    ensure!(matches!(error, Error::Invalid { .. }), "{error:?}");

    let error = producer
        .send(ProducerRecord::new("small").value(vec![0u8; 2 * 1024 * 1024]))
        .await
        .err()
        .context("a record over max_request_size is refused")?;
    ensure!(error.to_string().contains("max_request_size"), "{error}");

    // Larger than the topic's max.message.bytes: the broker refuses the batch.
    let delivery = producer
        .send(
            ProducerRecord::new("small")
                .partition(0)
                .value(vec![7u8; 4000]),
        )
        .await?;
    let error = tokio::time::timeout(WAIT, delivery)
        .await?
        .err()
        .context("a record over max.message.bytes fails")?;
    ensure!(
        error.kafka_error() == Some(ResponseError::MessageTooLarge),
        "{error:?}"
    );
    ensure!(error.to_string().contains("MESSAGE_TOO_LARGE"), "{error}");
    // The partition goes on: the next batch is not stuck behind the failed one's sequence.
    let delivery = producer
        .send(ProducerRecord::new("small").partition(0).value("fits"))
        .await?;
    let metadata = tokio::time::timeout(WAIT, delivery).await??;
    ensure!(metadata.offset == 0, "{metadata:?}");

    for acks in [Acks::Leader, Acks::None] {
        let error = node
            .client
            .producer(ProducerConfig {
                acks,
                ..ProducerConfig::default()
            })
            .err()
            .context("idempotence needs acks all")?;
        ensure!(matches!(error, Error::Invalid { .. }), "{error:?}");
        ensure!(error.to_string().contains("idempotence"), "{error}");
    }
    producer.close().await?;
    node.stop().await
}

#[tokio::test]
async fn acks_leader_and_none_deliver() -> Result<()> {
    let node = TestNode::start().await?;
    node.create_topic("acks", 1).await?;
    for (acks, offset) in [(Acks::Leader, 0), (Acks::None, -1)] {
        let producer = node.client.producer(ProducerConfig {
            acks,
            idempotence: false,
            ..ProducerConfig::default()
        })?;
        let delivery = producer
            .send(ProducerRecord::new("acks").value(format!("{acks:?}")))
            .await?;
        let metadata = tokio::time::timeout(WAIT, delivery).await??;
        ensure!(metadata.offset == offset, "{acks:?}: {metadata:?}");
        producer.close().await?;
    }
    let mut broker = node.broker().await?;
    ensure!(read_records(&mut broker, "acks", 0).await?.len() == 2);
    node.stop().await
}

#[tokio::test]
async fn send_waits_for_buffer_room() -> Result<()> {
    let node = TestNode::start().await?;
    node.create_topic("pressure", 1).await?;
    // Room for three 1000-byte records; they linger long unless flushed.
    let producer = node.client.producer(ProducerConfig {
        buffer_memory: 3500,
        linger: Duration::from_secs(60),
        ..ProducerConfig::default()
    })?;
    let record = |i: usize| ProducerRecord::new("pressure").value(format!("{i:0>1000}"));
    let mut deliveries = Vec::new();
    for i in 0..3 {
        deliveries.push(producer.send(record(i)).await?);
    }
    let blocked = tokio::spawn({
        let producer = producer.clone();
        async move { producer.send(record(3)).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    ensure!(
        !blocked.is_finished(),
        "send waits while the buffer is full"
    );
    producer.flush().await?;
    deliveries.push(tokio::time::timeout(WAIT, blocked).await???);
    tokio::time::timeout(WAIT, producer.close()).await??;

    // Many more than fit: each send waits for room, none fails.
    let producer = node.client.producer(ProducerConfig {
        buffer_memory: 3500,
        linger: Duration::from_millis(1),
        ..ProducerConfig::default()
    })?;
    for i in 4..60 {
        deliveries.push(tokio::time::timeout(WAIT, producer.send(record(i))).await??);
    }
    let metadata = delivered(deliveries).await?;
    let offsets: Vec<i64> = metadata.iter().map(|m| m.offset).collect();
    ensure!(offsets == (0..60).collect::<Vec<_>>(), "{offsets:?}");
    node.stop().await
}

#[tokio::test]
async fn flush_and_close_deliver_what_lingers() -> Result<()> {
    let node = TestNode::start().await?;
    node.create_topic("lingering", 2).await?;
    let producer = node.client.producer(ProducerConfig {
        linger: Duration::from_secs(60),
        ..ProducerConfig::default()
    })?;
    let mut deliveries = Vec::new();
    for i in 0..5 {
        let record = ProducerRecord::new("lingering")
            .key(format!("k{i}"))
            .value("v");
        deliveries.push(producer.send(record).await?);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    ensure!(
        deliveries.iter_mut().all(|d| d.now_or_never().is_none()),
        "lingering"
    );
    tokio::time::timeout(WAIT, producer.flush()).await??;
    for delivery in deliveries {
        let metadata = delivery
            .now_or_never()
            .context("flush waits for every delivery")??;
        ensure!(metadata.offset >= 0);
    }

    // Close delivers what lingers, then every clone is closed.
    let clone = producer.clone();
    let delivery = producer
        .send(ProducerRecord::new("lingering").partition(1).value("last"))
        .await?;
    tokio::time::timeout(WAIT, producer.close()).await??;
    let metadata = delivery
        .now_or_never()
        .context("close waits for the delivery")??;
    ensure!(metadata.partition == 1);
    let error = clone
        .send(ProducerRecord::new("lingering").value("late"))
        .await
        .err()
        .context("a closed producer refuses records")?;
    ensure!(matches!(error, Error::Closed(_)), "{error:?}");
    clone.flush().await?;
    node.stop().await
}

#[tokio::test]
async fn a_record_fails_once_its_delivery_timeout_passes() -> Result<()> {
    let node = TestNode::start().await?;
    node.create_topic("gone", 1).await?;
    let delivery_timeout = Duration::from_secs(1);
    let producer = node.client.producer(ProducerConfig {
        delivery_timeout,
        retry_backoff: Duration::from_millis(20),
        ..ProducerConfig::default()
    })?;
    let first = producer
        .send(ProducerRecord::new("gone").value("before"))
        .await?;
    ensure!(tokio::time::timeout(WAIT, first).await??.offset == 0);

    // The only broker goes away: the record is retried until its delivery timeout.
    node.stop().await?;
    let started = std::time::Instant::now();
    let delivery = producer
        .send(ProducerRecord::new("gone").value("after"))
        .await?;
    let error = tokio::time::timeout(WAIT, delivery)
        .await?
        .err()
        .context("no broker acknowledges the record")?;
    ensure!(matches!(error, Error::Timeout { .. }), "{error:?}");
    ensure!(error.to_string().contains("delivery_timeout"), "{error}");
    ensure!(
        started.elapsed() >= delivery_timeout,
        "failed before its timeout: {error}"
    );
    // Nothing is left to deliver, so closing does not wait.
    tokio::time::timeout(WAIT, producer.close()).await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clones_send_from_many_tasks_in_order() -> Result<()> {
    let node = TestNode::start().await?;
    node.create_topic("many", 3).await?;
    let producer = node.client.producer(ProducerConfig {
        batch_size: 4096,
        ..ProducerConfig::default()
    })?;
    let mut tasks = Vec::new();
    for task in 0..6 {
        let producer = producer.clone();
        tasks.push(tokio::spawn(async move {
            let mut deliveries = Vec::new();
            for i in 0..300 {
                let record = ProducerRecord::new("many")
                    .key(format!("task-{task}"))
                    .value(format!("{task}:{i}"));
                deliveries.push(producer.send(record).await?);
            }
            delivered(deliveries).await
        }));
    }
    let mut broker = node.broker().await?;
    let mut stored = BTreeMap::new();
    let mut results = Vec::new();
    for task in tasks {
        results.push(tokio::time::timeout(WAIT, task).await???);
    }
    for partition in 0..3 {
        for record in read_records(&mut broker, "many", partition).await? {
            stored.insert((partition, record.offset), record.value);
        }
    }
    ensure!(stored.len() == 6 * 300, "{} records", stored.len());
    for (task, metadata) in results.iter().enumerate() {
        let key = format!("task-{task}");
        let partition = murmur2_partition(key.as_bytes(), 3);
        // A key's records are in the order they were sent.
        ensure!(metadata.windows(2).all(|w| w[0].offset < w[1].offset));
        for (i, m) in metadata.iter().enumerate() {
            ensure!(m.partition == partition);
            let value = stored.get(&(m.partition, m.offset)).cloned().flatten();
            ensure!(
                value.as_deref() == Some(format!("{task}:{i}").as_bytes()),
                "{m:?}"
            );
        }
    }
    producer.close().await?;
    node.stop().await
}
