//! One load run on the coordinator's runtime, with the progress line and Ctrl-C, and how a run
//! that produced no report ends the process: shared by a single run and by each sweep step.

use std::process::ExitCode;

use anyhow::Context;
use sockecho::bench::{self, BenchConfig, BenchError, Outcome, Progress};

use super::{progress, stop};
use crate::usage::UsageError;

/// The runtime the coordinator waits on.
pub(super) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// One run, with the progress line and the first Ctrl-C ending it early.
pub(super) async fn run_once(
    config: &BenchConfig,
    show_progress: bool,
) -> Result<Outcome, BenchError> {
    let progress = Progress::new();
    let display = show_progress.then(|| tokio::spawn(progress::show(progress.clone())));
    let signals = tokio::spawn(stop::stop_on_signal(progress.clone(), config.timeout));
    let outcome = bench::run(config, &progress).await;
    signals.abort();
    if let Some(display) = display {
        display.abort();
        let _ = display.await;
    }
    outcome
}

/// How a run that produced no report ends the process.
pub(super) fn bench_error(e: BenchError) -> anyhow::Result<ExitCode> {
    match e {
        BenchError::Invalid(problem) => Err(UsageError(problem).into()),
        BenchError::Interrupted => {
            eprintln!("bench: stopped before the measured period began; nothing to report");
            Ok(ExitCode::from(130))
        }
        e => Err(e.into()),
    }
}
