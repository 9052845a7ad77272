//! Combining several runs into one report, from their histogram logs: the latency histograms
//! are added sample for sample (so percentiles are those of all samples together, not averages of
//! percentiles), and counts, errors and CPU time are summed.
//!
//! The runs are taken to be parts of one load — several bench processes driving one server at
//! once, from several hosts or source addresses — so rates are totals over the overall period,
//! from the earliest start to the latest end. Runs made one after another give the average over
//! their whole span, gaps included, and the merge says so (`periods_overlap: false`).
//!
//! Intervals are aligned on wall-clock time: the merged series starts with the earliest
//! interval of any run and steps by the shortest interval length; each run's interval goes to
//! the step nearest its start, where its histogram is added to the others'. Its errors and
//! open connections come from the run's report, when the log carries one with intervals.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

use super::hlog::LoggedRun;
use super::recorder::new_histogram;
use super::report::Interval;
use super::report::{
    ChurnReport, ErrorCounts, LatencySummary, Report, round3, round6, unix_seconds,
};
use super::series::{IntervalHistogram, PackedHistogram, interval_entry};

/// The merged report and histograms.
#[derive(Debug, Clone)]
pub struct Merged {
    pub report: Report,
    pub latency: Histogram<u64>,
    pub connect: Histogram<u64>,
    /// When the earliest run's measured period began.
    pub start: SystemTime,
    /// The merged intervals' histograms, from `start`.
    pub intervals: Vec<IntervalHistogram>,
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
    let latest_start = runs.iter().map(|r| r.start).max();
    let earliest_end = runs.iter().map(|r| r.end).min();
    let periods_overlap = (runs.len() > 1).then(|| latest_start < earliest_end);
    let (intervals, interval_histograms) = align(runs);
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
        start_unix_s: start.map(unix_seconds),
        shard: None,
        host: {
            let hosts: BTreeSet<&str> = reports
                .iter()
                .map(|r| r.host.as_str())
                .filter(|h| !h.is_empty())
                .collect();
            hosts.into_iter().collect::<Vec<_>>().join(", ")
        },
        intervals,
        thresholds: Vec::new(),
        periods_overlap,
        churn: merge_churn(&reports, &connect),
    };
    report.derive_rates();
    Merged {
        report,
        latency,
        connect,
        start: start.unwrap_or(UNIX_EPOCH),
        intervals: interval_histograms,
    }
}

/// The runs' intervals on one wall-clock grid (see the module documentation).
fn align(runs: &[LoggedRun]) -> (Vec<Interval>, Vec<IntervalHistogram>) {
    let all = runs.iter().flat_map(|r| &r.intervals);
    let Some(origin) = all.clone().map(|i| i.start).min() else {
        return (Vec::new(), Vec::new());
    };
    let step = all
        .clone()
        .map(|i| i.length)
        .filter(|l| !l.is_zero())
        .min()
        .unwrap_or(Duration::from_secs(1));
    let end = runs.iter().map(|r| r.end).max().unwrap_or(origin);
    let slot_of = |t: SystemTime| -> usize {
        let offset = t.duration_since(origin).unwrap_or_default();
        (offset.as_secs_f64() / step.as_secs_f64()).round() as usize
    };
    let mut by_slot: Vec<(usize, &PackedHistogram)> =
        all.map(|i| (slot_of(i.start), &i.latency)).collect();
    by_slot.sort_by_key(|(slot, _)| *slot);
    let n = by_slot.last().map_or(0, |(slot, _)| slot + 1);

    // Errors and open connections from the reports, the last figure of a run in each slot.
    let mut errors = vec![0u64; n];
    let mut open: HashMap<(usize, usize), u64> = HashMap::new();
    for (r, run) in runs.iter().enumerate() {
        let Some(report) = &run.report else { continue };
        let Some(began) = report.start_unix_s else {
            continue;
        };
        for i in &report.intervals {
            let at = UNIX_EPOCH + Duration::from_secs_f64((began + i.start_s).max(0.0));
            let slot = slot_of(at).min(n.saturating_sub(1));
            if let Some(e) = errors.get_mut(slot) {
                *e += i.errors;
            }
            open.insert((r, slot), i.connections_open);
        }
    }

    let mut intervals = Vec::with_capacity(n);
    let mut histograms = Vec::with_capacity(n);
    let mut next = by_slot.into_iter().peekable();
    for (slot, &slot_errors) in errors.iter().enumerate() {
        let mut h = new_histogram();
        while let Some((_, packed)) = next.next_if(|(s, _)| *s == slot) {
            h.add(packed.unpack())
                .expect("histograms of equal bounds add");
        }
        let from = step * slot as u32;
        let left = end
            .duration_since(origin + from)
            .unwrap_or_default()
            .min(step);
        let length = if left.is_zero() { step } else { left };
        let connections: u64 = open
            .iter()
            .filter(|((_, s), _)| *s == slot)
            .map(|(_, n)| n)
            .sum();
        intervals.push(interval_entry(from, length, &h, slot_errors, connections));
        histograms.push(IntervalHistogram {
            start: from,
            length,
            latency: PackedHistogram::pack(&h),
        });
    }
    (intervals, histograms)
}

/// The churn figures of several runs: counts add up (TLS handshakes over the runs that count
/// them), and connect times come from the merged connect histogram (in a churn run it holds
/// the churn connects). First-echo times are kept only for a single run, since logs do not
/// carry that histogram. `None` if no run churned.
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
    // Only runs against TLS endpoints count handshakes; a merge without any has none either.
    let add = |count: fn(&ChurnReport) -> Option<u64>| -> Option<u64> {
        churned.iter().filter_map(|c| count(c)).reduce(|a, b| a + b)
    };
    merged.tls_handshakes_full = add(|c| c.tls_handshakes_full);
    merged.tls_handshakes_resumed = add(|c| c.tls_handshakes_resumed);
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
        start_unix_s: Some(unix_seconds(run.start)),
        shard: None,
        host: String::new(),
        intervals: Vec::new(),
        thresholds: Vec::new(),
        periods_overlap: None,
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

    fn logged_series(per_interval: &[Vec<u64>], start: u64) -> LoggedRun {
        let run = hlog::tests::series(per_interval, start, 1.0);
        let mut buf = Vec::new();
        hlog::write(&mut buf, &run).unwrap();
        hlog::read(&buf).unwrap()
    }

    #[test]
    fn intervals_align_on_wall_clock_time() {
        // A: 3 intervals from t=1000; B: 3 intervals from t=1001, one interval later.
        let a = logged_series(&[vec![1_000; 10], vec![2_000; 20], vec![3_000; 30]], 1_000);
        let b = logged_series(&[vec![4_000; 1], vec![5_000; 2], vec![6_000; 3]], 1_001);
        let merged = merge(&[a, b]);
        let counts: Vec<u64> = merged.report.intervals.iter().map(|i| i.messages).collect();
        assert_eq!(counts, [10, 21, 32, 3]);
        let starts: Vec<f64> = merged.report.intervals.iter().map(|i| i.start_s).collect();
        assert_eq!(starts, [0.0, 1.0, 2.0, 3.0]);
        // The histograms are unions: slot 1 holds A's 2 µs samples and B's 4 µs one.
        let slot1 = merged.intervals[1].latency.unpack();
        assert_eq!(slot1.len(), 21);
        assert_eq!(slot1.max(), slot1.highest_equivalent(4_000));
        assert_eq!(merged.report.intervals[1].latency_us.max, 4.001);
        assert_eq!(merged.report.intervals[1].connections_open, 2);
        assert_eq!(merged.report.intervals[0].connections_open, 1);
        assert_eq!(merged.report.start_unix_s, Some(1_000.0));
        assert_eq!(merged.report.periods_overlap, Some(true));
        assert_eq!(merged.report.duration_s, 4.0);
    }

    #[test]
    fn runs_apart_in_time_are_flagged() {
        let a = logged_series(&[vec![1_000], vec![1_000]], 1_000);
        let b = logged_series(&[vec![1_000]], 1_005);
        let merged = merge(&[a, b]);
        assert_eq!(merged.report.periods_overlap, Some(false));
        assert_eq!(merged.report.intervals.len(), 6);
        assert_eq!(merged.report.intervals[5].messages, 1);
        assert_eq!(merged.report.intervals[3].messages, 0);
        // One run alone says nothing about overlap.
        let single = merge(&[logged_series(&[vec![1]], 7)]);
        assert_eq!(single.report.periods_overlap, None);
    }

    #[test]
    fn an_old_single_interval_log_merges_with_a_new_one() {
        let old = hlog::read(include_bytes!("testdata/single-interval.hlog")).unwrap();
        let start = 1_765_000_000;
        let new = logged_series(&[vec![1_000; 4], vec![1_000; 6]], start);
        let merged = merge(&[old, new]);
        assert_eq!(merged.latency.len(), 15);
        assert_eq!(merged.report.messages_received, 15);
        let counts: Vec<u64> = merged.report.intervals.iter().map(|i| i.messages).collect();
        // The old log's one 2 s interval goes to the slot of its start.
        assert_eq!(counts, [9, 6]);
        assert_eq!(merged.report.periods_overlap, Some(true));
    }
}
