//! The `sockecho` binary: parses the command line, then hands over to one runner per
//! subcommand. Exit codes: 0 success, 1 runtime failure, 2 usage error (clap's own, or a
//! `UsageError` a runner found); `serve` cut short by a second stop signal N exits 128 + N.
//!
//! Layers, each using only those below it: `main`; the runners (`serve`, `client`, `bench`,
//! `ping`, `completions`, `man`); what they share (`output`, `connect`, `logging`, `metrics`,
//! `signals`, `format`, `usage`), with `metrics_conn` below `metrics`; the syntax (`cli`); the value parsers (`parse`).
#![forbid(unsafe_code)]

mod bench;
mod cli;
mod client;
mod completions;
mod connect;
mod format;
mod logging;
mod man;
mod metrics;
mod metrics_conn;
mod output;
mod parse;
mod ping;
mod serve;
mod signals;
mod usage;

// The library's check that files form layers, run here on this crate's own files.
#[cfg(test)]
#[path = "../../sockecho/src/layering.rs"]
mod layering;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::usage::UsageError;

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            if err.is::<UsageError>() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    // clap prints its own usage errors and exits 2.
    let args = Cli::parse();
    match args.command {
        Command::Serve(opts) => serve::main(opts),
        Command::Client(opts) => client::main(opts),
        Command::Bench(opts) => bench::main(*opts),
        Command::Ping(opts) => ping::main(opts),
        Command::Completions(opts) => completions::main(opts),
        Command::Man(opts) => man::main(opts),
    }
}
