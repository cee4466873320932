//! The producer: records in, batched per partition, sent to the partitions' leaders over
//! gRPC (`Broker.Produce` with RecordBatch v2 bytes built here), retried until acknowledged
//! or out of time. It behaves like Kafka's Java producer: the same settings
//! ([`ProducerConfig`]), the same key partitioning ([`murmur2_partition`]), sticky
//! partitioning of records without key, idempotence by default.
//!
//! ```text
//!  send ──▶ validate, wait for buffer room ──▶ accumulator (pure: batches per partition,
//!   │                                           sticky partitions, sequence numbers)
//!   └─▶ DeliveryFuture ◀── outcome ── sender task ◀─ drain ─┘
//!                                      │  one Produce per leader, retries with backoff,
//!                                      ▼  refreshes a moved leader, InitProducerId
//!                                    brokers
//! ```
//!
//! Invariants:
//! - Every record's [`DeliveryFuture`] resolves exactly once: with its offset once
//!   acknowledged, or with the error that ended its batch (a non-retriable broker error, or
//!   a retriable one until `delivery_timeout`).
//! - A partition has at most one batch in flight, so its records are appended in the order
//!   they were sent, also across retries; with idempotence a retry is the same bytes (same
//!   producer id, epoch and sequence), which the broker recognises and does not append
//!   twice. See the accumulator for what happens to sequences when a batch fails for good.
//! - The records buffered (not yet acknowledged) take at most `buffer_memory` bytes; a
//!   [`Producer::send`] past that waits for room.

mod accumulator;
mod config;
mod partitioner;
mod record;
mod sender;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, Semaphore, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use weir_proto::batch::{HEADER_LEN, Record};

use self::accumulator::{Accumulator, Settings};
use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::{Client, TopicPartition};

pub use self::config::{Acks, ProducerConfig};
pub use self::partitioner::{murmur2, murmur2_partition};
pub use self::record::{DeliveryFuture, ProducerRecord, RecordMetadata};

/// Where a record's outcome goes.
type Waiter = oneshot::Sender<Result<RecordMetadata>>;

/// Sends records to a Weir cluster, batching them per partition; cheap to clone (clones
/// share the buffer and the background task), and usable from many tasks at once.
///
/// ```no_run
/// # async fn example() -> weir_client::Result<()> {
/// use weir_client::{Client, ProducerConfig, ProducerRecord};
///
/// let client = Client::connect("127.0.0.1:9093").await?;
/// let producer = client.producer(ProducerConfig::default())?;
///
/// // `send` waits only for buffer room; the delivery completes in the background.
/// let delivery = producer
///     .send(ProducerRecord::new("orders").key("customer-7").value("12 apples"))
///     .await?;
/// let metadata = delivery.await?;
/// println!("stored at {}-{} offset {}", metadata.topic, metadata.partition, metadata.offset);
///
/// // Many records in flight at once, then wait for all of them.
/// let mut deliveries = Vec::new();
/// for i in 0..1000 {
///     let record = ProducerRecord::new("orders").value(format!("order {i}"));
///     deliveries.push(producer.send(record).await?);
/// }
/// producer.flush().await?;
/// for delivery in deliveries {
///     delivery.await?;
/// }
/// producer.close().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Producer {
    handle: Arc<Handle>,
}

/// The producer's shared state; the last [`Producer`] clone dropped closes it.
#[derive(Debug)]
struct Handle {
    shared: Arc<Shared>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        // The task delivers what is buffered, then ends.
        self.shared.begin_close();
    }
}

/// What the producer's handles and its sender task share.
#[derive(Debug)]
struct Shared {
    cluster: Arc<Cluster>,
    config: ProducerConfig,
    state: Mutex<Accumulator<Waiter>>,
    /// Wakes the sender task: records added, a batch done, a flush or close asked for.
    wake: Notify,
    /// Counts finished batches, for [`Producer::flush`] to wait on.
    progress: watch::Sender<u64>,
    /// Buffer room in bytes (`buffer_memory`): a record holds its size until its outcome.
    memory: Semaphore,
    closed: AtomicBool,
    /// Why the last InitProducerId failed, to explain a delivery timeout.
    producer_id_error: Mutex<Option<Error>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Accumulator<Waiter>> {
        self.state.lock().expect("not poisoned")
    }

    fn begin_close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.memory.close();
        self.lock().close();
        self.wake.notify_one();
    }
}

impl Producer {
    /// A producer sending through `client`'s connections, with `config`. Its background
    /// task runs on the current Tokio runtime. Refuses settings that cannot work together
    /// (idempotence without [`Acks::All`], zero sizes).
    pub fn new(client: &Client, config: ProducerConfig) -> Result<Producer> {
        config.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::invalid(
                "runtime",
                "a Producer must be made inside a Tokio runtime, which runs its sender task",
            )
        })?;
        let settings = Settings {
            batch_size: config.batch_size,
            linger: config.linger,
            delivery_timeout: config.delivery_timeout,
            compression: config.compression,
            idempotence: config.idempotence,
            retry_backoff: config.retry_backoff,
        };
        let shared = Arc::new(Shared {
            cluster: client.cluster.clone(),
            memory: Semaphore::new(config.buffer_memory),
            config,
            state: Mutex::new(Accumulator::new(settings)),
            wake: Notify::new(),
            progress: watch::Sender::new(0),
            closed: AtomicBool::new(false),
            producer_id_error: Mutex::new(None),
        });
        let task = runtime.spawn(sender::run(shared.clone()));
        Ok(Producer {
            handle: Arc::new(Handle {
                shared,
                task: Mutex::new(Some(task)),
            }),
        })
    }

    /// The producer's configuration.
    pub fn config(&self) -> &ProducerConfig {
        &self.handle.shared.config
    }

    /// Queues `record` for sending and returns the future of its delivery.
    ///
    /// The await only checks the record and waits for room in the buffer (`buffer_memory`):
    /// that is the producer's backpressure. Fails at once if the topic does not exist
    /// ([`Error::UnknownTopic`]), the partition does not ([`Error::UnknownPartition`]), a
    /// header key repeats or the record is larger than `max_request_size` or
    /// `buffer_memory` ([`Error::Invalid`]), or the producer is closed ([`Error::Closed`]).
    ///
    /// The record goes to its partition if it names one, else to
    /// [`murmur2_partition`] of its key, else to the topic's sticky partition.
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture> {
        let shared = &self.handle.shared;
        if shared.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed("producer"));
        }
        let size = check_record(&record, &shared.config)?;
        let partitions = shared.cluster.partitions(&record.topic).await?;
        if let Some(partition) = record.partition
            && usize::try_from(partition).map_or(true, |p| p >= partitions.len())
        {
            return Err(Error::UnknownPartition {
                topic: record.topic,
                partition,
                count: partitions.len(),
            });
        }
        let permits = u32::try_from(size).expect("check_record bounds the size");
        shared
            .memory
            .acquire_many(permits)
            .await
            .map_err(|_| Error::Closed("producer"))?
            .forget();
        let timestamp = record.timestamp_ms.unwrap_or_else(now_ms);
        let (waiter, receiver) = oneshot::channel();
        {
            let mut state = shared.lock();
            if shared.closed.load(Ordering::SeqCst) {
                shared.memory.add_permits(size);
                return Err(Error::Closed("producer"));
            }
            let partition = match (record.partition, &record.key) {
                (Some(partition), _) => partition,
                (None, Some(key)) => murmur2_partition(key, partitions.len()),
                (None, None) => {
                    let with_leader: Vec<i32> = (0..partitions.len())
                        .filter(|&p| partitions[p].leader.is_some())
                        .map(|p| i32::try_from(p).expect("few partitions"))
                        .collect();
                    let candidates = if with_leader.is_empty() {
                        (0..partitions.len())
                            .map(|p| i32::try_from(p).expect("few partitions"))
                            .collect()
                    } else {
                        with_leader
                    };
                    state.sticky_partition(&record.topic, &candidates, size)
                }
            };
            let batch_record = Record {
                key: record.key,
                value: record.value,
                headers: record.headers,
                timestamp,
                offset: 0,
            };
            let tp = TopicPartition::new(record.topic, partition);
            state.append(tp, batch_record, size, waiter, Instant::now());
        }
        shared.wake.notify_one();
        Ok(DeliveryFuture::new(receiver))
    }

    /// Sends every buffered record now, without waiting for `linger`, and waits until all
    /// records sent before the call have their outcome (each future says which).
    pub async fn flush(&self) -> Result<()> {
        let shared = &self.handle.shared;
        let mut progress = shared.progress.subscribe();
        let mark = shared.lock().flush();
        shared.wake.notify_one();
        while shared.lock().pending_below(mark) {
            if progress.changed().await.is_err() {
                return Err(Error::Closed("producer"));
            }
        }
        Ok(())
    }

    /// Flushes, then stops the background task. Every clone of this producer is closed:
    /// their `send` then fails with [`Error::Closed`]. Records sent by other clones while
    /// closing are still delivered.
    pub async fn close(self) -> Result<()> {
        self.flush().await?;
        let shared = &self.handle.shared;
        shared.begin_close();
        let task = self.handle.task.lock().expect("not poisoned").take();
        if let Some(task) = task
            && let Err(error) = task.await
        {
            tracing::error!(%error, "the producer's sender task failed");
        }
        Ok(())
    }
}

/// Checks what can be checked of a record alone; returns its estimated size.
fn check_record(record: &ProducerRecord, config: &ProducerConfig) -> Result<usize> {
    let mut keys = HashSet::with_capacity(record.headers.len());
    if let Some((key, _)) = record.headers.iter().find(|(key, _)| !keys.insert(key)) {
        return Err(Error::invalid(
            "record",
            format!(
                "header {key:?} appears twice in a record for topic {:?}; a record may have \
                 each header key once",
                record.topic
            ),
        ));
    }
    let size = record.estimated_size();
    let limits = [
        ("max_request_size", config.max_request_size),
        ("buffer_memory", config.buffer_memory),
    ];
    for (name, limit) in limits {
        if size + HEADER_LEN > limit {
            return Err(Error::invalid(
                "record",
                format!(
                    "a record for topic {:?} of about {size} bytes does not fit in {name} \
                     ({limit} bytes): raise {name}, or send smaller records",
                    record.topic
                ),
            ));
        }
    }
    Ok(size)
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
