//! `weir-broker`: runs a Weir broker node.
//!
//! Today the node opens (and after an unclean stop, recovers) every partition log in its data
//! directory, runs retention, scheduled flushes and checkpoints, and shuts down cleanly on
//! SIGINT or SIGTERM. The network listeners join it as the data path lands.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use weir_broker::clock::SystemClock;
use weir_broker::config::StorageConfig;
use weir_broker::storage::LogManager;

/// A Weir broker node.
#[derive(Debug, Parser)]
#[command(name = "weir-broker", version, about)]
struct Args {
    /// Directory holding this node's partition logs; created if missing.
    #[arg(long, env = "WEIR_DATA_DIR", default_value = "./weir-data")]
    data_dir: PathBuf,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let config = StorageConfig {
        data_dir: args.data_dir,
        ..StorageConfig::default()
    };
    let result = tokio::runtime::Runtime::new()
        .context("could not start the async runtime")
        .and_then(|runtime| runtime.block_on(run(config)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The whole chain of causes on one line: what failed, and why.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: StorageConfig) -> anyhow::Result<()> {
    let data_dir = config.data_dir.clone();
    let manager =
        tokio::task::spawn_blocking(move || LogManager::open(config, Arc::new(SystemClock)))
            .await
            .context("opening the data directory panicked")?
            .with_context(|| format!("could not open the data directory {}", data_dir.display()))?;
    let manager = Arc::new(manager);
    tracing::info!(dir = %data_dir.display(), logs = manager.logs().len(), "storage is open");
    Arc::clone(&manager).run(shutdown_signal()).await;
    tracing::info!("shutting down");
    tokio::task::spawn_blocking(move || manager.shutdown())
        .await
        .context("shutting down panicked")?
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
