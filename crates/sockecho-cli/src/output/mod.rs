//! The bench report on stdout, in the format asked for: one file per format, and the error
//! summary that both the table and the exit verdict use.

pub mod errors;
mod json;
mod table;

use anyhow::Context;
use sockecho::bench::Report;

/// The formats a report can be printed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The aligned table for people.
    Table,
    /// One pretty-printed JSON object for machines (fields: docs/bench-json.md).
    Json,
}

impl Format {
    /// `--json` picks JSON; the table otherwise.
    pub fn from_json_flag(json: bool) -> Format {
        if json { Format::Json } else { Format::Table }
    }
}

/// Writes the report to stdout, flushed, so that a closed pipe is an error here.
pub fn print_report(report: &Report, format: Format) -> anyhow::Result<()> {
    use std::io::Write;
    let text = match format {
        Format::Table => table::render(report),
        Format::Json => json::render(report)?,
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write the report")
}
