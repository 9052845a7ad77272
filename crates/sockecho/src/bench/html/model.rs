//! What the page is made from: a [`Source`] per input file, either a [`Run`] (with its
//! intervals and, when known, its latency histogram) or a [`Sweep`] over offered rates.

use hdrhistogram::Histogram;
use serde::Deserialize;

use crate::bench::Report;

/// One file's worth of material for the page.
#[derive(Debug, Clone)]
pub enum Source {
    /// Boxed: a run carries its histogram, many times the size of a sweep's step list.
    Run(Box<Run>),
    Sweep(Sweep),
}

/// A run (or a merge of runs).
#[derive(Debug, Clone)]
pub struct Run {
    /// Its name on the page: the file name, or the endpoint of a run just made.
    pub label: String,
    pub report: Report,
    /// When the measured period began, seconds since the epoch, if known.
    pub start_unix_s: Option<f64>,
    /// Figures per interval of the run, oldest first (empty if the input has none).
    pub intervals: Vec<Interval>,
    /// The latency histogram (nanoseconds) when the input had one; the distribution is then
    /// drawn from it rather than from the report's percentiles.
    pub latency: Option<Histogram<u64>>,
}

/// One interval of a run, as the report's `intervals` list holds it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Interval {
    /// Seconds from the start of the measured period.
    #[serde(default)]
    pub start_s: f64,
    #[serde(default)]
    pub duration_s: f64,
    #[serde(default)]
    pub msgs_per_s: f64,
    #[serde(default)]
    pub latency_us: IntervalLatency,
    #[serde(default)]
    pub errors: u64,
}

/// An interval's latencies, microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
pub struct IntervalLatency {
    #[serde(default)]
    pub p50: f64,
    #[serde(default)]
    pub p99: f64,
    #[serde(default)]
    pub max: f64,
}

/// A sweep over offered rates.
#[derive(Debug, Clone)]
pub struct Sweep {
    pub label: String,
    /// In offered-rate order.
    pub steps: Vec<SweepStep>,
    /// Why the sweep stopped before its last rate, if it did.
    pub stopped: Option<String>,
    pub find_max: Option<FindMax>,
}

/// One rate of a sweep.
#[derive(Debug, Clone)]
pub struct SweepStep {
    /// The rate the step offered, messages per second.
    pub offered: f64,
    pub report: Report,
}

/// The outcome of a search for the highest rate that meets a latency target.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FindMax {
    /// The target as given, e.g. `p99<1ms`.
    pub target: String,
    /// The highest rate found to meet it; `None` if not even the lowest did.
    #[serde(default)]
    pub max_rate: Option<f64>,
}
