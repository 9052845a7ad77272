//! The run as a time series: per-interval latency histograms, error counts and connections
//! open, recorded by each load thread without locks and put together once the run is over.
//!
//! A thread records a latency into the histogram of the interval it is in; when a sample falls
//! past that interval's end, the histogram is folded into the thread's total, packed into its
//! compact serialized form and replaced by an empty one. The hot path thus pays one comparison
//! more than a plain record, and memory grows by a few kilobytes per interval rather than by a
//! full histogram. Errors and closed connections are rare, so they are counted per interval
//! directly. The coordinator then adds the threads' histograms interval by interval
//! ([`assemble`]) into the report's `intervals` and the histograms of the interval log.

use std::time::Duration;

use super::report::{Interval, IntervalLatency, round3};
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};

/// Longest latency a histogram holds, in nanoseconds (an hour); longer values are clamped.
const HIST_MAX_NS: u64 = 3_600_000_000_000;

/// A histogram of nanosecond values, 3 significant digits, 1 ns to an hour.
pub fn new_histogram() -> Histogram<u64> {
    // The bounds are constants that `new_with_bounds` accepts (low >= 1, high >= 2 * low).
    Histogram::new_with_bounds(1, HIST_MAX_NS, 3).expect("valid histogram bounds")
}

/// A histogram in HdrHistogram's V2 encoding: a few bytes per distinct value, where a
/// histogram of our bounds takes a quarter of a megabyte in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedHistogram(Vec<u8>);

impl PackedHistogram {
    pub fn pack(h: &Histogram<u64>) -> PackedHistogram {
        let mut bytes = Vec::new();
        // Writing into a Vec cannot fail, and a histogram of our bounds always encodes.
        V2Serializer::new()
            .serialize(h, &mut bytes)
            .expect("a histogram encodes into memory");
        PackedHistogram(bytes)
    }

    pub fn unpack(&self) -> Histogram<u64> {
        let mut h = new_histogram();
        // The bytes were made by `pack` from a histogram of the same bounds.
        let decoded: Histogram<u64> = Deserializer::new()
            .deserialize(&mut self.0.as_slice())
            .expect("a packed histogram decodes");
        h.add(&decoded).expect("histograms of equal bounds add");
        h
    }
}

/// One interval's latency histogram, for the interval log.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalHistogram {
    /// From the start of the measured period.
    pub start: Duration,
    pub length: Duration,
    pub latency: PackedHistogram,
}

/// What one thread records over the measured period.
#[derive(Debug)]
pub struct Series {
    /// Clock time the measured period begins.
    origin: u64,
    /// Interval length in nanoseconds.
    length: u64,
    /// Index of the last interval of the planned period; later samples go there.
    last: usize,
    /// The interval `hist` holds.
    current: usize,
    /// When `current` ends (`u64::MAX` for the last one, and before the period is known).
    current_end: u64,
    hist: Histogram<u64>,
    /// Every sample of the intervals already closed.
    total: Histogram<u64>,
    closed: Vec<(usize, PackedHistogram)>,
    errors: Vec<u64>,
    /// Connections that closed, by interval.
    disconnects: Vec<u64>,
}

impl Default for Series {
    fn default() -> Self {
        Series {
            origin: 0,
            length: u64::MAX,
            last: 0,
            current: 0,
            current_end: u64::MAX,
            hist: new_histogram(),
            total: new_histogram(),
            closed: Vec::new(),
            errors: Vec::new(),
            disconnects: Vec::new(),
        }
    }
}

/// A thread's series, handed to the coordinator.
#[derive(Debug, Clone, Default)]
pub struct SeriesResult {
    pub intervals: Vec<(usize, PackedHistogram)>,
    pub errors: Vec<u64>,
    pub disconnects: Vec<u64>,
}

impl Series {
    /// Sets the measured period: from clock time `origin`, `period` long, in intervals of
    /// `length`.
    pub fn begin(&mut self, origin: u64, period: Duration, length: Duration) {
        let length = (length.as_nanos() as u64).max(1);
        self.origin = origin;
        self.length = length;
        self.last = intervals_in(period, Duration::from_nanos(length)).saturating_sub(1);
        self.current = 0;
        self.current_end = self.end_of(0);
    }

    fn end_of(&self, index: usize) -> u64 {
        if index >= self.last {
            u64::MAX
        } else {
            self.origin
                .saturating_add((index as u64 + 1).saturating_mul(self.length))
        }
    }

    /// The interval clock time `t` falls in.
    fn index(&self, t: u64) -> usize {
        ((t.saturating_sub(self.origin) / self.length) as usize).min(self.last)
    }

    /// Records a latency of `ns` nanoseconds, received at clock time `now`.
    #[inline]
    pub fn record(&mut self, now: u64, ns: u64) {
        if now >= self.current_end {
            self.advance(now);
        }
        self.hist.saturating_record(ns);
    }

    /// Closes the current interval and moves to the one `now` falls in.
    #[cold]
    fn advance(&mut self, now: u64) {
        self.close_current();
        self.current = self.index(now);
        self.current_end = self.end_of(self.current);
    }

    fn close_current(&mut self) {
        if self.hist.is_empty() {
            return;
        }
        self.total
            .add(&self.hist)
            .expect("histograms of equal bounds add");
        self.closed
            .push((self.current, PackedHistogram::pack(&self.hist)));
        self.hist.reset();
    }

    /// Counts `n` errors noticed at clock time `now`.
    pub fn errors(&mut self, now: u64, n: u64) {
        let index = self.index(now);
        bump(&mut self.errors, index, n);
    }

    /// Counts a connection that closed at clock time `now`.
    pub fn disconnect(&mut self, now: u64) {
        let index = self.index(now);
        bump(&mut self.disconnects, index, 1);
    }

    /// Closes the last interval and returns every latency recorded, and the series.
    pub fn finish(&mut self) -> (Histogram<u64>, SeriesResult) {
        self.close_current();
        let total = std::mem::replace(&mut self.total, new_histogram());
        let result = SeriesResult {
            intervals: std::mem::take(&mut self.closed),
            errors: std::mem::take(&mut self.errors),
            disconnects: std::mem::take(&mut self.disconnects),
        };
        (total, result)
    }
}

fn bump(counts: &mut Vec<u64>, index: usize, n: u64) {
    if counts.len() <= index {
        counts.resize(index + 1, 0);
    }
    counts[index] += n;
}

/// How many intervals of `length` cover `period` (the last one may be shorter); at least one.
pub fn intervals_in(period: Duration, length: Duration) -> usize {
    let length = length.as_nanos().max(1);
    (period.as_nanos().div_ceil(length) as usize).max(1)
}

/// Puts the threads' series together: `period` is what the measured period lasted, `length`
/// the interval, `established` the connections open when it began. Samples a thread put past
/// the end (a run stopped early) count in the last interval.
pub fn assemble(
    threads: &[SeriesResult],
    period: Duration,
    length: Duration,
    established: u64,
) -> (Vec<Interval>, Vec<IntervalHistogram>) {
    let n = intervals_in(period, length);
    let mut by_index: Vec<(usize, &PackedHistogram)> = threads
        .iter()
        .flat_map(|t| t.intervals.iter().map(|(i, h)| ((*i).min(n - 1), h)))
        .collect();
    by_index.sort_by_key(|(i, _)| *i);
    let per_index = |counts: &dyn Fn(&SeriesResult) -> &Vec<u64>| -> Vec<u64> {
        let mut sums = vec![0; n];
        for t in threads {
            for (i, &c) in counts(t).iter().enumerate() {
                sums[i.min(n - 1)] += c;
            }
        }
        sums
    };
    let errors = per_index(&|t| &t.errors);
    let disconnects = per_index(&|t| &t.disconnects);

    let mut intervals = Vec::with_capacity(n);
    let mut histograms = Vec::with_capacity(n);
    let mut next = by_index.into_iter().peekable();
    let mut open = established;
    for i in 0..n {
        let mut h = new_histogram();
        while let Some((_, packed)) = next.next_if(|(j, _)| *j == i) {
            h.add(packed.unpack())
                .expect("histograms of equal bounds add");
        }
        let start = length * i as u32;
        let len = period.saturating_sub(start).min(length);
        open = open.saturating_sub(disconnects[i]);
        intervals.push(interval_entry(start, len, &h, errors[i], open));
        histograms.push(IntervalHistogram {
            start,
            length: len,
            latency: PackedHistogram::pack(&h),
        });
    }
    (intervals, histograms)
}

/// The report's entry for one interval.
pub fn interval_entry(
    start: Duration,
    length: Duration,
    h: &Histogram<u64>,
    errors: u64,
    connections_open: u64,
) -> Interval {
    let secs = length.as_secs_f64();
    Interval {
        start_s: round3(start.as_secs_f64()),
        duration_s: round3(secs),
        messages: h.len(),
        msgs_per_s: if secs > 0.0 {
            round3(h.len() as f64 / secs)
        } else {
            0.0
        },
        latency_us: IntervalLatency::from_histogram(h),
        errors,
        connections_open,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn samples_land_in_the_interval_they_arrive_in() {
        let mut s = Series::default();
        s.begin(10 * S, Duration::from_millis(2_500), Duration::from_secs(1));
        s.record(10 * S, 1_000);
        s.record(10 * S + 999_999_999, 2_000);
        s.record(11 * S, 3_000);
        // Nothing in the second interval's tail; then the last (short) one, and a late reply.
        s.record(12 * S + 1, 4_000);
        s.record(20 * S, 5_000);
        s.errors(11 * S + 5, 1);
        s.disconnect(30 * S);
        let (total, mine) = s.finish();
        assert_eq!(total.len(), 5);
        let indices: Vec<usize> = mine.intervals.iter().map(|(i, _)| *i).collect();
        assert_eq!(indices, [0, 1, 2]);
        assert_eq!(mine.intervals[2].1.unpack().len(), 2);
        assert_eq!(mine.errors, [0, 1]);
        assert_eq!(mine.disconnects, [0, 0, 1]);

        let (intervals, hists) = assemble(
            &[mine.clone(), mine],
            Duration::from_millis(2_500),
            Duration::from_secs(1),
            4,
        );
        assert_eq!(intervals.len(), 3);
        assert_eq!(hists.len(), 3);
        let counts: Vec<u64> = intervals.iter().map(|i| i.messages).collect();
        assert_eq!(counts, [4, 2, 4]);
        assert_eq!(intervals[2].duration_s, 0.5);
        assert_eq!(intervals[2].msgs_per_s, 8.0);
        assert_eq!(intervals[1].errors, 2);
        assert_eq!(intervals[1].connections_open, 4);
        assert_eq!(intervals[2].connections_open, 2);
        assert_eq!(intervals[0].latency_us.max, 2.0);
        assert_eq!(hists[2].start, Duration::from_secs(2));
        assert_eq!(hists[2].latency.unpack().len(), 4);
    }

    #[test]
    fn a_run_stopped_early_folds_the_rest_into_its_last_interval() {
        let mut s = Series::default();
        s.begin(0, Duration::from_secs(10), Duration::from_secs(1));
        s.record(S / 2, 1_000);
        s.record(5 * S, 1_000);
        let (_, mine) = s.finish();
        let (intervals, _) = assemble(
            &[mine],
            Duration::from_millis(1_200),
            Duration::from_secs(1),
            1,
        );
        let counts: Vec<u64> = intervals.iter().map(|i| i.messages).collect();
        assert_eq!(counts, [1, 1]);
        assert_eq!(intervals[1].duration_s, 0.2);
    }

    #[test]
    fn packing_keeps_every_count() {
        let mut h = new_histogram();
        for v in [1, 17, 1_000, 65_000, 3_000_000_000] {
            h.record(v).unwrap();
        }
        assert_eq!(PackedHistogram::pack(&h).unpack(), h);
    }
}
