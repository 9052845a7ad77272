//! The bench report on stdout, in the format asked for: one file per format, and the error
//! summary that both the table and the exit verdict use. A sweep has the same formats: a table
//! of its steps, `{"sweep": ...}` in JSON, or one csv/markdown row per step.

pub mod errors;
mod export;
mod json;
mod sweep;
mod table;

use anyhow::Context;
use sockecho::bench::Report;
use sockecho::bench::sweep::Sweep;

use crate::cli::bench::ExportFormat;

/// The formats a report can be printed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The aligned table for people.
    Table,
    /// One pretty-printed JSON object for machines (fields: docs/bench-json.md).
    Json,
    /// `--export csv`: a header row and one row per run or sweep step.
    Csv,
    /// `--export markdown`: the same as a markdown table.
    Markdown,
}

impl Format {
    /// `--json` picks JSON; the table otherwise.
    pub fn from_json_flag(json: bool) -> Format {
        if json { Format::Json } else { Format::Table }
    }

    /// `--export` wins (clap keeps it apart from `--json`), then `--json`, then the table.
    pub fn from_flags(json: bool, export: Option<ExportFormat>) -> Format {
        match export {
            Some(ExportFormat::Csv) => Format::Csv,
            Some(ExportFormat::Markdown) => Format::Markdown,
            None => Format::from_json_flag(json),
        }
    }
}

/// Writes the report to stdout in `format`.
pub fn print_report(report: &Report, format: Format) -> anyhow::Result<()> {
    let text = match format {
        Format::Table => table::render(report),
        Format::Json => json::render(report)?,
        Format::Csv => export::csv(&export::summary(std::slice::from_ref(report))),
        Format::Markdown => export::markdown(&export::summary(std::slice::from_ref(report))),
    };
    write_stdout(&text)
}

/// Writes a sweep to stdout in `format`.
pub fn print_sweep(sweep: &Sweep, format: Format) -> anyhow::Result<()> {
    let text = match format {
        Format::Table => sweep::render(sweep),
        Format::Json => json::render_sweep(sweep)?,
        Format::Csv => export::csv(&export::steps(sweep)),
        Format::Markdown => export::markdown(&export::steps(sweep)),
    };
    write_stdout(&text)
}

/// Writes `text` to stdout, flushed, so that a closed pipe is an error here.
fn write_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write the report")
}
