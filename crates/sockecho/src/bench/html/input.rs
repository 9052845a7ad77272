//! Reading what the report page is made from: a run report (`bench --json`, `bench merge
//! --json`), a sweep (`bench sweep --json`), a histogram log (`--save-hist`), or a run just made.
//!
//! Fields newer than the [`Report`] type (`intervals`, `start_unix_s`) are read from the JSON
//! itself, so reports with and without them both work.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
use serde::Deserialize;
use serde_json::Value;

use super::model::{FindMax, Interval, IntervalLatency, Run, Source, Sweep, SweepStep};
use crate::bench::hlog::{self, HistLogError};
use crate::bench::{Outcome, Report, merge};

/// Why a file cannot go into the report.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("it is neither JSON nor a histogram log: {0}")]
    Unreadable(#[source] serde_json::Error),
    #[error("it is JSON but not a bench report: {0}")]
    NotAReport(#[source] serde_json::Error),
    #[error("step {step} of the sweep is not a bench report: {source}")]
    Step {
        step: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("its sweep object is malformed: {0}")]
    Sweep(#[source] serde_json::Error),
    #[error("its intervals are malformed: {0}")]
    Intervals(#[source] serde_json::Error),
    #[error(transparent)]
    HistLog(#[from] HistLogError),
}

/// Reads one file, by its content: a JSON object is a run report or a sweep, anything else is
/// taken for a histogram log. `label` names it on the page.
pub fn read(label: &str, bytes: &[u8]) -> Result<Source, InputError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'{') {
        let value: Value = serde_json::from_slice(bytes).map_err(InputError::Unreadable)?;
        if let Some(sweep) = value.get("sweep") {
            return read_sweep(label, sweep).map(Source::Sweep);
        }
        let report = Report::deserialize(&value).map_err(InputError::NotAReport)?;
        return run_from_json(label, report, &value, None, None).map(|r| Source::Run(Box::new(r)));
    }
    let logged = hlog::read(bytes)?;
    // A log written by another tool has no report; a merge of the one run makes the one a
    // merge of logs would.
    let merged = merge::merge(std::slice::from_ref(&logged));
    let report = logged.report.clone().unwrap_or(merged.report);
    let value = serde_json::to_value(&report).map_err(InputError::NotAReport)?;
    let mut run = run_from_json(
        label,
        report,
        &value,
        Some(logged.latency),
        Some(logged.start),
    )?;
    if run.intervals.is_empty() {
        run.intervals = log_intervals(bytes);
    }
    Ok(Source::Run(Box::new(run)))
}

/// The page material of a run just made: its report, and its full latency histogram.
pub fn from_outcome(label: &str, outcome: &Outcome) -> Result<Run, InputError> {
    let value = serde_json::to_value(&outcome.report).map_err(InputError::NotAReport)?;
    run_from_json(
        label,
        outcome.report.clone(),
        &value,
        Some(outcome.latency.clone()),
        Some(outcome.measured_from),
    )
}

fn run_from_json(
    label: &str,
    report: Report,
    value: &Value,
    latency: Option<Histogram<u64>>,
    started: Option<SystemTime>,
) -> Result<Run, InputError> {
    let intervals = match value.get("intervals") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => Vec::<Interval>::deserialize(v).map_err(InputError::Intervals)?,
    };
    let start_unix_s = value
        .get("start_unix_s")
        .and_then(Value::as_f64)
        .or_else(|| {
            started
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs_f64())
        });
    Ok(Run {
        label: label.to_string(),
        report,
        start_unix_s,
        intervals,
        latency,
    })
}

fn read_sweep(label: &str, sweep: &Value) -> Result<Sweep, InputError> {
    #[derive(Deserialize)]
    struct Raw {
        #[serde(default)]
        steps: Vec<Value>,
        #[serde(default)]
        stopped: Option<String>,
        #[serde(default)]
        find_max: Option<FindMax>,
    }
    let raw = Raw::deserialize(sweep).map_err(InputError::Sweep)?;
    let mut steps = Vec::with_capacity(raw.steps.len());
    for (i, value) in raw.steps.iter().enumerate() {
        let report = Report::deserialize(value).map_err(|source| InputError::Step {
            step: i + 1,
            source,
        })?;
        // A step's `rate` is the rate it offered; closed-loop steps offered what they achieved.
        let offered = report.rate.unwrap_or(report.msgs_per_s);
        steps.push(SweepStep { offered, report });
    }
    // A search for the highest rate probes out of order; the curve goes by offered rate.
    steps.sort_by(|a, b| a.offered.total_cmp(&b.offered));
    Ok(Sweep {
        label: label.to_string(),
        steps,
        stopped: raw.stopped,
        find_max: raw.find_max,
    })
}

/// Intervals over time from a log with several untagged interval histograms (one per period
/// of the run); empty for a log of one histogram, which says nothing about time.
fn log_intervals(bytes: &[u8]) -> Vec<Interval> {
    let mut deserializer = Deserializer::new();
    let mut found = Vec::new();
    for entry in IntervalLogIterator::new(bytes) {
        let Ok(LogEntry::Interval(interval)) = entry else {
            continue;
        };
        if interval.tag().is_some() {
            continue;
        }
        let Ok(raw) =
            base64::engine::general_purpose::STANDARD.decode(interval.encoded_histogram())
        else {
            continue;
        };
        let Ok(h) = deserializer.deserialize::<u64, _>(&mut raw.as_slice()) else {
            continue;
        };
        found.push((interval.start_timestamp(), interval.duration(), h));
    }
    if found.len() < 2 {
        return Vec::new();
    }
    let first = found.iter().map(|f| f.0).min().unwrap_or_default();
    let us = |ns: u64| ns as f64 / 1_000.0;
    found
        .into_iter()
        .map(|(start, length, h)| {
            let duration_s = length.as_secs_f64();
            Interval {
                start_s: (start - first).as_secs_f64(),
                duration_s,
                msgs_per_s: if duration_s > 0.0 {
                    h.len() as f64 / duration_s
                } else {
                    0.0
                },
                latency_us: IntervalLatency {
                    p50: us(h.value_at_quantile(0.5)),
                    p99: us(h.value_at_quantile(0.99)),
                    max: us(h.max()),
                },
                errors: 0,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::hlog::tests::outcome;

    #[test]
    fn a_json_report_with_and_without_intervals() {
        // A report as written before intervals and the start time existed.
        let mut report = outcome(&[1_000, 2_000], 1_700_000_000, 2.0).report;
        report.intervals.clear();
        report.start_unix_s = None;
        let mut json = serde_json::to_value(&report).unwrap();
        json.as_object_mut().unwrap().remove("intervals");
        let json = json.to_string();
        let Source::Run(run) = read("a", json.as_bytes()).unwrap() else {
            panic!("not a run")
        };
        assert_eq!(run.report, report);
        assert!(run.intervals.is_empty() && run.latency.is_none() && run.start_unix_s.is_none());

        let mut value = serde_json::to_value(&report).unwrap();
        value["start_unix_s"] = serde_json::json!(1_765_000_000.5);
        value["intervals"] = serde_json::json!([
            { "start_s": 0.0, "duration_s": 1.0, "messages": 10, "msgs_per_s": 10.0,
              "latency_us": { "p50": 1.0, "p99": 2.0, "max": 3.0 }, "errors": 0,
              "connections_open": 1 },
            { "start_s": 1.0, "duration_s": 0.5, "messages": 4, "msgs_per_s": 8.0,
              "latency_us": { "p50": 1.5, "p99": 2.5, "max": 3.5 }, "errors": 1,
              "connections_open": 1 }
        ]);
        let Source::Run(run) = read("a", value.to_string().as_bytes()).unwrap() else {
            panic!("not a run")
        };
        assert_eq!(run.start_unix_s, Some(1_765_000_000.5));
        assert_eq!(run.intervals.len(), 2);
        assert_eq!(run.intervals[1].msgs_per_s, 8.0);
        assert_eq!(run.intervals[1].latency_us.p99, 2.5);
        assert_eq!(run.intervals[1].errors, 1);
    }

    #[test]
    fn a_histogram_log_brings_its_histogram_and_start() {
        let made = outcome(&[1_000, 2_000, 3_000], 1_700_000_000, 2.0);
        let mut log = Vec::new();
        hlog::write(&mut log, &made).unwrap();
        let Source::Run(run) = read("log", &log).unwrap() else {
            panic!("not a run")
        };
        assert_eq!(run.latency.as_ref(), Some(&made.latency));
        assert_eq!(run.report, made.report);
        assert_eq!(run.start_unix_s, Some(1_700_000_000.0));
        // The report's own intervals.
        assert_eq!(run.intervals.len(), made.report.intervals.len());
    }

    #[test]
    fn a_log_of_several_intervals_gives_a_time_series() {
        // Two one-second interval histograms with absolute timestamps, as another tool's
        // interval log may hold them.
        let mut text = String::from("#[Histogram log format version 1.3]\n");
        for (second, values) in [(0u64, &[1_000u64, 2_000][..]), (1, &[5_000, 6_000, 7_000])] {
            let run = outcome(values, 1_700_000_000 + second, 1.0);
            let mut one = Vec::new();
            hlog::write(&mut one, &run).unwrap();
            let line = String::from_utf8(one)
                .unwrap()
                .lines()
                .find(|l| l.starts_with("0.000,"))
                .unwrap()
                .replacen("0.000", &format!("{}.000", 1_700_000_000 + second), 1);
            text.push_str(&line);
            text.push('\n');
        }
        let Source::Run(run) = read("log", text.as_bytes()).unwrap() else {
            panic!("not a run")
        };
        assert_eq!(run.report.messages_received, 5);
        assert_eq!(run.intervals.len(), 2);
        assert_eq!(run.intervals[1].start_s, 1.0);
        assert_eq!(run.intervals[1].msgs_per_s, 3.0);
        assert!((run.intervals[1].latency_us.max - 7.0).abs() < 0.01);
    }

    #[test]
    fn a_sweep_is_ordered_by_offered_rate() {
        let step = |rate: f64| {
            let mut r = outcome(&[1_000], 0, 1.0).report;
            r.mode = "open".into();
            r.rate = Some(rate);
            serde_json::to_value(r).unwrap()
        };
        let json = serde_json::json!({ "sweep": {
            "rates": [2000.0, 1000.0],
            "steps": [step(2000.0), step(1000.0)],
            "stopped": "p99 above 2 ms",
            "find_max": { "target": "p99<1ms", "max_rate": 1500.0 }
        }});
        let Source::Sweep(sweep) = read("s", json.to_string().as_bytes()).unwrap() else {
            panic!("not a sweep")
        };
        let offered: Vec<f64> = sweep.steps.iter().map(|s| s.offered).collect();
        assert_eq!(offered, [1000.0, 2000.0]);
        assert_eq!(sweep.stopped.as_deref(), Some("p99 above 2 ms"));
        assert_eq!(sweep.find_max.unwrap().max_rate, Some(1500.0));

        let bad = serde_json::json!({ "sweep": { "steps": [{ "endpoint": 3 }] } });
        assert!(matches!(
            read("s", bad.to_string().as_bytes()),
            Err(InputError::Step { step: 1, .. })
        ));
        assert!(matches!(
            read("x", b"{ nope"),
            Err(InputError::Unreadable(_))
        ));
        assert!(matches!(
            read("x", b"{\"a\": 1}"),
            Err(InputError::NotAReport(_))
        ));
        assert!(matches!(
            read("x", b"not a log"),
            Err(InputError::HistLog(_))
        ));
    }
}
