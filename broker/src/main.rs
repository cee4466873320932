//! `weir-broker`: runs a Weir node.
//!
//! The node opens (and after an unclean stop, recovers) every partition log in its data
//! directory, joins the controller quorum (as a voter if it is in the voter list, otherwise as
//! a learner) on its internal listener, registers as a broker and heartbeats (unless its
//! `process_roles` leave out broker), serves the Kafka protocol, and shuts down cleanly on
//! SIGINT or SIGTERM. It exports its metrics in Prometheus format on `--http-addr`
//! (`/metrics`, beside `/healthz` and `/readyz`). The wiring is `weir_broker::server`.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use weir_broker::clock::SystemClock;
use weir_broker::config::{BrokerArgs, NodeConfig};
use weir_broker::server::Node;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        // Logs are diagnostics: stderr, beside the error a failed start prints.
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // openraft narrates every election and shutdown step at info.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn")),
        )
        .init();
    let args = BrokerArgs::parse();
    let result = NodeConfig::load_from_process_env(&args)
        .context("the configuration is not usable")
        .and_then(|config| {
            tokio::runtime::Runtime::new()
                .context("could not start the async runtime")
                .and_then(|runtime| runtime.block_on(run(config)))
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The whole chain of causes on one line: what failed, and why.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: NodeConfig) -> anyhow::Result<()> {
    // The binary owns the process, so it installs the one metrics recorder; the library
    // never does (tests run several nodes, and their own recorders, in one process).
    weir_broker::metrics::install_exporter().context("metrics cannot be exported")?;
    let node = Node::start(config, Arc::new(SystemClock))
        .await
        .context("the node could not start")?;
    shutdown_signal().await;
    node.shutdown()
        .await
        .context("clean shutdown failed; the next start will recover the logs")
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(terminate) => terminate,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; stop with Ctrl-C");
            ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        () = ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

/// Completes on Ctrl-C (SIGINT). If SIGINT cannot be listened for, never completes: the node
/// then stops on SIGTERM only, rather than shutting down at once.
async fn ctrl_c() {
    if let Err(e) = tokio::signal::ctrl_c().await {
        tracing::warn!(error = %e, "cannot listen for Ctrl-C");
        std::future::pending::<()>().await;
    }
}
