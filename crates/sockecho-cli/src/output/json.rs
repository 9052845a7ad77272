//! The report as one pretty-printed JSON object with a closing newline; its fields are the
//! library's `Report` (documented in docs/bench-json.md).

use anyhow::Context;
use sockecho::bench::Report;

pub fn render(report: &Report) -> anyhow::Result<String> {
    let mut text = serde_json::to_string_pretty(report).context("cannot encode the report")?;
    text.push('\n');
    Ok(text)
}
