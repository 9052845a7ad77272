//! Pass/fail conditions on a report, for CI (`--threshold 'p99<2ms'`): their syntax, checked
//! before a run, and their verdict on the report afterwards.
//!
//! A threshold is `METRIC OP VALUE` (spaces allowed):
//! - latency percentiles of the round trips: `min`, `mean`, `p50`, `p90`, `p99`, `p999`,
//!   `p9999`, `max`, and of connecting: the same with `connect_` in front (`connect_p99`); the
//!   value takes a unit: `ns`, `us` (or `µs`), `ms`, `s`;
//! - `rate`: correct round trips per second (`msgs_per_s`); the value may end in `k` or `M`;
//! - `errors`: every error that fails a run, added together; `errors.KIND` one kind of the
//!   report's `errors` object (`errors.lost`, `errors.late`, ...);
//! - `cpu_us_per_msg`: the client's CPU time per message, in microseconds.
//!
//! OP is one of `<`, `<=`, `>`, `>=`, `==`.

use std::fmt;

use super::report::{ErrorCounts, LatencySummary, Report, ThresholdResult, round3};

/// One condition, as parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// As written, for messages and the report.
    text: String,
    metric: Metric,
    op: Op,
    /// In the metric's unit: microseconds for latencies, messages per second, a count.
    limit: f64,
}

#[derive(Debug, Clone, PartialEq)]
enum Metric {
    Latency(Quantile),
    Connect(Quantile),
    Rate,
    Errors,
    ErrorKind(&'static str),
    CpuPerMessage,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Quantile {
    Min,
    Mean,
    P50,
    P90,
    P99,
    P999,
    P9999,
    Max,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
}

/// The error kinds `errors.KIND` may name, as the report spells them.
const ERROR_KINDS: [&str; 10] = [
    "mismatched",
    "truncated",
    "reordered",
    "duplicated",
    "lost",
    "connect_failed",
    "disconnected",
    "refused",
    "late",
    "warmup",
];

/// Why a threshold does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad threshold {text:?}: {problem}")]
pub struct ThresholdError {
    pub text: String,
    pub problem: String,
}

impl Threshold {
    /// Parses `METRIC OP VALUE`.
    pub fn parse(text: &str) -> Result<Threshold, ThresholdError> {
        let fail = |problem: String| ThresholdError {
            text: text.to_owned(),
            problem,
        };
        let at = text.find(['<', '>', '=']).ok_or_else(|| {
            fail("no comparison: write METRIC OP VALUE, with OP one of < <= > >= ==".into())
        })?;
        let name = text[..at].trim();
        let rest = &text[at..];
        let (op, value) = [
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("==", Op::Eq),
            ("<", Op::Lt),
            (">", Op::Gt),
        ]
        .iter()
        .find_map(|(sym, op)| rest.strip_prefix(sym).map(|v| (*op, v.trim())))
        .ok_or_else(|| fail(format!("{rest:?} is not one of < <= > >= ==")))?;
        if value.starts_with(['<', '>', '=']) {
            return Err(fail(format!("{rest:?} is not one of < <= > >= ==")));
        }
        let metric = Metric::parse(name).map_err(fail)?;
        let limit = metric.parse_value(value).map_err(fail)?;
        Ok(Threshold {
            text: text.trim().to_owned(),
            metric,
            op,
            limit,
        })
    }

    /// The condition as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether the figure `actual` (in the metric's unit) meets the condition.
    pub fn holds(&self, actual: f64) -> bool {
        match self.op {
            Op::Lt => actual < self.limit,
            Op::Le => actual <= self.limit,
            Op::Gt => actual > self.limit,
            Op::Ge => actual >= self.limit,
            Op::Eq => actual == self.limit,
        }
    }

    /// The figure of `report` this threshold is about, in the metric's unit. A latency of a
    /// run without samples is 0, which no sensible upper bound fails: pair a latency bound
    /// with `rate>0` or `errors==0` to catch an empty run.
    pub fn actual(&self, report: &Report) -> f64 {
        match &self.metric {
            Metric::Latency(q) => q.of(&report.latency_us),
            Metric::Connect(q) => q.of(&report.connect_us),
            Metric::Rate => report.msgs_per_s,
            Metric::Errors => report.errors.failing(report.datagrams()) as f64,
            Metric::ErrorKind(kind) => error_kind(&report.errors, kind) as f64,
            Metric::CpuPerMessage => report.client_cpu_us_per_msg.unwrap_or(0.0),
        }
    }

    /// Checks the threshold against `report`.
    pub fn check(&self, report: &Report) -> ThresholdResult {
        let actual = self.actual(report);
        ThresholdResult {
            threshold: self.text.clone(),
            actual: round3(actual),
            limit: self.limit,
            unit: self.metric.unit().into(),
            passed: self.holds(actual),
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Checks every threshold against `report`, in order.
pub fn check_all(thresholds: &[Threshold], report: &Report) -> Vec<ThresholdResult> {
    thresholds.iter().map(|t| t.check(report)).collect()
}

impl Metric {
    fn parse(name: &str) -> Result<Metric, String> {
        let name = name.trim().to_ascii_lowercase();
        if let Some(kind) = name.strip_prefix("errors.") {
            return ERROR_KINDS
                .iter()
                .copied()
                .find(|k| *k == kind)
                .map(Metric::ErrorKind)
                .ok_or_else(|| {
                    format!(
                        "{kind:?} is not an error kind; known: {}",
                        ERROR_KINDS.join(", ")
                    )
                });
        }
        match name.as_str() {
            "rate" | "msgs_per_s" => return Ok(Metric::Rate),
            "errors" => return Ok(Metric::Errors),
            "cpu_us_per_msg" => return Ok(Metric::CpuPerMessage),
            _ => {}
        }
        if let Some(q) = name.strip_prefix("connect_").and_then(Quantile::parse) {
            return Ok(Metric::Connect(q));
        }
        Quantile::parse(&name).map(Metric::Latency).ok_or_else(|| {
            if name.is_empty() {
                "no metric before the comparison".into()
            } else {
                format!(
                    "unknown metric {name:?}; known: p50 p90 p99 p999 p9999 min mean max (and \
                     connect_ before each), rate, errors, errors.KIND, cpu_us_per_msg"
                )
            }
        })
    }

    fn unit(&self) -> &'static str {
        match self {
            Metric::Latency(_) | Metric::Connect(_) => "us",
            Metric::Rate => "msgs/s",
            Metric::Errors | Metric::ErrorKind(_) => "count",
            Metric::CpuPerMessage => "us/msg",
        }
    }

    /// The limit in the metric's unit.
    fn parse_value(&self, value: &str) -> Result<f64, String> {
        let number = |text: &str| -> Result<f64, String> {
            match text.trim().parse::<f64>() {
                Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
                _ => Err(format!("{value:?} is not a number")),
            }
        };
        match self {
            Metric::Latency(_) | Metric::Connect(_) => {
                let units = [
                    ("ns", 1e-3),
                    ("us", 1.0),
                    ("µs", 1.0),
                    ("ms", 1e3),
                    ("s", 1e6),
                ];
                let (n, scale) = units
                    .iter()
                    .find_map(|(u, scale)| value.strip_suffix(u).map(|n| (n, *scale)))
                    .ok_or_else(|| {
                        format!("{value:?} needs a unit: ns, us, ms or s (as in p99<2ms)")
                    })?;
                Ok(number(n)? * scale)
            }
            Metric::Rate => parse_rate(value).map_err(|e| e.to_string()),
            Metric::Errors | Metric::ErrorKind(_) => {
                let n = number(value)?;
                if n.fract() != 0.0 {
                    return Err(format!("{value:?} is not a whole count"));
                }
                Ok(n)
            }
            Metric::CpuPerMessage => number(value.strip_suffix("us").unwrap_or(value)),
        }
    }
}

impl Quantile {
    fn parse(name: &str) -> Option<Quantile> {
        Some(match name {
            "min" => Quantile::Min,
            "mean" => Quantile::Mean,
            "p50" | "median" => Quantile::P50,
            "p90" => Quantile::P90,
            "p99" => Quantile::P99,
            "p999" | "p99.9" => Quantile::P999,
            "p9999" | "p99.99" => Quantile::P9999,
            "max" => Quantile::Max,
            _ => return None,
        })
    }

    fn of(self, s: &LatencySummary) -> f64 {
        match self {
            Quantile::Min => s.min,
            Quantile::Mean => s.mean,
            Quantile::P50 => s.p50,
            Quantile::P90 => s.p90,
            Quantile::P99 => s.p99,
            Quantile::P999 => s.p999,
            Quantile::P9999 => s.p9999,
            Quantile::Max => s.max,
        }
    }
}

fn error_kind(e: &ErrorCounts, kind: &str) -> u64 {
    match kind {
        "mismatched" => e.mismatched,
        "truncated" => e.truncated,
        "reordered" => e.reordered,
        "duplicated" => e.duplicated,
        "lost" => e.lost,
        "connect_failed" => e.connect_failed,
        "disconnected" => e.disconnected,
        "refused" => e.refused,
        "late" => e.late,
        _ => e.warmup,
    }
}

/// Why a rate does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a rate (messages per second, e.g. 5000, 20k, 1.5M)")]
pub struct RateError(pub String);

/// Parses a message rate: a non-negative number, optionally ending in `k` (thousands) or `M`
/// (millions), and optionally `/s`.
pub fn parse_rate(text: &str) -> Result<f64, RateError> {
    let t = text.trim();
    let t = t.strip_suffix("/s").unwrap_or(t);
    let (digits, scale) = if let Some(n) = t.strip_suffix(['k', 'K']) {
        (n, 1e3)
    } else if let Some(n) = t.strip_suffix('M') {
        (n, 1e6)
    } else {
        (t, 1.0)
    };
    match digits.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x * scale),
        _ => Err(RateError(text.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::hlog;

    fn report() -> Report {
        let mut r = hlog::tests::outcome(&[1_000, 2_000, 1_500_000, 3_000_000], 100, 2.0).report;
        r.errors.lost = 2;
        r.errors.late = 5;
        r
    }

    #[test]
    fn parses_metrics_operators_and_units() {
        let t = Threshold::parse("p99 < 2ms").unwrap();
        assert_eq!((t.limit, t.op), (2_000.0, Op::Lt));
        assert_eq!(Threshold::parse("max<=500us").unwrap().limit, 500.0);
        assert_eq!(Threshold::parse("p50<800ns").unwrap().limit, 0.8);
        assert_eq!(Threshold::parse("connect_p99<1s").unwrap().limit, 1e6);
        assert_eq!(Threshold::parse("rate>=50k").unwrap().limit, 50_000.0);
        assert_eq!(Threshold::parse("rate>1.5M").unwrap().op, Op::Gt);
        assert_eq!(Threshold::parse("errors==0").unwrap().op, Op::Eq);
        assert_eq!(
            Threshold::parse("errors.lost<3").unwrap().metric,
            Metric::ErrorKind("lost")
        );
    }

    #[test]
    fn bad_syntax_names_the_problem() {
        let problem = |t: &str| Threshold::parse(t).unwrap_err().problem;
        assert!(problem("p99 2ms").contains("no comparison"));
        assert!(problem("p98<2ms").contains("unknown metric \"p98\""));
        assert!(problem("p99<2").contains("needs a unit"));
        assert!(problem("p99<<2ms").contains("is not one of"));
        assert!(problem("errors==1.5").contains("whole count"));
        assert!(problem("errors.bogus==0").contains("not an error kind"));
        assert!(problem("rate>=fast").contains("not a rate"));
        assert!(problem("<2ms").contains("no metric"));
    }

    #[test]
    fn verdicts_on_a_report() {
        let r = report();
        let check = |t: &str| Threshold::parse(t).unwrap().check(&r);
        assert!(check("p50<2ms").passed);
        let p99 = check("p99<2ms");
        assert!(!p99.passed);
        assert_eq!(p99.unit, "us");
        assert!(p99.actual > 2_000.0);
        assert!(!check("errors==0").passed);
        assert_eq!(check("errors==0").actual, 2.0);
        // `late` replies do not fail a run, so they are not among `errors`.
        assert!(check("errors<=2").passed);
        assert_eq!(check("errors.late>=5").actual, 5.0);
        assert!(check("errors.late>=5").passed);
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("10k"), Ok(10_000.0));
        assert_eq!(parse_rate("2M/s"), Ok(2_000_000.0));
        assert_eq!(parse_rate(" 750 "), Ok(750.0));
        assert!(parse_rate("-1").is_err());
        assert!(parse_rate("").is_err());
    }
}
