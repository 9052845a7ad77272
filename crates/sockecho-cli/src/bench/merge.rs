//! `sockecho bench merge`: combine histogram logs saved with `--save-hist` into one report,
//! interval by interval on wall-clock time, with the same thresholds and formats as a run.

use std::process::ExitCode;

use anyhow::Context;
use sockecho::bench::{Outcome, hlog, merge, threshold};

use crate::bench::histlog::HistFiles;
use crate::bench::verdict::verdict;
use crate::cli::bench::MergeOpts;
use crate::output::{self, Format};

pub fn main(opts: MergeOpts) -> anyhow::Result<ExitCode> {
    let files = HistFiles::open(opts.save_hist.as_deref(), opts.save_hgrm.as_deref())?;
    let mut runs = Vec::with_capacity(opts.files.len());
    for path in &opts.files {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let run = hlog::read(&bytes).with_context(|| format!("{} is unusable", path.display()))?;
        runs.push(run);
    }
    let mut merged = merge::merge(&runs);
    if merged.report.periods_overlap == Some(false) {
        eprintln!(
            "warning: the runs' measured periods do not overlap in time, so the merged rates \
             average over the gaps between them"
        );
    }
    merged.report.thresholds = threshold::check_all(&opts.threshold, &merged.report);
    let outcome = Outcome {
        report: merged.report,
        latency: merged.latency,
        connect: merged.connect,
        measured_from: merged.start,
        intervals: merged.intervals,
    };
    files.write(&outcome)?;
    output::print_report(&outcome.report, Format::from_flags(opts.json, opts.export))?;
    Ok(verdict(&outcome.report))
}
