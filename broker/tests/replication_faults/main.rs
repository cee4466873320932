//! Replication through faults, with three real `weir-broker` processes (all three controller
//! voters and brokers) on loopback.
//!
//! An idempotent librdkafka producer (acks=all) writes numbered records to every partition of a
//! topic with replication factor 3 and `min.insync.replicas=2`, without pause, while a consumer
//! reads every partition; meanwhile, for a minute, the leader of one partition after another is
//! killed with SIGKILL and started again on its data directory, or paused with SIGSTOP for
//! twice the broker session timeout (so the controller fences it and another replica takes
//! over) and resumed with SIGCONT (so it finds it no longer leads and truncates what was never
//! committed). Between two faults every partition's ISR is all three brokers again, so only a
//! minority is ever down.
//!
//! Afterwards the brokers stop cleanly and every replica's log is opened with
//! `storage::Log` and checked (DESIGN section 11): every acknowledged record is in every
//! replica exactly once, at the offset it was acknowledged at, in the order it was sent; no
//! record is there twice; the replicas' logs are identical, batch for batch; and every record
//! the consumer read is in the final log at the offset it was read at (no consumer saw a record
//! that later disappeared), with no offset skipped.
//!
//! The test prints the records acknowledged, the sends librdkafka retried, the longest time
//! without an acknowledged write, and the faults injected. When it fails, the brokers' data
//! directories and log files are kept, and their paths printed.

#[path = "../common/mod.rs"]
mod common;

mod check;
mod clients;
mod cluster;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use check::Replica;
use clients::{Deliveries, Reads};
use cluster::Cluster;

const TOPIC: &str = "faults";
const PARTITIONS: i32 = 4;
const NODES: i32 = 3;
/// The cluster's `broker_session_timeout_ms`.
const SESSION_TIMEOUT: Duration = Duration::from_millis(3000);
/// The cluster's `broker_heartbeat_interval_ms`.
const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);
/// Faults are injected for at least this long.
const FAULT_TIME: Duration = Duration::from_secs(60);
/// How long a killed broker stays down.
const DOWN_TIME: Duration = Duration::from_secs(3);
/// Records sent per second, over all partitions.
const SEND_RATE: u64 = 2_000;
/// Small segments, so that logs roll (and do not preallocate a GiB each).
const SEGMENT_BYTES: u64 = 4 << 20;
/// The bound on each wait: a start, a full ISR, a flush, the consumer catching up.
const WAIT: Duration = Duration::from_secs(60);

/// Kills or pauses the leader of one partition after another for [`FAULT_TIME`], waiting for
/// full ISRs after each; returns a line per fault.
fn inject_faults(cluster: &mut Cluster, runtime: &tokio::runtime::Runtime) -> Vec<String> {
    let start = Instant::now();
    let mut faults = Vec::new();
    let mut round = 0;
    while start.elapsed() < FAULT_TIME {
        let partition = round % PARTITIONS;
        let leader = cluster.leader_of(runtime, partition);
        let at = start.elapsed().as_secs_f64();
        let what = if round % 2 == 0 { "SIGKILL" } else { "SIGSTOP" };
        eprintln!(
            "{}: {what} node {leader}, leading partition {partition}",
            now()
        );
        if round % 2 == 0 {
            cluster.kill(leader);
            std::thread::sleep(DOWN_TIME);
            cluster.restart(leader);
            faults.push(format!(
                "{at:5.1} s: SIGKILL node {leader} (leading partition {partition}), \
                 restarted {} s later",
                DOWN_TIME.as_secs()
            ));
            eprintln!("{}: {}", now(), faults.last().unwrap());
        } else {
            cluster.pause(leader);
            std::thread::sleep(2 * SESSION_TIMEOUT);
            // By now the controller has fenced it and the others agree on a new leader.
            let new_leader = cluster.leader_of(runtime, partition);
            assert_ne!(
                new_leader,
                leader,
                "node {leader} was paused for {:?} and still leads partition {partition}",
                2 * SESSION_TIMEOUT
            );
            cluster.resume(leader);
            faults.push(format!(
                "{at:5.1} s: SIGSTOP node {leader} (leading partition {partition}) for {} s, \
                 node {new_leader} took over; SIGCONT",
                (2 * SESSION_TIMEOUT).as_secs()
            ));
            eprintln!("{}: {}", now(), faults.last().unwrap());
        }
        cluster.wait_full_isr(runtime, &format!("after fault {}", round + 1));
        round += 1;
    }
    faults
}

#[test]
fn acknowledged_records_survive_killed_and_paused_leaders() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut cluster = Cluster::start();
    let bootstrap = cluster.bootstrap();
    cluster::create_topic(&bootstrap, &runtime);
    cluster.wait_full_isr(&runtime, "the new topic");

    let run = run_workload(&mut cluster, &runtime);
    cluster.stop_all();

    let acked = run.deliveries.acked.lock().unwrap().clone();
    let mut ends = Vec::new();
    for partition in 0..PARTITIONS {
        let replicas: Vec<Replica> = cluster
            .nodes
            .iter()
            .map(|node| Replica::open(node.id, &node.data_dir(), partition))
            .collect();
        check::identical(partition, &replicas);
        for replica in &replicas {
            check::acknowledged(partition, replica, &acked);
            check::reads(partition, replica, &run.reads);
        }
        ends.push(replicas.iter().map(Replica::end_offset).collect::<Vec<_>>());
    }
    report(&run, &ends);
    // What the brokers say they did: how often a replica cut a tail its leader did not have;
    // never below its high watermark (only an unclean election, off here, makes it do so).
    let logs: Vec<String> = cluster
        .nodes
        .iter()
        .map(|node| std::fs::read_to_string(node.log_file()).unwrap_or_default())
        .collect();
    let count = |text: &str| -> usize { logs.iter().map(|log| log.matches(text).count()).sum() };
    println!(
        "divergent tails truncated (from the brokers' logs): {}",
        count("truncated a divergent tail")
    );
    assert_eq!(
        count("truncating below the high watermark"),
        0,
        "a replica truncated committed records"
    );
    assert!(!acked.is_empty(), "some records were acknowledged");
    assert!(run.producer_error.is_none(), "{:?}", run.producer_error);
}

/// What the clients saw while the faults were injected.
struct Run {
    faults: Vec<String>,
    sent: Vec<u64>,
    producer_error: Option<String>,
    deliveries: Arc<Deliveries>,
    reads: Reads,
    consumer_errors: u64,
}

/// Produces and consumes while faults are injected; then stops producing, waits for full
/// ISRs and for the consumer to read every partition to its high watermark.
fn run_workload(cluster: &mut Cluster, runtime: &tokio::runtime::Runtime) -> Run {
    let bootstrap = cluster.bootstrap();
    let deliveries = Arc::new(Deliveries::default());
    let stop_producing = Arc::new(AtomicBool::new(false));
    let stop_consuming = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(Mutex::new(Reads::new()));
    let consumer = clients::consume(
        bootstrap.clone(),
        Arc::clone(&stop_consuming),
        Arc::clone(&reads),
    );
    let producer = clients::produce(
        bootstrap.clone(),
        Arc::clone(&deliveries),
        Arc::clone(&stop_producing),
    );
    std::thread::sleep(Duration::from_secs(2));

    let faults = inject_faults(cluster, runtime);

    std::thread::sleep(Duration::from_secs(1));
    stop_producing.store(true, Ordering::Relaxed);
    let produced = producer.join().expect("the producer thread");
    if let Some(error) = &produced.error {
        eprintln!("{}: {error}", now());
        for node in cluster.answering() {
            let view = runtime.block_on(cluster::describe(&node.ports.kafka_addr()));
            eprintln!("node {}'s view: {view:?}", node.id);
        }
    }
    cluster.wait_full_isr(runtime, "after the faults");
    clients::wait_consumed(&reads, &cluster::high_watermarks(&bootstrap));
    stop_consuming.store(true, Ordering::Relaxed);
    let consumer_errors = consumer.join().expect("the consumer thread");
    let reads = reads.lock().unwrap().clone();
    Run {
        faults,
        sent: produced.sent,
        producer_error: produced.error,
        deliveries,
        reads,
        consumer_errors,
    }
}

/// Prints what the run did and saw.
fn report(run: &Run, ends: &[Vec<i64>]) {
    println!("faults injected: {}", run.faults.len());
    for fault in &run.faults {
        println!("  {fault}");
    }
    let sent: u64 = run.sent.iter().sum();
    println!("records sent: {sent} ({:?} per partition)", run.sent);
    let deliveries = &run.deliveries;
    println!(
        "records acknowledged: {}",
        deliveries.acked.lock().unwrap().len()
    );
    let failed = deliveries.failed.lock().unwrap();
    println!(
        "records failed: {} (first: {:?})",
        failed.len(),
        failed.first()
    );
    let [retried, send_errors, timeouts] = deliveries.request_counts();
    let transmitted: u64 = deliveries.transmitted.lock().unwrap().values().sum();
    println!(
        "records sent again: {} ({transmitted} records transmitted in produce requests); \
         produce requests retried: {retried}, failed to send: {send_errors}, timed out: \
         {timeouts} (librdkafka's txretries, txerrs, req_timeouts); client errors reported: {}",
        transmitted.saturating_sub(sent),
        deliveries.client_errors.load(Ordering::Relaxed)
    );
    println!(
        "longest window with no acknowledged write: {:.2} s",
        deliveries.longest_gap.lock().unwrap().as_secs_f64()
    );
    println!(
        "records read by the consumer: {} ({} errors); log ends per partition and node: \
         {ends:?}",
        run.reads.len(),
        run.consumer_errors
    );
}

/// The time now as the brokers' log lines show it (UTC), to find a moment in their logs.
fn now() -> String {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let secs = since_epoch.as_secs();
    let (days, in_day) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3600,
        in_day / 60 % 60,
        in_day % 60,
        since_epoch.subsec_millis()
    )
}
