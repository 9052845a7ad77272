//! `sockecho bench merge`: combine histogram logs saved with `--save-hist` into one report.

use std::process::ExitCode;

use anyhow::Context;
use sockecho::bench::{Outcome, hlog, merge};

use crate::bench::histlog;
use crate::bench::verdict::verdict;
use crate::cli::bench::MergeOpts;
use crate::output::{self, Format};

pub fn main(opts: MergeOpts) -> anyhow::Result<ExitCode> {
    let save_hist = opts.save_hist.as_deref().map(histlog::open).transpose()?;
    let mut runs = Vec::with_capacity(opts.files.len());
    for path in &opts.files {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let run = hlog::read(&bytes).with_context(|| format!("{} is unusable", path.display()))?;
        runs.push(run);
    }
    let merged = merge::merge(&runs);
    if let Some(file) = save_hist {
        let start = runs
            .iter()
            .map(|r| r.start)
            .min()
            .unwrap_or(std::time::UNIX_EPOCH);
        let outcome = Outcome {
            report: merged.report.clone(),
            latency: merged.latency.clone(),
            connect: merged.connect.clone(),
            measured_from: start,
        };
        file.save(&outcome)?;
    }
    output::print_report(&merged.report, Format::from_json_flag(opts.json))?;
    Ok(verdict(&merged.report))
}
