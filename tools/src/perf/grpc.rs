//! The load over Weir's gRPC API, through the Rust client.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use weir_client::{
    Client, Consumer, ConsumerConfig, Error, NewTopic, OffsetSpec, Producer, ProducerConfig,
    ProducerRecord, SeekTo, TopicPartition,
};

use super::acks::{Acked, Acks};
use super::{Arrivals, Driver, LoadArgs, Pacer, micros_since, value};
use crate::args::AcksArg;

/// The load through the Rust client.
#[derive(Debug)]
pub(super) struct Grpc {
    client: Client,
    partitions: usize,
}

impl Grpc {
    /// Connects, and creates the topic if it does not exist.
    pub(super) async fn connect(load: &LoadArgs, bootstrap: &str) -> anyhow::Result<Grpc> {
        let client = Client::connect(bootstrap).await?;
        let partitions = ensure_topic(&client, load).await?;
        Ok(Grpc { client, partitions })
    }
}

impl Driver for Grpc {
    const PROTOCOL: &'static str = "grpc";
    type Reader = Consumer;

    async fn produce(
        &self,
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
        let producer = Producer::new(&self.client, config)?;
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

    async fn reader(&self, load: &LoadArgs, from_end: bool) -> anyhow::Result<Consumer> {
        let mut consumer = Consumer::new(&self.client, ConsumerConfig::default())?;
        let all: Vec<TopicPartition> = (0..self.partitions)
            .map(|p| TopicPartition::new(&load.topic, i32::try_from(p).expect("few partitions")))
            .collect();
        consumer.assign(all.clone())?;
        for tp in all {
            let at = if from_end {
                // The end now, as an offset: records sent from here on are all read.
                let end = self
                    .client
                    .list_offset(&tp.topic, tp.partition, OffsetSpec::Latest)
                    .await?;
                SeekTo::Offset(end)
            } else {
                SeekTo::Beginning
            };
            consumer.seek(&tp, at).await?;
        }
        Ok(consumer)
    }

    async fn read(
        &self,
        mut consumer: Consumer,
        load: &LoadArgs,
        mut arrivals: Arrivals,
        deadline: Instant,
    ) -> anyhow::Result<Arrivals> {
        while !arrivals.complete(load) {
            let left = deadline.saturating_duration_since(Instant::now());
            let received = tokio::time::timeout(left, consumer.recv())
                .await
                .map_err(|_| arrivals.timed_out(load))??;
            arrivals.arrived(received.value.as_deref().unwrap_or_default());
        }
        consumer.close().await?;
        Ok(arrivals)
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
