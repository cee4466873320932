//! The Rust client for Weir, over its gRPC API (`weir.v1`): a [`Producer`], a [`Consumer`]
//! (with consumer groups, or partitions assigned by hand) and an [`Admin`].
//!
//! One [`Client`] holds the connections and what it learned of the cluster (brokers,
//! partition leaders, group coordinators); producers, consumers and admins made from it share
//! them. Calls that fail for a reason that passes (a leader moving, a broker restarting) are
//! retried with backoff for [`ClientConfig::retry_timeout`], refreshing the metadata first;
//! every other failure is an [`Error`] that says what was wrong.
//!
//! ```no_run
//! # async fn example() -> weir_client::Result<()> {
//! use weir_client::{Client, ConsumerConfig, NewTopic, ProducerConfig, ProducerRecord};
//!
//! let client = Client::connect("127.0.0.1:9093").await?;
//! client.admin().create_topic(NewTopic::new("orders").partitions(6)).await?;
//!
//! let producer = client.producer(ProducerConfig::default())?;
//! let delivery = producer
//!     .send(ProducerRecord::new("orders").key("alice").value("signed up"))
//!     .await?; // waits only for room in the buffer
//! let stored = delivery.await?; // the broker acknowledged it
//! println!("partition {} offset {}", stored.partition, stored.offset);
//! producer.close().await?; // sends what lingers, waits for every ack
//!
//! let mut consumer = client.consumer(ConsumerConfig::new("billing"))?;
//! consumer.subscribe(&["orders"]).await?;
//! let record = consumer.recv().await?; // or consumer.stream()
//! println!("{:?}", record.value);
//! consumer.commit().await?; // what recv handed out (auto-commit does it every 5 s)
//! consumer.close().await?; // commits and leaves the group
//! # Ok(()) }
//! ```

mod admin;
mod cluster;
mod consumer;
mod error;
mod offsets;
mod producer;

use std::sync::Arc;

pub use admin::{Admin, ClusterInfo, NewTopic, ResetTarget};
pub use cluster::ClientConfig;
pub use consumer::{
    AutoOffsetReset, Consumer, ConsumerConfig, ConsumerRecord, PartitionsCallback, SeekTo,
};
pub use error::{BrokerError, Error, Result};
pub use offsets::OffsetSpec;
pub use producer::{
    Acks, DeliveryFuture, Producer, ProducerConfig, ProducerRecord, RecordMetadata, murmur2,
    murmur2_partition,
};
/// The compression codecs of record batches (Kafka's `compression.type`).
pub use weir_proto::batch::Compression;
/// The messages of Weir's gRPC API, which some admin answers are made of.
pub use weir_proto::v1 as proto;

use cluster::Cluster;

/// One partition of one topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// The topic's name.
    pub topic: String,
    /// The partition's index, from 0.
    pub partition: i32,
}

impl TopicPartition {
    /// Partition `partition` of `topic`.
    pub fn new(topic: impl Into<String>, partition: i32) -> TopicPartition {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// A connection to a Weir cluster; cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    cluster: Arc<Cluster>,
}

impl Client {
    /// Connects to the cluster through `bootstrap`, a comma-separated list of brokers' gRPC
    /// addresses (`host:port`), with the default [`ClientConfig`].
    pub async fn connect(bootstrap: &str) -> Result<Client> {
        Client::with_config(ClientConfig::new(bootstrap)).await
    }

    /// Connects with `config`: the first bootstrap broker that answers tells the client
    /// about the others.
    pub async fn with_config(config: ClientConfig) -> Result<Client> {
        Ok(Client {
            cluster: Cluster::connect(config).await?,
        })
    }

    /// The client's configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.cluster.config
    }

    /// Administration of topics, groups and the cluster.
    pub fn admin(&self) -> Admin {
        Admin::new(self.cluster.clone())
    }

    /// A consumer on this client's connections (see [`Consumer::new`]).
    pub fn consumer(&self, config: ConsumerConfig) -> Result<Consumer> {
        Consumer::new(self, config)
    }

    /// A [`Producer`] sending through this client's connections (see [`Producer::new`]).
    pub fn producer(&self, config: ProducerConfig) -> Result<Producer> {
        Producer::new(self, config)
    }

    /// The number of partitions of `topic`.
    pub async fn partition_count(&self, topic: &str) -> Result<usize> {
        Ok(self.cluster.partitions(topic).await?.len())
    }

    /// The offset `spec` names in a partition.
    pub async fn list_offset(&self, topic: &str, partition: i32, spec: OffsetSpec) -> Result<i64> {
        offsets::list_offset(&self.cluster, topic, partition, spec).await
    }
}
