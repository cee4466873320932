//! The scenario's [`Client`] over the Kafka protocol: librdkafka through the `rdkafka` crate
//! (its admin client, a `FutureProducer` with acks=all, a `BaseConsumer` on assigned
//! partitions).

use std::ops::Range;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use weir_proto::batch::Compression;

use super::roundtrip::{Client, Consumed, TestRecord};

/// The bound on every wait.
const WAIT: Duration = Duration::from_secs(60);

/// librdkafka against one broker.
#[derive(Debug, Clone)]
pub struct KafkaClient {
    pub bootstrap: String,
}

impl Client for KafkaClient {
    async fn create_topic(&self, name: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .expect("a librdkafka admin client");
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        let results = admin
            .create_topics([&topic], &AdminOptions::new())
            .await
            .expect("CreateTopics answered");
        for result in results {
            result.unwrap_or_else(|(topic, e)| panic!("creating {topic}: {e}"));
        }
    }

    async fn produce(&self, topic: &str, records: &[TestRecord], codec: Compression) {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("acks", "all")
            .set("compression.codec", codec.to_string())
            .set("linger.ms", "5")
            .set("queue.buffering.max.messages", "1000000")
            .create()
            .expect("a librdkafka producer");
        let mut deliveries = Vec::with_capacity(records.len());
        for record in records {
            let mut headers = OwnedHeaders::new();
            for (key, value) in &record.headers {
                headers = headers.insert(Header {
                    key,
                    value: Some(value),
                });
            }
            let message = FutureRecord::to(topic)
                .partition(record.partition)
                .key(&record.key)
                .payload(&record.value)
                .headers(headers)
                .timestamp(record.timestamp_ms);
            deliveries.push(producer.send_result(message).expect("queued"));
        }
        for delivery in deliveries {
            tokio::time::timeout(WAIT, delivery)
                .await
                .expect("delivered in time")
                .expect("not cancelled")
                .unwrap_or_else(|(e, _)| panic!("{codec}: {e}"));
        }
    }

    async fn consume(
        &self,
        topic: &str,
        partitions: Range<i32>,
        from: i64,
        count: usize,
    ) -> Vec<Consumed> {
        let (bootstrap, topic) = (self.bootstrap.clone(), topic.to_string());
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("group.id", "roundtrip")
                .set("enable.auto.commit", "false")
                .create()
                .expect("a librdkafka consumer");
            let mut assignment = TopicPartitionList::new();
            for partition in partitions {
                assignment
                    .add_partition_offset(&topic, partition, Offset::Offset(from))
                    .unwrap();
            }
            consumer.assign(&assignment).unwrap();
            let deadline = Instant::now() + WAIT;
            let mut consumed = Vec::with_capacity(count);
            while consumed.len() < count {
                assert!(
                    Instant::now() < deadline,
                    "{count} records consumed in time"
                );
                let Some(message) = consumer.poll(Duration::from_millis(200)) else {
                    continue;
                };
                let message = message.expect("a record, not an error");
                let headers = message
                    .headers()
                    .map(|headers| {
                        headers
                            .iter()
                            .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default();
                consumed.push(Consumed {
                    offset: message.offset(),
                    record: TestRecord {
                        partition: message.partition(),
                        key: message.key().unwrap_or_default().to_vec(),
                        value: message.payload().unwrap_or_default().to_vec(),
                        headers,
                        timestamp_ms: message.timestamp().to_millis().unwrap_or(-1),
                    },
                });
            }
            consumed
        })
        .await
        .unwrap()
    }
}
