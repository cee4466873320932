//! What the whole-system benches (`data_path`, `replication`) share: `weir-broker` child
//! processes, their CPU time from `/proc`, the librdkafka producer, the throughput rows of
//! their tables, and the environment they read.
//!
//! Each bench includes this directory as its module `common` (`#[path]`), so each compiles
//! its own copy and uses part of it.

pub(crate) mod broker;
pub(crate) mod clients;
pub(crate) mod cpu;
pub(crate) mod table;

use std::path::PathBuf;
use std::time::Instant;

use broker::Broker;
use cpu::CpuTimes;
use table::ThroughputRow;

/// A positive whole number from the environment variable `name`, or `default`.
pub(crate) fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Err(_) => default,
        Ok(text) => match text.trim().replace('_', "").parse::<u64>() {
            Ok(n) if n > 0 => n,
            _ => panic!("{name}={text:?}: give a whole number above 0, or unset it"),
        },
    }
}

/// The 1, 5 and 15 minute load averages and the number of CPUs, as `uptime` shows them.
pub(crate) fn load_average() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let averages: Vec<&str> = load.split_whitespace().take(3).collect();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("load average {} on {cpus} CPUs", averages.join(", "))
}

/// Where brokers' data directories go: `WEIR_BENCH_DIR`, or the target directory's `tmp/`.
pub(crate) fn bench_root() -> PathBuf {
    let root = std::env::var_os("WEIR_BENCH_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")), PathBuf::from);
    std::fs::create_dir_all(&root).expect("create the benchmark directory");
    root
}

/// Runs `phase` and returns its row: wall time, the CPU time all `brokers` used meanwhile
/// (summed), and this process's (the clients', with any child it waited for).
pub(crate) fn measure(
    brokers: &[&Broker],
    name: &str,
    records: u64,
    value_bytes: u64,
    phase: impl FnOnce(),
) -> ThroughputRow {
    let brokers_before: Vec<_> = brokers.iter().map(|b| b.cpu()).collect();
    let clients_before = CpuTimes::of(None);
    let start = Instant::now();
    phase();
    let wall = start.elapsed();
    let clients = CpuTimes::of(None).since(&clients_before);
    let broker_cpu = brokers
        .iter()
        .zip(&brokers_before)
        .map(|(broker, before)| broker.cpu().since(before))
        .sum();
    ThroughputRow {
        name: name.to_string(),
        records,
        value_bytes,
        wall,
        broker_cpu,
        client_cpu: clients.own + clients.waited_children,
    }
}
