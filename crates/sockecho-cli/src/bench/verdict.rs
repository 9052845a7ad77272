//! The exit code a report earns: 0 if every echo was right and every `--threshold` held, else 1
//! with the reasons on stderr. Each threshold's result is printed on stderr, so stdout keeps
//! only the report.

use std::process::ExitCode;

use sockecho::bench::Report;

use crate::output::errors::error_list;

pub fn verdict(report: &Report) -> ExitCode {
    print_thresholds(report);
    let mut failed = false;
    if !report.passed() {
        eprintln!("error: the benchmark failed: {}", error_list(report));
        failed = true;
    }
    for t in report.thresholds.iter().filter(|t| !t.passed) {
        eprintln!(
            "error: threshold {} failed: the run measured {}",
            t.threshold,
            figure(t.actual, &t.unit)
        );
        failed = true;
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// One line per threshold: passed or failed, with the figure it was checked against.
pub fn print_thresholds(report: &Report) {
    for t in &report.thresholds {
        eprintln!(
            "threshold {:<24} {}  ({})",
            t.threshold,
            if t.passed { "passed" } else { "FAILED" },
            figure(t.actual, &t.unit)
        );
    }
}

/// A threshold's figure with its unit, if it has one.
fn figure(value: f64, unit: &str) -> String {
    match unit {
        "count" => format!("{value}"),
        "us" => format!("{value} µs"),
        "us/msg" => format!("{value} µs/msg"),
        _ => format!("{value} {unit}"),
    }
}
