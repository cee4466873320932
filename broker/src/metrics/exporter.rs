//! The Prometheus exporter: a recorder for the whole process, and the handle `/metrics`
//! renders from.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets of every `*_seconds` histogram, from half a millisecond (a produce with
/// acks=1 on a local disk) to 30 s (a long-polling fetch, an acks=all produce at its timeout).
const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How often histogram samples are folded into their buckets between scrapes, so memory stays
/// bounded when nobody scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The installed exporter's handle; unset in a process that installed none (tests).
static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Why the exporter could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum ExporterError {
    /// The recorder could not be built or another recorder is installed already.
    #[error("cannot install the Prometheus metrics recorder: {0}")]
    Install(#[source] metrics_exporter_prometheus::BuildError),
    /// The upkeep thread could not be started.
    #[error("cannot start the metrics upkeep thread: {0}")]
    Upkeep(#[source] std::io::Error),
}

/// Installs the Prometheus recorder as the process's `metrics` recorder, so that every node
/// in the process exports its metrics on `/metrics`. For binaries: call it once, before
/// starting a node; a second call fails, as the process has a recorder already.
pub fn install_exporter() -> Result<(), ExporterError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".to_string()),
            LATENCY_BUCKETS_SECONDS,
        )
        .map_err(ExporterError::Install)?
        .install_recorder()
        .map_err(ExporterError::Install)?;
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                upkeep.run_upkeep();
            }
        })
        .map_err(ExporterError::Upkeep)?;
    // The recorder was installed just now, so no handle can be set yet.
    let _first = HANDLE.set(handle);
    Ok(())
}

/// Every metric in Prometheus text format; empty when no exporter is installed.
pub(crate) fn render() -> String {
    HANDLE
        .get()
        .map(PrometheusHandle::render)
        .unwrap_or_default()
}
