//! The figures the charts plot, worked out from reports and histograms: percentile distribution
//! curves, the latency unit that suits a chart, and the knee of a sweep.

use hdrhistogram::Histogram;

use super::model::SweepStep;
use crate::bench::LatencySummary;

/// Reporting points per halving of the distance to 100 %, as HdrHistogram's own percentile
/// output (`.hgrm`) uses: about 100 points from 0 % to 99.999 %.
const TICKS_PER_HALF: u32 = 5;

/// The percentile distribution a summary gives: (1/(1-p), latency µs) at 0 % (the minimum),
/// 50, 90, 99, 99.9 and 99.99 %, and the maximum at the last sample's place, 1/(1-p) = count.
/// A percentile is left out when the run has too few samples to tell it from the maximum.
pub fn distribution_from_summary(s: &LatencySummary) -> Vec<(f64, f64)> {
    if s.count == 0 {
        return Vec::new();
    }
    let count = s.count as f64;
    let mut points = vec![(1.0, s.min)];
    for (x, v) in [
        (2.0, s.p50),
        (10.0, s.p90),
        (100.0, s.p99),
        (1_000.0, s.p999),
        (10_000.0, s.p9999),
    ] {
        if x < count {
            points.push((x, v));
        }
    }
    points.push((count.max(1.0), s.max));
    points
}

/// The full percentile distribution of a histogram of nanoseconds, as (1/(1-p), latency µs):
/// the points HdrHistogram's percentile output lists, the last at 1/(1-p) = count (the maximum).
pub fn distribution_from_histogram(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let count = h.len() as f64;
    let us = |ns: u64| ns as f64 / 1_000.0;
    let mut points = vec![(1.0, us(h.min()))];
    for step in h.iter_quantiles(TICKS_PER_HALF) {
        let q = step.quantile_iterated_to();
        let x = if q < 1.0 { 1.0 / (1.0 - q) } else { count };
        // Past the last sample the position means nothing: the maximum stands at `count`.
        let x = x.min(count);
        let last = points.last().map_or(1.0, |p| p.0);
        points.push((x.max(last), us(step.value_iterated_to())));
    }
    points.push((count, us(h.max())));
    points
}

/// A unit for latencies on one chart, picked so that its tick labels stay short.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyUnit {
    pub name: &'static str,
    /// Microseconds in one of it.
    pub us: f64,
}

impl LatencyUnit {
    /// µs below 1 ms, ms below 1 s, else s; chosen from the largest value to show.
    pub fn for_max(max_us: f64) -> LatencyUnit {
        if max_us >= 1e6 {
            LatencyUnit { name: "s", us: 1e6 }
        } else if max_us >= 1e3 {
            LatencyUnit {
                name: "ms",
                us: 1e3,
            }
        } else {
            LatencyUnit {
                name: "µs",
                us: 1.0,
            }
        }
    }
}

/// Where a sweep's latency broke.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Knee {
    /// The last step (index into the steps in offered-rate order) before the first that broke.
    At(usize),
    /// No step broke: the server kept up at the highest rate tried.
    NotReached,
    /// Already the lowest rate broke, so there is no low-load value to compare with.
    FromStart,
}

/// A p99 this many times the lowest rate's p99 means the server no longer keeps up.
pub const KNEE_P99_FACTOR: f64 = 2.0;
/// Achieving less than this share of the offered rate means the server fell behind.
pub const KNEE_ACHIEVED_SHARE: f64 = 0.95;

/// The knee of a sweep whose steps are in offered-rate order: the last step before the first
/// one that broke, where a step breaks when its p99 exceeds [`KNEE_P99_FACTOR`] times the
/// lowest rate's p99, its achieved rate falls below [`KNEE_ACHIEVED_SHARE`] of the offered
/// rate, or it has errors.
pub fn knee(steps: &[SweepStep]) -> Knee {
    let Some(first) = steps.first() else {
        return Knee::NotReached;
    };
    let base_p99 = first.report.latency_us.p99;
    let broke = |s: &SweepStep| {
        let r = &s.report;
        !r.passed()
            || r.msgs_per_s < KNEE_ACHIEVED_SHARE * s.offered
            || r.latency_us.p99 > KNEE_P99_FACTOR * base_p99
    };
    match steps.iter().position(broke) {
        None => Knee::NotReached,
        Some(0) => Knee::FromStart,
        Some(i) => Knee::At(i - 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::hlog::tests::outcome;
    use crate::bench::recorder::new_histogram;

    #[test]
    fn summary_points_stop_where_the_samples_do() {
        let mut s = LatencySummary {
            count: 500,
            min: 1.0,
            mean: 3.0,
            p50: 2.0,
            p90: 3.0,
            p99: 4.0,
            p999: 9.0,
            p9999: 9.0,
            max: 9.0,
        };
        assert_eq!(
            distribution_from_summary(&s),
            [
                (1.0, 1.0),
                (2.0, 2.0),
                (10.0, 3.0),
                (100.0, 4.0),
                (500.0, 9.0)
            ]
        );
        s.count = 0;
        assert!(distribution_from_summary(&s).is_empty());
    }

    #[test]
    fn histogram_points_follow_the_samples() {
        // 100 000 samples: 1..=100 000 µs.
        let mut h = new_histogram();
        for us in 1..=100_000u64 {
            h.record(us * 1_000).unwrap();
        }
        let points = distribution_from_histogram(&h);
        assert!(points.len() > 40, "{}", points.len());
        assert_eq!(points[0], (1.0, 1.0));
        let last = *points.last().unwrap();
        assert_eq!(last.0, 100_000.0);
        assert!((last.1 - 100_000.0).abs() / 100_000.0 < 0.001, "{last:?}");
        // Positions and values never go back.
        for w in points.windows(2) {
            assert!(w[1].0 >= w[0].0 && w[1].1 >= w[0].1, "{w:?}");
        }
        // At 1/(1-p) = 100 (p99) the curve is at 99 000 µs, within the histogram's precision.
        let near = points.iter().find(|p| p.0 >= 100.0).unwrap();
        assert!((near.1 - 99_000.0).abs() < 1_000.0, "{near:?}");
    }

    fn step(offered: f64, achieved: f64, p99: f64) -> SweepStep {
        let mut report = outcome(&[1_000], 0, 1.0).report;
        report.rate = Some(offered);
        report.msgs_per_s = achieved;
        report.latency_us.p99 = p99;
        SweepStep { offered, report }
    }

    #[test]
    fn the_knee_is_the_last_step_before_one_breaks() {
        let held = [
            step(1e3, 1e3, 50.0),
            step(2e3, 2e3, 60.0),
            step(3e3, 3e3, 99.0),
        ];
        assert_eq!(knee(&held), Knee::NotReached);
        // p99 past twice the low-load p99 (50 µs).
        let mut steps = held.to_vec();
        steps.push(step(4e3, 4e3, 101.0));
        steps.push(step(5e3, 5e3, 60.0));
        assert_eq!(knee(&steps), Knee::At(2));
        // Achieved short of 95 % of offered.
        let short = [step(1e3, 1e3, 50.0), step(2e3, 1_890.0, 50.0)];
        assert_eq!(knee(&short), Knee::At(0));
        // Errors.
        let mut failed = held.to_vec();
        failed[1].report.errors.lost = 1;
        failed[1].report.ok = false;
        assert_eq!(knee(&failed), Knee::At(0));
        assert_eq!(knee(&[step(1e3, 10.0, 50.0)]), Knee::FromStart);
    }
}
