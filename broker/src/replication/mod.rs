//! Replication between brokers (DESIGN section 7): followers copy their leaders' logs over
//! the internal gRPC API, leaders track them and keep the ISR.
//!
//! - `service.rs`: the leader's side, the `Replication` service followers fetch from.
//! - `fetcher.rs`: the follower's side, one fetch session per leader broker.
//! - `truncation.rs`: where a new follower's log stops agreeing with its leader's.
//! - `isr.rs`: the leader's ISR changes, proposed to the controller.
//! - `metrics.rs`: what replication reports.
//!
//! The partition layer holds the state all of these change (`partition/replica.rs`): the
//! followers' progress, the high watermark, and the follower's appends and truncations.
//!
//! Invariants:
//! - A follower fetches a partition only after settling where its log diverges from the
//!   leader's, and only at the leader epoch the committed metadata gives it.
//! - An ISR change takes effect only once the controller committed it; a leader's proposal
//!   made at stale epochs is refused there.

mod fetcher;
mod isr;
pub(crate) mod metrics;
mod service;
mod truncation;

pub use fetcher::{FetcherConfig, run_fetchers};
pub use isr::run_isr_changes;
pub use service::ReplicationService;

/// Registers replication's metric descriptions.
pub fn describe_metrics() {
    metrics::describe();
}
