//! The load over the Kafka wire protocol, through librdkafka.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::{Offset, TopicPartitionList};

use super::acks::{Acked, Acks};
use super::{Arrivals, Driver, LoadArgs, Pacer, Protocol, micros_since, value};
use crate::args::AcksArg;

/// How long metadata and admin calls may take (at most; `--timeout-secs` may say less).
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one metadata or admin call of `load` may take.
fn admin_timeout(load: &LoadArgs) -> Duration {
    ADMIN_TIMEOUT.min(load.timeout())
}

/// The load through librdkafka.
#[derive(Debug)]
pub(super) struct Kafka {
    bootstrap: String,
    partitions: i32,
}

impl Kafka {
    /// Creates the topic if it does not exist.
    pub(super) async fn connect(load: &LoadArgs, bootstrap: &str) -> anyhow::Result<Kafka> {
        debug_assert_eq!(load.protocol, Protocol::Kafka);
        let partitions = ensure_topic(load, bootstrap).await?;
        Ok(Kafka {
            bootstrap: bootstrap.to_string(),
            partitions,
        })
    }
}

impl Driver for Kafka {
    const PROTOCOL: &'static str = "kafka";
    type Reader = BaseConsumer;

    async fn produce(
        &self,
        load: &LoadArgs,
        origin: Instant,
        bar: &indicatif::ProgressBar,
        deadline: Instant,
    ) -> anyhow::Result<Acked> {
        produce(load, &self.bootstrap, origin, bar, deadline).await
    }

    async fn reader(&self, load: &LoadArgs, from_end: bool) -> anyhow::Result<BaseConsumer> {
        let offsets: Vec<(i32, Offset)> = if from_end {
            high_watermarks(load, &self.bootstrap, self.partitions)
                .await?
                .into_iter()
                .map(|(p, end)| (p, Offset::Offset(end)))
                .collect()
        } else {
            (0..self.partitions)
                .map(|p| (p, Offset::Beginning))
                .collect()
        };
        assigned(load, &self.bootstrap, &offsets)
    }

    /// Polls on a thread of its own: librdkafka's own consumer loop, with no async
    /// wake-up per record.
    async fn read(
        &self,
        consumer: BaseConsumer,
        load: &LoadArgs,
        mut arrivals: Arrivals,
        deadline: Instant,
    ) -> anyhow::Result<Arrivals> {
        let load = load.clone();
        tokio::task::spawn_blocking(move || {
            while !arrivals.complete(&load) {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(arrivals.timed_out(&load));
                }
                match consumer.poll(left.min(Duration::from_millis(100))) {
                    Some(message) => {
                        let message = message.context("the consumer failed")?;
                        arrivals.arrived(message.payload().unwrap_or_default());
                    }
                    None => continue,
                }
            }
            Ok(arrivals)
        })
        .await?
    }
}

fn base_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "weir-perf")
        .set("log_level", "3");
    config
}

/// `config` with the user's `--kafka-config` properties on top.
fn with_user_config(mut config: ClientConfig, load: &LoadArgs) -> ClientConfig {
    for (name, value) in &load.kafka_config {
        config.set(name, value);
    }
    config
}

/// Creates the topic if it does not exist; answers its partition count.
async fn ensure_topic(load: &LoadArgs, bootstrap: &str) -> anyhow::Result<i32> {
    let admin: AdminClient<DefaultClientContext> = base_config(bootstrap)
        .create()
        .context("cannot make a Kafka admin client")?;
    let new = NewTopic::new(&load.topic, load.partitions, TopicReplication::Fixed(-1));
    // Without a request timeout, librdkafka waits its socket timeout (a minute) for a broker
    // that is not there.
    let timeout = admin_timeout(load);
    let options = AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout));
    let results = admin
        .create_topics([&new], &options)
        .await
        .with_context(|| format!("cannot reach a Kafka broker at {bootstrap}"))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => anyhow::bail!("cannot create topic {topic:?}: {code}"),
        }
    }
    let metadata = admin
        .inner()
        .fetch_metadata(Some(&load.topic), timeout)
        .with_context(|| format!("no metadata from the Kafka broker at {bootstrap}"))?;
    let topic = metadata
        .topics()
        .first()
        .with_context(|| format!("the broker did not describe topic {:?}", load.topic))?;
    if let Some(error) = topic.error() {
        anyhow::bail!("topic {:?}: {:?}", load.topic, error);
    }
    Ok(i32::try_from(topic.partitions().len())?)
}

/// Sends `load.records` records; each value carries its send time since `origin`.
async fn produce(
    load: &LoadArgs,
    bootstrap: &str,
    origin: Instant,
    bar: &indicatif::ProgressBar,
    deadline: Instant,
) -> anyhow::Result<Acked> {
    let acks = match load.acks {
        AcksArg::All => "all",
        AcksArg::Leader => "1",
        AcksArg::None => "0",
    };
    let mut config = base_config(bootstrap);
    config
        .set("acks", acks)
        .set(
            "enable.idempotence",
            (load.acks == AcksArg::All).to_string(),
        )
        .set("compression.type", load.compression.name())
        .set("linger.ms", load.linger_ms.to_string())
        .set("batch.size", load.batch_size.to_string())
        .set("queue.buffering.max.kbytes", "1048576")
        .set("message.timeout.ms", "120000");
    let producer: FutureProducer = with_user_config(config, load)
        .create()
        .context("cannot make a Kafka producer")?;
    let mut acks = Acks::start(bar.clone());
    let pacer = Pacer::new(load.rate);
    for sent in 0..load.records {
        pacer.wait(sent).await;
        let payload = value(load.record_size, micros_since(origin));
        let started = Instant::now();
        let delivery = loop {
            match producer.send_result(FutureRecord::<(), _>::to(&load.topic).payload(&payload)) {
                Ok(delivery) => break delivery,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    if Instant::now() > deadline {
                        anyhow::bail!("timed out: the producer's queue stayed full");
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((e, _)) => anyhow::bail!("cannot send a record: {e}"),
            }
        };
        acks.push(started, async move {
            match delivery.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err((e, _))) => Err(e.to_string()),
                Err(_) => Err("the producer dropped the record".to_string()),
            }
        })
        .await?;
    }
    producer
        .flush(deadline.saturating_duration_since(Instant::now()))
        .context("timed out flushing the producer")?;
    acks.finish(deadline).await
}

/// A consumer of the topic's partitions at `offsets`.
fn assigned(
    load: &LoadArgs,
    bootstrap: &str,
    offsets: &[(i32, Offset)],
) -> anyhow::Result<BaseConsumer> {
    let mut config = base_config(bootstrap);
    config
        .set("group.id", "weir-perf")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100");
    let consumer: BaseConsumer = with_user_config(config, load)
        .create()
        .context("cannot make a Kafka consumer")?;
    let mut list = TopicPartitionList::new();
    for &(partition, offset) in offsets {
        list.add_partition_offset(&load.topic, partition, offset)?;
    }
    consumer.assign(&list)?;
    Ok(consumer)
}

/// Each partition's high watermark, where an end-to-end consumer starts.
async fn high_watermarks(
    load: &LoadArgs,
    bootstrap: &str,
    partitions: i32,
) -> anyhow::Result<Vec<(i32, i64)>> {
    let consumer: BaseConsumer = base_config(bootstrap)
        .create()
        .context("cannot make a Kafka consumer")?;
    let topic = load.topic.clone();
    let timeout = admin_timeout(load);
    tokio::task::spawn_blocking(move || {
        (0..partitions)
            .map(|p| {
                let (_, high) = consumer
                    .fetch_watermarks(&topic, p, timeout)
                    .with_context(|| format!("no offsets for partition {p} of {topic:?}"))?;
                Ok((p, high))
            })
            .collect()
    })
    .await?
}
