//! `weir`: the Weir command line tool.
//!
//! Each subcommand lives in its own module and exposes an `Args` struct (clap) and a `run`
//! function returning `anyhow::Result`. `main` prints an error with its whole chain of causes on
//! one line and exits with status 1 (a bad flag too: clap's message, then status 1).
//!
//! The admin commands (`topic`, `group`, `cluster`) talk to a cluster over its gRPC API with
//! `weir-client`, found with the global `--bootstrap` (env `WEIR_BOOTSTRAP`), on a
//! current-thread tokio runtime that `main` starts only for them; `dump-log` and
//! `dev-cluster` are synchronous. `--output` chooses tables for people or one JSON document
//! for scripts (module `output`).

use std::io;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

mod args;
mod cluster;
mod consume;
mod dev_cluster;
mod dump_log;
mod group;
mod output;
mod perf;
mod produce;
mod topic;

use output::Output;

/// The Weir command line tool.
#[derive(Debug, Parser)]
#[command(name = "weir", version)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// The flags every command takes, before or after its name.
#[derive(Debug, clap::Args)]
pub(crate) struct Global {
    /// The gRPC address (`host:port`) of a broker of the cluster, or several, comma-separated.
    #[arg(
        long,
        global = true,
        env = "WEIR_BOOTSTRAP",
        default_value = "127.0.0.1:9093",
        value_name = "HOST:PORT"
    )]
    pub(crate) bootstrap: String,
    /// How to print the answer: tables for people, or one JSON document for scripts.
    #[arg(short, long, global = true, value_enum, default_value_t = Output::Table)]
    pub(crate) output: Output,
}

impl Global {
    /// Connects to the cluster.
    pub(crate) async fn connect(&self) -> anyhow::Result<weir_client::Client> {
        let mut config = weir_client::ClientConfig::new(&self.bootstrap);
        // What a group's description shows for a client of this tool.
        config.client_id = "weir".to_string();
        Ok(weir_client::Client::with_config(config).await?)
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, list, describe, reconfigure, grow and delete topics.
    Topic(topic::TopicArgs),
    /// List, describe, reset the offsets of, and delete consumer groups.
    Group(group::GroupArgs),
    /// The cluster's brokers and its controller quorum.
    Cluster(cluster::ClusterArgs),
    /// Produce one record per line of standard input.
    Produce(produce::ProduceArgs),
    /// Print a topic's records, one per line.
    Consume(consume::ConsumeArgs),
    /// Load tests: throughput, and latency percentiles from an HDR histogram.
    Perf(perf::PerfArgs),
    /// Run a local cluster of `weir-broker` processes for development.
    DevCluster(dev_cluster::DevClusterArgs),
    /// Print the record batches of a log segment file (like kafka-dump-log).
    DumpLog(dump_log::DumpLogArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // Help and version go to standard output with status 0; a bad flag is an error.
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let global = &cli.global;
    let result = match &cli.command {
        Command::Topic(args) => block_on(topic::run(args, global)),
        Command::Group(args) => block_on(group::run(args, global)),
        Command::Cluster(args) => block_on(cluster::run(args, global)),
        Command::Produce(args) => block_on(async {
            produce::run(
                args,
                &global.connect().await?,
                global.output == Output::Json,
            )
            .await
        }),
        Command::Consume(args) => block_on(async {
            consume::run(
                args,
                &global.connect().await?,
                global.output == Output::Json,
            )
            .await
        }),
        Command::Perf(args) => multi_threaded(perf::run(
            args,
            &global.bootstrap,
            global.output == Output::Json,
        )),
        Command::DevCluster(args) => dev_cluster::run(args, global),
        Command::DumpLog(args) => dump_log::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `weir dump-log ... | head` is not a failure.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a command that needs the network on a current-thread runtime: one request at a time
/// is all the admin commands make.
fn block_on(command: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(command)
}

/// Runs a load test on a multi-threaded runtime: the client's background tasks and the
/// load's own run side by side.
fn multi_threaded(command: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(command)
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|io_err| io_err.kind() == io::ErrorKind::BrokenPipe)
    })
}
