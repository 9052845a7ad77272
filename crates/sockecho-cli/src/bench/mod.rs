//! `sockecho bench`: load an echo server, print what was measured (a table, or JSON with
//! `--json`), and exit 1 if any echo was wrong or missing. `sockecho bench merge` combines
//! histogram logs saved with `--save-hist` into one report; `sockecho bench report` (and
//! `--html`) draws runs as an HTML page.
//!
//! This file runs the load; the flags' meaning is in `options`, the progress line in
//! `progress`, signals in `stop`, and the report's formats in `crate::output`.

mod histlog;
mod html;
mod merge;
mod options;
mod progress;
mod stop;
mod verdict;

use std::process::ExitCode;

use anyhow::Context;
use sockecho::bench::{self, BenchError, Progress};

use crate::cli::bench::{BenchCommand, BenchOpts};
use crate::logging;
use crate::output::{self, Format};
use crate::usage::UsageError;

pub fn main(opts: BenchOpts) -> anyhow::Result<ExitCode> {
    logging::init(&opts.verbosity);
    match opts.command {
        Some(BenchCommand::Merge(merge_opts)) => return merge::main(merge_opts),
        Some(BenchCommand::Report(report_opts)) => return html::main(report_opts),
        None => {}
    }
    // Before the run, so that a page that cannot be written does not cost a whole run.
    let html = opts
        .html
        .as_deref()
        .map(html::HtmlOutput::open)
        .transpose()?;
    sockecho::limits::raise_fd_limit();
    let config = options::config(&opts)?;
    // Outputs are checked before the load starts, not found unwritable after the whole run.
    let save_hist = opts.save_hist.as_deref().map(histlog::open).transpose()?;
    let show_progress = progress::wanted(opts.verbosity.quiet);
    // The coordinator only waits and samples; the load runs on threads of its own.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let timeout = config.timeout;
    let format = Format::from_json_flag(opts.json);
    let finished = runtime.block_on(async {
        let progress = Progress::new();
        let display = show_progress.then(|| tokio::spawn(progress::show(progress.clone())));
        let signals = tokio::spawn(stop::stop_on_signal(progress.clone(), timeout));
        let outcome = bench::run(&config, &progress).await;
        signals.abort();
        if let Some(display) = display {
            display.abort();
            let _ = display.await;
        }
        let outcome = outcome?;
        // The run is over: from here a signal quits at once, even while writing the output
        // is held up (a full pipe, a slow disk), so the writing runs off this thread.
        let quit = tokio::spawn(stop::quit_on_signal());
        let written = tokio::task::spawn_blocking(move || -> anyhow::Result<ExitCode> {
            if let Some(file) = save_hist {
                file.save(&outcome)?;
            }
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
        Err(BenchError::Invalid(problem)) => Err(UsageError(problem).into()),
        Err(BenchError::Interrupted) => {
            eprintln!("bench: stopped before the measured period began; nothing to report");
            Ok(ExitCode::from(130))
        }
        Err(e) => Err(e.into()),
    }
}
