//! The librdkafka (`rdkafka` crate) clients both benches drive: topic creation through the
//! admin API, and a producer that counts its delivery reports.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

/// The longest any single client operation may take before a bench gives up.
pub(crate) const WAIT: Duration = Duration::from_secs(120);

/// A single-partition topic to create.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TopicSpec<'a> {
    pub(crate) name: &'a str,
    pub(crate) replication_factor: i32,
    /// Its `min.insync.replicas`, if not the broker's default.
    pub(crate) min_insync_replicas: Option<u32>,
}

impl<'a> TopicSpec<'a> {
    /// One replica, the brokers' defaults.
    pub(crate) fn single(name: &'a str) -> TopicSpec<'a> {
        TopicSpec {
            name,
            replication_factor: 1,
            min_insync_replicas: None,
        }
    }
}

/// Creates single-partition topics through the Kafka CreateTopics API.
pub(crate) fn create_topics(bootstrap: &str, topics: &[TopicSpec<'_>]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("a librdkafka admin client");
    let min_insync: Vec<Option<String>> = topics
        .iter()
        .map(|t| t.min_insync_replicas.map(|n| n.to_string()))
        .collect();
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .zip(&min_insync)
        .map(|(topic, min_insync)| {
            let replication = TopicReplication::Fixed(topic.replication_factor);
            let new = NewTopic::new(topic.name, 1, replication);
            match min_insync {
                Some(n) => new.set("min.insync.replicas", n),
                None => new,
            }
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the admin client");
    let options = AdminOptions::new().operation_timeout(Some(WAIT));
    let results = runtime
        .block_on(admin.create_topics(&new_topics, &options))
        .expect("CreateTopics");
    for result in results {
        if let Err((topic, code)) = result {
            panic!("the broker did not create {topic}: {code}");
        }
    }
}

/// Counts the producer's delivery reports.
#[derive(Debug, Default)]
pub(crate) struct Deliveries {
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.delivered.fetch_add(1, Ordering::Relaxed),
            Err((error, _)) => {
                let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
                first.get_or_insert_with(|| error.to_string());
                self.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// A librdkafka producer with acks=1 (and `extra` settings, which may set other acks),
/// connected and with the metadata of `topic` already fetched, so that timing starts at the
/// first record.
pub(crate) fn producer(
    bootstrap: &str,
    topic: &str,
    extra: &[(&str, &str)],
) -> BaseProducer<Deliveries> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("acks", "1")
        // A broker that keeps refusing (say, with a full disk) fails the bench in a minute
        // rather than after librdkafka's five minutes of retries per record.
        .set("message.timeout.ms", "60000");
    for (key, value) in extra {
        config.set(*key, *value);
    }
    let producer: BaseProducer<Deliveries> = config
        .create_with_context(Deliveries::default())
        .expect("a librdkafka producer");
    producer
        .client()
        .fetch_metadata(Some(topic), WAIT)
        .expect("metadata of the bench topic");
    producer
}

/// Sends one record to partition 0 of `topic`, serving delivery reports while librdkafka's
/// queue is full (for at most [`WAIT`]: a queue that stays full means the broker stopped
/// acknowledging).
pub(crate) fn send<C: ProducerContext<DeliveryOpaque = ()>>(
    producer: &BaseProducer<C>,
    topic: &str,
    value: &[u8],
) {
    let mut record: BaseRecord<'_, (), [u8]> = BaseRecord::to(topic).partition(0).payload(value);
    let mut full_since = None;
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                let since = *full_since.get_or_insert_with(Instant::now);
                assert!(
                    since.elapsed() < WAIT,
                    "librdkafka's queue stayed full for {WAIT:?}: the broker stopped \
                     acknowledging records"
                );
                record = back;
                producer.poll(Duration::from_millis(1));
            }
            Err((error, _)) => panic!("librdkafka refused a record: {error}"),
        }
    }
}

/// Sends `count` records of `value_bytes` bytes to partition 0 of `topic` and waits until
/// every one is acknowledged.
pub(crate) fn produce(
    producer: &BaseProducer<Deliveries>,
    topic: &str,
    value_bytes: usize,
    count: u64,
) {
    let value = vec![b'w'; value_bytes];
    for sent in 0..count {
        send(producer, topic, &value);
        if sent.is_multiple_of(1024) {
            producer.poll(Duration::ZERO);
            check_no_failure(producer.context());
        }
    }
    producer
        .flush(WAIT)
        .expect("every record acknowledged in time");
    check_delivered(producer.context(), count);
}

/// Panics if any record failed, naming the first failure.
pub(crate) fn check_no_failure(deliveries: &Deliveries) {
    let failed = deliveries.failed.load(Ordering::Relaxed);
    if failed > 0 {
        let first = deliveries
            .first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        panic!("{failed} records failed; the first: {first:?}");
    }
}

/// Panics unless exactly `count` records were delivered and none failed.
pub(crate) fn check_delivered(deliveries: &Deliveries, count: u64) {
    check_no_failure(deliveries);
    assert_eq!(deliveries.delivered.load(Ordering::Relaxed), count);
}
