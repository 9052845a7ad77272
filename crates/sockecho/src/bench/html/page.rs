//! The page: a header, the runs' set-up and results tables, the percentile distribution of all
//! runs overlaid, throughput and p99 over time, and a section per sweep with its
//! latency-versus-throughput curve, knee and highest rate. Every text that came from an input
//! (labels, endpoints, reasons) is escaped.

use std::fmt::Write as _;

use super::chart::{Axis, Chart, Marker, Series, escape, number};
use super::figures::{
    KNEE_ACHIEVED_SHARE, KNEE_P99_FACTOR, Knee, LatencyUnit, distribution_from_histogram,
    distribution_from_summary, knee,
};
use super::model::{Interval, Run, Source, Sweep, SweepStep};
use crate::bench::{LatencySummary, Report};

const STYLE: &str = "\
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1240px;\
padding:0 16px;color:#1d1d1f;background:#fff}\
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}\
.meta{color:#555;margin:0 0 12px}\
table{border-collapse:collapse;margin:6px 0 10px;font-variant-numeric:tabular-nums}\
table{font-size:13px}th,td{padding:3px 7px;border-bottom:1px solid #ddd;text-align:right;white-space:nowrap}\
th{background:#f4f4f6;font-weight:600}td.text,th.text{text-align:left}\
tr.knee td{background:#fff4d6}.ok{color:#087f23;font-weight:600}.failed{color:#c62828;font-weight:600}\
.wrap{overflow-x:auto}\
.charts{display:flex;flex-wrap:wrap;gap:12px}.charts svg{flex:1 1 480px;max-width:100%}\
svg.chart{width:100%;height:auto;font-size:11px;background:#fff}\
svg .plot{fill:#fcfcfd;stroke:#999}svg .grid{stroke:#e3e3e8}\
svg .series{fill:none;stroke-width:2;stroke-linejoin:round}\
svg .marker{stroke:#b00020;stroke-width:1.5;stroke-dasharray:4 3}\
svg .marker-label{fill:#b00020;font-weight:600}\
svg .chart-title{font-size:13px;font-weight:600}svg .axis-title{font-size:12px;fill:#333}\
svg .tick{fill:#444}svg .legend-entry{font-size:12px}\
svg .legend-line{stroke-width:2.5}\
.note{color:#555;font-size:13px;max-width:900px}";

/// The whole page.
pub fn render(sources: &[Source]) -> String {
    let sources = unique_labels(sources);
    let runs: Vec<&Run> = sources
        .iter()
        .filter_map(|s| match s {
            Source::Run(r) => Some(r.as_ref()),
            Source::Sweep(_) => None,
        })
        .collect();
    let sweeps: Vec<&Sweep> = sources
        .iter()
        .filter_map(|s| match s {
            Source::Sweep(s) => Some(s),
            Source::Run(_) => None,
        })
        .collect();

    let mut body = String::new();
    body.push_str("<h1>sockecho bench report</h1>");
    let _ = write!(
        body,
        "<p class=\"meta\">{}</p>",
        header_line(&runs, &sweeps)
    );
    if !runs.is_empty() {
        body.push_str(&run_tables(&runs));
        if let Some(chart) = distribution_chart(&runs) {
            body.push_str(
                "<section id=\"distribution-section\"><h2>Latency by percentile</h2><div class=\"wrap\">",
            );
            body.push_str(&chart.to_svg());
            body.push_str(
                "</div><p class=\"note\">HdrHistogram's percentile distribution: the x axis is \
                 1/(1&minus;p) on a log scale, so each tick is one more nine. A run read from a \
                 histogram log (<code>--save-hist</code>) or made with <code>--html</code> is drawn \
                 from its whole histogram; a JSON report holds only min, p50, p90, p99, p99.9, \
                 p99.99 and max, which are drawn as dots joined by straight lines (the maximum at \
                 the last sample's place).</p></section>",
            );
        }
        let over_time = time_charts(&runs);
        if !over_time.is_empty() {
            body.push_str("<section id=\"over-time\"><h2>Over time</h2><div class=\"charts\">");
            for chart in over_time {
                body.push_str(&chart.to_svg());
            }
            body.push_str("</div></section>");
        }
    }
    for (i, sweep) in sweeps.iter().enumerate() {
        body.push_str(&sweep_section(i + 1, sweep));
    }
    let _ = write!(
        body,
        "<p class=\"note\">Made by sockecho {}.</p>",
        env!("CARGO_PKG_VERSION")
    );
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>sockecho bench report</title><style>{STYLE}</style></head>\n<body>{body}</body></html>\n"
    )
}

/// Inputs with the same name (two `run.json` from different folders) get a number each.
fn unique_labels(sources: &[Source]) -> Vec<Source> {
    let mut out: Vec<Source> = sources.to_vec();
    let label_of = |s: &Source| match s {
        Source::Run(r) => r.label.clone(),
        Source::Sweep(s) => s.label.clone(),
    };
    let labels: Vec<String> = out.iter().map(label_of).collect();
    for (i, source) in out.iter_mut().enumerate() {
        let same = labels.iter().filter(|l| **l == labels[i]).count();
        if same > 1 {
            let nth = labels[..=i].iter().filter(|l| **l == labels[i]).count();
            let label = format!("{} ({nth})", labels[i]);
            match source {
                Source::Run(r) => r.label = label,
                Source::Sweep(s) => s.label = label,
            }
        }
    }
    out
}

/// One line under the title: the run's set-up and verdict, or what the page holds.
fn header_line(runs: &[&Run], sweeps: &[&Sweep]) -> String {
    if let ([run], []) = (runs, sweeps) {
        let r = &run.report;
        let mut parts = vec![
            escape(&r.endpoint),
            escape(&r.transport),
            load_text(r),
            format!("{} connections", r.connections),
            format!("{} B messages", r.size),
        ];
        if let Some(t) = run.start_unix_s {
            parts.push(utc_text(t));
        }
        parts.push(verdict_html(r));
        return parts.join(" · ");
    }
    let mut parts = Vec::new();
    if !runs.is_empty() {
        parts.push(format!(
            "{} run{}",
            runs.len(),
            if runs.len() == 1 { "" } else { "s" }
        ));
    }
    if !sweeps.is_empty() {
        parts.push(format!(
            "{} sweep{}",
            sweeps.len(),
            if sweeps.len() == 1 { "" } else { "s" }
        ));
    }
    let failed = runs.iter().filter(|r| !r.report.passed()).count()
        + sweeps
            .iter()
            .filter(|s| s.steps.iter().any(|x| !x.report.passed()))
            .count();
    parts.push(if failed == 0 {
        "<span class=\"ok\">all OK</span>".to_string()
    } else {
        format!("<span class=\"failed\">{failed} with errors</span>")
    });
    parts.join(" · ")
}

/// "closed loop" or "open loop at 50k msg/s".
fn load_text(r: &Report) -> String {
    match (r.mode.as_str(), r.rate) {
        ("open", Some(rate)) => format!("open loop at {} msg/s", number(rate)),
        (mode, _) => format!("{} loop", escape(mode)),
    }
}

/// OK, or FAILED with the errors that made it so.
fn verdict_html(r: &Report) -> String {
    if r.passed() {
        return "<span class=\"ok\">OK</span>".into();
    }
    format!(
        "<span class=\"failed\">FAILED: {}</span>",
        escape(&r.errors.summary())
    )
}

/// A latency in microseconds with a unit that fits: `41.2 µs`, `1.25 ms`, `2.10 s`.
fn latency_text(us: f64) -> String {
    if us < 1_000.0 {
        format!("{us:.1} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1_000.0)
    } else {
        format!("{:.2} s", us / 1_000_000.0)
    }
}

/// Digits in groups of three: `1,234,567`.
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A tick label for microseconds at a power of ten: `10 µs`, `1 ms`, `100 ms`, `10 s`.
fn tick_latency(us: f64) -> String {
    let unit = LatencyUnit::for_max(us);
    format!("{} {}", number(us / unit.us), unit.name)
}

/// Seconds since the epoch as `2026-12-06 07:49:41 UTC`.
fn utc_text(unix_s: f64) -> String {
    let secs = unix_s.floor() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (proleptic Gregorian), by 400-year eras.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

fn run_tables(runs: &[&Run]) -> String {
    let mut s = String::from(
        "<section id=\"runs\"><h2>Runs</h2><div class=\"wrap\"><table id=\"setup\"><tr>\
         <th class=\"text\">run</th><th class=\"text\">endpoint</th><th class=\"text\">transport</th>\
         <th class=\"text\">io</th><th class=\"text\">load</th><th>connections</th><th>size</th>\
         <th>pipeline</th><th>threads</th><th class=\"text\">started</th><th>measured</th>\
         <th>warm-up</th></tr>",
    );
    for run in runs {
        let r = &run.report;
        let _ = write!(
            s,
            "<tr><td class=\"text\">{}</td><td class=\"text\">{}</td><td class=\"text\">{}</td>\
             <td class=\"text\">{}</td><td class=\"text\">{}</td><td>{} of {}</td><td>{} B</td>\
             <td>{}</td><td>{}</td><td class=\"text\">{}</td><td>{:.3} s</td><td>{:.3} s</td></tr>",
            escape(&run.label),
            escape(&r.endpoint),
            escape(&r.transport),
            escape(&r.io),
            load_text(r),
            r.connections_established,
            r.connections,
            r.size,
            r.pipeline,
            r.threads,
            run.start_unix_s.map_or("unknown".into(), utc_text),
            r.duration_s,
            r.warmup_s,
        );
    }
    s.push_str(
        "</table></div><div class=\"wrap\"><table id=\"results\"><tr><th class=\"text\">run</th>\
         <th>msg/s</th><th>messages</th><th>min</th><th>p50</th><th>p90</th><th>p99</th>\
         <th>p99.9</th><th>p99.99</th><th>max</th><th class=\"text\">errors</th>\
         <th class=\"text\">result</th><th class=\"text\">curve from</th></tr>",
    );
    for run in runs {
        let r = &run.report;
        let _ = write!(
            s,
            "<tr><td class=\"text\">{}</td><td>{}</td><td>{}</td>{}<td class=\"text\">{}</td>\
             <td class=\"text\">{}</td><td class=\"text\">{}</td></tr>",
            escape(&run.label),
            group(r.msgs_per_s.round() as u64),
            group(r.messages_received),
            latency_cells(&r.latency_us),
            escape(&r.errors.summary()),
            verdict_html(r),
            if run.latency.is_some() {
                "histogram"
            } else {
                "percentiles"
            },
        );
    }
    s.push_str("</table></div></section>");
    s
}

fn latency_cells(l: &LatencySummary) -> String {
    if l.count == 0 {
        return "<td>-</td>".repeat(7);
    }
    [l.min, l.p50, l.p90, l.p99, l.p999, l.p9999, l.max]
        .iter()
        .map(|&us| format!("<td>{}</td>", latency_text(us)))
        .collect()
}

/// Every run's percentile distribution on one chart.
fn distribution_chart(runs: &[&Run]) -> Option<Chart> {
    let curves: Vec<(&Run, Vec<(f64, f64)>)> = runs
        .iter()
        .map(|run| {
            let points = match &run.latency {
                Some(h) => distribution_from_histogram(h),
                None => distribution_from_summary(&run.report.latency_us),
            };
            (*run, points)
        })
        .filter(|(_, p)| !p.is_empty())
        .collect();
    if curves.is_empty() {
        return None;
    }
    let max_us = curves
        .iter()
        .flat_map(|c| c.1.iter().map(|p| p.1))
        .fold(0.0, f64::max);
    let last_x = curves
        .iter()
        .flat_map(|c| c.1.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let unit = LatencyUnit::for_max(max_us);
    let series = curves
        .into_iter()
        .enumerate()
        .map(|(i, (run, points))| Series {
            name: run.label.clone(),
            points: points.iter().map(|&(x, us)| (x, us / unit.us)).collect(),
            dots: run.latency.is_none(),
            dashed: false,
            color: i,
        })
        .collect();
    Some(Chart {
        id: "distribution".into(),
        title: "Round-trip latency by percentile".into(),
        width: 1000.0,
        height: 440.0,
        x: Axis::percentile(last_x),
        y: Axis::linear(
            format!("latency ({})", unit.name),
            0.0,
            max_us / unit.us * 1.05,
        ),
        series,
        markers: Vec::new(),
    })
}

/// Throughput and p99 per interval, one series per run that has intervals.
fn time_charts(runs: &[&Run]) -> Vec<Chart> {
    let timed: Vec<(usize, &Run)> = runs
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.intervals.is_empty())
        .map(|(i, r)| (i, *r))
        .collect();
    if timed.is_empty() {
        return Vec::new();
    }
    // Each interval's figure is placed at its middle.
    let mid = |iv: &Interval| iv.start_s + iv.duration_s / 2.0;
    let end_s = timed
        .iter()
        .flat_map(|(_, r)| r.intervals.iter().map(|iv| iv.start_s + iv.duration_s))
        .fold(0.0, f64::max);
    let max_rate = timed
        .iter()
        .flat_map(|(_, r)| r.intervals.iter().map(|iv| iv.msgs_per_s))
        .fold(0.0, f64::max);
    let max_p99 = timed
        .iter()
        .flat_map(|(_, r)| r.intervals.iter().map(|iv| iv.latency_us.p99))
        .fold(0.0, f64::max);
    let unit = LatencyUnit::for_max(max_p99);
    let series = |f: &dyn Fn(&Interval) -> f64| -> Vec<Series> {
        timed
            .iter()
            .map(|(i, r)| Series {
                name: r.label.clone(),
                points: r.intervals.iter().map(|iv| (mid(iv), f(iv))).collect(),
                dots: r.intervals.len() <= 30,
                dashed: false,
                // The colour each run has on the distribution chart.
                color: *i,
            })
            .collect()
    };
    vec![
        Chart {
            id: "throughput".into(),
            title: "Throughput per interval".into(),
            width: 540.0,
            height: 300.0,
            x: Axis::linear("time since the measured period began (s)", 0.0, end_s),
            y: Axis::linear("round trips (msg/s)", 0.0, max_rate * 1.05),
            series: series(&|iv| iv.msgs_per_s),
            markers: Vec::new(),
        },
        Chart {
            id: "p99-over-time".into(),
            title: "p99 latency per interval".into(),
            width: 540.0,
            height: 300.0,
            x: Axis::linear("time since the measured period began (s)", 0.0, end_s),
            y: Axis::linear(
                format!("p99 latency ({})", unit.name),
                0.0,
                max_p99 / unit.us * 1.05,
            ),
            series: series(&|iv| iv.latency_us.p99 / unit.us),
            markers: Vec::new(),
        },
    ]
}

/// A sweep: latency against achieved throughput, the knee and the highest rate marked, and a
/// table of its steps.
fn sweep_section(n: usize, sweep: &Sweep) -> String {
    let mut s = format!(
        "<section class=\"sweep\" id=\"sweep-{n}-section\"><h2>Sweep: {}</h2>",
        escape(&sweep.label)
    );
    let steps = &sweep.steps;
    let found = knee(steps);
    let measured: Vec<_> = steps
        .iter()
        .filter(|st| st.report.latency_us.count > 0)
        .collect();
    if !measured.is_empty() {
        let lat = |st: &SweepStep| {
            let l = &st.report.latency_us;
            [l.p50, l.p99, l.p999]
        };
        let max_us = measured.iter().flat_map(|st| lat(st)).fold(0.0, f64::max);
        let min_us = measured
            .iter()
            .flat_map(|st| lat(st))
            .filter(|&v| v > 0.0)
            .fold(f64::INFINITY, f64::min);
        let found_max = sweep.find_max.as_ref().and_then(|f| f.max_rate);
        let max_rate = steps
            .iter()
            .map(|st| st.report.msgs_per_s.max(st.offered))
            .chain(found_max)
            .fold(0.0, f64::max);
        let series = ["p50", "p99", "p99.9"]
            .iter()
            .enumerate()
            .map(|(k, name)| Series {
                name: (*name).to_string(),
                points: measured
                    .iter()
                    .map(|st| (st.report.msgs_per_s, lat(st)[k]))
                    .collect(),
                dots: true,
                dashed: false,
                color: k,
            })
            .collect();
        let mut markers = Vec::new();
        if let Knee::At(i) = found {
            let rate = steps[i].report.msgs_per_s;
            markers.push(Marker {
                x: rate,
                label: format!("knee: {} msg/s", number(rate.round())),
                kind: "knee",
            });
        }
        if let Some(rate) = found_max {
            let target = sweep.find_max.as_ref().map_or("", |f| f.target.as_str());
            markers.push(Marker {
                x: rate,
                label: format!("max for {target}: {} msg/s", number(rate.round())),
                kind: "max",
            });
        }
        let chart = Chart {
            id: format!("sweep-{n}"),
            title: format!("Latency against throughput: {}", sweep.label),
            width: 1000.0,
            height: 420.0,
            x: Axis::linear("achieved round trips (msg/s)", 0.0, max_rate * 1.02),
            y: Axis::log("latency (log scale)", min_us, max_us, tick_latency),
            series,
            markers,
        };
        s.push_str("<div class=\"wrap\">");
        s.push_str(&chart.to_svg());
        s.push_str("</div>");
    }
    let knee_text = match found {
        Knee::At(i) => format!(
            "The knee is at {} msg/s offered ({} achieved)",
            number(steps[i].offered.round()),
            number(steps[i].report.msgs_per_s.round())
        ),
        Knee::NotReached => "No knee: every step kept up".into(),
        Knee::FromStart => "No knee: already the lowest rate fell behind".into(),
    };
    let _ = write!(
        s,
        "<p class=\"note\">{knee_text}. The knee is the last step before the first one whose p99 \
         exceeds {KNEE_P99_FACTOR}&times; the lowest rate's p99, whose achieved rate falls below \
         {:.0}&nbsp;% of the offered rate, or that has errors.",
        KNEE_ACHIEVED_SHARE * 100.0
    );
    if let Some(f) = &sweep.find_max {
        match f.max_rate {
            Some(rate) => {
                let _ = write!(
                    s,
                    " Highest rate meeting {}: {} msg/s.",
                    escape(&f.target),
                    number(rate.round())
                );
            }
            None => {
                let _ = write!(s, " No rate met {}.", escape(&f.target));
            }
        }
    }
    if let Some(reason) = &sweep.stopped {
        let _ = write!(s, " The sweep stopped early: {}.", escape(reason));
    }
    s.push_str(
        "</p><div class=\"wrap\"><table class=\"steps\"><tr><th>offered</th><th>achieved</th>\
         <th>p50</th><th>p99</th><th>p99.9</th><th>max</th><th class=\"text\">errors</th></tr>",
    );
    for (i, st) in steps.iter().enumerate() {
        let r = &st.report;
        let l = &r.latency_us;
        let cells: String = [l.p50, l.p99, l.p999, l.max]
            .iter()
            .map(|&us| format!("<td>{}</td>", latency_text(us)))
            .collect();
        let _ = write!(
            s,
            "<tr{}><td>{}</td><td>{}</td>{cells}<td class=\"text\">{}</td></tr>",
            if found == Knee::At(i) {
                " class=\"knee\""
            } else {
                ""
            },
            group(st.offered.round() as u64),
            group(r.msgs_per_s.round() as u64),
            escape(&r.errors.summary()),
        );
    }
    s.push_str("</table></div></section>");
    s
}

#[cfg(test)]
mod tests {
    use super::super::{Interval, IntervalLatency, SweepStep};
    use super::*;
    use crate::bench::hlog::tests::outcome;

    fn run(label: &str, values: &[u64], histogram: bool) -> Run {
        let made = outcome(values, 1_765_000_000, 2.0);
        Run {
            label: label.into(),
            report: made.report,
            start_unix_s: Some(1_765_000_000.0),
            intervals: Vec::new(),
            latency: histogram.then_some(made.latency),
        }
    }

    /// The `<svg>` element with this id.
    fn svg<'a>(page: &'a str, id: &str) -> &'a str {
        let start = page
            .find(&format!(
                "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"{id}\""
            ))
            .unwrap_or_else(|| panic!("no svg {id}"));
        let len = page[start..].find("</svg>").unwrap();
        &page[start..start + len]
    }

    #[test]
    fn runs_overlaid_with_their_tables_and_escaped_text() {
        let values: Vec<u64> = (1..=20_000).map(|i| 20_000 + i * 10).collect();
        let mut evil = run("<script>alert(1)</script>", &values, false);
        evil.report.endpoint = "unix:/tmp/a&b\"<x>".into();
        let page = render(&[
            Source::Run(Box::new(run("fast.hlog", &values, true))),
            Source::Run(Box::new(evil)),
        ]);
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(!page.contains("<script"), "the page runs no script");
        assert!(!page.contains("src=\"http") && !page.contains("href=\"http"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("unix:/tmp/a&amp;b&quot;&lt;x&gt;"));
        assert!(page.contains("2025-12-06 05:46:40 UTC"), "start date");

        let d = svg(&page, "distribution");
        assert_eq!(d.matches("class=\"series\"").count(), 2);
        assert!(d.contains("data-series=\"fast.hlog\""));
        assert!(d.contains("data-series=\"&lt;script&gt;alert(1)&lt;/script&gt;\""));
        assert!(d.contains(">latency (µs)</text>"), "{d}");
        assert!(d.contains(">percentile</text>"));
        for tick in ["0%", "90%", "99%", "99.9%", "99.99%"] {
            assert!(d.contains(&format!(">{tick}</text>")), "tick {tick}");
        }
        // The summary curve has dots at its 7 points (20 000 samples reach p99.99); the
        // histogram curve has none and many more points.
        assert_eq!(d.matches("<circle class=\"dot\"").count(), 7);
        let hist_path = d
            .split("data-series=\"fast.hlog\" d=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert!(hist_path.matches(" L").count() > 50, "{hist_path}");
        // The results table says where each curve came from.
        assert!(page.contains("<td class=\"text\">histogram</td>"));
        assert!(page.contains("<td class=\"text\">percentiles</td>"));
        // No intervals: no time charts.
        assert!(!page.contains("id=\"throughput\""));
    }

    #[test]
    fn intervals_give_throughput_and_p99_charts() {
        let mut a = run("a", &[1_000, 2_000], false);
        a.intervals = (0..3)
            .map(|i| Interval {
                start_s: i as f64,
                duration_s: 1.0,
                msgs_per_s: 1000.0 * (i + 1) as f64,
                latency_us: IntervalLatency {
                    p50: 10.0,
                    p99: 1_500.0,
                    max: 2_000.0,
                },
                errors: 0,
            })
            .collect();
        let page = render(&[
            Source::Run(Box::new(a)),
            Source::Run(Box::new(run("b", &[1_000], false))),
        ]);
        let t = svg(&page, "throughput");
        assert_eq!(t.matches("class=\"series\"").count(), 1);
        assert!(t.contains("d=\"M") && t.contains(">round trips (msg/s)</text>"));
        assert!(t.contains(">time since the measured period began (s)</text>"));
        let p = svg(&page, "p99-over-time");
        assert!(p.contains(">p99 latency (ms)</text>"), "{p}");
        assert_eq!(p.matches("<circle class=\"dot\"").count(), 3);
    }

    fn step(offered: f64, achieved: f64, p99: f64) -> SweepStep {
        let mut report = outcome(&[1_000], 0, 1.0).report;
        report.mode = "open".into();
        report.rate = Some(offered);
        report.msgs_per_s = achieved;
        report.latency_us.p50 = p99 / 2.0;
        report.latency_us.p99 = p99;
        report.latency_us.p999 = p99 * 1.5;
        SweepStep { offered, report }
    }

    #[test]
    fn a_sweep_marks_its_knee_and_max_rate() {
        let sweep = Sweep {
            label: "sweep.json".into(),
            steps: vec![
                step(10_000.0, 10_000.0, 40.0),
                step(20_000.0, 19_990.0, 50.0),
                step(30_000.0, 29_900.0, 70.0),
                step(40_000.0, 33_000.0, 900.0),
            ],
            stopped: Some("achieved < 95% of <offered>".into()),
            find_max: Some(super::super::FindMax {
                target: "p99<1ms".into(),
                max_rate: Some(31_000.0),
            }),
        };
        let page = render(&[Source::Sweep(sweep)]);
        let s = svg(&page, "sweep-1");
        for name in ["p50", "p99", "p99.9"] {
            assert!(s.contains(&format!("class=\"series\" data-series=\"{name}\"")));
        }
        assert!(s.contains(">achieved round trips (msg/s)</text>"));
        assert!(s.contains(">latency (log scale)</text>"));
        assert!(s.contains("data-marker=\"knee\""));
        assert!(s.contains(">knee: 29.9k msg/s</text>"), "{s}");
        assert!(s.contains(">max for p99&lt;1ms: 31k msg/s</text>"), "{s}");
        assert!(page.contains("The knee is at 30k msg/s offered (29.9k achieved)"));
        assert!(page.contains("stopped early: achieved &lt; 95% of &lt;offered&gt;."));
        assert_eq!(page.matches("<tr class=\"knee\">").count(), 1);
        // No runs: no distribution chart.
        assert!(!page.contains("id=\"distribution\""));
    }

    #[test]
    fn labels_and_dates() {
        let page = render(&[
            Source::Run(Box::new(run("run.json", &[1_000], false))),
            Source::Run(Box::new(run("run.json", &[2_000], false))),
        ]);
        assert!(page.contains("data-series=\"run.json (1)\""));
        assert!(page.contains("data-series=\"run.json (2)\""));
        assert_eq!(utc_text(0.0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_text(951_782_400.0), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_text(1_765_009_781.9), "2025-12-06 08:29:41 UTC");
    }
}
