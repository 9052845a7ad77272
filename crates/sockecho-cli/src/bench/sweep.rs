//! `sockecho bench sweep ...` (or `bench --rates ...` / `--find-max ...`): a capacity sweep,
//! one open-loop run per step at the rate the library's `Sweeper` picks, each shown and
//! stoppable like a single run.
//! A line per step goes to stderr as it ends; the whole sweep is printed at the end, and the
//! exit code goes by the best step (see `sockecho::bench::sweep`).

use std::process::ExitCode;

use anyhow::Context;
use sockecho::bench::sweep::{FindMax, SweepPlan, Sweeper};
use sockecho::bench::{BenchConfig, BenchError, threshold};

use super::run::{bench_error, run_once, runtime};
use super::{progress, verdict};
use crate::cli::bench::{BenchOpts, SweepOpts};
use crate::cli::{Cli, Command};
use crate::format::group;
use crate::output::{self, Format};
use crate::usage::UsageError;

/// Where a search starts without `--rates`.
const DEFAULT_START: f64 = 1_000.0;

/// The flags of `bench sweep ARGS`: ARGS read as `bench ARGS`, which must ask for a sweep.
/// Unreadable flags end the process as clap does (usage, exit 2).
pub fn opts(sweep: SweepOpts) -> anyhow::Result<BenchOpts> {
    use clap::Parser;
    let argv = ["sockecho".into(), "bench".into()]
        .into_iter()
        .chain(sweep.args);
    let parsed = Cli::try_parse_from(argv).unwrap_or_else(|e| e.exit());
    let Command::Bench(opts) = parsed.command else {
        unreachable!("parsed as `sockecho bench`");
    };
    if opts.command.is_some() {
        return Err(UsageError(
            "`bench sweep` takes an endpoint and flags, not a subcommand".into(),
        )
        .into());
    }
    if opts.rates.is_none() && opts.find_max.is_none() {
        return Err(UsageError(
            "`bench sweep` needs --rates (e.g. 10k:200k:10k) or --find-max (e.g. 'p99<1ms')".into(),
        )
        .into());
    }
    Ok(*opts)
}

pub fn main(opts: &BenchOpts, config: BenchConfig) -> anyhow::Result<ExitCode> {
    if opts.save_hist.is_some() || opts.save_hgrm.is_some() || opts.html.is_some() {
        return Err(UsageError(
            "--save-hist, --save-hgrm and --html record single runs, not sweeps; draw a sweep \
             with `bench report` from its --json output, or run the rate of interest on its own"
                .into(),
        )
        .into());
    }
    let rates = opts.rates.as_ref().map(|r| r.0.clone()).unwrap_or_default();
    let find_max = opts.find_max.clone().map(|target| FindMax {
        target,
        start: rates.first().copied().unwrap_or(DEFAULT_START),
        ceiling: (rates.len() > 1).then(|| rates.iter().copied().fold(0.0, f64::max)),
        precision: opts.precision,
        max_steps: opts.max_steps as usize,
    });
    let mut sweeper = Sweeper::new(SweepPlan {
        rates,
        margin: opts.margin,
        find_max,
    });
    let show_progress = progress::wanted(opts.verbosity.quiet);
    let quiet = opts.verbosity.quiet > 0;
    let runtime = runtime()?;
    let stopped = runtime.block_on(async {
        while let Some(rate) = sweeper.next_rate() {
            let mut step = config.clone();
            step.rate = Some(rate);
            let mut outcome = match run_once(&step, show_progress).await {
                Ok(outcome) => outcome,
                Err(BenchError::Interrupted) if !sweeper.sweep().steps.is_empty() => {
                    return Ok(true);
                }
                Err(e) => return Err(e),
            };
            outcome.report.thresholds = threshold::check_all(&opts.threshold, &outcome.report);
            let report = outcome.report;
            let achieved = report.msgs_per_s;
            let kept_up = sweeper.record(report);
            if !quiet {
                eprintln!(
                    "step {:>3}: {} msg/s offered, {} achieved, {}",
                    sweeper.sweep().steps.len(),
                    group(rate as u64),
                    group(achieved.round() as u64),
                    if kept_up { "kept up" } else { "fell short" }
                );
            }
        }
        Ok(false)
    });
    let interrupted = match stopped {
        Ok(interrupted) => interrupted,
        Err(e) => return bench_error(e),
    };
    let mut sweep = sweeper.finish();
    if interrupted {
        sweep.stopped = Some("stopped by a signal".into());
    }
    output::print_sweep(&sweep, Format::from_flags(opts.json, opts.export))
        .context("writing the sweep failed")?;
    match sweep.best_step() {
        Some(best) => {
            if !best.thresholds.is_empty() {
                eprintln!(
                    "thresholds, at the best step ({} msg/s offered):",
                    group(best.rate.unwrap_or(0.0) as u64)
                );
            }
            let code = verdict::verdict(best);
            Ok(if interrupted {
                ExitCode::from(130)
            } else {
                code
            })
        }
        None => {
            eprintln!("error: no step of the sweep kept up");
            Ok(ExitCode::FAILURE)
        }
    }
}
