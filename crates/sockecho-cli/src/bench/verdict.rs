//! The exit code a report earns: 0 if every echo was right, else 1 with the reasons on stderr.

use std::process::ExitCode;

use sockecho::bench::Report;

use crate::output::errors::error_list;

pub fn verdict(report: &Report) -> ExitCode {
    if report.passed() {
        return ExitCode::SUCCESS;
    }
    eprintln!("error: the benchmark failed: {}", error_list(report));
    ExitCode::FAILURE
}
