//! The offset APIs against real clients: librdkafka's offsets_for_times, watermarks, consumers
//! starting at the beginning, the end and inside a batch, and DeleteRecords through its admin
//! client (surviving a restart); Debian's kcat (librdkafka 2.0.2, the non-flexible versions);
//! and ListOffsets, OffsetForLeaderEpoch and DeleteRecords on the bare protocol at each
//! version served, with Kafka's error codes.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::list_offsets_response::ListOffsetsPartitionResponse;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    DeleteRecordsRequest, ListOffsetsRequest, OffsetForLeaderEpochRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::net::TcpStream;
use weir_broker::server::Node;
use weir_broker::storage::TopicPartition;

const WAIT: Duration = Duration::from_secs(30);

/// Milliseconds since the epoch, an hour ago: old enough to be in the past, recent enough for
/// the default timestamp window.
fn an_hour_ago() -> i64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(now.as_millis()).unwrap() - 3_600_000
}

/// Creates `name` with one partition and 4 KiB segments (a few batches each), and waits
/// until the node serves it.
async fn create_topic(node: &Node, name: &str, configs: &[(&str, &str)]) {
    let mut all = BTreeMap::from([("segment.bytes".to_string(), "4096".to_string())]);
    all.extend(configs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    node.controller()
        .view()
        .create_topic(name, 1, 1, all)
        .await
        .expect("the topic is created");
    let tp = TopicPartition::new(name, 0);
    let deadline = Instant::now() + WAIT;
    while node.replicas().partition(&tp).is_none() {
        assert!(Instant::now() < deadline, "{tp} opens in time");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Produces `rounds` rounds of `per_round` records to partition 0 of `topic`, record `i`
/// (counted over all rounds) with timestamp `timestamp(i)`; each round is delivered before
/// the next starts, so each is at least one batch, usually exactly one.
async fn produce(
    bootstrap: &str,
    topic: &str,
    rounds: usize,
    per_round: usize,
    codec: &str,
    timestamp: impl Fn(usize) -> i64,
) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("compression.codec", codec)
        .set("linger.ms", "50")
        .create()
        .unwrap();
    for round in 0..rounds {
        let mut deliveries = Vec::new();
        for i in round * per_round..(round + 1) * per_round {
            let value = format!("record {i:06} {}", "x".repeat(100));
            let record = FutureRecord::<(), _>::to(topic)
                .partition(0)
                .payload(&value)
                .timestamp(timestamp(i));
            deliveries.push(producer.send_result(record).expect("queued"));
        }
        for delivery in deliveries {
            tokio::time::timeout(WAIT, delivery)
                .await
                .expect("delivered in time")
                .expect("not cancelled")
                .unwrap_or_else(|(e, _)| panic!("{topic}: {e}"));
        }
    }
}

fn consumer(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "offsets-test")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap()
}

/// The offsets a consumer assigned partition 0 of `topic` at `start` reads, until it has
/// read up to `end` (exclusive) or `WAIT` passes. Blocking: call from a blocking task.
fn consume_from(bootstrap: &str, topic: &str, start: Offset, end: i64) -> Vec<i64> {
    let consumer = consumer(bootstrap);
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, start).unwrap();
    consumer.assign(&assignment).unwrap();
    let deadline = Instant::now() + WAIT;
    let mut offsets = Vec::new();
    while offsets.last().is_none_or(|&last| last + 1 < end) && Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            offsets.push(message.expect("a record, not an error").offset());
        }
    }
    offsets
}

/// The base offset and record count of every batch of partition 0 of `topic`, as stored.
fn stored_batches(node: &Node, topic: &str) -> Vec<(i64, i32)> {
    let partition = node
        .replicas()
        .partition(&TopicPartition::new(topic, 0))
        .unwrap();
    let start = partition.log().log_start_offset();
    let bytes = partition
        .read(start, usize::MAX >> 1, None)
        .unwrap()
        .records;
    weir_proto::batch::batches(&bytes)
        .map(|item| {
            let (_, header) = item.unwrap();
            (header.base_offset, header.record_count)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_for_times_finds_the_first_record_at_or_after_each_time() {
    let dir = tempfile::tempdir().unwrap();
    let node = common::node::start(common::node::single_node_config(dir.path())).await;
    let bootstrap = node.kafka_addr().to_string();
    create_topic(&node, "times", &[]).await;
    const RECORDS: usize = 200;
    let base = an_hour_ago();
    let timestamp = move |i: usize| base + 10 * i as i64;
    produce(&bootstrap, "times", 10, RECORDS / 10, "none", timestamp).await;
    let segments = node
        .replicas()
        .partition(&TopicPartition::new("times", 0))
        .unwrap()
        .log()
        .segment_count();
    assert!(
        segments >= 3,
        "the records span several segments ({segments})"
    );

    let found = tokio::task::spawn_blocking(move || {
        let consumer = consumer(&bootstrap);
        let mut queries = Vec::new();
        for i in (0..RECORDS).step_by(7).chain([RECORDS - 1]) {
            queries.push((timestamp(i), Some(i as i64)));
            queries.push((timestamp(i) - 3, Some(i as i64)));
        }
        queries.push((base - 1_000_000, Some(0)));
        queries.push((timestamp(RECORDS - 1) + 1, None));
        let mut answers = Vec::new();
        for (time, expected) in queries {
            let mut wanted = TopicPartitionList::new();
            wanted
                .add_partition_offset("times", 0, Offset::Offset(time))
                .unwrap();
            let found = consumer.offsets_for_times(wanted, WAIT).unwrap();
            let element = found.find_partition("times", 0).unwrap();
            element.error().unwrap();
            answers.push((time, element.offset(), expected));
        }
        let watermarks = consumer.fetch_watermarks("times", 0, WAIT).unwrap();
        (answers, watermarks)
    })
    .await
    .unwrap();
    let (answers, watermarks) = found;
    for (time, offset, expected) in answers {
        let expected = expected.map_or(Offset::End, Offset::Offset);
        assert_eq!(offset, expected, "the offset for time {time}");
    }
    assert_eq!(watermarks, (0, RECORDS as i64));
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_start_at_the_beginning_the_end_or_exactly_inside_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let node = common::node::start(common::node::single_node_config(dir.path())).await;
    let bootstrap = node.kafka_addr().to_string();
    const RECORDS: i64 = 300;
    let base = an_hour_ago();
    for codec in ["none", "lz4"] {
        create_topic(&node, codec, &[]).await;
        produce(&bootstrap, codec, 3, RECORDS as usize / 3, codec, |i| {
            base + i as i64
        })
        .await;
        let batches = stored_batches(&node, codec);
        // Start inside batches of many records: just after a batch's first record, in its
        // middle, at its last record.
        let mut starts = Vec::new();
        for &(base_offset, count) in batches.iter().filter(|(_, count)| *count >= 10) {
            let count = i64::from(count);
            starts.extend([
                base_offset + 1,
                base_offset + count / 2,
                base_offset + count - 1,
            ]);
        }
        assert!(
            starts.len() >= 3,
            "{codec}: batches of many records: {batches:?}"
        );
        starts.push(0);
        for start in starts {
            let bootstrap = bootstrap.clone();
            let topic = codec.to_string();
            let offsets = tokio::task::spawn_blocking(move || {
                consume_from(&bootstrap, &topic, Offset::Offset(start), RECORDS)
            })
            .await
            .unwrap();
            let expected: Vec<i64> = (start..RECORDS).collect();
            assert_eq!(
                offsets, expected,
                "{codec}: from offset {start}, each record once, in order, none before"
            );
        }
        let from_beginning = {
            let bootstrap = bootstrap.clone();
            let topic = codec.to_string();
            tokio::task::spawn_blocking(move || {
                consume_from(&bootstrap, &topic, Offset::Beginning, RECORDS)
            })
        };
        assert_eq!(
            from_beginning.await.unwrap(),
            (0..RECORDS).collect::<Vec<_>>()
        );
    }

    // From the end: nothing old, then exactly the record produced after the end was found.
    let (ready, fetching) = tokio::sync::oneshot::channel();
    let reader = {
        let bootstrap = bootstrap.clone();
        tokio::task::spawn_blocking(move || read_from_the_end(&bootstrap, "none", ready))
    };
    let fetching_from = tokio::time::timeout(WAIT, fetching)
        .await
        .expect("the consumer fetches in time")
        .unwrap();
    assert_eq!(fetching_from, RECORDS, "the end, resolved by ListOffsets");
    produce(&bootstrap, "none", 1, 1, "none", |_| base).await;
    assert_eq!(reader.await.unwrap(), [RECORDS]);
    node.shutdown().await.unwrap();
}

/// A consumer context that reports, from librdkafka's statistics, the offset it fetches
/// partition 0 from once it is fetching.
struct FetchWatch {
    topic: String,
    fetching_from: std::sync::Mutex<Option<i64>>,
}

impl rdkafka::ClientContext for FetchWatch {
    fn stats(&self, statistics: rdkafka::Statistics) {
        let partition = statistics
            .topics
            .get(&self.topic)
            .and_then(|t| t.partitions.get(&0));
        if let Some(partition) = partition.filter(|p| p.fetch_state == "active") {
            *self.fetching_from.lock().unwrap() = Some(partition.next_offset);
        }
    }
}

impl rdkafka::consumer::ConsumerContext for FetchWatch {}

/// Assigns partition 0 of `topic` at its end; once fetching, says from where on `ready`, then
/// returns the offsets of the records it reads (at least one, within `WAIT`).
fn read_from_the_end(
    bootstrap: &str,
    topic: &str,
    ready: tokio::sync::oneshot::Sender<i64>,
) -> Vec<i64> {
    let context = FetchWatch {
        topic: topic.to_string(),
        fetching_from: std::sync::Mutex::new(None),
    };
    let consumer: BaseConsumer<FetchWatch> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "offsets-test")
        .set("enable.auto.commit", "false")
        .set("statistics.interval.ms", "100")
        .create_with_context(context)
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::End)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let deadline = Instant::now() + WAIT;
    let mut ready = Some(ready);
    let mut seen = Vec::new();
    while seen.is_empty() && Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            seen.push(message.unwrap().offset());
        }
        let fetching_from = *consumer.context().fetching_from.lock().unwrap();
        if let Some(offset) = fetching_from
            && let Some(ready) = ready.take()
        {
            assert!(seen.is_empty(), "nothing before the end: {seen:?}");
            let _ = ready.send(offset);
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_records_moves_where_consumers_start_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::node::single_node_config(dir.path());
    let node = common::node::start(config.clone()).await;
    let bootstrap = node.kafka_addr().to_string();
    create_topic(&node, "trimmed", &[]).await;
    const RECORDS: i64 = 500;
    produce(
        &bootstrap,
        "trimmed",
        10,
        RECORDS as usize / 10,
        "none",
        |_| an_hour_ago(),
    )
    .await;
    let segments_before = node
        .replicas()
        .partition(&TopicPartition::new("trimmed", 0))
        .unwrap()
        .log()
        .segment_count();

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let options = AdminOptions::new().operation_timeout(Some(WAIT));
    let delete = |offset: Offset| {
        let mut offsets = TopicPartitionList::new();
        offsets.add_partition_offset("trimmed", 0, offset).unwrap();
        let admin = &admin;
        let options = &options;
        async move {
            let result = admin.delete_records(&offsets, options).await.unwrap();
            let element = result.find_partition("trimmed", 0).unwrap();
            element.error().map(|()| element.offset())
        }
    };
    assert_eq!(
        delete(Offset::Offset(230)).await.unwrap(),
        Offset::Offset(230)
    );
    assert_eq!(
        delete(Offset::Offset(100)).await.unwrap(),
        Offset::Offset(230),
        "the start never moves back"
    );
    let error = delete(Offset::Offset(RECORDS + 1)).await.unwrap_err();
    assert_eq!(
        error.rdkafka_error_code(),
        Some(rdkafka::types::RDKafkaErrorCode::OffsetOutOfRange),
        "past the high watermark: {error}"
    );
    let log = node
        .replicas()
        .partition(&TopicPartition::new("trimmed", 0))
        .unwrap()
        .log()
        .clone();
    assert_eq!(log.log_start_offset(), 230);
    assert!(
        log.segment_count() < segments_before,
        "whole segments below the start are deleted"
    );

    // Consumers from the beginning, or from a deleted offset (reset to the earliest), start
    // at the new start offset.
    let check = |bootstrap: String| async move {
        tokio::task::spawn_blocking(move || {
            let watermarks = consumer(&bootstrap)
                .fetch_watermarks("trimmed", 0, WAIT)
                .unwrap();
            let beginning = consume_from(&bootstrap, "trimmed", Offset::Beginning, RECORDS);
            let deleted = consume_from(&bootstrap, "trimmed", Offset::Offset(10), RECORDS);
            (watermarks, beginning, deleted)
        })
        .await
        .unwrap()
    };
    let expected: Vec<i64> = (230..RECORDS).collect();
    let (watermarks, beginning, deleted) = check(bootstrap).await;
    assert_eq!(watermarks, (230, RECORDS));
    assert_eq!(beginning, expected);
    assert_eq!(deleted, expected);

    drop(log);
    node.shutdown().await.unwrap();
    let node = common::node::start(config).await;
    let (watermarks, beginning, _) = check(node.kafka_addr().to_string()).await;
    assert_eq!(
        watermarks,
        (230, RECORDS),
        "the deletion survives the restart"
    );
    assert_eq!(beginning, expected);
    node.shutdown().await.unwrap();
}

/// A ListOffsets request for partitions (index, timestamp, current leader epoch) of `topic`.
fn list_request(topic: &str, partitions: &[(i32, i64, i32)]) -> ListOffsetsRequest {
    let partitions = partitions
        .iter()
        .map(|&(index, timestamp, epoch)| {
            ListOffsetsPartition::default()
                .with_partition_index(index)
                .with_timestamp(timestamp)
                .with_current_leader_epoch(epoch)
        })
        .collect();
    ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(partitions),
        ])
}

/// The answer to a ListOffsets of one partition at `version`.
async fn list(
    stream: &mut TcpStream,
    version: i16,
    topic: &str,
    partition: i32,
    timestamp: i64,
    epoch: i32,
) -> ListOffsetsPartitionResponse {
    let epoch = if version >= 4 { epoch } else { -1 };
    let request = list_request(topic, &[(partition, timestamp, epoch)]);
    let mut response = common::wire::call(stream, &request, version).await;
    assert_eq!(response.topics.len(), 1);
    response.topics.remove(0).partitions.remove(0)
}

/// (error, timestamp, offset, leader epoch) of an answer.
fn listed(answer: &ListOffsetsPartitionResponse) -> (i16, i64, i64, i32) {
    (
        answer.error_code,
        answer.timestamp,
        answer.offset,
        answer.leader_epoch,
    )
}

/// (error, epoch, end offset) for each leader epoch of `epochs`, asked of partition 0 of
/// `topic` at `version` with the client's current leader epoch `current`.
async fn epoch_ends(
    stream: &mut TcpStream,
    version: i16,
    topic: &str,
    current: i32,
    epochs: &[i32],
) -> Vec<(i16, i32, i64)> {
    let partitions = epochs
        .iter()
        .map(|&epoch| {
            OffsetForLeaderPartition::default()
                .with_partition(0)
                .with_current_leader_epoch(current)
                .with_leader_epoch(epoch)
        })
        .collect();
    let mut request = OffsetForLeaderEpochRequest::default().with_topics(vec![
        OffsetForLeaderTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(partitions),
    ]);
    if version >= 3 {
        request = request.with_replica_id((-1).into());
    }
    let response = common::wire::call(stream, &request, version).await;
    response.topics[0]
        .partitions
        .iter()
        .map(|p| (p.error_code, p.leader_epoch, p.end_offset))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_at_every_version_served() {
    let dir = tempfile::tempdir().unwrap();
    let node = common::node::start(common::node::single_node_config(dir.path())).await;
    let bootstrap = node.kafka_addr().to_string();
    create_topic(&node, "listed", &[]).await;
    // Record i at time base + i, except record 57, far later than every other.
    let base = an_hour_ago();
    let late = base + 1_000_000;
    let timestamp = move |i: usize| if i == 57 { late } else { base + i as i64 };
    produce(&bootstrap, "listed", 4, 25, "none", timestamp).await;
    let epoch = node
        .replicas()
        .partition(&TopicPartition::new("listed", 0))
        .unwrap()
        .leader_epoch();
    let mut stream = TcpStream::connect(&bootstrap).await.unwrap();
    for version in 1..=8 {
        // Leader epochs are answered from v4 on.
        let e = |epoch: i32| if version >= 4 { epoch } else { -1 };
        let mut cases = vec![
            (-1, (0, -1, 100, e(epoch))),
            (-2, (0, -1, 0, e(epoch))),
            (base + 10, (0, base + 10, 10, e(epoch))),
            (base - 50_000, (0, base, 0, e(epoch))),
            (base + 57, (0, late, 57, e(epoch))),
            (base + 58, (0, late, 57, e(epoch))),
            (late + 1, (0, -1, -1, -1)),
        ];
        if version >= 7 {
            cases.push((-3, (0, late, 57, e(epoch))));
        }
        if version >= 8 {
            cases.push((-4, (0, -1, 0, e(epoch))));
        }
        for (time, expected) in cases {
            let answer = list(&mut stream, version, "listed", 0, time, epoch).await;
            assert_eq!(listed(&answer), expected, "v{version}, timestamp {time}");
        }
        let unknown = |code: i16| (code, -1, -1, -1);
        let missing = ResponseError::UnknownTopicOrPartition.code();
        let answer = list(&mut stream, version, "missing", 0, -1, -1).await;
        assert_eq!(listed(&answer), unknown(missing), "v{version}");
        let answer = list(&mut stream, version, "listed", 3, -1, -1).await;
        assert_eq!(listed(&answer), unknown(missing), "v{version}");
        if version >= 4 {
            let answer = list(&mut stream, version, "listed", 0, -1, epoch + 1).await;
            let code = ResponseError::UnknownLeaderEpoch.code();
            assert_eq!(listed(&answer), unknown(code), "v{version}");
        }
        // A partition named twice is refused, both times.
        let twice = list_request("listed", &[(0, -1, -1), (0, -2, -1)]);
        let response = common::wire::call(&mut stream, &twice, version).await;
        let codes: Vec<i16> = response.topics[0]
            .partitions
            .iter()
            .map(|p| p.error_code)
            .collect();
        let invalid = ResponseError::InvalidRequest.code();
        assert_eq!(codes, [invalid, invalid], "v{version}");
    }
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_for_leader_epoch_across_a_leader_change() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::node::single_node_config(dir.path());
    let node = common::node::start(config.clone()).await;
    let bootstrap = node.kafka_addr().to_string();
    create_topic(&node, "epochs", &[]).await;
    produce(&bootstrap, "epochs", 2, 20, "none", |_| an_hour_ago()).await;
    let tp = TopicPartition::new("epochs", 0);
    let first = node.replicas().partition(&tp).unwrap().leader_epoch();
    let mut stream = TcpStream::connect(&bootstrap).await.unwrap();
    for version in 2..=4 {
        let ends = epoch_ends(&mut stream, version, "epochs", first, &[first, first + 1]).await;
        assert_eq!(ends, [(0, first, 40), (0, -1, -1)], "v{version}");
        let ends = epoch_ends(&mut stream, version, "epochs", -1, &[first]).await;
        assert_eq!(
            ends,
            [(0, first, 40)],
            "v{version}: -1 skips the epoch check"
        );
        let ends = epoch_ends(&mut stream, version, "epochs", first + 1, &[first]).await;
        let unknown = ResponseError::UnknownLeaderEpoch.code();
        assert_eq!(ends, [(unknown, -1, -1)], "v{version}");
    }
    let ends = epoch_ends(&mut stream, 4, "missing", -1, &[0]).await;
    let missing = ResponseError::UnknownTopicOrPartition.code();
    assert_eq!(ends, [(missing, -1, -1)]);
    drop(stream);

    // A restart gives the partition a new leader epoch (the broker's earlier incarnation is
    // fenced, which takes its leadership away, and the new one is elected).
    node.shutdown().await.unwrap();
    let node = common::node::start(config).await;
    let bootstrap = node.kafka_addr().to_string();
    let deadline = Instant::now() + WAIT;
    let second = loop {
        let epoch = node
            .replicas()
            .partition(&tp)
            .map(|p| (p.role(), p.leader_epoch()));
        match epoch {
            Some((weir_broker::partition::Role::Leader, epoch)) if epoch > first => break epoch,
            _ => {
                assert!(
                    Instant::now() < deadline,
                    "a new leader epoch in time: {epoch:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    produce(&bootstrap, "epochs", 1, 5, "none", |_| an_hour_ago()).await;
    let mut stream = TcpStream::connect(&bootstrap).await.unwrap();
    for version in 2..=4 {
        let ends = epoch_ends(
            &mut stream,
            version,
            "epochs",
            second,
            &[first, first + 1, second],
        )
        .await;
        let between = if first + 1 < second {
            (0, first, 40)
        } else {
            (0, second, 45)
        };
        assert_eq!(
            ends,
            [(0, first, 40), between, (0, second, 45)],
            "v{version}: the old epoch ends where the new one starts"
        );
        let ends = epoch_ends(&mut stream, version, "epochs", first, &[first]).await;
        let fenced = ResponseError::FencedLeaderEpoch.code();
        assert_eq!(ends, [(fenced, -1, -1)], "v{version}");
    }
    // The earliest offset carries the epoch of its record; the latest the current epoch.
    let answer = list(&mut stream, 8, "epochs", 0, -2, second).await;
    assert_eq!(listed(&answer), (0, -1, 0, first));
    let answer = list(&mut stream, 8, "epochs", 0, -1, second).await;
    assert_eq!(listed(&answer), (0, -1, 45, second));
    let answer = list(&mut stream, 8, "epochs", 0, -1, first).await;
    let fenced = ResponseError::FencedLeaderEpoch.code();
    assert_eq!(listed(&answer), (fenced, -1, -1, -1));
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_records_over_the_bare_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let node = common::node::start(common::node::single_node_config(dir.path())).await;
    let bootstrap = node.kafka_addr().to_string();
    create_topic(&node, "doomed", &[]).await;
    create_topic(&node, "compacted", &[("cleanup.policy", "compact")]).await;
    produce(&bootstrap, "doomed", 2, 30, "none", |_| an_hour_ago()).await;
    let mut stream = TcpStream::connect(&bootstrap).await.unwrap();
    for version in 0..=2 {
        let mut delete = async |topic: &str, partition: i32, offset: i64| {
            let request = DeleteRecordsRequest::default()
                .with_timeout_ms(5_000)
                .with_topics(vec![
                    DeleteRecordsTopic::default()
                        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                        .with_partitions(vec![
                            DeleteRecordsPartition::default()
                                .with_partition_index(partition)
                                .with_offset(offset),
                        ]),
                ]);
            let response = common::wire::call(&mut stream, &request, version).await;
            let answer = &response.topics[0].partitions[0];
            assert_eq!(answer.partition_index, partition);
            (answer.error_code, answer.low_watermark)
        };
        let low = 10 * (i64::from(version) + 1);
        assert_eq!(delete("doomed", 0, low).await, (0, low), "v{version}");
        let out_of_range = ResponseError::OffsetOutOfRange.code();
        assert_eq!(
            delete("doomed", 0, 61).await,
            (out_of_range, -1),
            "v{version}"
        );
        assert_eq!(
            delete("doomed", 0, -7).await,
            (out_of_range, -1),
            "v{version}"
        );
        let policy = ResponseError::PolicyViolation.code();
        assert_eq!(delete("compacted", 0, 0).await, (policy, -1), "v{version}");
        let missing = ResponseError::UnknownTopicOrPartition.code();
        assert_eq!(delete("missing", 0, 0).await, (missing, -1), "v{version}");
        assert_eq!(delete("doomed", 1, 0).await, (missing, -1), "v{version}");
    }
    // -1 is the high watermark: everything goes.
    let request = DeleteRecordsRequest::default().with_topics(vec![
        DeleteRecordsTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("doomed")))
            .with_partitions(vec![
                DeleteRecordsPartition::default()
                    .with_partition_index(0)
                    .with_offset(-1),
            ]),
    ]);
    let response = common::wire::call(&mut stream, &request, 2).await;
    assert_eq!(response.topics[0].partitions[0].low_watermark, 60);
    let answer = list(&mut stream, 8, "doomed", 0, -2, -1).await;
    assert_eq!(answer.offset, 60);
    node.shutdown().await.unwrap();
}

/// Runs kcat with `args` (killed if it runs past `WAIT`) and returns its standard output.
async fn kcat(args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let command = &mut std::process::Command::new("kcat");
        let output = common::process::run(command.args(&args), b"", WAIT).expect(
            "kcat is installed: run `apt-get install kcat`, or the README's test command \
             (tests/run), which installs it",
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "kcat {args:?}: {stderr}");
        String::from_utf8(output.stdout).unwrap()
    })
    .await
    .unwrap()
}

/// The offsets kcat consumes from partition 0 of `topic` starting at `start` (kcat's -o).
async fn kcat_offsets(bootstrap: &str, topic: &str, start: &str) -> Vec<i64> {
    let args = [
        "-C", "-b", bootstrap, "-t", topic, "-p", "0", "-o", start, "-e", "-q", "-f", "%o\n",
    ];
    let output = kcat(&args).await;
    output.lines().map(|l| l.parse().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_finds_offsets_by_time_from_the_start_and_from_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let node = common::node::start(common::node::single_node_config(dir.path())).await;
    let bootstrap = node.kafka_addr().to_string();
    create_topic(&node, "kcat", &[]).await;
    let base = an_hour_ago();
    produce(&bootstrap, "kcat", 4, 25, "none", |i| base + 10 * i as i64).await;

    let query = kcat(&[
        "-Q",
        "-b",
        &bootstrap,
        "-t",
        &format!("kcat:0:{}", base + 425),
    ])
    .await;
    assert!(
        query.contains("offset 43"),
        "the first record at or after the time: {query}"
    );
    let from_time = kcat_offsets(&bootstrap, "kcat", &format!("s@{}", base + 425)).await;
    assert_eq!(from_time, (43..100).collect::<Vec<_>>());
    let last_five = kcat_offsets(&bootstrap, "kcat", "-5").await;
    assert_eq!(last_five, (95..100).collect::<Vec<_>>());
    let inside = kcat_offsets(&bootstrap, "kcat", "37").await;
    assert_eq!(inside, (37..100).collect::<Vec<_>>());

    node.replicas()
        .delete_records(
            &node
                .replicas()
                .partition(&TopicPartition::new("kcat", 0))
                .unwrap(),
            60,
        )
        .unwrap();
    let beginning = kcat_offsets(&bootstrap, "kcat", "beginning").await;
    assert_eq!(beginning, (60..100).collect::<Vec<_>>());
    node.shutdown().await.unwrap();
}
