//! `sockecho bench merge`: combine histogram logs saved with `--save-hist` into one report,
//! interval by interval on wall-clock time, with the same thresholds and formats as a run,
//! warning when the logs are the shards of a split run and one is missing or repeated.
//!
//! A file (or stdin, `-`) may hold several sockecho logs one after another, as `kubectl logs`
//! of a bench Job's pods prints them; lines that belong to no log (what the pods said on stderr,
//! which `kubectl logs` mixes in) are passed over, each shown on stderr.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use sockecho::bench::{Outcome, hlog, merge, shard, threshold};

use crate::bench::histlog::HistFiles;
use crate::bench::verdict::verdict;
use crate::cli::bench::MergeOpts;
use crate::output::{self, Format};

/// How every log sockecho writes begins.
const SOCKECHO_HEADER: &str = "#[Logged with sockecho";

pub fn main(opts: MergeOpts) -> anyhow::Result<ExitCode> {
    let files = HistFiles::open(opts.save_hist.as_deref(), opts.save_hgrm.as_deref())?;
    let mut runs = Vec::with_capacity(opts.files.len());
    for path in &opts.files {
        let name = if path == Path::new("-") {
            "stdin".to_owned()
        } else {
            path.display().to_string()
        };
        let bytes = read(path).with_context(|| format!("cannot read {name}"))?;
        let text = String::from_utf8_lossy(&bytes);
        let (logs, stray) = split_logs(&text);
        // Passed on as they came: a pod's warning still reads as one.
        for line in stray {
            tracing::info!("{name}, not a histogram log line: {line}");
        }
        for (n, log) in logs.iter().enumerate() {
            let which = if logs.len() > 1 {
                format!("log {} of {name}", n + 1)
            } else {
                name.clone()
            };
            let run = hlog::read(log.as_bytes()).with_context(|| format!("{which} is unusable"))?;
            runs.push(run);
        }
    }
    let shards: Vec<_> = runs
        .iter()
        .map(|r| r.report.as_ref().and_then(|report| report.shard))
        .collect();
    if let Some(problem) = shard::coverage_problem(&shards) {
        tracing::warn!("{problem}");
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
    let hist_on_stdout = files.on_stdout();
    files.write(&outcome)?;
    // A log on stdout carries the report; anything more would make it unreadable.
    if !hist_on_stdout {
        output::print_report(&outcome.report, Format::from_flags(opts.json, opts.export))?;
    }
    Ok(verdict(&outcome.report))
}

/// The file at `path`, or stdin for `-`.
fn read(path: &Path) -> std::io::Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin().lock().read_to_end(&mut bytes)?;
        Ok(bytes)
    } else {
        std::fs::read(path)
    }
}

/// The sockecho logs in `text`, and the non-blank lines that belong to none. Text with no
/// sockecho log in it (another tool's log) is returned whole, for the reader to judge.
fn split_logs(text: &str) -> (Vec<String>, Vec<&str>) {
    if !text.lines().any(|l| l.starts_with(SOCKECHO_HEADER)) {
        return (vec![text.to_owned()], Vec::new());
    }
    let mut logs: Vec<String> = Vec::new();
    let mut stray = Vec::new();
    for line in text.lines() {
        if line.starts_with(SOCKECHO_HEADER) {
            logs.push(String::new());
        }
        match logs.last_mut() {
            Some(log) if is_log_line(line) => {
                log.push_str(line);
                log.push('\n');
            }
            _ if line.trim().is_empty() => {}
            _ => stray.push(line),
        }
    }
    (logs, stray)
}

/// Whether `line` can be part of a histogram log: a comment, the legend, or an interval (which
/// starts with its tag or its start time).
fn is_log_line(line: &str) -> bool {
    line.starts_with('#')
        || line.starts_with("\"StartTimestamp\"")
        || line.starts_with("Tag=")
        || line
            .split(',')
            .next()
            .is_some_and(|start| start.parse::<f64>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_one_after_another_are_taken_apart_and_stray_lines_left_out() {
        let text = "\
bench: connections opened late
#[Logged with sockecho 0.1.0 bench]
#[sockecho-report {\"shard\":0}]
\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"
1.0,2.0,3.0,HISTA
Tag=connect,1.0,2.0,3.0,HISTB
2026-12-06T09:00:00Z WARN something on stderr
#[Logged with sockecho 0.1.0 bench]
1.5,2.0,3.0,HISTC

";
        let (logs, stray) = split_logs(text);
        assert_eq!(logs.len(), 2);
        assert!(logs[0].starts_with(SOCKECHO_HEADER));
        assert!(logs[0].contains("HISTA") && logs[0].contains("Tag=connect"));
        assert!(!logs[0].contains("HISTC"));
        assert_eq!(
            logs[1],
            "#[Logged with sockecho 0.1.0 bench]\n1.5,2.0,3.0,HISTC\n"
        );
        assert_eq!(
            stray,
            [
                "bench: connections opened late",
                "2026-12-06T09:00:00Z WARN something on stderr"
            ]
        );
    }

    #[test]
    fn another_tools_log_is_left_whole() {
        let text = "#[Logged with jHiccup]\nnot a number\n";
        assert_eq!(split_logs(text), (vec![text.to_owned()], Vec::new()));
    }
}
