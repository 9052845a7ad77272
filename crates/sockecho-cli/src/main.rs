//! The `sockecho` binary: parses the command line, sets up logging and the runtime, and hands
//! over to the library. Exit codes: 0 success, 1 runtime failure, 2 usage error.
#![forbid(unsafe_code)]

mod bench;
mod cli;
mod client;
mod logging;
mod metrics;
mod metrics_conn;
mod ping;
mod serve;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: cli::Cli) -> anyhow::Result<ExitCode> {
    match args.command {
        cli::Command::Serve(opts) => serve::main(opts),
        cli::Command::Client(opts) => client::main(opts),
        cli::Command::Bench(opts) => bench::main(opts),
        cli::Command::Ping(opts) => ping::main(opts),
    }
}
