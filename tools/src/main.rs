//! `weir`: the Weir command line tool.
//!
//! Each subcommand lives in its own module and exposes an `Args` struct (clap) and a `run`
//! function returning `anyhow::Result`. `main` prints an error with its whole chain of causes on
//! one line and exits with status 1.

use std::io;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod dump_log;

/// The Weir command line tool.
#[derive(Debug, Parser)]
#[command(name = "weir", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the record batches of a log segment file (like kafka-dump-log).
    DumpLog(dump_log::DumpLogArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
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

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|io_err| io_err.kind() == io::ErrorKind::BrokenPipe)
    })
}
