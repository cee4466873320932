//! The load over Weir's gRPC API, through the Rust client.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use weir_client::{
    Client, Consumer, ConsumerConfig, Error, NewTopic, OffsetSpec, Producer, ProducerConfig,
    ProducerRecord, SeekTo, TopicPartition,
};

use super::acks::{Acked, Acks};
use super::report::{Report, latency_histogram, record};
use super::{Kind, LoadArgs, Pacer, progress, sent_micros, value};
use crate::args::AcksArg;

pub(super) async fn run(kind: Kind, load: &LoadArgs, bootstrap: &str) -> anyhow::Result<Report> {
    let client = Client::connect(bootstrap).await?;
    let partitions = ensure_topic(&client, load).await?;
    let deadline = Instant::now() + load.timeout();
    match kind {
        Kind::Produce => {
            let bar = progress(load, "produced");
            let start = Instant::now();
            let acked = produce(&client, load, start, &bar, deadline).await?;
            bar.finish_and_clear();
            Ok(Report::new(
                kind,
                "grpc",
                load.records,
                load.records * load.record_size as u64,
                start.elapsed(),
                Some(acked.latency),
            ))
        }
        Kind::Consume => {
            let mut consumer = consumer(&client, load, partitions, SeekTo::Beginning).await?;
            let bar = progress(load, "consumed");
            let start = Instant::now();
            let (records, bytes, _) = consume(&mut consumer, load, None, &bar, deadline).await?;
            bar.finish_and_clear();
            Ok(Report::new(
                kind,
                "grpc",
                records,
                bytes,
                start.elapsed(),
                None,
            ))
        }
        Kind::EndToEnd => {
            // Start at the current end, before the first record is sent.
            let mut consumer = consumer(&client, load, partitions, SeekTo::End).await?;
            let bar = progress(load, "arrived");
            let origin = Instant::now();
            let consuming = consume(&mut consumer, load, Some(origin), &bar, deadline);
            let hidden = indicatif::ProgressBar::hidden();
            let producing = produce(&client, load, origin, &hidden, deadline);
            let (consumed, produced) = tokio::join!(consuming, producing);
            produced?;
            let (records, bytes, latency) = consumed?;
            bar.finish_and_clear();
            Ok(Report::new(
                kind,
                "grpc",
                records,
                bytes,
                origin.elapsed(),
                latency,
            ))
        }
    }
}

/// Creates the topic if it does not exist and waits until every partition's leader takes
/// records; answers the partition count.
async fn ensure_topic(client: &Client, load: &LoadArgs) -> anyhow::Result<usize> {
    let count = create_topic(client, load).await?;
    // A new partition refuses records while its leader opens its log; with acks=0 the
    // producer never hears of it and the records are lost. The offsets are answered (the
    // client retrying meanwhile) once the leader is ready.
    for partition in 0..count {
        let partition = i32::try_from(partition).expect("few partitions");
        client
            .list_offset(&load.topic, partition, OffsetSpec::Latest)
            .await
            .with_context(|| {
                format!(
                    "partition {partition} of topic {:?} is not ready",
                    load.topic
                )
            })?;
    }
    Ok(count)
}

/// Creates the topic if it does not exist; answers its partition count.
async fn create_topic(client: &Client, load: &LoadArgs) -> anyhow::Result<usize> {
    match client.partition_count(&load.topic).await {
        Ok(count) => return Ok(count),
        Err(Error::UnknownTopic(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let created = client
        .admin()
        .create_topic(NewTopic::new(&load.topic).partitions(load.partitions))
        .await;
    match created {
        Ok(_) => {}
        // Another load created it first.
        Err(e) if e.kafka_error() == Some(kafka_protocol::ResponseError::TopicAlreadyExists) => {}
        Err(e) => return Err(e).context(format!("cannot create topic {:?}", load.topic)),
    }
    Ok(client.partition_count(&load.topic).await?)
}

/// Sends `load.records` records; each value carries its send time since `origin`.
async fn produce(
    client: &Client,
    load: &LoadArgs,
    origin: Instant,
    bar: &indicatif::ProgressBar,
    deadline: Instant,
) -> anyhow::Result<Acked> {
    let config = ProducerConfig {
        acks: load.acks.acks(),
        idempotence: load.acks == AcksArg::All,
        compression: load.compression.codec(),
        linger: Duration::from_millis(load.linger_ms),
        batch_size: load.batch_size,
        ..ProducerConfig::default()
    };
    let producer = Producer::new(client, config)?;
    let mut acks = Acks::start(bar.clone());
    let pacer = Pacer::new(load.rate);
    for sent in 0..load.records {
        pacer.wait(sent).await;
        let payload = Bytes::from(value(load.record_size, micros_since(origin)));
        let started = Instant::now();
        let delivery = producer
            .send(ProducerRecord::new(&load.topic).value(payload))
            .await?;
        acks.push(started, async move {
            delivery.await.map(drop).map_err(|e| e.to_string())
        })
        .await?;
    }
    producer.flush().await?;
    let acked = acks.finish(deadline).await?;
    producer.close().await?;
    Ok(acked)
}

fn micros_since(origin: Instant) -> u64 {
    u64::try_from(origin.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// A consumer of every partition of the topic, from the beginning or the end.
async fn consumer(
    client: &Client,
    load: &LoadArgs,
    partitions: usize,
    from: SeekTo,
) -> anyhow::Result<Consumer> {
    let mut consumer = Consumer::new(client, ConsumerConfig::default())?;
    let all: Vec<TopicPartition> = (0..partitions)
        .map(|p| TopicPartition::new(&load.topic, i32::try_from(p).expect("few partitions")))
        .collect();
    consumer.assign(all.clone())?;
    for tp in all {
        let at = match from {
            // The end now, as an offset: records sent from here on are all read.
            SeekTo::End => SeekTo::Offset(
                client
                    .list_offset(&tp.topic, tp.partition, OffsetSpec::Latest)
                    .await?,
            ),
            other => other,
        };
        consumer.seek(&tp, at).await?;
    }
    Ok(consumer)
}

/// Reads `load.records` records; with `origin`, measures their end-to-end latency.
async fn consume(
    consumer: &mut Consumer,
    load: &LoadArgs,
    origin: Option<Instant>,
    bar: &indicatif::ProgressBar,
    deadline: Instant,
) -> anyhow::Result<(u64, u64, Option<hdrhistogram::Histogram<u64>>)> {
    let mut latency = origin.map(|_| latency_histogram());
    let mut records = 0;
    let mut bytes = 0;
    while records < load.records {
        let left = deadline.saturating_duration_since(Instant::now());
        let received = tokio::time::timeout(left, consumer.recv())
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "timed out after {records} of {} records: is the topic shorter? (--timeout-secs)",
                    load.records
                )
            })??;
        let payload = received.value.as_deref().unwrap_or_default();
        if let (Some(origin), Some(histogram), Some(sent)) =
            (origin, latency.as_mut(), sent_micros(payload))
        {
            let now = micros_since(origin);
            record(histogram, Duration::from_micros(now.saturating_sub(sent)));
        }
        records += 1;
        bytes += payload.len() as u64;
        bar.inc(1);
    }
    Ok((records, bytes, latency))
}
