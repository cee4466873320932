//! The printed table: throughput with and without replication and their ratio, then each
//! failover trial, the median and the maximum, and the target.

use std::fmt;
use std::time::Duration;

use crate::common::table::{ThroughputRow, thousands};
use crate::failover::{Failover, Trial};
use crate::{FAILOVER_TARGET, TARGET_TRIALS};

/// acks=1 to a single replica, then acks=all to three, of one record size.
#[derive(Debug, Clone)]
pub(crate) struct ThroughputPair {
    pub(crate) single: ThroughputRow,
    pub(crate) replicated: ThroughputRow,
}

/// Everything a run measured.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) load_before: String,
    pub(crate) load_after: String,
    pub(crate) throughput: Vec<ThroughputPair>,
    pub(crate) failover: Option<Failover>,
}

impl Report {
    pub(crate) fn new(load_before: String) -> Report {
        Report {
            load_before,
            load_after: String::new(),
            throughput: Vec::new(),
            failover: None,
        }
    }

    fn write_throughput(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<36} {:>10} {:>8} {:>11} {:>9} {:>9} {:>9} {:>9}",
            "throughput",
            "records",
            "wall s",
            "records/s",
            "MB/s",
            "brokers s",
            "s/M rec",
            "client s"
        )?;
        for pair in &self.throughput {
            for row in [&pair.single, &pair.replicated] {
                writeln!(
                    f,
                    "{:<36} {:>10} {:>8.3} {:>11} {:>9.1} {:>9.3} {:>9.3} {:>9.3}",
                    row.name,
                    thousands(row.records),
                    row.wall.as_secs_f64(),
                    thousands(row.records_per_sec().round() as u64),
                    row.mb_per_sec(),
                    row.broker_cpu.as_secs_f64(),
                    row.broker_cpu_per_million(),
                    row.client_cpu.as_secs_f64(),
                )?;
            }
            let (single, replicated) = (&pair.single, &pair.replicated);
            writeln!(
                f,
                "{:<36} {:>10} {:>8} {:>10.3}x {:>8.3}x {:>9} {:>8.3}x",
                "  acks=all RF3 / acks=1 RF1",
                "",
                "",
                replicated.records_per_sec() / single.records_per_sec(),
                replicated.mb_per_sec() / single.mb_per_sec(),
                "",
                replicated.broker_cpu_per_million() / single.broker_cpu_per_million(),
            )?;
        }
        Ok(())
    }

    fn write_failover(&self, f: &mut fmt::Formatter<'_>, failover: &Failover) -> fmt::Result {
        writeln!(
            f,
            "leader failover: SIGKILL the leader of an RF3 partition (min.insync.replicas=2) while an \
             idempotent producer writes {} records/s{}",
            thousands(u64::from(failover.rate)),
            producer_settings(failover)
        )?;
        writeln!(
            f,
            "  ms after the kill: ctrl: a survivor names a new active controller (if the leader \
             was it);"
        )?;
        writeln!(
            f,
            "  fenced: the controller logs the fencing; metadata: a survivor names the new leader;"
        )?;
        writeln!(
            f,
            "  follows: the other survivor logs following it; probe: a one-record acks=all Produce \
             sent straight to the new leader"
        )?;
        writeln!(
            f,
            "  (every 5 ms once named) is acknowledged; write: the first record the writer sent \
             after the kill is acknowledged"
        )?;
        writeln!(
            f,
            "{:<6} {:>6} {:>6} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>10}",
            "trial",
            "killed",
            "leader",
            "ctrl?",
            "ctrl",
            "fenced",
            "metadata",
            "follows",
            "probe",
            "write",
            "md->write",
            "rejoined s"
        )?;
        let ms = |d: Option<Duration>| d.map_or("-".to_string(), |d| d.as_millis().to_string());
        for (number, trial) in failover.trials.iter().enumerate() {
            writeln!(
                f,
                "{:<6} {:>6} {:>6} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9} {:>10.1}",
                number + 1,
                trial.killed,
                trial.new_leader,
                if trial.killed_controller { "yes" } else { "no" },
                ms(trial.new_controller),
                ms(trial.fenced),
                ms(Some(trial.leader_visible)),
                ms(trial.following),
                ms(trial.probe),
                ms(Some(trial.first_write)),
                ms(Some(trial.first_write.saturating_sub(trial.leader_visible))),
                trial.rejoined.as_secs_f64(),
            )?;
        }
        let column = |pick: &dyn Fn(&Trial) -> Option<Duration>| -> Vec<Duration> {
            failover.trials.iter().filter_map(pick).collect()
        };
        let columns = [
            column(&|t| t.new_controller),
            column(&|t| t.fenced),
            column(&|t| Some(t.leader_visible)),
            column(&|t| t.following),
            column(&|t| t.probe),
            column(&|t| Some(t.first_write)),
            column(&|t| Some(t.first_write.saturating_sub(t.leader_visible))),
        ];
        for (label, statistic) in [
            ("median", median as fn(&[Duration]) -> Option<Duration>),
            ("max", |v: &[Duration]| v.iter().max().copied()),
        ] {
            write!(f, "{label:<6} {:>6} {:>6} {:>7}", "", "", "")?;
            for (i, values) in columns.iter().enumerate() {
                let width = match i {
                    0 => 7,
                    6 => 9,
                    _ => 8,
                };
                write!(f, " {:>width$}", ms(statistic(values)))?;
            }
            writeln!(f)?;
        }
        writeln!(
            f,
            "records written: {}, every one acknowledged, none failed",
            thousands(failover.records)
        )
    }

    fn write_targets(&self, f: &mut fmt::Formatter<'_>, failover: &Failover) -> fmt::Result {
        writeln!(f, "targets")?;
        let writes: Vec<Duration> = failover.trials.iter().map(|t| t.first_write).collect();
        let Some(median) = median(&writes) else {
            return Ok(());
        };
        let tuned = failover
            .producer_settings
            .iter()
            .any(|(key, _)| key != "debug");
        let verdict = match (
            failover.trials.len() >= TARGET_TRIALS,
            median < FAILOVER_TARGET,
        ) {
            _ if tuned => "not judged (the producer's settings are not librdkafka's defaults)",
            (false, _) => "not judged (run at least 5 trials)",
            (true, true) => "met",
            (true, false) => "MISSED",
        };
        let controllers = failover
            .trials
            .iter()
            .filter(|t| t.killed_controller)
            .count();
        writeln!(
            f,
            "  failover, kill to first write through the new leader, median: {} ms (target < {} \
             ms): {verdict}",
            median.as_millis(),
            FAILOVER_TARGET.as_millis()
        )?;
        writeln!(
            f,
            "  ({controllers} of the {} trials killed the active controller too)",
            failover.trials.len()
        )
    }
}

/// The failover producer's settings other than its defaults, as the table names them.
fn producer_settings(failover: &Failover) -> String {
    let set: Vec<String> = failover
        .producer_settings
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    if set.is_empty() {
        String::new()
    } else {
        format!(" (with {})", set.join(", "))
    }
}

/// The median (the mean of the middle two of an even count), or `None` for no values.
fn median(values: &[Duration]) -> Option<Duration> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2),
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f)?;
        writeln!(
            f,
            "Weir replication: three weir-broker processes on 127.0.0.1, every one a controller \
             voter; defaults but 256 MiB segments"
        )?;
        writeln!(
            f,
            "  MB/s: 10^6 bytes of record values a second; brokers s: CPU seconds of all three \
             broker processes"
        )?;
        writeln!(
            f,
            "  s/M rec: brokers s per million records; client s: CPU seconds of the bench \
             process (librdkafka)"
        )?;
        writeln!(f, "before: {}", self.load_before)?;
        writeln!(f, "after:  {}", self.load_after)?;
        writeln!(f)?;
        if !self.throughput.is_empty() {
            self.write_throughput(f)?;
            writeln!(f)?;
        }
        if let Some(failover) = &self.failover {
            self.write_failover(f, failover)?;
            writeln!(f)?;
            self.write_targets(f, failover)?;
        }
        Ok(())
    }
}
