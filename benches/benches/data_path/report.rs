//! The printed table: each phase's figures, its ratio to the loopback baselines, and the
//! targets.

use std::fmt;

use hdrhistogram::Histogram;

use crate::common::table::{ThroughputRow, thousands};
use crate::{KCAT_CPU_TARGET_SECS, P50_TARGET_MS, P99_TARGET_MS, TARGET_RATE, TARGET_RECORDS};

/// One latency distribution, in microseconds.
#[derive(Debug)]
pub(crate) struct LatencyRow {
    name: String,
    count: u64,
    p50: u64,
    p99: u64,
    p999: u64,
    max: u64,
    /// For a broker phase: its CPU figures and the records sent (warm-up included).
    broker: Option<(ThroughputRow, u64)>,
}

impl LatencyRow {
    pub(crate) fn new(
        name: &str,
        latency: &Histogram<u64>,
        broker: Option<(ThroughputRow, u64)>,
    ) -> LatencyRow {
        LatencyRow {
            name: name.to_string(),
            count: latency.len(),
            p50: latency.value_at_quantile(0.5),
            p99: latency.value_at_quantile(0.99),
            p999: latency.value_at_quantile(0.999),
            max: latency.max(),
            broker,
        }
    }
}

/// Everything a run measured.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) load_before: String,
    pub(crate) load_after: String,
    /// Raw loopback TCP throughput, bytes per second.
    pub(crate) loopback_bytes_per_sec: f64,
    pub(crate) throughput: Vec<ThroughputRow>,
    pub(crate) latency: Vec<LatencyRow>,
    pub(crate) round_trip: Option<Histogram<u64>>,
    pub(crate) end_to_end: Option<Histogram<u64>>,
    /// If kcat ran: the broker's CPU seconds per million records it sent, and how many it
    /// sent.
    pub(crate) kcat: Option<(f64, u64)>,
    /// The end-to-end phase's records per second.
    pub(crate) end_to_end_rate: u32,
    pub(crate) notes: Vec<String>,
}

impl Report {
    pub(crate) fn new(load_before: String) -> Report {
        Report {
            load_before,
            load_after: String::new(),
            loopback_bytes_per_sec: 0.0,
            throughput: Vec::new(),
            latency: Vec::new(),
            round_trip: None,
            end_to_end: None,
            kcat: None,
            end_to_end_rate: 0,
            notes: Vec::new(),
        }
    }

    fn write_throughput(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<36} {:>10} {:>8} {:>11} {:>9} {:>8} {:>9} {:>9} {:>9}",
            "throughput",
            "records",
            "wall s",
            "records/s",
            "MB/s",
            "vs loop",
            "broker s",
            "s/M rec",
            "client s"
        )?;
        let loopback_mb = self.loopback_bytes_per_sec / 1e6;
        for row in &self.throughput {
            writeln!(
                f,
                "{:<36} {:>10} {:>8.3} {:>11} {:>9.1} {:>8.4} {:>9.3} {:>9.3} {:>9.3}",
                row.name,
                thousands(row.records),
                row.wall.as_secs_f64(),
                thousands(row.records_per_sec().round() as u64),
                row.mb_per_sec(),
                row.mb_per_sec() / loopback_mb,
                row.broker_cpu.as_secs_f64(),
                row.broker_cpu_per_million(),
                row.client_cpu.as_secs_f64(),
            )?;
        }
        writeln!(
            f,
            "{:<36} {:>10} {:>8} {:>11} {:>9.1} {:>8.4}",
            "loopback TCP, 1 MiB writes", "-", "-", "-", loopback_mb, 1.0
        )
    }

    fn write_latency(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<36} {:>10} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9}",
            "latency (ms)",
            "count",
            "p50",
            "p99",
            "p99.9",
            "max",
            "broker s",
            "s/M rec",
            "client s"
        )?;
        let ms = |micros: u64| micros as f64 / 1000.0;
        for row in &self.latency {
            write!(
                f,
                "{:<36} {:>10} {:>8.3} {:>8.3} {:>8.3} {:>8.3}",
                row.name,
                thousands(row.count),
                ms(row.p50),
                ms(row.p99),
                ms(row.p999),
                ms(row.max)
            )?;
            if let Some((cpu, sent)) = &row.broker {
                let per_million = cpu.broker_cpu.as_secs_f64() * 1e6 / *sent as f64;
                write!(
                    f,
                    " {:>9.3} {:>9.3} {:>9.3}",
                    cpu.broker_cpu.as_secs_f64(),
                    per_million,
                    cpu.client_cpu.as_secs_f64()
                )?;
            }
            writeln!(f)?;
        }
        if let (Some(e2e), Some(rtt)) = (&self.end_to_end, &self.round_trip) {
            let ratio = |q: f64| e2e.value_at_quantile(q) as f64 / rtt.value_at_quantile(q) as f64;
            writeln!(
                f,
                "{:<36} {:>10} {:>7.1}x {:>7.1}x {:>7.1}x {:>7.1}x",
                "end to end / loopback round trip",
                "",
                ratio(0.5),
                ratio(0.99),
                ratio(0.999),
                e2e.max() as f64 / rtt.max() as f64
            )?;
        }
        Ok(())
    }

    fn write_targets(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "targets")?;
        // A target is judged only on a run of its own size: fixed costs weigh more in a
        // shorter run, and latency depends on the rate.
        let verdict = |met: bool, judged: bool| match (judged, met) {
            (false, _) => "not judged (run with the default counts and rate)",
            (true, true) => "met",
            (true, false) => "MISSED",
        };
        if let Some((per_million, records)) = self.kcat {
            writeln!(
                f,
                "  broker CPU per million 100 B records from kcat: {per_million:.3} s \
                 (target <= {KCAT_CPU_TARGET_SECS}): {}",
                verdict(
                    per_million <= KCAT_CPU_TARGET_SECS,
                    records >= TARGET_RECORDS
                )
            )?;
        }
        if let Some(e2e) = &self.end_to_end {
            for (label, quantile, target) in
                [("p50", 0.5, P50_TARGET_MS), ("p99", 0.99, P99_TARGET_MS)]
            {
                let value = e2e.value_at_quantile(quantile) as f64 / 1000.0;
                writeln!(
                    f,
                    "  end to end {label}: {value:.3} ms (target < {target} ms): {}",
                    verdict(value < target, self.end_to_end_rate == TARGET_RATE)
                )?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f)?;
        writeln!(f, "Weir data path, one node")?;
        writeln!(
            f,
            "  MB/s: 10^6 bytes of record values a second; vs loop: over loopback TCP's"
        )?;
        writeln!(
            f,
            "  broker s: CPU seconds of the broker process; s/M rec: per million records"
        )?;
        writeln!(
            f,
            "  client s: CPU seconds of the clients (librdkafka in the bench, kcat)"
        )?;
        writeln!(f, "before: {}", self.load_before)?;
        writeln!(f, "after:  {}", self.load_after)?;
        writeln!(f)?;
        self.write_throughput(f)?;
        writeln!(f)?;
        self.write_latency(f)?;
        writeln!(f)?;
        self.write_targets(f)?;
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        Ok(())
    }
}
