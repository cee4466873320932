//! Replication, end to end: a cluster of three real `weir-broker` processes driven by
//! librdkafka, measuring what acks=all to three replicas costs next to acks=1 to one, and how
//! long a partition is unavailable for writes when its leader is killed.
//!
//! ```text
//! cargo bench -p weir-benches --bench replication
//! WEIR_BENCH_RECORDS_100B=100000 WEIR_BENCH_RECORDS_1KIB=20000 WEIR_BENCH_FAILOVER_TRIALS=2 \
//!     cargo bench -p weir-benches --bench replication                       # a quick run
//! WEIR_BENCH_BROKER_LOGS=$PWD/target/bench-logs WEIR_BENCH_RDKAFKA_DEBUG=broker,topic,msg \
//!     cargo bench -p weir-benches --bench replication                       # keep the logs
//! ```
//!
//! Like `data_path` (whose doc comment says why this is a plain `main` and not criterion),
//! it prints one table; the two share `benches/common/`.
//!
//! # The cluster
//!
//! The broker is built as `data_path` builds it (`cargo build --profile bench -p
//! weir-broker`; `WEIR_BROKER_BIN` runs another binary and skips the build). Three nodes run
//! as `weir dev-cluster start` runs them: node ids 1 to 3, every one a controller voter
//! (`--controller-voters`) and a broker, every listener on a port of 127.0.0.1 chosen free
//! beforehand (so that a killed node can start again on the same ones), each with its data in
//! a new directory under `target/tmp/` (or `WEIR_BENCH_DIR`), removed at the end. Their
//! configuration is the default but 256 MiB segments (`log_segment_bytes`, as in
//! `data_path`: every replica's first segment is preallocated), so sessions, heartbeats,
//! fetch waits and ISR lag are what a user gets; replication factor and
//! `min.insync.replicas` are set per topic. They are stopped with SIGTERM at the end, and
//! killed if the bench panics.
//!
//! # Logs
//!
//! The brokers log at the binary's default level (`info,openraft=warn`) unless `RUST_LOG` is
//! set, which is passed on to them (keep `weir_broker::server`, `weir_broker::controller` and
//! `weir_broker::replication` at `info` or finer: the bench reads their lines).
//! `WEIR_BENCH_BROKER_LOGS=DIR` keeps every line node N logs in `DIR/node-N.log`, with a
//! `---- bench:` line at each kill and first write, and the failover producer's librdkafka
//! log in `DIR/producer.log`; `WEIR_BENCH_RDKAFKA_DEBUG` sets that producer's `debug`
//! contexts (e.g. `broker,topic,msg,metadata`). A relative `DIR` is taken from `benches/`,
//! where cargo runs benches. Times of day in the bench's lines are UTC, as in the brokers'.
//!
//! # Phases
//!
//! 1. **Throughput**, for 100-byte records (`WEIR_BENCH_RECORDS_100B`, default 1,000,000)
//!    then 1 KiB ones (`WEIR_BENCH_RECORDS_1KIB`, default 200,000): a librdkafka
//!    `BaseProducer` with its defaults (linger.ms=5, batches up to 1 MB, no compression, not
//!    idempotent) sends them to a single-partition topic with one replica at acks=1, then to
//!    one with three replicas and `min.insync.replicas=2` at acks=all, timed from the first
//!    send until every record is acknowledged. Both topics live on the same three-node
//!    cluster, so the figures differ by replication alone. Each row gives records/s, MB/s
//!    (10^6 bytes of record values) and the CPU time of all three broker processes (from
//!    `/proc`, as `data_path` reads it) per million records; a third row gives acks=all RF3
//!    over acks=1 RF1.
//! 2. **Leader failover**, `WEIR_BENCH_FAILOVER_TRIALS` times (default 5): an idempotent
//!    producer (librdkafka's defaults otherwise: acks=all, linger.ms=5, retries without end)
//!    writes numbered 100-byte records at `WEIR_BENCH_FAILOVER_RATE` a second (default 1,000)
//!    to a single-partition topic with three replicas and `min.insync.replicas=2`. Each trial
//!    waits until every node says the ISR is full, lets the cluster settle for 2 s, SIGKILLs
//!    the partition's leader, and measures the time from the kill to the acknowledgement of
//!    the first record handed to librdkafka after the kill (which only a new leader can have
//!    taken). Meanwhile it asks each surviving node every 10 ms for its Metadata (a bare
//!    Kafka request: the leader, leader epoch, ISR and active controller it knows) and reads
//!    the nodes' log lines, to show the steps between: a new active controller (when the
//!    killed leader was also the active controller), the killed broker fenced, the new leader
//!    in a survivor's metadata, the other survivor following it. From the moment a survivor
//!    names the new leader, a probe sends it a one-record acks=all Produce (again every 5 ms
//!    until one succeeds), which shows when the new leader took writes whatever the writer's
//!    librdkafka knew by then: the time from there to the writer's first write is the
//!    client's. Then the bench starts the killed node again and waits for the ISR to be
//!    full. The table shows each trial, the median and the maximum.
//!    `WEIR_BENCH_FAILOVER_PRODUCER=key=value,...` gives the producer other librdkafka
//!    settings (e.g. `retry.backoff.max.ms=100`); the table names them, and the target is
//!    then not judged.
//!
//! # Target
//!
//! The median failover, kill to first write through the new leader, under 2 s with the
//! default settings (judged with at least 5 trials).
//!
//! The machine's load average is printed before and after: three brokers and the clients
//! share its cores.

#[path = "../common/mod.rs"]
#[allow(
    dead_code,
    reason = "the code both benches share; this one uses part of it"
)]
mod common;

mod cluster;
mod failover;
mod report;
mod wire;
mod writer;

use std::path::PathBuf;
use std::time::Duration;

use cluster::{Cluster, NODES};
use common::broker;
use common::clients::{self, TopicSpec};
use common::{bench_root, env_number, load_average, measure};
use report::{Report, ThroughputPair};

/// The median failover must be under this.
const FAILOVER_TARGET: Duration = Duration::from_secs(2);
/// The failover target is judged on at least this many trials.
const TARGET_TRIALS: usize = 5;

/// The topic of the failover phase.
const TOPIC_FAILOVER: &str = "bench-failover";

/// What a run does, from the environment.
#[derive(Debug)]
struct Settings {
    records_100b: u64,
    records_1kib: u64,
    failover_trials: u32,
    failover_rate: u32,
    /// Where the brokers' and the failover producer's logs are kept, if anywhere.
    logs_dir: Option<PathBuf>,
    /// librdkafka settings of the failover producer besides its defaults and idempotence:
    /// those given, and `debug` contexts.
    failover_producer: Vec<(String, String)>,
}

impl Settings {
    fn from_env() -> Settings {
        let small = |name: &str, default: u32| {
            u32::try_from(env_number(name, default.into()))
                .unwrap_or_else(|_| panic!("{name} fits in 32 bits"))
        };
        Settings {
            records_100b: env_number("WEIR_BENCH_RECORDS_100B", 1_000_000),
            records_1kib: env_number("WEIR_BENCH_RECORDS_1KIB", 200_000),
            failover_trials: small("WEIR_BENCH_FAILOVER_TRIALS", 5),
            failover_rate: small("WEIR_BENCH_FAILOVER_RATE", 1_000),
            // Cargo runs benches in the package's directory, benches/.
            logs_dir: std::env::var_os("WEIR_BENCH_BROKER_LOGS").map(|dir| {
                std::path::absolute(&dir).unwrap_or_else(|e| {
                    panic!(
                        "WEIR_BENCH_BROKER_LOGS={}: {e}",
                        PathBuf::from(&dir).display()
                    )
                })
            }),
            failover_producer: failover_producer(),
        }
    }
}

/// The failover producer's settings from `WEIR_BENCH_FAILOVER_PRODUCER` (`key=value` pairs,
/// separated by commas) and `WEIR_BENCH_RDKAFKA_DEBUG` (its `debug` contexts).
fn failover_producer() -> Vec<(String, String)> {
    let mut settings = Vec::new();
    if let Ok(pairs) = std::env::var("WEIR_BENCH_FAILOVER_PRODUCER") {
        for pair in pairs.split(',').filter(|p| !p.trim().is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or_else(|| {
                panic!("WEIR_BENCH_FAILOVER_PRODUCER: {pair:?} is not key=value")
            });
            settings.push((key.trim().to_string(), value.trim().to_string()));
        }
    }
    if let Ok(contexts) = std::env::var("WEIR_BENCH_RDKAFKA_DEBUG") {
        settings.push(("debug".to_string(), contexts));
    }
    settings
}

fn main() {
    // `cargo bench` passes `--bench`; this bench takes no arguments of its own.
    let settings = Settings::from_env();
    let binary = broker::binary();
    let mut report = Report::new(load_average());

    let mut cluster = Cluster::start(&binary, &bench_root(), settings.logs_dir.as_deref());
    eprintln!(
        "three weir-broker nodes serving Kafka at {}",
        cluster.bootstrap()
    );
    if let Some(dir) = &settings.logs_dir {
        eprintln!("their logs go to {}", dir.display());
    }
    throughput_phase(&cluster, &settings, &mut report);
    report.failover = Some(failover::run(&mut cluster, &settings));
    cluster.stop_all();

    report.load_after = load_average();
    print!("{report}");
}

/// acks=1 to one replica, then acks=all to three, for each record size.
fn throughput_phase(cluster: &Cluster, settings: &Settings, report: &mut Report) {
    let bootstrap = cluster.bootstrap();
    let sizes = [
        ("100b", 100, settings.records_100b, "100 B"),
        ("1kib", 1024, settings.records_1kib, "1 KiB"),
    ];
    let names: Vec<(String, String)> = sizes
        .iter()
        .map(|(tag, ..)| (format!("bench-rf1-{tag}"), format!("bench-rf3-{tag}")))
        .collect();
    let mut topics = Vec::new();
    for (single, replicated) in &names {
        topics.push(TopicSpec::single(single));
        topics.push(TopicSpec {
            name: replicated,
            replication_factor: NODES,
            min_insync_replicas: Some(2),
        });
    }
    clients::create_topics(&bootstrap, &topics);
    for ((_, size, count, label), (single, replicated)) in sizes.into_iter().zip(&names) {
        let value_bytes = size as u64 * count;
        let run = |topic: &str, acks: &str, what: &str| {
            let name = format!("produce {label}, {what}");
            eprintln!("{name}: {count} records");
            let producer = clients::producer(&bootstrap, topic, &[("acks", acks)]);
            measure(&cluster.running(), &name, count, value_bytes, || {
                clients::produce(&producer, topic, size, count);
            })
        };
        let single = run(single, "1", "acks=1, RF1");
        let replicated = run(replicated, "all", "acks=all, RF3");
        report
            .throughput
            .push(ThroughputPair { single, replicated });
    }
}
