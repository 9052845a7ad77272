//! Combining several runs into one report, from their histogram logs: the latency histograms
//! are added sample for sample (so percentiles are those of all samples together, not averages of
//! percentiles), and counts, errors and CPU time are summed.
//!
//! The runs are taken to be parts of one load — several bench processes driving one server at
//! once, from several hosts or source addresses — so rates are totals over the overall period,
//! from the earliest start to the latest end. Runs made one after another give the average over
//! their whole span, gaps included.

use std::collections::BTreeSet;

use hdrhistogram::Histogram;

use super::hlog::LoggedRun;
use super::recorder::new_histogram;
use super::report::{ChurnReport, ErrorCounts, LatencySummary, Report, round3, round6};

/// The merged report and histograms.
#[derive(Debug, Clone)]
pub struct Merged {
    pub report: Report,
    pub latency: Histogram<u64>,
    pub connect: Histogram<u64>,
}

/// Merges runs read from histogram logs. A log from another tool contributes its latencies;
/// its message count is taken from its sample count, and it adds no bytes or errors.
pub fn merge(runs: &[LoggedRun]) -> Merged {
    let mut latency = new_histogram();
    let mut connect = new_histogram();
    for run in runs {
        // Both were made by `new_histogram` when read, with the same bounds.
        latency
            .add(&run.latency)
            .expect("histograms of equal bounds add");
        connect
            .add(&run.connect)
            .expect("histograms of equal bounds add");
    }
    let start = runs.iter().map(|r| r.start).min();
    let end = runs.iter().map(|r| r.end).max();
    let duration_s = match (start, end) {
        (Some(s), Some(e)) => e.duration_since(s).unwrap_or_default().as_secs_f64(),
        _ => 0.0,
    };

    let reports: Vec<Report> = runs
        .iter()
        .map(|r| r.report.clone().unwrap_or_else(|| foreign_report(r)))
        .collect();
    let distinct = |f: &dyn Fn(&Report) -> String| -> String {
        let set: BTreeSet<String> = reports.iter().map(f).collect();
        set.into_iter().collect::<Vec<_>>().join(", ")
    };
    let same_or_mixed = |f: &dyn Fn(&Report) -> String| -> String {
        let set: BTreeSet<String> = reports.iter().map(f).collect();
        if set.len() == 1 {
            set.into_iter().next().unwrap_or_default()
        } else {
            "mixed".into()
        }
    };
    let sum = |f: &dyn Fn(&Report) -> u64| -> u64 { reports.iter().map(f).sum() };
    let mut errors = ErrorCounts::default();
    for r in &reports {
        errors.add(&r.errors);
    }
    let messages_sent = sum(&|r| r.messages_sent);
    let bytes_sent = sum(&|r| r.bytes_sent);
    let sizes: BTreeSet<u64> = reports.iter().map(|r| r.size).collect();
    let size = match sizes.len() {
        1 => sizes.into_iter().next().unwrap_or(0),
        // Different sizes: the average message.
        _ if messages_sent > 0 => bytes_sent / messages_sent,
        _ => 0,
    };
    let all_open = !reports.is_empty() && reports.iter().all(|r| r.rate.is_some());
    let max_f = |f: &dyn Fn(&Report) -> f64| reports.iter().map(f).fold(0.0, f64::max);
    let mut report = Report {
        endpoint: distinct(&|r| r.endpoint.clone()),
        transport: same_or_mixed(&|r| r.transport.clone()),
        connections: sum(&|r| r.connections),
        connections_established: sum(&|r| r.connections_established),
        size,
        pipeline: reports.iter().map(|r| r.pipeline).max().unwrap_or(0),
        mode: same_or_mixed(&|r| r.mode.clone()),
        rate: all_open.then(|| reports.iter().filter_map(|r| r.rate).sum()),
        threads: sum(&|r| r.threads),
        io: same_or_mixed(&|r| r.io.clone()),
        udp_offload: reports.iter().any(|r| r.udp_offload),
        duration_s: round3(duration_s),
        warmup_s: max_f(&|r| r.warmup_s),
        timeout_s: max_f(&|r| r.timeout_s),
        messages_sent,
        messages_received: sum(&|r| r.messages_received),
        bytes_sent,
        bytes_received: sum(&|r| r.bytes_received),
        not_sent: sum(&|r| r.not_sent),
        msgs_per_s: 0.0,
        bytes_per_s_sent: 0.0,
        bytes_per_s_received: 0.0,
        latency_us: LatencySummary::from_histogram(&latency),
        connect_us: LatencySummary::from_histogram(&connect),
        errors,
        client_cpu_s: round6(reports.iter().map(|r| r.client_cpu_s).sum()),
        client_cpu_us_per_msg: None,
        ok: false,
        interrupted: reports.iter().any(|r| r.interrupted),
        runs: sum(&|r| r.runs),
        churn: merge_churn(&reports, &connect),
    };
    report.derive_rates();
    Merged {
        report,
        latency,
        connect,
    }
}

/// The churn figures of several runs: counts add up, and connect times come from the merged
/// connect histogram (in a churn run it holds the churn connects). First-echo times are kept
/// only for a single run, since logs do not carry that histogram. `None` if no run churned.
fn merge_churn(reports: &[Report], connect: &Histogram<u64>) -> Option<ChurnReport> {
    let churned: Vec<&ChurnReport> = reports.iter().filter_map(|r| r.churn.as_ref()).collect();
    if churned.is_empty() {
        return None;
    }
    let mut merged = ChurnReport {
        connections_opened: churned.iter().map(|c| c.connections_opened).sum(),
        connect_us: LatencySummary::from_histogram(connect),
        first_echo_us: match churned.as_slice() {
            [one] => one.first_echo_us,
            _ => LatencySummary::default(),
        },
        ..ChurnReport::default()
    };
    for c in &churned {
        merged.connect_errors.add(&c.connect_errors);
    }
    Some(merged)
}

/// What can be said of a run whose log carries no sockecho report.
fn foreign_report(run: &LoggedRun) -> Report {
    let n = run.latency.len();
    Report {
        endpoint: "unknown".into(),
        transport: "unknown".into(),
        connections: 0,
        connections_established: 0,
        size: 0,
        pipeline: 0,
        mode: "unknown".into(),
        rate: None,
        threads: 0,
        io: "unknown".into(),
        udp_offload: false,
        duration_s: run
            .end
            .duration_since(run.start)
            .unwrap_or_default()
            .as_secs_f64(),
        warmup_s: 0.0,
        timeout_s: 0.0,
        messages_sent: n,
        messages_received: n,
        bytes_sent: 0,
        bytes_received: 0,
        not_sent: 0,
        msgs_per_s: 0.0,
        bytes_per_s_sent: 0.0,
        bytes_per_s_received: 0.0,
        latency_us: LatencySummary::from_histogram(&run.latency),
        connect_us: LatencySummary::default(),
        errors: ErrorCounts::default(),
        client_cpu_s: 0.0,
        client_cpu_us_per_msg: None,
        ok: true,
        interrupted: false,
        runs: 1,
        churn: None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::bench::hlog;

    fn logged(values: &[u64], start: u64, duration: f64) -> LoggedRun {
        let run = hlog::tests::outcome(values, start, duration);
        let mut buf = Vec::new();
        hlog::write(&mut buf, &run).unwrap();
        hlog::read(&buf).unwrap()
    }

    #[test]
    fn merged_histogram_is_the_histogram_of_all_samples() {
        // Two runs with different shapes: fast and slow.
        let a: Vec<u64> = (1..=5_000).map(|i| 10_000 + i * 3).collect();
        let b: Vec<u64> = (1..=3_000).map(|i| 2_000_000 + i * 997).collect();
        let merged = merge(&[logged(&a, 1_000, 2.0), logged(&b, 1_001, 2.0)]);

        let mut all = new_histogram();
        for &v in a.iter().chain(&b) {
            all.record(v).unwrap();
        }
        assert_eq!(merged.latency, all);
        assert_eq!(merged.latency.len(), 8_000);
        for q in [0.5, 0.9, 0.99, 0.999, 0.9999] {
            assert_eq!(
                merged.latency.value_at_quantile(q),
                all.value_at_quantile(q),
                "q={q}"
            );
        }
        let r = &merged.report;
        assert_eq!(r.latency_us, LatencySummary::from_histogram(&all));
        assert_eq!(r.messages_sent, 8_000);
        assert_eq!(r.messages_received, 8_000);
        assert_eq!(r.bytes_received, 64 * 8_000);
        assert_eq!(r.connections, 2);
        assert_eq!(r.runs, 2);
        // Overlapping runs from t=1000 to t=1003: a 3 s span.
        assert_eq!(r.duration_s, 3.0);
        assert!((r.msgs_per_s - 8_000.0 / 3.0).abs() < 0.01);
        assert_eq!(r.client_cpu_s, 1.0);
        assert_eq!(r.connect_us.count, 2);
        assert!(r.ok);
        assert_eq!(r.endpoint, "tcp://127.0.0.1:7");
        assert_eq!(r.mode, "closed");
    }

    #[test]
    fn errors_add_up_and_fail_the_merge() {
        let mut bad = logged(&[1_000], 0, 1.0);
        let report = bad.report.as_mut().unwrap();
        report.errors.mismatched = 3;
        report.ok = false;
        let merged = merge(&[bad, logged(&[2_000], 0, 1.0)]);
        assert_eq!(merged.report.errors.mismatched, 3);
        assert!(!merged.report.ok);
        assert_eq!(
            UNIX_EPOCH + Duration::from_secs(1),
            UNIX_EPOCH + Duration::from_secs_f64(merged.report.duration_s)
        );
    }
}
