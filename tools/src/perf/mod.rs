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
use hdrhistogram::Histogram;

use self::acks::Acked;
use self::report::Report;

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
    /// With `--protocol kafka`, a librdkafka property for the producer and the consumer
    /// (e.g. `--kafka-config queue.buffering.max.ms=0`, `--kafka-config debug=fetch`);
    /// repeat for more. It overrides the tool's own settings.
    #[arg(long = "kafka-config", value_name = "NAME=VALUE", value_parser = parse_property)]
    kafka_config: Vec<(String, String)>,
}

/// Parses `NAME=VALUE`.
fn parse_property(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("{text:?} is not NAME=VALUE")),
    }
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
        Protocol::Grpc => measure(kind, load, &grpc::Grpc::connect(load, bootstrap).await?).await?,
        Protocol::Kafka => {
            measure(kind, load, &kafka::Kafka::connect(load, bootstrap).await?).await?
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}

/// One protocol's producer and consumer for a load, on a topic that is ready.
trait Driver {
    /// How it goes into reports.
    const PROTOCOL: &'static str;
    /// Where it reads.
    type Reader;

    /// Sends `load.records` records, each value carrying its send time since `origin` (see
    /// [`value`]); answers their latencies from send to acknowledgement.
    async fn produce(
        &self,
        load: &LoadArgs,
        origin: Instant,
        bar: &indicatif::ProgressBar,
        deadline: Instant,
    ) -> anyhow::Result<Acked>;

    /// A reader of every partition of the topic, from the beginning or from the end as it is
    /// now (so that records sent afterwards are all read).
    async fn reader(&self, load: &LoadArgs, from_end: bool) -> anyhow::Result<Self::Reader>;

    /// Reads until `arrivals` has `load.records` records, or fails at `deadline`.
    async fn read(
        &self,
        reader: Self::Reader,
        load: &LoadArgs,
        arrivals: Arrivals,
        deadline: Instant,
    ) -> anyhow::Result<Arrivals>;
}

/// Runs `load` as `kind` says with `driver`.
async fn measure<D: Driver>(kind: Kind, load: &LoadArgs, driver: &D) -> anyhow::Result<Report> {
    let deadline = Instant::now() + load.timeout();
    let report = match kind {
        Kind::Produce => {
            let bar = progress(load, "produced");
            let start = Instant::now();
            let acked = driver.produce(load, start, &bar, deadline).await?;
            bar.finish_and_clear();
            let bytes = load.records * load.record_size as u64;
            Report::new(
                kind,
                D::PROTOCOL,
                load.records,
                bytes,
                start.elapsed(),
                Some(acked.latency),
            )
        }
        Kind::Consume => {
            let reader = driver.reader(load, false).await?;
            let bar = progress(load, "consumed");
            let start = Instant::now();
            let arrivals = Arrivals::new(None, bar.clone());
            let arrivals = driver.read(reader, load, arrivals, deadline).await?;
            bar.finish_and_clear();
            Report::new(
                kind,
                D::PROTOCOL,
                arrivals.records,
                arrivals.bytes,
                start.elapsed(),
                None,
            )
        }
        Kind::EndToEnd => {
            let reader = driver.reader(load, true).await?;
            let bar = progress(load, "arrived");
            let origin = Instant::now();
            let arrivals = Arrivals::new(Some(origin), bar.clone());
            let hidden = indicatif::ProgressBar::hidden();
            let (read, produced) = tokio::join!(
                driver.read(reader, load, arrivals, deadline),
                driver.produce(load, origin, &hidden, deadline)
            );
            produced?;
            let arrivals = read?;
            bar.finish_and_clear();
            let elapsed = origin.elapsed();
            Report::new(
                kind,
                D::PROTOCOL,
                arrivals.records,
                arrivals.bytes,
                elapsed,
                arrivals.latency,
            )
        }
    };
    Ok(report)
}

/// What a reader of the load counts: records, bytes and, end to end, each record's latency
/// from its send time (in its value) to its arrival.
#[derive(Debug)]
struct Arrivals {
    origin: Option<Instant>,
    latency: Option<Histogram<u64>>,
    records: u64,
    bytes: u64,
    bar: indicatif::ProgressBar,
}

impl Arrivals {
    fn new(origin: Option<Instant>, bar: indicatif::ProgressBar) -> Arrivals {
        Arrivals {
            origin,
            latency: origin.map(|_| report::latency_histogram()),
            records: 0,
            bytes: 0,
            bar,
        }
    }

    /// Counts a record whose value is `payload`.
    fn arrived(&mut self, payload: &[u8]) {
        if let (Some(origin), Some(histogram), Some(sent)) =
            (self.origin, self.latency.as_mut(), sent_micros(payload))
        {
            let now = micros_since(origin);
            report::record(histogram, Duration::from_micros(now.saturating_sub(sent)));
        }
        self.records += 1;
        self.bytes += payload.len() as u64;
        self.bar.inc(1);
    }

    /// Whether every record of `load` arrived.
    fn complete(&self, load: &LoadArgs) -> bool {
        self.records >= load.records
    }

    /// The error of a read that ran out of time.
    fn timed_out(&self, load: &LoadArgs) -> anyhow::Error {
        anyhow::anyhow!(
            "timed out after {} of {} records: is the topic shorter? (--timeout-secs)",
            self.records,
            load.records
        )
    }
}

/// Microseconds since `origin`.
fn micros_since(origin: Instant) -> u64 {
    u64::try_from(origin.elapsed().as_micros()).unwrap_or(u64::MAX)
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
