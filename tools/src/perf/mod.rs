//! `weir perf`: load tests that report throughput and latency percentiles.
//!
//! `produce` sends records as fast as the broker takes them (or at `--rate`) and measures each
//! record's latency from `send` to its acknowledgement; `consume` reads a topic from the
//! beginning; `e2e` does both at once and measures each record's latency from `send` to its
//! arrival at the consumer (the value carries the send time). Over `--protocol grpc` the load
//! goes through the Rust client; over `--protocol kafka` through librdkafka and the Kafka wire
//! protocol, so Weir can be compared with any Kafka-compatible broker on the same load.

mod acks;
mod grpc;
mod kafka;
mod report;

use std::time::{Duration, Instant};

use clap::{Args, Subcommand, ValueEnum};

use crate::args::{AcksArg, CompressionArg};

/// Load tests: throughput and latency.
#[derive(Debug, Args)]
pub(crate) struct PerfArgs {
    #[command(subcommand)]
    command: PerfCommand,
}

#[derive(Debug, Subcommand)]
enum PerfCommand {
    /// Produce records and measure the latency from send to acknowledgement.
    Produce(LoadArgs),
    /// Consume a topic from the beginning and measure the throughput.
    Consume(LoadArgs),
    /// Produce and consume at once; measure the latency from send to arrival.
    E2e(LoadArgs),
}

/// Which API carries the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Protocol {
    /// Weir's gRPC API through the Rust client (`--bootstrap` is a gRPC address, port 9093).
    Grpc,
    /// The Kafka wire protocol through librdkafka (`--bootstrap` is a Kafka address, port
    /// 9092): works against any Kafka-compatible broker.
    Kafka,
}

/// The load.
#[derive(Debug, Clone, Args)]
pub(crate) struct LoadArgs {
    /// The topic; created with `--partitions` if it does not exist.
    #[arg(long, default_value = "weir-perf")]
    topic: String,
    /// How many records.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Bytes per record value.
    #[arg(long, default_value_t = 100)]
    record_size: usize,
    /// Records per second to aim for; 0 sends as fast as the broker takes them.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Which replicas acknowledge each record.
    #[arg(long, value_enum, default_value_t = AcksArg::All)]
    acks: AcksArg,
    /// How the producer compresses its batches.
    #[arg(long, value_enum, default_value_t = CompressionArg::None)]
    compression: CompressionArg,
    /// Which API carries the load.
    #[arg(long, value_enum, default_value_t = Protocol::Grpc)]
    protocol: Protocol,
    /// Partitions of the topic when this creates it.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// How long the producer waits to fill a batch, in milliseconds.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// The largest batch per partition, in bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    batch_size: usize,
    /// Give up when the load has not finished after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
    /// No progress bar (it goes to standard error).
    #[arg(long)]
    quiet: bool,
}

impl LoadArgs {
    fn validate(&self) -> anyhow::Result<()> {
        if self.records == 0 {
            anyhow::bail!("--records must be at least 1");
        }
        if self.record_size < 8 {
            anyhow::bail!(
                "--record-size must be at least 8 bytes (e2e writes the send time in them)"
            );
        }
        if self.partitions < 1 {
            anyhow::bail!("--partitions must be at least 1");
        }
        Ok(())
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }
}

/// Runs `weir perf`, printing the report as a table or JSON.
pub(crate) async fn run(args: &PerfArgs, bootstrap: &str, json: bool) -> anyhow::Result<()> {
    let (kind, load) = match &args.command {
        PerfCommand::Produce(load) => (Kind::Produce, load),
        PerfCommand::Consume(load) => (Kind::Consume, load),
        PerfCommand::E2e(load) => (Kind::EndToEnd, load),
    };
    load.validate()?;
    let report = match load.protocol {
        Protocol::Grpc => grpc::run(kind, load, bootstrap).await?,
        Protocol::Kafka => kafka::run(kind, load, bootstrap).await?,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}

/// What a load measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Produce,
    Consume,
    EndToEnd,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Produce => "produce",
            Kind::Consume => "consume",
            Kind::EndToEnd => "e2e",
        }
    }
}

/// Paces a producer at `rate` records per second (0: no pacing).
#[derive(Debug)]
struct Pacer {
    start: Instant,
    rate: u64,
}

impl Pacer {
    fn new(rate: u64) -> Pacer {
        Pacer {
            start: Instant::now(),
            rate,
        }
    }

    /// Waits until record `sent` is due.
    async fn wait(&self, sent: u64) {
        if self.rate == 0 {
            return;
        }
        let due = self.start + Duration::from_secs_f64(sent as f64 / self.rate as f64);
        let now = Instant::now();
        if due > now {
            tokio::time::sleep(due - now).await;
        }
    }
}

/// A record value of `size` bytes whose first 8 hold `sent_micros` (the time since the load
/// began), for the end-to-end latency.
fn value(size: usize, sent_micros: u64) -> Vec<u8> {
    let mut value = vec![b'w'; size];
    value[..8].copy_from_slice(&sent_micros.to_be_bytes());
    value
}

/// The send time a record's value carries, in microseconds since the load began.
fn sent_micros(value: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(value.get(..8)?.try_into().ok()?))
}

/// A progress bar on standard error, or nothing with `--quiet`.
fn progress(load: &LoadArgs, what: &str) -> indicatif::ProgressBar {
    if load.quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(load.records);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:>9} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, eta {eta})",
        )
        .expect("the template is valid"),
    );
    bar.set_message(what.to_string());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_carry_their_send_time() {
        let v = value(100, 123_456_789);
        assert_eq!(v.len(), 100);
        assert_eq!(sent_micros(&v), Some(123_456_789));
        assert_eq!(sent_micros(&v[..7]), None);
    }

    #[tokio::test]
    async fn the_pacer_spaces_records_at_the_rate() {
        let pacer = Pacer::new(1000);
        pacer.wait(50).await;
        // Record 50 at 1000/s is due 50 ms after the start.
        assert!(pacer.start.elapsed() >= Duration::from_millis(50));
        let unpaced = Pacer::new(0);
        unpaced.wait(1_000_000).await;
        assert!(unpaced.start.elapsed() < Duration::from_secs(1));
    }
}
