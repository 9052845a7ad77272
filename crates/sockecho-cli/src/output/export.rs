//! `--export csv|markdown`: the summary as rows — one per run (its load, throughput, latency
//! percentiles in microseconds and errors), or one per sweep step (offered and achieved rate,
//! percentiles, errors, whether it kept up) — for spreadsheets and pull-request comments.

use sockecho::bench::Report;
use sockecho::bench::sweep::Sweep;

/// A header and rows of cells.
pub struct Table {
    header: Vec<&'static str>,
    /// Leading columns of text (aligned left in markdown); figures follow.
    text_columns: usize,
    rows: Vec<Vec<String>>,
}

/// A figure without needless decimals.
fn num(x: f64) -> String {
    let text = format!("{x:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    text.to_owned()
}

/// One row per report.
pub fn summary(reports: &[Report]) -> Table {
    let header = vec![
        "endpoint",
        "transport",
        "mode",
        "connections",
        "size",
        "rate",
        "duration_s",
        "messages",
        "msgs_per_s",
        "p50_us",
        "p90_us",
        "p99_us",
        "p999_us",
        "max_us",
        "mean_us",
        "errors",
        "ok",
    ];
    let rows = reports
        .iter()
        .map(|r| {
            let l = &r.latency_us;
            vec![
                r.endpoint.clone(),
                r.transport.clone(),
                r.mode.clone(),
                r.connections.to_string(),
                r.size.to_string(),
                r.rate.map(num).unwrap_or_default(),
                num(r.duration_s),
                r.messages_received.to_string(),
                num(r.msgs_per_s),
                num(l.p50),
                num(l.p90),
                num(l.p99),
                num(l.p999),
                num(l.max),
                num(l.mean),
                r.errors.failing(r.datagrams()).to_string(),
                r.passed_with_thresholds().to_string(),
            ]
        })
        .collect();
    Table {
        header,
        text_columns: 3,
        rows,
    }
}

/// One row per sweep step.
pub fn steps(sweep: &Sweep) -> Table {
    let header = vec![
        "offered_per_s",
        "achieved_per_s",
        "p50_us",
        "p99_us",
        "p999_us",
        "max_us",
        "errors",
        "kept_up",
    ];
    let rows = sweep
        .steps
        .iter()
        .zip(&sweep.rates)
        .zip(&sweep.kept_up)
        .map(|((r, rate), kept)| {
            let l = &r.latency_us;
            vec![
                num(*rate),
                num(r.msgs_per_s),
                num(l.p50),
                num(l.p99),
                num(l.p999),
                num(l.max),
                r.errors.failing(r.datagrams()).to_string(),
                kept.to_string(),
            ]
        })
        .collect();
    Table {
        header,
        text_columns: 0,
        rows,
    }
}

/// RFC 4180: a cell with a comma, quote or line break goes in quotes, quotes doubled.
fn csv_cell(cell: &str) -> String {
    if cell.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell.to_owned()
    }
}

pub fn csv(table: &Table) -> String {
    let mut out = table.header.join(",");
    out.push('\n');
    for row in &table.rows {
        let cells: Vec<String> = row.iter().map(|c| csv_cell(c)).collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

pub fn markdown(table: &Table) -> String {
    let line = |cells: Vec<String>| format!("| {} |\n", cells.join(" | "));
    let mut out = line(table.header.iter().map(|h| h.to_string()).collect());
    out.push_str(&line(
        table
            .header
            .iter()
            .enumerate()
            .map(|(i, _)| {
                if i < table.text_columns {
                    "---"
                } else {
                    "---:"
                }
                .into()
            })
            .collect(),
    ));
    for row in &table.rows {
        out.push_str(&line(row.iter().map(|c| c.replace('|', "\\|")).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        Table {
            header: vec!["endpoint", "transport", "mode", "n"],
            text_columns: 3,
            rows: vec![vec![
                "tcp://a:1,tcp://b:2".into(),
                "tcp".into(),
                "open".into(),
                "12.5".into(),
            ]],
        }
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        assert_eq!(
            csv(&table()),
            "endpoint,transport,mode,n\n\"tcp://a:1,tcp://b:2\",tcp,open,12.5\n"
        );
    }

    #[test]
    fn markdown_aligns_figures_right() {
        assert_eq!(
            markdown(&table()),
            "| endpoint | transport | mode | n |\n| --- | --- | --- | ---: |\n\
             | tcp://a:1,tcp://b:2 | tcp | open | 12.5 |\n"
        );
    }

    #[test]
    fn figures_lose_trailing_zeros() {
        assert_eq!(num(12.0), "12");
        assert_eq!(num(0.125), "0.125");
        assert_eq!(num(3.10), "3.1");
    }
}
