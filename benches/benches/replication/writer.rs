//! The failover phase's producer: an idempotent librdkafka producer (acks=all) on a thread of
//! its own, writing numbered records at a steady rate, that notes when the first record
//! numbered at or above a mark is acknowledged.

use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext};

use crate::common::clients::{WAIT, send};

/// Bytes of each record's value: its number, then padding.
const VALUE_BYTES: usize = 100;

/// A running writer. Dropping it stops the thread without waiting for it.
#[derive(Debug)]
pub(crate) struct Writer {
    state: Arc<WriterState>,
    thread: Option<JoinHandle<()>>,
}

/// What the thread, librdkafka's callbacks and the bench share.
#[derive(Debug)]
struct WriterState {
    stop: AtomicBool,
    /// The number the next record gets.
    next_number: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
    last_delivery: Mutex<Option<Instant>>,
    watch: Mutex<Watch>,
    /// Where librdkafka's log lines go, if anywhere.
    client_log: Option<Mutex<File>>,
}

impl WriterState {
    fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
        mutex.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn client_log_line(&self, text: &str) {
        if let Some(out) = &self.client_log {
            let mut out = Self::lock(out);
            // The log is for reading afterwards; losing a line is no reason to stop.
            let _unwritten = writeln!(out, "{} {text}", utc_time_of_day());
        }
    }
}

/// Records numbered `from` or more are watched; `first` is when the first of them was
/// acknowledged.
#[derive(Debug)]
struct Watch {
    from: u64,
    first: Option<Instant>,
}

/// The librdkafka context: delivery reports and log lines go to the shared state.
struct WriterContext {
    state: Arc<WriterState>,
}

impl ClientContext for WriterContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.state
            .client_log_line(&format!("{level:?} {fac} {log_message}"));
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.state
            .client_log_line(&format!("error {error}: {reason}"));
    }
}

impl ProducerContext for WriterContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let now = Instant::now();
        let state = &self.state;
        match result {
            Ok(message) => {
                state.delivered.fetch_add(1, Ordering::Relaxed);
                *WriterState::lock(&state.last_delivery) = Some(now);
                let number = message
                    .payload()
                    .and_then(|value| value.get(..8))
                    .map(|n| u64::from_le_bytes(n.try_into().expect("8 bytes")))
                    .expect("a numbered record");
                let mut watch = WriterState::lock(&state.watch);
                if number >= watch.from {
                    watch.first.get_or_insert(now);
                }
            }
            Err((error, _)) => {
                state.failed.fetch_add(1, Ordering::Relaxed);
                WriterState::lock(&state.first_error).get_or_insert_with(|| error.to_string());
            }
        }
    }
}

impl Writer {
    /// Starts writing `rate` records a second to partition 0 of `topic` through an
    /// idempotent producer with librdkafka's defaults (so acks=all, linger.ms=5, retries
    /// without end within message.timeout.ms) but the `extra` settings. librdkafka's log
    /// lines go to `client_log` if given.
    pub(crate) fn start(
        bootstrap: &str,
        topic: &str,
        rate: u32,
        client_log: Option<File>,
        extra: &[(String, String)],
    ) -> Writer {
        let state = Arc::new(WriterState {
            stop: AtomicBool::new(false),
            next_number: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            first_error: Mutex::new(None),
            last_delivery: Mutex::new(None),
            watch: Mutex::new(Watch {
                from: u64::MAX,
                first: None,
            }),
            client_log: client_log.map(Mutex::new),
        });
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", bootstrap)
            .set("enable.idempotence", "true");
        for (key, value) in extra {
            config.set(key, value);
        }
        if config.get("debug").is_some() {
            // rdkafka passes on only the levels the `log` crate would show, which is none
            // without a logger.
            config.set_log_level(RDKafkaLogLevel::Debug);
        }
        let producer: BaseProducer<WriterContext> = config
            .create_with_context(WriterContext {
                state: Arc::clone(&state),
            })
            .expect("a librdkafka producer");
        producer
            .client()
            .fetch_metadata(Some(topic), WAIT)
            .expect("metadata of the failover topic");
        let topic = topic.to_string();
        let thread_state = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name("failover-writer".to_string())
            .spawn(move || write(&producer, &topic, rate, &thread_state))
            .expect("start the writer thread");
        Writer {
            state,
            thread: Some(thread),
        }
    }

    /// Watches the records handed to librdkafka from now on, which can only reach a broker
    /// after this call; forgets an earlier watch. (The record numbered `next_number` may be
    /// on its way into librdkafka's queue already; the one after it is not.)
    pub(crate) fn watch_from_now(&self) {
        let mut watch = WriterState::lock(&self.state.watch);
        watch.from = self.state.next_number.load(Ordering::Acquire) + 1;
        watch.first = None;
    }

    /// When the first watched record was acknowledged, if one was.
    pub(crate) fn first_watched(&self) -> Option<Instant> {
        WriterState::lock(&self.state.watch).first
    }

    /// Waits until a record is acknowledged after this call; panics after [`WAIT`].
    pub(crate) fn wait_for_delivery(&self) {
        let since = Instant::now();
        let deadline = since + WAIT;
        loop {
            self.check_no_failure();
            if WriterState::lock(&self.state.last_delivery).is_some_and(|at| at > since) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no record was acknowledged within {WAIT:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Panics if a record failed, naming the first failure.
    pub(crate) fn check_no_failure(&self) {
        let failed = self.state.failed.load(Ordering::Relaxed);
        if failed > 0 {
            let first = WriterState::lock(&self.state.first_error).clone();
            panic!("{failed} records of the failover writer failed; the first: {first:?}");
        }
    }

    /// Writes `text` into librdkafka's log (if it is kept), to mark what the bench did.
    pub(crate) fn mark(&self, text: &str) {
        self.state.client_log_line(&format!("---- bench: {text}"));
    }

    /// Stops writing, waits until every record sent is acknowledged, and returns how many
    /// were; panics if any failed.
    pub(crate) fn finish(mut self) -> u64 {
        self.state.stop.store(true, Ordering::Release);
        let thread = self.thread.take().expect("the writer runs until finished");
        thread.join().expect("the writer thread");
        self.check_no_failure();
        let sent = self.state.next_number.load(Ordering::Acquire);
        let delivered = self.state.delivered.load(Ordering::Relaxed);
        assert_eq!(delivered, sent, "every record written was acknowledged");
        delivered
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Release);
    }
}

/// The writer thread: a record every 1/`rate` s, serving delivery reports in between as they
/// come, until told to stop; then waits for every record's acknowledgement.
fn write(producer: &BaseProducer<WriterContext>, topic: &str, rate: u32, state: &WriterState) {
    let period = Duration::from_nanos(1_000_000_000 / u64::from(rate.max(1)));
    let mut value = [b'f'; VALUE_BYTES];
    let mut due = Instant::now();
    while !state.stop.load(Ordering::Acquire) {
        let number = state.next_number.load(Ordering::Acquire);
        value[..8].copy_from_slice(&number.to_le_bytes());
        send(producer, topic, &value);
        state.next_number.store(number + 1, Ordering::Release);
        due += period;
        while let Some(left) = due.checked_duration_since(Instant::now()) {
            producer.poll(left);
        }
    }
    // The bench checks the count; a flush that times out leaves records unacknowledged.
    let _flushed = producer.flush(WAIT);
}

/// The time of day in UTC, `HH:MM:SS.ffffff`, to match the brokers' log timestamps.
pub(crate) fn utc_time_of_day() -> String {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since_epoch.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:06}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        since_epoch.subsec_micros()
    )
}
