//! Metrics and the HTTP admin endpoints: the Prometheus exporter, the names and descriptions
//! of the metrics the front ends and partitions record, and the server of `/metrics`,
//! `/healthz` and `/readyz`.
//!
//! ```text
//!  kafka/, grpc/, partition/, replication/, controller/, group/, storage/
//!        │  counter!/gauge!/histogram! through the `metrics` facade
//!        ▼
//!  the process's recorder ── installed once by the `weir-broker` binary ([`install_exporter`])
//!        │  PrometheusHandle::render
//!        ▼
//!  http::serve ── GET /metrics   Prometheus text (empty when no exporter is installed)
//!                 GET /healthz   200 while the process runs
//!                 GET /readyz    200 when the node can serve, else 503 and why
//! ```
//!
//! Invariants:
//! - The library never installs a recorder: the recorder is global to the process, and tests
//!   run several nodes in one process (some with a `metrics_util` recorder of their own). The
//!   binary installs the exporter; a node without one serves an empty `/metrics`.
//! - Names start with `weir_`, counters end in `_total`, times are in seconds and sizes in
//!   bytes; every metric is described, with its unit, before it is first recorded.
//! - Label values come from bounded sets: API and method names, topic names, and the
//!   per-partition series only up to `metrics_partition_series_max` partitions.

mod exporter;
mod http;
mod partitions;
mod requests;

pub(crate) use exporter::render;
pub use exporter::{ExporterError, install_exporter};
pub(crate) use http::{Health, serve};
pub(crate) use partitions::{PartitionReport, leader_elected};
pub(crate) use requests::{GrpcMetricsLayer, KafkaRequest, records_in, records_out};

/// Registers the descriptions and units of the metrics this module names, once per process.
pub fn describe() {
    requests::describe();
    partitions::describe();
}
