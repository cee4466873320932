//! The clients: an idempotent librdkafka producer (acks=all) that records what was
//! acknowledged, and a consumer that records what it read.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};

use crate::{PARTITIONS, SEND_RATE, TOPIC, WAIT};

/// What the producer's delivery reports and statistics said.
#[derive(Debug, Default)]
pub(crate) struct Deliveries {
    /// Acknowledged records: (partition, sequence number) → offset.
    pub(crate) acked: Mutex<BTreeMap<(i32, u64), i64>>,
    /// Records that failed, with librdkafka's reason.
    pub(crate) failed: Mutex<Vec<(i32, u64, String)>>,
    /// From librdkafka's statistics, per broker (by name, the highest seen: a broker
    /// librdkafka forgets takes its counts with it): requests retried (`txretries`), failed to
    /// send (`txerrs`) and timed out (`req_timeouts`).
    pub(crate) request_counts: Mutex<HashMap<String, [u64; 3]>>,
    /// Records librdkafka put in produce requests, per partition, retries included
    /// (`txmsgs`): beyond the records sent, these are records sent again.
    pub(crate) transmitted: Mutex<BTreeMap<i32, u64>>,
    /// Errors librdkafka reported (connections lost, requests timed out, ...).
    pub(crate) client_errors: AtomicU64,
    /// When the last acknowledgement arrived, and the longest time between two.
    pub(crate) last_ack: Mutex<Option<Instant>>,
    pub(crate) longest_gap: Mutex<Duration>,
    /// The producer's state in its last statistics: each partition's queues, in-flight
    /// records and sequence numbers, and the idempotent producer's id, epoch and state.
    pub(crate) last_stats: Mutex<String>,
}

/// The producer's context: reports into the shared [`Deliveries`].
struct Reporter(Arc<Deliveries>);

impl ClientContext for Reporter {
    fn stats(&self, statistics: Statistics) {
        {
            let mut counts = self.0.request_counts.lock().unwrap();
            for (name, broker) in &statistics.brokers {
                let seen = counts.entry(name.clone()).or_default();
                for (seen, now) in
                    seen.iter_mut()
                        .zip([broker.txretries, broker.txerrs, broker.req_timeouts])
                {
                    *seen = (*seen).max(now);
                }
            }
        }
        let mut summary = String::new();
        if let Some(eos) = &statistics.eos {
            summary += &format!(
                "idempotent producer {} epoch {} ({}, {} ms); ",
                eos.producer_id, eos.producer_epoch, eos.idemp_state, eos.idemp_stateage
            );
        }
        if let Some(topic) = statistics.topics.get(TOPIC) {
            let mut transmitted = self.0.transmitted.lock().unwrap();
            for p in topic.partitions.values().filter(|p| p.partition >= 0) {
                let seen = transmitted.entry(p.partition).or_default();
                *seen = (*seen).max(p.txmsgs);
            }
            let mut partitions: Vec<_> = topic.partitions.values().collect();
            partitions.sort_by_key(|p| p.partition);
            for p in partitions.iter().filter(|p| p.partition >= 0) {
                summary += &format!(
                    "p{} leader {}: queued {}, to send {}, in flight {}, next ack seq {}, \
                     next err seq {}, acked msgid {}; ",
                    p.partition,
                    p.leader,
                    p.msgq_cnt,
                    p.xmit_msgq_cnt,
                    p.msgs_inflight,
                    p.next_ack_seq,
                    p.next_err_seq,
                    p.acked_msgid
                );
            }
        }
        *self.0.last_stats.lock().unwrap() = summary;
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.0.client_errors.fetch_add(1, Ordering::Relaxed);
        eprintln!("producer: {error}: {reason}");
    }
}

impl ProducerContext for Reporter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        self.0.record(result);
    }
}

impl Deliveries {
    /// Produce requests retried, failed to send and timed out, summed over the brokers.
    pub(crate) fn request_counts(&self) -> [u64; 3] {
        self.request_counts
            .lock()
            .unwrap()
            .values()
            .fold([0; 3], |sum, b| {
                [sum[0] + b[0], sum[1] + b[1], sum[2] + b[2]]
            })
    }

    fn record(&self, result: &DeliveryResult<'_>) {
        let (message, error) = match result {
            Ok(message) => (message, None),
            Err((error, message)) => (message, Some(error.to_string())),
        };
        let value = std::str::from_utf8(message.payload().unwrap_or_default()).unwrap_or("");
        let (partition, sequence) = parse_value(value).expect("the test's own value");
        match error {
            None => {
                self.acked
                    .lock()
                    .unwrap()
                    .insert((partition, sequence), message.offset());
                let now = Instant::now();
                let mut last = self.last_ack.lock().unwrap();
                if let Some(last) = *last {
                    let mut longest = self.longest_gap.lock().unwrap();
                    *longest = (*longest).max(now - last);
                }
                *last = Some(now);
            }
            Some(error) => self
                .failed
                .lock()
                .unwrap()
                .push((partition, sequence, error)),
        }
    }
}

/// `p{partition}-{sequence}` → (partition, sequence).
pub(crate) fn parse_value(value: &str) -> Option<(i32, u64)> {
    let (partition, sequence) = value.strip_prefix('p')?.split_once('-')?;
    Some((partition.parse().ok()?, sequence.parse().ok()?))
}

/// How the producer thread ended.
#[derive(Debug)]
pub(crate) struct Produced {
    /// Records sent per partition.
    pub(crate) sent: Vec<u64>,
    /// What went wrong, if it did: a fatal error of the idempotent producer, or records
    /// neither acknowledged nor failed within [`WAIT`] of the end.
    pub(crate) error: Option<String>,
}

/// The producer thread: sends `p{partition}-{sequence}` to each partition in turn at
/// [`SEND_RATE`] until `stop`, then flushes.
pub(crate) fn produce(
    bootstrap: String,
    deliveries: Arc<Deliveries>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<Produced> {
    std::thread::spawn(move || {
        let producer: BaseProducer<Reporter> = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            // A request to a paused broker is given up after 5 s (and retried: the
            // idempotent producer's sequence numbers make the retry safe), not 30.
            .set("request.timeout.ms", "5000")
            .set("message.timeout.ms", "120000")
            .set("statistics.interval.ms", "500")
            .create_with_context(Reporter(deliveries))
            .expect("a librdkafka producer");
        let fatal = |producer: &BaseProducer<Reporter>| {
            let (code, reason) = producer.client().fatal_error()?;
            Some(format!(
                "the idempotent producer failed fatally: {code}: {reason}"
            ))
        };
        let mut sent = vec![0u64; PARTITIONS as usize];
        let start = Instant::now();
        let mut total = 0u64;
        while !stop.load(Ordering::Relaxed) {
            if let Some(error) = fatal(&producer) {
                return Produced {
                    sent,
                    error: Some(error),
                };
            }
            let partition = (total % PARTITIONS as u64) as i32;
            let value = format!("p{partition}-{}", sent[partition as usize]);
            send(&producer, partition, &value);
            sent[partition as usize] += 1;
            total += 1;
            producer.poll(Duration::ZERO);
            let due = start + Duration::from_micros(total * 1_000_000 / SEND_RATE);
            if let Some(early) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(early);
            }
        }
        let flushed = producer.flush(WAIT);
        // One more round of statistics, after the last acknowledgement.
        let stats_until = Instant::now() + Duration::from_millis(1200);
        while Instant::now() < stats_until {
            producer.poll(Duration::from_millis(100));
        }
        let error = fatal(&producer).or_else(|| {
            let error = flushed.err()?;
            Some(format!(
                "records were neither acknowledged nor failed within {WAIT:?} of the end \
                 ({error}); the producer's last statistics: {}",
                producer.context().0.last_stats.lock().unwrap()
            ))
        });
        Produced { sent, error }
    })
}

/// Hands `value` to librdkafka for `partition`, serving delivery reports while its queue is
/// full.
fn send(producer: &BaseProducer<Reporter>, partition: i32, value: &str) {
    let mut record: BaseRecord<'_, (), str> =
        BaseRecord::to(TOPIC).partition(partition).payload(value);
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                producer.poll(Duration::from_millis(10));
            }
            Err((error, _)) => panic!("librdkafka refused a record: {error}"),
        }
    }
}

/// What the consumer read: (partition, offset, value), in the order read.
pub(crate) type Reads = Vec<(i32, i64, String)>;

/// The consumer thread: reads every partition from offset 0 until `stop`.
pub(crate) fn consume(
    bootstrap: String,
    stop: Arc<AtomicBool>,
    reads: Arc<Mutex<Reads>>,
) -> JoinHandle<u64> {
    std::thread::spawn(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "faults-check")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("a librdkafka consumer");
        let mut assignment = TopicPartitionList::new();
        for partition in 0..PARTITIONS {
            assignment
                .add_partition_offset(TOPIC, partition, Offset::Offset(0))
                .unwrap();
        }
        consumer.assign(&assignment).unwrap();
        let mut errors = 0u64;
        while !stop.load(Ordering::Relaxed) {
            match consumer.poll(Duration::from_millis(100)) {
                None => {}
                Some(Ok(message)) => {
                    let value = String::from_utf8_lossy(message.payload().unwrap_or_default());
                    let read = (message.partition(), message.offset(), value.into_owned());
                    reads.lock().unwrap().push(read);
                }
                Some(Err(_)) => errors += 1,
            }
        }
        errors
    })
}

/// Waits until the consumer has read every partition up to `ends`.
pub(crate) fn wait_consumed(reads: &Mutex<Reads>, ends: &[i64]) {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut next = vec![0i64; ends.len()];
        for (partition, offset, _) in reads.lock().unwrap().iter() {
            let next = &mut next[*partition as usize];
            *next = (*next).max(offset + 1);
        }
        if next.iter().zip(ends).all(|(read, end)| read >= end) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the consumer read up to {next:?}, not {ends:?}, within {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
