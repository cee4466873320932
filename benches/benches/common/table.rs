//! What the benches' tables share: a throughput phase's figures, and numbers with their
//! thousands separated.

use std::time::Duration;

/// One throughput phase.
#[derive(Debug, Clone)]
pub(crate) struct ThroughputRow {
    pub(crate) name: String,
    pub(crate) records: u64,
    /// Bytes of record values moved.
    pub(crate) value_bytes: u64,
    pub(crate) wall: Duration,
    /// CPU time of the broker processes during the phase, summed.
    pub(crate) broker_cpu: Duration,
    /// CPU time of the clients (this process and kcat) during the phase.
    pub(crate) client_cpu: Duration,
}

impl ThroughputRow {
    pub(crate) fn records_per_sec(&self) -> f64 {
        self.records as f64 / self.wall.as_secs_f64()
    }

    pub(crate) fn mb_per_sec(&self) -> f64 {
        self.value_bytes as f64 / 1e6 / self.wall.as_secs_f64()
    }

    /// Broker CPU seconds per million records.
    pub(crate) fn broker_cpu_per_million(&self) -> f64 {
        self.broker_cpu.as_secs_f64() * 1e6 / self.records as f64
    }
}

/// `n` with thousands separated by commas.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}
