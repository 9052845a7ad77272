//! The report as one pretty-printed JSON object with a closing newline; its fields are the
//! library's `Report` (documented in docs/bench-json.md). A sweep is `{"sweep": {...}}`.

use anyhow::Context;
use sockecho::bench::Report;
use sockecho::bench::sweep::Sweep;

pub fn render(report: &Report) -> anyhow::Result<String> {
    let mut text = serde_json::to_string_pretty(report).context("cannot encode the report")?;
    text.push('\n');
    Ok(text)
}

pub fn render_sweep(sweep: &Sweep) -> anyhow::Result<String> {
    let wrapped = serde_json::json!({ "sweep": sweep });
    let mut text = serde_json::to_string_pretty(&wrapped).context("cannot encode the sweep")?;
    text.push('\n');
    Ok(text)
}
