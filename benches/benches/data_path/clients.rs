//! The Kafka clients of the phases: librdkafka (the `rdkafka` crate) in this process, and
//! kcat as a child process.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};

use crate::common::clients::{WAIT, check_delivered, check_no_failure, producer, send};
use crate::loopback::micros;
use crate::{Pacer, latency_histogram};

/// A librdkafka consumer (default settings but `extra`) assigned partition 0 of `topic` from
/// `offset`, connected before it is returned. It names a group because librdkafka's assign
/// needs one, but neither joins it nor commits.
pub(crate) fn consumer(
    bootstrap: &str,
    topic: &str,
    offset: i64,
    extra: &[(&str, &str)],
) -> BaseConsumer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "weir-bench")
        .set("enable.auto.commit", "false");
    for (key, value) in extra {
        config.set(*key, *value);
    }
    let consumer: BaseConsumer = config.create().expect("a librdkafka consumer");
    consumer
        .fetch_metadata(Some(topic), WAIT)
        .expect("metadata of the bench topic");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Offset(offset))
        .expect("a valid assignment");
    consumer.assign(&assignment).expect("assign partition 0");
    consumer
}

/// Reads `count` records from the consumer; returns the bytes of their values.
pub(crate) fn consume(consumer: &BaseConsumer, count: u64) -> u64 {
    let mut bytes = 0u64;
    let mut next_offset = 0i64;
    let deadline = Instant::now() + WAIT;
    while next_offset < count as i64 {
        assert!(
            Instant::now() < deadline,
            "read {next_offset} of {count} records in {WAIT:?}"
        );
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message.expect("a record, not an error");
        assert_eq!(
            message.offset(),
            next_offset,
            "offsets in order, none skipped"
        );
        bytes += message.payload_len() as u64;
        next_offset += 1;
    }
    bytes
}

/// Whether kcat can be run.
pub(crate) fn kcat_available() -> bool {
    Command::new("kcat")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Pipes `count` lines of `value_bytes` bytes into `kcat -P` (its own defaults otherwise:
/// librdkafka's acks=all and linger.ms=5) and waits for it to exit, which it does once every
/// record is acknowledged.
pub(crate) fn kcat_produce(bootstrap: &str, topic: &str, value_bytes: usize, count: u64) {
    let mut kcat = Command::new("kcat")
        .args(["-P", "-b", bootstrap, "-t", topic, "-p", "0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kcat");
    let mut stdin = kcat.stdin.take().expect("kcat's stdin");
    // Written from a thread while kcat's stderr is read here, so neither pipe can fill up
    // and stall the other.
    let writer = std::thread::spawn(move || {
        let mut line = vec![b'k'; value_bytes];
        line.push(b'\n');
        let lines_per_write = (64 * 1024 / line.len()).max(1);
        let chunk = line.repeat(lines_per_write);
        let mut left = count;
        while left > 0 {
            let lines = left.min(lines_per_write as u64) as usize;
            stdin.write_all(&chunk[..lines * line.len()])?;
            left -= lines as u64;
        }
        Ok::<(), std::io::Error>(())
    });
    let output = kcat.wait_with_output().expect("wait for kcat");
    let written = writer.join().expect("the thread writing to kcat");
    assert!(
        output.status.success(),
        "kcat failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    written.expect("kcat read every line");
}

/// What the end-to-end phase saw.
#[derive(Debug)]
pub(crate) struct EndToEnd {
    /// Latency of each recorded record, send to receipt, in microseconds.
    pub(crate) latency: Histogram<u64>,
    /// Records sent, warm-up included.
    pub(crate) sent: u64,
}

/// Sends `warmup + count` 100-byte records at `rate` per second from a producer with
/// linger.ms=0, each carrying its send time, while a consumer with librdkafka's default
/// fetch settings (fetch.wait.max.ms=500, fetch.min.bytes=1) reads them; the latency of the
/// last `count` is receipt time minus send time, both read from one clock in this process.
pub(crate) fn end_to_end(
    bootstrap: &str,
    topic: &str,
    rate: u32,
    warmup: u64,
    count: u64,
) -> EndToEnd {
    let total = warmup + count;
    let epoch = Instant::now();
    let consumer = consumer(bootstrap, topic, 0, &[]);
    let reader = std::thread::spawn(move || receive_stamped(&consumer, epoch, total));
    let producer = producer(bootstrap, topic, &[("linger.ms", "0")]);
    let mut value = [0u8; 100];
    let mut pacer = Pacer::new(rate);
    for sequence in 0..total {
        pacer.wait_turn();
        value[8] = u8::from(sequence >= warmup);
        let sent_at = u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        value[..8].copy_from_slice(&sent_at.to_le_bytes());
        send(&producer, topic, &value);
        producer.poll(Duration::ZERO);
        check_no_failure(producer.context());
    }
    producer
        .flush(WAIT)
        .expect("every record acknowledged in time");
    check_delivered(producer.context(), total);
    let latency = reader.join().expect("the end-to-end consumer");
    assert_eq!(latency.len(), count, "every recorded record was received");
    EndToEnd {
        latency,
        sent: total,
    }
}

/// Reads `total` stamped records; the latencies of those flagged as recorded.
fn receive_stamped(consumer: &BaseConsumer, epoch: Instant, total: u64) -> Histogram<u64> {
    let mut latency = latency_histogram();
    let mut received = 0;
    let deadline = Instant::now() + WAIT + Duration::from_secs(total / 1000);
    while received < total {
        assert!(
            Instant::now() < deadline,
            "received {received} of {total} records in time"
        );
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let now = epoch.elapsed();
        let message = message.expect("a record, not an error");
        let value = message.payload().expect("a stamped value");
        let sent_at = u64::from_le_bytes(value[..8].try_into().expect("8 bytes"));
        if value[8] == 1 {
            let latency_ns = now.saturating_sub(Duration::from_nanos(sent_at));
            latency.saturating_record(micros(latency_ns));
        }
        received += 1;
    }
    latency
}
