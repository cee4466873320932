//! The consumer against an in-process broker: partitions assigned by hand and seeks (to an
//! offset, the beginning, the end, a time), a group of three splitting a topic and taking over
//! a member's partitions when it leaves, a member the coordinator forgot rejoining, commits
//! that survive the consumer, and the errors of a partition with no offset to start at and of
//! a topic that does not exist.
//!
//! Test data is produced with the raw `Broker.Produce` RPC (structured records).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{TestNode, WAIT};
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use weir_client::proto as pb;
use weir_client::{
    AutoOffsetReset, Client, Consumer, ConsumerConfig, ConsumerRecord, Error, NewTopic, SeekTo,
    TopicPartition,
};
use weir_proto::v1::broker_client::BrokerClient;

/// A node and a client connected to it.
async fn setup() -> (TestNode, Client) {
    let node = common::start().await;
    let client = Client::connect(&node.bootstrap()).await.unwrap();
    (node, client)
}

async fn create_topic(client: &Client, topic: &str, partitions: i32) {
    client
        .admin()
        .create_topic(
            NewTopic::new(topic)
                .partitions(partitions)
                .replication_factor(1),
        )
        .await
        .expect("the topic is created");
}

/// A record to produce: key `k{i}`, value `v{i}`, two headers (one null), a timestamp.
fn record(i: i64, timestamp_ms: i64) -> pb::Record {
    pb::Record {
        key: Some(Bytes::from(format!("k{i}"))),
        value: Some(Bytes::from(format!("v{i}"))),
        headers: vec![
            pb::RecordHeader {
                key: "n".to_string(),
                value: Some(Bytes::from(i.to_string())),
            },
            pb::RecordHeader {
                key: "none".to_string(),
                value: None,
            },
        ],
        timestamp_ms: Some(timestamp_ms),
        offset: 0,
    }
}

/// Appends `records` to a partition with acks=all, retrying while its leader is not ready;
/// returns the base offset.
async fn produce(node: &TestNode, topic: &str, partition: i32, records: Vec<pb::Record>) -> i64 {
    let mut broker = BrokerClient::connect(format!("http://{}", node.bootstrap()))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let answer = broker
            .produce(pb::ProduceRequest {
                partitions: vec![pb::PartitionRecords {
                    topic: topic.to_string(),
                    partition,
                    data: Some(pb::partition_records::Data::Records(pb::RecordList {
                        records: records.clone(),
                    })),
                    compression: pb::Compression::None as i32,
                }],
                acks: pb::Acks::All as i32,
                timeout_ms: 10_000,
            })
            .await;
        let error = match answer {
            Ok(answer) => {
                let result = answer.into_inner().partitions.remove(0);
                match result.error {
                    None => return result.base_offset,
                    Some(error) => format!("{error:?}"),
                }
            }
            Err(status) => status.to_string(),
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "{topic}-{partition} takes records in time: {error}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The next `n` records, failing the test if they do not come in time.
async fn recv_n(consumer: &mut Consumer, n: usize) -> Vec<ConsumerRecord> {
    let mut records = Vec::with_capacity(n);
    while records.len() < n {
        let record = tokio::time::timeout(WAIT, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("record {} of {n} comes in time", records.len()))
            .expect("a record");
        records.push(record);
    }
    records
}

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

/// Checks that `got` is record `i` of [`record`] at offset `offset`.
fn check_record(got: &ConsumerRecord, partition: i32, offset: i64, i: i64, base_ms: i64) {
    assert_eq!((got.partition, got.offset), (partition, offset));
    assert_eq!(got.key.as_deref(), Some(format!("k{i}").as_bytes()));
    assert_eq!(got.value.as_deref(), Some(format!("v{i}").as_bytes()));
    assert_eq!(
        got.headers,
        vec![
            ("n".to_string(), Some(Bytes::from(i.to_string()))),
            ("none".to_string(), None),
        ]
    );
    assert_eq!(got.timestamp_ms, base_ms + i * 1000);
}

fn recent_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(now.as_millis()).unwrap() - 600_000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assigned_partitions_are_read_and_seeks_move_the_position() {
    let (node, client) = setup().await;
    create_topic(&client, "seek", 2).await;
    let base_ms = recent_ms();
    produce(
        &node,
        "seek",
        0,
        (0..10).map(|i| record(i, base_ms + i * 1000)).collect(),
    )
    .await;
    produce(
        &node,
        "seek",
        1,
        (0..5).map(|i| record(i, base_ms + i * 1000)).collect(),
    )
    .await;

    let mut consumer = client
        .consumer(ConsumerConfig {
            auto_offset_reset: AutoOffsetReset::Earliest,
            ..ConsumerConfig::default()
        })
        .unwrap();
    consumer.assign(vec![tp("seek", 0), tp("seek", 1)]).unwrap();
    assert_eq!(consumer.assignment(), vec![tp("seek", 0), tp("seek", 1)]);

    // Everything, each partition in order, with keys, values, headers and timestamps.
    let records = recv_n(&mut consumer, 15).await;
    let mut by_partition: BTreeMap<i32, Vec<&ConsumerRecord>> = BTreeMap::new();
    for r in &records {
        assert_eq!(r.topic, "seek");
        by_partition.entry(r.partition).or_default().push(r);
    }
    assert_eq!(by_partition[&0].len(), 10);
    assert_eq!(by_partition[&1].len(), 5);
    for (partition, records) in &by_partition {
        for (i, r) in records.iter().enumerate() {
            let i = i64::try_from(i).unwrap();
            check_record(r, *partition, i, i, base_ms);
        }
    }
    assert_eq!(consumer.position(&tp("seek", 0)), Some(10));
    assert_eq!(consumer.position(&tp("seek", 1)), Some(5));

    // To an offset: the records from there on.
    consumer
        .seek(&tp("seek", 0), SeekTo::Offset(4))
        .await
        .unwrap();
    assert_eq!(consumer.position(&tp("seek", 0)), Some(4));
    for (got, i) in recv_n(&mut consumer, 6).await.iter().zip(4..) {
        check_record(got, 0, i, i, base_ms);
    }

    // To the beginning; read as a stream this time.
    consumer
        .seek(&tp("seek", 0), SeekTo::Beginning)
        .await
        .unwrap();
    let first: Vec<ConsumerRecord> =
        tokio::time::timeout(WAIT, consumer.stream().take(2).collect::<Vec<_>>())
            .await
            .expect("records come in time")
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap();
    check_record(&first[0], 0, 0, 0, base_ms);
    check_record(&first[1], 0, 1, 1, base_ms);

    // To a time between two records: the first at or after it.
    let at = base_ms + 6500;
    consumer
        .seek(&tp("seek", 0), SeekTo::Timestamp(at))
        .await
        .unwrap();
    check_record(&recv_n(&mut consumer, 1).await[0], 0, 7, 7, base_ms);

    // To the end: only what is appended from now on.
    consumer.seek(&tp("seek", 1), SeekTo::End).await.unwrap();
    assert_eq!(consumer.position(&tp("seek", 1)), Some(5));
    consumer.seek(&tp("seek", 0), SeekTo::End).await.unwrap();
    assert_eq!(consumer.position(&tp("seek", 0)), Some(10));
    produce(&node, "seek", 0, vec![record(10, base_ms + 10_000)]).await;
    check_record(&recv_n(&mut consumer, 1).await[0], 0, 10, 10, base_ms);

    // A partition that is not assigned cannot be moved.
    let refused = consumer.seek(&tp("seek", 2), SeekTo::Beginning).await;
    assert!(matches!(refused, Err(Error::Invalid { .. })), "{refused:?}");

    consumer.close().await.unwrap();
    node.shutdown().await;
}

/// One group member in a task: what it owns (kept by its callbacks), how often they were
/// called, and a way to stop it and get it back.
struct Member {
    owned: Arc<Mutex<BTreeSet<TopicPartition>>>,
    assigns: Arc<AtomicUsize>,
    revokes: Arc<AtomicUsize>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Consumer>,
}

impl Member {
    async fn start(
        client: &Client,
        id: usize,
        seen: mpsc::UnboundedSender<(usize, i32, i64)>,
    ) -> Member {
        let owned = Arc::new(Mutex::new(BTreeSet::new()));
        let assigns = Arc::new(AtomicUsize::new(0));
        let revokes = Arc::new(AtomicUsize::new(0));
        let (on_assign_owned, on_revoke_owned) = (owned.clone(), owned.clone());
        let (assign_count, revoke_count) = (assigns.clone(), revokes.clone());
        let config = ConsumerConfig {
            auto_offset_reset: AutoOffsetReset::Earliest,
            on_assign: Some(Arc::new(move |partitions: &[TopicPartition]| {
                assign_count.fetch_add(1, Ordering::SeqCst);
                on_assign_owned
                    .lock()
                    .unwrap()
                    .extend(partitions.iter().cloned());
            })),
            on_revoke: Some(Arc::new(move |partitions: &[TopicPartition]| {
                revoke_count.fetch_add(1, Ordering::SeqCst);
                let mut owned = on_revoke_owned.lock().unwrap();
                for tp in partitions {
                    owned.remove(tp);
                }
            })),
            ..ConsumerConfig::new("workers")
        };
        let mut consumer = client.consumer(config).unwrap();
        consumer.subscribe(&["work"]).await.unwrap();
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    record = consumer.recv() => {
                        let record = record.expect("a record");
                        seen.send((id, record.partition, record.offset)).unwrap();
                    }
                    _ = stopped.changed() => return consumer,
                }
            }
        });
        Member {
            owned,
            assigns,
            revokes,
            stop,
            task,
        }
    }

    fn owned(&self) -> usize {
        self.owned.lock().unwrap().len()
    }

    async fn stop(self) -> Consumer {
        self.stop.send(true).unwrap();
        self.task.await.expect("the member's task ends")
    }
}

/// Collects what the members read until `total` records came, then a little longer (to see
/// repeats); returns (member, partition, offset) of each.
async fn collect(
    seen: &mut mpsc::UnboundedReceiver<(usize, i32, i64)>,
    total: usize,
) -> Vec<(usize, i32, i64)> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while got.len() < total {
        match tokio::time::timeout_at(deadline, seen.recv()).await {
            Ok(Some(item)) => got.push(item),
            _ => panic!("only {} of {total} records were read in time", got.len()),
        }
    }
    while let Ok(Some(item)) = tokio::time::timeout(Duration::from_millis(500), seen.recv()).await {
        got.push(item);
    }
    got
}

/// Waits until `members` own `counts` partitions.
async fn wait_owned(members: &[&Member], counts: &[usize]) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let owned: Vec<usize> = members.iter().map(|m| m.owned()).collect();
        if owned == counts {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "members own {owned:?} partitions, not {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_splits_a_topic_and_takes_over_a_leaving_members_partitions() {
    let (node, client) = setup().await;
    create_topic(&client, "work", 6).await;
    for partition in 0..6 {
        for chunk in 0..4 {
            let records = (0..250)
                .map(|i| record(chunk * 250 + i, recent_ms()))
                .collect();
            produce(&node, "work", partition, records).await;
        }
    }

    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let mut members = Vec::new();
    for id in 0..3 {
        members.push(Member::start(&client, id, seen_tx.clone()).await);
    }
    let got = collect(&mut seen, 6000).await;
    let unique: BTreeSet<(i32, i64)> = got.iter().map(|&(_, p, o)| (p, o)).collect();
    assert_eq!(unique.len(), 6000, "every record was read");
    assert_eq!(got.len(), 6000, "no record was read twice");
    wait_owned(&[&members[0], &members[1], &members[2]], &[2, 2, 2]).await;
    let all: BTreeSet<TopicPartition> = members
        .iter()
        .flat_map(|m| m.owned.lock().unwrap().clone())
        .collect();
    assert_eq!(all.len(), 6, "each partition has one owner");
    for m in &members {
        assert!(
            m.assigns.load(Ordering::SeqCst) >= 1,
            "on_assign was called"
        );
    }
    assert!(
        members
            .iter()
            .any(|m| m.revokes.load(Ordering::SeqCst) >= 1),
        "a member gave up partitions for the later ones"
    );

    // More records come, and one member leaves while they are being read: the others take
    // its partitions over from the offsets it committed on close, so that together they
    // read each new record once.
    for partition in 0..6 {
        let records = (1000..1100).map(|i| record(i, recent_ms())).collect();
        produce(&node, "work", partition, records).await;
    }
    let leaving = members.remove(0);
    let leaving_owned = leaving.owned.clone();
    let leaving_revokes = leaving.revokes.clone();
    let revokes_before = leaving_revokes.load(Ordering::SeqCst);
    let consumer = leaving.stop().await;
    consumer.close().await.unwrap();
    assert!(
        leaving_owned.lock().unwrap().is_empty(),
        "on_revoke on close"
    );
    assert_eq!(leaving_revokes.load(Ordering::SeqCst), revokes_before + 1);
    let more = collect(&mut seen, 600).await;
    assert_eq!(more.len(), 600, "no record was read twice: {more:?}");
    let unique_more: BTreeSet<(i32, i64)> = more.iter().map(|&(_, p, o)| (p, o)).collect();
    assert_eq!(unique_more.len(), 600);
    assert!(unique_more.iter().all(|&(_, offset)| offset >= 1000));
    wait_owned(&[&members[0], &members[1]], &[3, 3]).await;

    for member in members {
        member.stop().await.close().await.unwrap();
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_the_consumer() {
    let (node, client) = setup().await;
    create_topic(&client, "ledger", 1).await;
    let base_ms = recent_ms();
    produce(
        &node,
        "ledger",
        0,
        (0..100).map(|i| record(i, base_ms + i * 1000)).collect(),
    )
    .await;
    let config = || ConsumerConfig {
        auto_commit: false,
        auto_offset_reset: AutoOffsetReset::Earliest,
        ..ConsumerConfig::new("ledger-readers")
    };
    let ledger = tp("ledger", 0);

    let mut first = client.consumer(config()).unwrap();
    first.subscribe(&["ledger"]).await.unwrap();
    for (got, i) in recv_n(&mut first, 50).await.iter().zip(0..) {
        check_record(got, 0, i, i, base_ms);
    }
    first.commit().await.unwrap();
    assert_eq!(
        first
            .committed(std::slice::from_ref(&ledger))
            .await
            .unwrap(),
        vec![(ledger.clone(), Some(50))]
    );
    first.close().await.unwrap();

    // A new member starts after the last committed record.
    let mut second = client.consumer(config()).unwrap();
    second.subscribe(&["ledger"]).await.unwrap();
    check_record(&recv_n(&mut second, 1).await[0], 0, 50, 50, base_ms);
    assert_eq!(second.position(&ledger), Some(51));
    second
        .commit_offsets(vec![(ledger.clone(), 70)])
        .await
        .unwrap();
    // Without auto commit, closing commits nothing more.
    second.close().await.unwrap();

    let mut third = client.consumer(config()).unwrap();
    assert_eq!(
        third
            .committed(std::slice::from_ref(&ledger))
            .await
            .unwrap(),
        vec![(ledger.clone(), Some(70))]
    );
    third.subscribe(&["ledger"]).await.unwrap();
    check_record(&recv_n(&mut third, 1).await[0], 0, 70, 70, base_ms);
    third.close().await.unwrap();
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_offset_to_start_at_and_unknown_topics_are_errors() {
    let (node, client) = setup().await;
    create_topic(&client, "strict", 1).await;
    produce(&node, "strict", 0, vec![record(0, recent_ms())]).await;
    let strict = tp("strict", 0);

    // No committed offset and no reset policy: a clear error, until a seek.
    let mut consumer = client
        .consumer(ConsumerConfig {
            auto_offset_reset: AutoOffsetReset::None,
            ..ConsumerConfig::new("strict-readers")
        })
        .unwrap();
    consumer.assign(vec![strict.clone()]).unwrap();
    let error = tokio::time::timeout(WAIT, consumer.recv())
        .await
        .expect("recv answers in time")
        .expect_err("no offset to start at");
    assert!(
        matches!(&error, Error::NoOffset { topic, partition: 0, .. } if topic == "strict"),
        "{error:?}"
    );
    assert!(error.to_string().contains("auto_offset_reset"), "{error}");
    consumer.seek(&strict, SeekTo::Beginning).await.unwrap();
    assert_eq!(recv_n(&mut consumer, 1).await[0].offset, 0);
    let refused = consumer.subscribe(&["strict"]).await;
    assert!(matches!(refused, Err(Error::Invalid { .. })), "{refused:?}");
    consumer.close().await.unwrap();

    // A topic that does not exist, subscribed to or assigned.
    let mut member = client.consumer(ConsumerConfig::new("lost")).unwrap();
    let error = member
        .subscribe(&["missing"])
        .await
        .expect_err("no such topic");
    assert!(
        matches!(&error, Error::UnknownTopic(t) if t == "missing"),
        "{error:?}"
    );
    member.close().await.unwrap();
    let mut reader = client.consumer(ConsumerConfig::default()).unwrap();
    reader.assign(vec![tp("missing", 0)]).unwrap();
    let error = tokio::time::timeout(WAIT, reader.recv())
        .await
        .expect("recv answers in time")
        .expect_err("no such topic");
    assert!(
        matches!(&error, Error::UnknownTopic(t) if t == "missing"),
        "{error:?}"
    );
    // Subscribing needs a group.
    let refused = reader.subscribe(&["strict"]).await;
    assert!(matches!(refused, Err(Error::Invalid { .. })), "{refused:?}");
    reader.close().await.unwrap();

    // A refusal of the coordinator that will not pass reaches recv.
    let mut odd = client
        .consumer(ConsumerConfig {
            assignor: Some("bogus".to_string()),
            ..ConsumerConfig::new("odd")
        })
        .unwrap();
    odd.subscribe(&["strict"]).await.unwrap();
    let error = tokio::time::timeout(WAIT, odd.recv())
        .await
        .expect("recv answers in time")
        .expect_err("no such assignor");
    assert_eq!(
        error.kafka_error(),
        Some(kafka_protocol::ResponseError::UnsupportedAssignor),
        "{error}"
    );
    odd.close().await.unwrap();
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_the_coordinator_forgot_rejoins_from_the_committed_offsets() {
    let (node, client) = setup().await;
    create_topic(&client, "solo", 2).await;
    let base_ms = recent_ms();
    for partition in 0..2 {
        produce(
            &node,
            "solo",
            partition,
            (0..10).map(|i| record(i, base_ms + i * 1000)).collect(),
        )
        .await;
    }
    let assigns = Arc::new(AtomicUsize::new(0));
    let revokes = Arc::new(AtomicUsize::new(0));
    let (assign_count, revoke_count) = (assigns.clone(), revokes.clone());
    let mut consumer = client
        .consumer(ConsumerConfig {
            auto_commit: false,
            auto_offset_reset: AutoOffsetReset::Earliest,
            on_assign: Some(Arc::new(move |_: &[TopicPartition]| {
                assign_count.fetch_add(1, Ordering::SeqCst);
            })),
            on_revoke: Some(Arc::new(move |_: &[TopicPartition]| {
                revoke_count.fetch_add(1, Ordering::SeqCst);
            })),
            ..ConsumerConfig::new("solo-readers")
        })
        .unwrap();
    consumer.subscribe(&["solo"]).await.unwrap();
    assert_eq!(recv_n(&mut consumer, 20).await.len(), 20);
    consumer.commit().await.unwrap();
    assert_eq!(assigns.load(Ordering::SeqCst), 1);

    // The coordinator forgets the member, as when its session ends (here: it is made to
    // leave behind its back). Its next heartbeat learns it, it loses its partitions and
    // joins again.
    let described = client.admin().describe_group("solo-readers").await.unwrap();
    assert_eq!(described.members.len(), 1, "{described:?}");
    let mut groups = weir_proto::v1::groups_client::GroupsClient::connect(format!(
        "http://{}",
        node.bootstrap()
    ))
    .await
    .unwrap();
    groups
        .heartbeat(pb::HeartbeatRequest {
            group: "solo-readers".to_string(),
            member_id: described.members[0].member_id.clone(),
            member_epoch: -1,
            rebalance_timeout_ms: -1,
            ..pb::HeartbeatRequest::default()
        })
        .await
        .expect("the member is removed");
    let deadline = tokio::time::Instant::now() + WAIT;
    while assigns.load(Ordering::SeqCst) < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the member rejoins in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        revokes.load(Ordering::SeqCst),
        1,
        "the lost partitions were revoked"
    );
    let mut owned = consumer.assignment();
    owned.sort();
    assert_eq!(owned, vec![tp("solo", 0), tp("solo", 1)]);

    // It goes on from the committed offsets.
    produce(&node, "solo", 1, vec![record(10, base_ms + 10_000)]).await;
    check_record(&recv_n(&mut consumer, 1).await[0], 1, 10, 10, base_ms);
    consumer.close().await.unwrap();
    node.shutdown().await;
}
