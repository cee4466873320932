//! The result of a load: throughput and a latency histogram.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::Kind;

/// Throughput and latency of one load.
#[derive(Debug)]
pub(crate) struct Report {
    kind: Kind,
    protocol: &'static str,
    records: u64,
    bytes: u64,
    elapsed: Duration,
    /// Latencies in microseconds: send to ack (produce) or send to arrival (e2e).
    latency: Option<Histogram<u64>>,
}

/// A histogram of latencies in microseconds, from 1 µs to an hour, 3 significant digits.
pub(crate) fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("the bounds are valid")
}

/// Records `latency` in `histogram` (clamped to its range).
pub(crate) fn record(histogram: &mut Histogram<u64>, latency: Duration) {
    let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    histogram.saturating_record(micros.max(1));
}

impl Report {
    pub(crate) fn new(
        kind: Kind,
        protocol: &'static str,
        records: u64,
        bytes: u64,
        elapsed: Duration,
        latency: Option<Histogram<u64>>,
    ) -> Report {
        Report {
            kind,
            protocol,
            records,
            bytes,
            elapsed,
            latency,
        }
    }

    fn records_per_sec(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / 1_000_000.0 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The percentiles reported, by name, in milliseconds.
    fn percentiles(&self) -> Vec<(&'static str, f64)> {
        let Some(h) = &self.latency else {
            return Vec::new();
        };
        let ms = |micros: u64| micros as f64 / 1000.0;
        vec![
            ("p50", ms(h.value_at_quantile(0.50))),
            ("p95", ms(h.value_at_quantile(0.95))),
            ("p99", ms(h.value_at_quantile(0.99))),
            ("p99.9", ms(h.value_at_quantile(0.999))),
            ("max", ms(h.max())),
        ]
    }

    /// For people.
    pub(crate) fn to_text(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "{} over {}: {} records, {:.1} MB in {:.2} s",
            self.kind.name(),
            self.protocol,
            self.records,
            self.bytes as f64 / 1_000_000.0,
            self.elapsed.as_secs_f64()
        );
        let _ = writeln!(
            text,
            "throughput: {:.0} records/s, {:.2} MB/s",
            self.records_per_sec(),
            self.mb_per_sec()
        );
        let percentiles = self.percentiles();
        if !percentiles.is_empty() {
            let what = match self.kind {
                Kind::EndToEnd => "latency (send to arrival, ms)",
                _ => "latency (send to ack, ms)",
            };
            let parts: Vec<String> = percentiles
                .iter()
                .map(|(name, value)| format!("{name} {value:.2}"))
                .collect();
            let _ = writeln!(text, "{what}: {}", parts.join(", "));
        }
        text
    }

    /// For scripts.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let mut json = serde_json::json!({
            "kind": self.kind.name(),
            "protocol": self.protocol,
            "records": self.records,
            "bytes": self.bytes,
            "elapsed_secs": self.elapsed.as_secs_f64(),
            "records_per_sec": self.records_per_sec(),
            "mb_per_sec": self.mb_per_sec(),
        });
        if self.latency.is_some() {
            let latency: serde_json::Map<String, serde_json::Value> = self
                .percentiles()
                .into_iter()
                .map(|(name, ms)| (name.to_string(), serde_json::json!(ms)))
                .collect();
            json["latency_ms"] = serde_json::Value::Object(latency);
        }
        json
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_throughput_and_percentiles() {
        let mut h = latency_histogram();
        for ms in 1..=100 {
            record(&mut h, Duration::from_millis(ms));
        }
        let report = Report::new(
            Kind::Produce,
            "grpc",
            1000,
            2_000_000,
            Duration::from_secs(2),
            Some(h),
        );
        let json = report.to_json();
        assert_eq!(json["records_per_sec"], 500.0);
        assert_eq!(json["mb_per_sec"], 1.0);
        let p50 = json["latency_ms"]["p50"].as_f64().unwrap();
        assert!((49.9..=50.1).contains(&p50), "p50 {p50}");
        let max = json["latency_ms"]["max"].as_f64().unwrap();
        assert!((99.9..=100.1).contains(&max), "max {max}");
        let text = report.to_text();
        assert!(text.contains("500 records/s, 1.00 MB/s"), "{text}");
        assert!(
            text.contains("latency (send to ack, ms): p50 50.0"),
            "{text}"
        );
    }

    #[test]
    fn a_consume_report_has_no_latency() {
        let report = Report::new(
            Kind::Consume,
            "kafka",
            10,
            1000,
            Duration::from_secs(1),
            None,
        );
        assert!(report.to_json().get("latency_ms").is_none());
        assert!(!report.to_text().contains("latency"));
    }
}
