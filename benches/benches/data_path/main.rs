//! The data path of one node, end to end: a real `weir-broker` process driven by real Kafka
//! clients, each figure next to a loopback TCP baseline measured in the same run.
//!
//! ```text
//! cargo bench -p weir-benches --bench data_path
//! WEIR_BENCH_RECORDS_100B=100000 WEIR_BENCH_RECORDS_1KIB=20000 WEIR_BENCH_KCAT_RECORDS=100000 \
//!     WEIR_BENCH_LATENCY_SECS=2 cargo bench -p weir-benches --bench data_path   # a quick run
//! ```
//!
//! This is a plain `main` (`harness = false`) that prints one table, not a criterion bench:
//! criterion times a closure many times and fits a distribution to the samples, which suits
//! microseconds of work in one process. Here each phase is one long run of a million records
//! through three processes (the broker, librdkafka's threads, kcat); repeating it dozens of
//! times would take an hour, and the figures wanted are not a closure's time but throughput,
//! the broker's CPU time from `/proc` and a latency distribution, which criterion does not
//! measure.
//!
//! # The broker
//!
//! The bench first runs `cargo build --profile bench -p weir-broker` (a no-op when it is up to
//! date), so the broker is built from the same source and with the same profile as the bench,
//! and runs `<target>/release/weir-broker` (where the bench profile puts binaries). Set
//! `WEIR_BROKER_BIN` to run another binary instead and skip the build. The broker is a single
//! node with its default configuration but 256 MiB segments (`log_segment_bytes`: each
//! topic's first segment is preallocated, and four of 1 GiB would take 4 GiB of disk; at the
//! default counts no phase fills one), every listener on a free port of 127.0.0.1, its data
//! in a new directory under `target/tmp/` (or `WEIR_BENCH_DIR`; not tmpfs: the page-cache path
//! of a real file system is part of what is measured), removed at the end. It is stopped with
//! SIGTERM at the end, and killed if the bench panics.
//!
//! # Phases, back to back in one run
//!
//! For every phase the broker's CPU time (user + system of all its threads, read from `/proc`
//! before and after: each thread's `schedstat`, to the nanosecond, or the process's `stat`,
//! in 10 ms ticks, if a thread exited meanwhile) is reported per million records, so the
//! clients' share is left out; the clients' own CPU time (this process, and kcat as its
//! waited-for child, from `/proc/self/stat`) is shown beside it.
//!
//! 1. **Loopback baselines**, no broker: a raw TCP stream of 1 MiB writes through 127.0.0.1
//!    (`WEIR_BENCH_LOOPBACK_MIB`, default 2048), and a ping-pong of 100-byte messages over a
//!    `TCP_NODELAY` connection, paced at the end-to-end phase's rate for as many round trips
//!    as it sends records.
//! 2. **Produce**: a librdkafka `BaseProducer` (acks=1, otherwise librdkafka's defaults:
//!    linger.ms=5, batches up to 1 MB, no compression) sends `WEIR_BENCH_RECORDS_100B`
//!    (default 1,000,000) records of 100 bytes, then `WEIR_BENCH_RECORDS_1KIB` (default
//!    200,000) of 1 KiB, to single-partition topics, timed from the first send until every
//!    record is acknowledged.
//! 3. **Consume**: a librdkafka `BaseConsumer` (assigned, so it joins no group) is assigned
//!    each topic from offset 0 and reads every record back. Its settings are librdkafka's
//!    defaults but `fetch.queue.backoff.ms=0`: by default librdkafka stops fetching for a
//!    second whenever it holds 100,000 records (`queued.min.messages`), which held 100 B
//!    records to 290,000 a second (3.5 s for a million, of which the broker spent 0.03 s of
//!    CPU) against 1.4 million a second without the pause.
//! 4. **kcat**: `WEIR_BENCH_KCAT_RECORDS` (default 1,000,000) lines of 100 bytes piped into
//!    `kcat -P` with its defaults (acks=all, which a single node answers as acks=1), timed
//!    until kcat exits. Skipped, with a message, if `kcat` is not installed.
//! 5. **End-to-end latency**: a producer with linger.ms=0 (so nothing waits to fill a batch)
//!    sends 100-byte records at `WEIR_BENCH_LATENCY_RATE` per second (default 5,000) for
//!    `WEIR_BENCH_LATENCY_SECS` (default 10) after one second of unrecorded warm-up; each
//!    carries its send time. A consumer with librdkafka's default fetch settings
//!    (fetch.wait.max.ms=500, fetch.min.bytes=1) reads them, and the latency is receipt time
//!    minus send time, both from one monotonic clock in this process, in an HDR histogram.
//!    Low latency here needs a waiting fetch that returns as soon as records arrive.
//!
//! MB is 10^6 bytes of record values (keys are empty; batch framing is not counted).
//!
//! # Targets
//!
//! The broker spends at most 0.2 CPU-seconds taking in the million 100-byte records kcat sends
//! (an in-memory Kafka-compatible broker spends 0.42 on this kind of machine); end-to-end p50
//! under 2 ms and p99 under 5 ms. The table ends with each target and whether it was met (judged
//! only with the default kcat count and latency rate).
//!
//! The machine's load average is printed before and after: the clients and the broker share
//! its cores, so compare ratios to the baselines rather than absolute figures across machines.

mod clients;
#[path = "../common/mod.rs"]
#[allow(
    dead_code,
    reason = "the code both benches share; this one uses part of it"
)]
mod common;
mod loopback;
mod report;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use common::broker::{self, Broker, BrokerSpec, Ports};
use common::clients::{self as shared_clients, TopicSpec};
use common::table::ThroughputRow;
use common::{bench_root, env_number, load_average};
use report::{LatencyRow, Report};

/// The broker's CPU seconds per million 100-byte records from kcat must be at most this.
const KCAT_CPU_TARGET_SECS: f64 = 0.2;
/// The kcat target is judged on at least this many records.
const TARGET_RECORDS: u64 = 1_000_000;
/// The latency targets are judged at this rate, records per second.
const TARGET_RATE: u32 = 5_000;
/// End-to-end p50 must be under this, in milliseconds.
const P50_TARGET_MS: f64 = 2.0;
/// End-to-end p99 must be under this, in milliseconds.
const P99_TARGET_MS: f64 = 5.0;

/// What a run does, from the environment.
#[derive(Debug)]
struct Settings {
    records_100b: u64,
    records_1kib: u64,
    kcat_records: u64,
    latency_rate: u32,
    latency_secs: u64,
    loopback_mib: u64,
}

impl Settings {
    fn from_env() -> Settings {
        Settings {
            records_100b: env_number("WEIR_BENCH_RECORDS_100B", 1_000_000),
            records_1kib: env_number("WEIR_BENCH_RECORDS_1KIB", 200_000),
            kcat_records: env_number("WEIR_BENCH_KCAT_RECORDS", TARGET_RECORDS),
            latency_rate: u32::try_from(env_number("WEIR_BENCH_LATENCY_RATE", TARGET_RATE.into()))
                .expect("WEIR_BENCH_LATENCY_RATE fits in 32 bits"),
            latency_secs: env_number("WEIR_BENCH_LATENCY_SECS", 10),
            loopback_mib: env_number("WEIR_BENCH_LOOPBACK_MIB", 2048),
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; this bench takes no arguments of its own.
    let settings = Settings::from_env();
    let binary = broker::binary();
    let mut report = Report::new(load_average());

    eprintln!("loopback baselines");
    let loopback_bytes = settings.loopback_mib << 20;
    let wall = loopback::throughput(loopback_bytes);
    report.loopback_bytes_per_sec = loopback_bytes as f64 / wall.as_secs_f64();
    let latency_count = u64::from(settings.latency_rate) * settings.latency_secs;
    let warmup = u64::from(settings.latency_rate);
    let round_trips = loopback::ping_pong(100, settings.latency_rate, warmup, latency_count);
    report.latency.push(LatencyRow::new(
        "loopback TCP round trip, 100 B",
        &round_trips,
        None,
    ));
    report.round_trip = Some(round_trips);

    let data = tempfile::Builder::new()
        .prefix("data-path-")
        .tempdir_in(bench_root())
        .expect("create the broker's data directory");
    let broker = start_broker(binary, data.path().to_path_buf());
    eprintln!("weir-broker serving Kafka at {}", broker.kafka_addr());
    run_broker_phases(&broker, &settings, &mut report);
    broker.stop();
    drop(data);

    report.load_after = load_average();
    print!("{report}");
}

/// Starts `binary` as a single node with its default configuration but 256 MiB segments,
/// every listener on a free port and its data in `data_dir`, and waits until it is a live
/// broker serving Kafka.
fn start_broker(binary: PathBuf, data_dir: PathBuf) -> Broker {
    let spec = BrokerSpec {
        binary,
        data_dir,
        ports: Ports::any(),
        args: Vec::new(),
        env: vec![
            // Each topic's first segment is preallocated: 256 MiB rather than the default
            // 1 GiB keeps the four topics to 1 GiB of disk, and at the default counts no
            // phase fills one, so no segment rolls either way.
            (
                "WEIR_LOG_SEGMENT_BYTES".to_string(),
                (256u64 << 20).to_string(),
            ),
            // Only the lines the bench waits for; nothing logged per request.
            (
                "RUST_LOG".to_string(),
                "warn,weir_broker::server=info".to_string(),
            ),
        ],
        log_file: None,
    };
    Broker::start(&spec).unwrap_or_else(|said| panic!("{said}"))
}

/// The topics of the phases, each with one partition.
const TOPIC_100B: &str = "bench-100b";
const TOPIC_1KIB: &str = "bench-1kib";
const TOPIC_KCAT: &str = "bench-kcat";
const TOPIC_END_TO_END: &str = "bench-e2e";

/// Every phase that needs the broker, in order.
fn run_broker_phases(broker: &Broker, settings: &Settings, report: &mut Report) {
    let bootstrap = broker.kafka_addr().to_string();
    let topics = [TOPIC_100B, TOPIC_1KIB, TOPIC_KCAT, TOPIC_END_TO_END];
    let specs: Vec<TopicSpec<'_>> = topics.iter().map(|t| TopicSpec::single(t)).collect();
    shared_clients::create_topics(&bootstrap, &specs);
    let sizes = [
        (TOPIC_100B, 100, settings.records_100b, "100 B"),
        (TOPIC_1KIB, 1024, settings.records_1kib, "1 KiB"),
    ];
    for (topic, size, count, label) in sizes {
        let name = format!("produce {label}, acks=1");
        eprintln!("{name}: {count} records");
        let producer = shared_clients::producer(&bootstrap, topic, &[]);
        let row = measure(broker, &name, count, size as u64 * count, || {
            shared_clients::produce(&producer, topic, size, count);
        });
        report.throughput.push(row);
    }
    // librdkafka pauses fetching for fetch.queue.backoff.ms (1 s) whenever it holds
    // queued.min.messages (100,000) records, which bounds 100 B records to about 300,000 a
    // second whatever the broker does; the pause is turned off to measure the broker.
    let no_pause = [("fetch.queue.backoff.ms", "0")];
    for (topic, _, count, label) in sizes {
        let name = format!("consume {label}");
        eprintln!("{name}: {count} records");
        let consumer = clients::consumer(&bootstrap, topic, 0, &no_pause);
        let mut bytes = 0;
        let mut row = measure(broker, &name, count, 0, || {
            bytes = clients::consume(&consumer, count);
        });
        row.value_bytes = bytes;
        report.throughput.push(row);
    }
    kcat_phase(broker, settings.kcat_records, report);
    end_to_end_phase(broker, settings, report);
}

/// kcat pipes 100-byte records in, if it is installed.
fn kcat_phase(broker: &Broker, count: u64, report: &mut Report) {
    if !clients::kcat_available() {
        report.notes.push(
            "kcat is not installed (apt-get install kcat): the kcat row and its target were \
             skipped"
                .to_string(),
        );
        return;
    }
    eprintln!("kcat -P: {count} records");
    let name = "kcat -P 100 B (acks=all)";
    let row = measure(broker, name, count, 100 * count, || {
        clients::kcat_produce(broker.kafka_addr(), TOPIC_KCAT, 100, count);
    });
    report.kcat = Some((row.broker_cpu_per_million(), count));
    report.throughput.push(row);
}

/// Records at a fixed rate, their latency from producer to consumer.
fn end_to_end_phase(broker: &Broker, settings: &Settings, report: &mut Report) {
    let rate = settings.latency_rate;
    report.end_to_end_rate = rate;
    let count = u64::from(rate) * settings.latency_secs;
    let warmup = u64::from(rate);
    eprintln!("end to end: {count} records at {rate}/s after {warmup} unrecorded");
    let name = format!("end to end at {rate}/s, linger.ms=0");
    let mut seen = None;
    let row = measure(broker, &name, count, 0, || {
        let bootstrap = broker.kafka_addr();
        seen = Some(clients::end_to_end(
            bootstrap,
            TOPIC_END_TO_END,
            rate,
            warmup,
            count,
        ));
    });
    let seen = seen.expect("the end-to-end phase ran");
    let row = LatencyRow::new(&name, &seen.latency, Some((row, seen.sent)));
    report.latency.insert(0, row);
    report.end_to_end = Some(seen.latency);
}

/// Runs `phase` and returns its row: wall time, and the CPU time the broker and the clients
/// used meanwhile.
fn measure(
    broker: &Broker,
    name: &str,
    records: u64,
    value_bytes: u64,
    phase: impl FnOnce(),
) -> ThroughputRow {
    common::measure(&[broker], name, records, value_bytes, phase)
}

/// A histogram of latencies in microseconds, from 1 µs to 60 s, to 3 significant digits.
fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// Paces a loop at a fixed rate: the n-th turn is due n periods after the first.
#[derive(Debug)]
struct Pacer {
    start: Instant,
    period_ns: u64,
    turn: u64,
}

impl Pacer {
    fn new(rate_per_sec: u32) -> Pacer {
        Pacer {
            start: Instant::now(),
            period_ns: 1_000_000_000 / u64::from(rate_per_sec.max(1)),
            turn: 0,
        }
    }

    /// Sleeps until the next turn is due (at once if it is late).
    fn wait_turn(&mut self) {
        let due = self.start + Duration::from_nanos(self.period_ns * self.turn);
        self.turn += 1;
        if let Some(early) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(early);
        }
    }
}
