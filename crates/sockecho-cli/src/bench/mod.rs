//! `sockecho bench`: load an echo server, print what was measured (a table, JSON with `--json`,
//! or a csv/markdown row with `--export`), and exit 1 if any echo was wrong or missing or a
//! `--threshold` failed. `--rates`/`--find-max` run a capacity sweep instead (`sweep`);
//! `sockecho bench merge` combines histogram logs saved with `--save-hist` into one report;
//! `sockecho bench report` (and `--html`) draws runs as an HTML page.
//!
//! This file runs the load; the flags' meaning is in `options`, one run on its runtime in
//! `run`, the progress line in `progress`, signals in `stop`, histogram files in `histlog`, and the report's formats in
//! `crate::output`.

mod histlog;
mod html;
mod merge;
mod options;
mod progress;
mod run;
mod stop;
mod sweep;
mod verdict;

use std::process::ExitCode;

use anyhow::Context;
use sockecho::bench::threshold;

use crate::cli::bench::{BenchCommand, BenchOpts};
use crate::logging;
use crate::output::{self, Format};
use histlog::HistFiles;
use run::{bench_error, run_once, runtime};

pub fn main(mut opts: BenchOpts) -> anyhow::Result<ExitCode> {
    if let Some(BenchCommand::Sweep(sweep_opts)) = opts.command {
        let outer = opts.verbosity;
        opts = sweep::opts(sweep_opts)?;
        // -q and -v are global: clap may have taken them before the sweep's own flags.
        opts.verbosity.quiet = opts.verbosity.quiet.max(outer.quiet);
        opts.verbosity.verbose = opts.verbosity.verbose.max(outer.verbose);
    }
    logging::init(&opts.verbosity);
    match opts.command {
        Some(BenchCommand::Merge(merge_opts)) => return merge::main(merge_opts),
        Some(BenchCommand::Report(report_opts)) => return html::main(report_opts),
        Some(BenchCommand::Sweep(_)) | None => {}
    }
    sockecho::limits::raise_fd_limit();
    let config = options::config(&opts)?;
    if opts.rates.is_some() || opts.find_max.is_some() {
        return sweep::main(&opts, config);
    }
    // Before the run, so that a page that cannot be written does not cost a whole run.
    let html = opts
        .html
        .as_deref()
        .map(html::HtmlOutput::open)
        .transpose()?;
    // Before the load: a path that cannot be written fails now, not after the run.
    let files = HistFiles::open(opts.save_hist.as_deref(), opts.save_hgrm.as_deref())?;
    let show_progress = progress::wanted(opts.verbosity.quiet);
    // The coordinator only waits and samples; the load runs on threads of its own.
    let runtime = runtime()?;
    let format = Format::from_flags(opts.json, opts.export);
    let thresholds = opts.threshold.clone();
    let finished = runtime.block_on(async {
        let mut outcome = run_once(&config, show_progress).await?;
        outcome.report.thresholds = threshold::check_all(&thresholds, &outcome.report);
        // The run is over: from here a signal quits at once, even while writing the output
        // is held up (a full pipe, a slow disk), so the writing runs off this thread.
        let quit = tokio::spawn(stop::quit_on_signal());
        let written = tokio::task::spawn_blocking(move || -> anyhow::Result<ExitCode> {
            files.write(&outcome)?;
            if let Some(html) = html {
                html.write(&outcome)?;
            }
            output::print_report(&outcome.report, format)?;
            Ok(verdict::verdict(&outcome.report))
        })
        .await;
        quit.abort();
        Ok(written)
    });
    match finished {
        Ok(written) => written.context("writing the report failed")?,
        Err(e) => bench_error(e),
    }
}
