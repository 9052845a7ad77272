//! Capacity: open-loop runs over a range of rates (`--rates 10k:200k:10k`), stopping once the
//! server falls behind, and the search for the highest rate that keeps a latency target
//! (`--find-max 'p99<1ms'`).
//!
//! [`Sweeper`] decides which rate comes next from the reports of the steps so far; it runs
//! nothing itself, so the caller runs each step as an ordinary open-loop run (warm-up, then the
//! measured period) and can show or stop it like one. A step *keeps up* when every message came
//! back right and the achieved rate is within the margin of the offered one; for a search it
//! must also meet the target.
//!
//! A search ramps up from the start rate, doubling while steps keep up, then bisects between
//! the last rate that kept up and the first that did not until the two are within the
//! precision of each other, in a bounded number of steps. If the start rate already fails, it
//! halves instead. The answer is the last rate that kept up.
//!
//! Thresholds (`--threshold`) are checked on every step; the sweep's verdict is that of its
//! best step: the rate a search found, or the highest rate a plain sweep kept up at.

use serde::Serialize;

use super::report::Report;
use super::threshold::{Threshold, parse_rate};

/// Why a rate list does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad rates {text:?}: {problem}")]
pub struct RatesError {
    pub text: String,
    pub problem: String,
}

/// Most steps a rate range may expand to.
pub const MAX_RANGE_STEPS: usize = 1_000;

/// Parses `FROM:TO:STEP` (every rate from FROM to TO inclusive, STEP apart) or a list
/// `R1,R2,...`; rates may end in `k` or `M`.
pub fn parse_rates(text: &str) -> Result<Vec<f64>, RatesError> {
    let fail = |problem: String| RatesError {
        text: text.to_owned(),
        problem,
    };
    let rate = |part: &str| parse_rate(part).map_err(|e| fail(e.to_string()));
    let rates = if text.contains(':') {
        let parts: Vec<&str> = text.split(':').collect();
        let [from, to, step] = parts[..] else {
            return Err(fail("a range is FROM:TO:STEP, e.g. 10k:200k:10k".into()));
        };
        let (from, to, step) = (rate(from)?, rate(to)?, rate(step)?);
        if step <= 0.0 {
            return Err(fail("the step must be above 0".into()));
        }
        if to < from {
            return Err(fail("the range ends below its start".into()));
        }
        let n = ((to - from) / step + 1e-9).floor() as usize + 1;
        if n > MAX_RANGE_STEPS {
            return Err(fail(format!(
                "{n} steps; at most {MAX_RANGE_STEPS} are allowed"
            )));
        }
        (0..n).map(|i| from + step * i as f64).collect()
    } else {
        text.split(',').map(rate).collect::<Result<Vec<_>, _>>()?
    };
    if rates.is_empty() || rates.iter().any(|&r| r <= 0.0) {
        return Err(fail("every rate must be above 0".into()));
    }
    Ok(rates)
}

/// The search for the highest rate that meets a target.
#[derive(Debug, Clone)]
pub struct FindMax {
    /// The condition every accepted step must meet, e.g. `p99<1ms`.
    pub target: Threshold,
    /// The first rate tried.
    pub start: f64,
    /// No rate above this is tried.
    pub ceiling: Option<f64>,
    /// The search ends once the last good and first bad rates are within this fraction of
    /// each other.
    pub precision: f64,
    /// Most steps the search runs.
    pub max_steps: usize,
}

/// What a sweep does.
#[derive(Debug, Clone)]
pub struct SweepPlan {
    /// The rates of a plain sweep, in order (unused by a search).
    pub rates: Vec<f64>,
    /// How far below the offered rate the achieved one may be (0.05: 5 %) for a step to keep
    /// up.
    pub margin: f64,
    pub find_max: Option<FindMax>,
}

/// The sweep's result: the shape `sockecho bench sweep --json` prints inside `{"sweep": ...}`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sweep {
    /// The offered rate of each step, in the order run.
    pub rates: Vec<f64>,
    /// Each step's report; its `rate` is the offered rate.
    pub steps: Vec<Report>,
    /// Why the sweep ended before its last rate, or how a search ended; `null` when a plain
    /// sweep ran every rate.
    pub stopped: Option<String>,
    pub find_max: Option<FindMaxResult>,
    /// Whether each step kept up (see the module documentation).
    #[serde(skip)]
    pub kept_up: Vec<bool>,
}

/// A search's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FindMaxResult {
    /// The target as written.
    pub target: String,
    /// The highest rate that met it; `null` if none did.
    pub max_rate: Option<f64>,
}

impl Sweep {
    /// The step the verdict and thresholds go by: the one at the rate a search found, or the
    /// highest-rate step of a plain sweep that kept up.
    pub fn best_step(&self) -> Option<&Report> {
        match &self.find_max {
            Some(found) => {
                let max = found.max_rate?;
                self.steps
                    .iter()
                    .zip(&self.kept_up)
                    .filter(|(s, kept)| **kept && s.rate == Some(max))
                    .map(|(s, _)| s)
                    .next_back()
            }
            None => self
                .steps
                .iter()
                .zip(&self.kept_up)
                .filter(|(_, kept)| **kept)
                .map(|(s, _)| s)
                .max_by(|a, b| a.rate.unwrap_or(0.0).total_cmp(&b.rate.unwrap_or(0.0))),
        }
    }
}

/// Picks each step's rate from the results so far.
#[derive(Debug)]
pub struct Sweeper {
    plan: SweepPlan,
    sweep: Sweep,
    /// The rate of the step under way.
    pending: Option<f64>,
    /// Search: highest rate that kept up, lowest that did not.
    good: Option<f64>,
    bad: Option<f64>,
    done: bool,
}

impl Sweeper {
    pub fn new(plan: SweepPlan) -> Sweeper {
        let find_max = plan.find_max.as_ref().map(|f| FindMaxResult {
            target: f.target.text().to_owned(),
            max_rate: None,
        });
        Sweeper {
            plan,
            sweep: Sweep {
                find_max,
                ..Sweep::default()
            },
            pending: None,
            good: None,
            bad: None,
            done: false,
        }
    }

    /// The rate of the next step, or `None` when the sweep is over.
    pub fn next_rate(&mut self) -> Option<f64> {
        if self.done {
            return None;
        }
        let next = match &self.plan.find_max {
            None => self.plan.rates.get(self.sweep.steps.len()).copied(),
            Some(f) => self.next_search_rate(f.clone()),
        };
        if next.is_none() {
            self.done = true;
        }
        self.pending = next;
        next
    }

    fn next_search_rate(&mut self, f: FindMax) -> Option<f64> {
        let ended = |sweeper: &mut Sweeper, why: String| {
            sweeper.sweep.stopped = Some(why);
            None
        };
        if self.sweep.steps.is_empty() {
            return Some(f.start);
        }
        if self.sweep.steps.len() >= f.max_steps {
            return ended(self, format!("the search used its {} steps", f.max_steps));
        }
        let next = match (self.good, self.bad) {
            (Some(good), None) => {
                let up = good * 2.0;
                match f.ceiling {
                    Some(c) if good >= c => {
                        return ended(self, format!("the ceiling of {} msg/s kept up", fmt(c)));
                    }
                    Some(c) => up.min(c),
                    None => up,
                }
            }
            (good, Some(bad)) => {
                let good = good.unwrap_or(0.0);
                if good > 0.0 && bad - good <= f.precision * good {
                    return ended(
                        self,
                        format!(
                            "found to within {}%: {} msg/s kept up, {} msg/s did not",
                            fmt(f.precision * 100.0),
                            fmt(good),
                            fmt(bad)
                        ),
                    );
                }
                if good == 0.0 && bad < 1.0 {
                    return ended(self, "no rate down to 1 msg/s met the target".into());
                }
                (good + bad) / 2.0
            }
            (None, None) => unreachable!("a step has run, so a rate is known good or bad"),
        };
        Some(next.round().max(1.0))
    }

    /// Takes the report of the step [`next_rate`](Sweeper::next_rate) asked for. Returns
    /// whether it kept up.
    pub fn record(&mut self, report: Report) -> bool {
        let rate = self.pending.take().or(report.rate).unwrap_or(0.0);
        let problem = self.falls_short(rate, &report);
        let kept_up = problem.is_none();
        if report.interrupted {
            self.sweep.stopped = Some(format!("stopped during the step at {} msg/s", fmt(rate)));
            self.done = true;
        }
        match (&self.plan.find_max, problem) {
            (None, Some(why)) => {
                self.sweep.stopped = Some(format!("at {} msg/s {why}", fmt(rate)));
                self.done = true;
            }
            (None, None) => {}
            (Some(_), None) => {
                self.good = Some(self.good.map_or(rate, |g| g.max(rate)));
                if let Some(found) = &mut self.sweep.find_max {
                    found.max_rate = self.good;
                }
            }
            (Some(_), Some(_)) => self.bad = Some(self.bad.map_or(rate, |b| b.min(rate))),
        }
        self.sweep.rates.push(rate);
        self.sweep.steps.push(report);
        self.sweep.kept_up.push(kept_up);
        kept_up
    }

    /// Why a step at `rate` did not keep up, if it did not.
    fn falls_short(&self, rate: f64, report: &Report) -> Option<String> {
        let errors = report.errors.failing(report.datagrams());
        if errors > 0 {
            return Some(format!("the run had {errors} errors"));
        }
        let floor = rate * (1.0 - self.plan.margin);
        if report.msgs_per_s < floor {
            return Some(format!(
                "the server fell behind: {} msg/s achieved, below {} (margin {}%)",
                fmt(report.msgs_per_s),
                fmt(floor),
                fmt(self.plan.margin * 100.0)
            ));
        }
        if let Some(f) = &self.plan.find_max {
            let verdict = f.target.check(report);
            if !verdict.passed {
                return Some(format!(
                    "{} failed ({} {})",
                    verdict.threshold, verdict.actual, verdict.unit
                ));
            }
        }
        None
    }

    /// The sweep so far.
    pub fn sweep(&self) -> &Sweep {
        &self.sweep
    }

    pub fn finish(self) -> Sweep {
        self.sweep
    }
}

/// A rate for messages: whole numbers without decimals.
fn fmt(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::hlog;

    /// A report of a step at `offered` against a server that handles at most `capacity`
    /// messages per second, with latency climbing as the load nears it.
    fn step(offered: f64, capacity: f64) -> Report {
        let achieved = offered.min(capacity);
        let latency_ns = if offered <= capacity {
            (100_000.0 / (1.05 - offered / capacity).max(0.05)) as u64
        } else {
            500_000_000
        };
        let mut r = hlog::tests::outcome(&[latency_ns; 10], 0, 1.0).report;
        r.rate = Some(offered);
        r.msgs_per_s = achieved;
        r
    }

    fn run(plan: SweepPlan, capacity: f64) -> Sweep {
        let mut sweeper = Sweeper::new(plan);
        while let Some(rate) = sweeper.next_rate() {
            sweeper.record(step(rate, capacity));
        }
        sweeper.finish()
    }

    #[test]
    fn ranges_and_lists() {
        assert_eq!(
            parse_rates("10k:50k:10k").unwrap(),
            [1e4, 2e4, 3e4, 4e4, 5e4]
        );
        assert_eq!(parse_rates("1k,5k,2M").unwrap(), [1e3, 5e3, 2e6]);
        assert_eq!(parse_rates("100:250:100").unwrap(), [100.0, 200.0]);
        assert!(
            parse_rates("10k:5k:1k")
                .unwrap_err()
                .problem
                .contains("below")
        );
        assert!(
            parse_rates("1:2")
                .unwrap_err()
                .problem
                .contains("FROM:TO:STEP")
        );
        assert!(parse_rates("0,5").unwrap_err().problem.contains("above 0"));
        assert!(
            parse_rates("1:1M:1")
                .unwrap_err()
                .problem
                .contains("at most")
        );
    }

    #[test]
    fn a_sweep_stops_where_the_server_falls_behind() {
        let plan = SweepPlan {
            rates: parse_rates("10k:100k:10k").unwrap(),
            margin: 0.05,
            find_max: None,
        };
        let sweep = run(plan, 42_000.0);
        assert_eq!(sweep.rates, [1e4, 2e4, 3e4, 4e4, 5e4]);
        let stopped = sweep.stopped.as_deref().unwrap();
        assert!(
            stopped.starts_with("at 50000 msg/s the server fell behind"),
            "{stopped}"
        );
        assert_eq!(sweep.best_step().unwrap().rate, Some(4e4));
    }

    #[test]
    fn the_search_finds_the_capacity() {
        let target = Threshold::parse("p99<1ms").unwrap();
        let plan = SweepPlan {
            rates: Vec::new(),
            margin: 0.05,
            find_max: Some(FindMax {
                target,
                start: 1_000.0,
                ceiling: None,
                precision: 0.02,
                max_steps: 30,
            }),
        };
        // p99 < 1 ms holds while 100 µs / (1.05 - load) < 1 ms: load below 0.95.
        let sweep = run(plan, 40_000.0);
        let found = sweep.find_max.clone().unwrap().max_rate.unwrap();
        assert!(
            (0.92 * 40_000.0..=0.95 * 40_000.0).contains(&found),
            "{found}"
        );
        assert_eq!(sweep.best_step().unwrap().rate, Some(found));
        assert!(sweep.stopped.unwrap().starts_with("found to within 2%"));
        assert!(sweep.rates.len() < 30);
        // Ramp: 1k, 2k, 4k, ... 32k, then 64k fails.
        assert_eq!(&sweep.rates[..7], &[1e3, 2e3, 4e3, 8e3, 16e3, 32e3, 64e3]);
    }

    #[test]
    fn a_search_that_starts_too_high_comes_down() {
        let plan = SweepPlan {
            rates: Vec::new(),
            margin: 0.05,
            find_max: Some(FindMax {
                target: Threshold::parse("p99<1ms").unwrap(),
                start: 100_000.0,
                ceiling: Some(200_000.0),
                precision: 0.1,
                max_steps: 6,
            }),
        };
        let sweep = run(plan, 10_000.0);
        assert_eq!(sweep.rates.len(), 6);
        assert_eq!(sweep.rates[..3], [100_000.0, 50_000.0, 25_000.0]);
        assert_eq!(
            sweep.stopped.as_deref(),
            Some("the search used its 6 steps")
        );
        let found = sweep.find_max.unwrap().max_rate.unwrap();
        assert!(found < 9_500.0, "{found}");
    }
}
