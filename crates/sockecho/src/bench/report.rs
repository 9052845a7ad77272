//! The report of a run (or of several merged runs), the one shape both the table and `--json`
//! are made from. Field names are part of the interface: docs/bench-json.md documents each one,
//! and scripts read them, so they change only by adding new ones.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::shard::Shard;

/// Latency percentiles in microseconds, from a histogram of nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Samples behind the figures; all figures are 0 when it is 0.
    pub count: u64,
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub p9999: f64,
    pub max: f64,
}

impl LatencySummary {
    /// Summarises a histogram of nanosecond values.
    pub fn from_histogram(h: &Histogram<u64>) -> LatencySummary {
        if h.is_empty() {
            return LatencySummary::default();
        }
        let us = |ns: u64| round3(ns as f64 / 1000.0);
        LatencySummary {
            count: h.len(),
            min: us(h.min()),
            mean: round3(h.mean() / 1000.0),
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            p9999: us(h.value_at_quantile(0.9999)),
            max: us(h.max()),
        }
    }
}

/// Errors by kind. Per-message kinds count messages of the measured period, so that
/// `messages_sent = messages_received + mismatched + truncated + lost` once the run is over
/// (`reordered` replies are among those received; `duplicated` replies are extra ones).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCounts {
    /// Replies whose content differs from what was sent (or are longer, or belong to another
    /// connection).
    pub mismatched: u64,
    /// Replies cut short: a shorter datagram, or a stream that ended inside a message.
    pub truncated: u64,
    /// Replies that came after the reply to a later message (a failure on stream transports
    /// only; measured messages only).
    pub reordered: u64,
    /// Second replies to one message.
    pub duplicated: u64,
    /// Messages never answered: no datagram reply within the timeout, or still unanswered when
    /// the connection ended or the run's final wait ran out.
    pub lost: u64,
    /// Connections (or datagram sockets) that could not be opened.
    pub connect_failed: u64,
    /// Connections that the server closed or reset during the run.
    pub disconnected: u64,
    /// Datagrams refused by the server's host (ICMP port unreachable: nothing listening).
    #[serde(default)]
    pub refused: u64,
    /// Replies that came after their message was counted lost (not an error in themselves).
    #[serde(default)]
    pub late: u64,
    /// Warm-up messages mismatched, truncated, duplicated or lost.
    #[serde(default)]
    pub warmup: u64,
}

/// The counts that are not zero, each with its label, e.g. "3 mismatched, 1 lost"; "none" if all
/// are zero. The one wording of error lists, for the table, the exit verdict and the HTML page.
pub fn count_list(counts: &[(u64, &str)]) -> String {
    let parts: Vec<String> = counts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

impl ErrorCounts {
    /// Every error count that is not zero, e.g. "3 mismatched, 1 lost"; "none" if all are.
    pub fn summary(&self) -> String {
        count_list(&[
            (self.mismatched, "mismatched"),
            (self.truncated, "truncated"),
            (self.reordered, "reordered"),
            (self.duplicated, "duplicated"),
            (self.lost, "lost"),
            (self.warmup, "wrong during warm-up"),
            (self.connect_failed, "connections failed"),
            (self.disconnected, "disconnected"),
            (self.refused, "refused"),
            (self.late, "late replies"),
        ])
    }

    /// Whether every message that was checked came back right. Reordering counts against
    /// stream transports only: a byte stream must keep its order, datagrams need not.
    pub fn verified(&self, datagrams: bool) -> bool {
        self.mismatched == 0
            && self.truncated == 0
            && (datagrams || self.reordered == 0)
            && self.duplicated == 0
            && self.lost == 0
            && self.warmup == 0
    }

    /// Errors of every kind that fails a run, added together (`errors` in thresholds).
    pub fn failing(&self, datagrams: bool) -> u64 {
        self.mismatched
            + self.truncated
            + if datagrams { 0 } else { self.reordered }
            + self.duplicated
            + self.lost
            + self.warmup
            + self.connect_failed
            + self.disconnected
            + self.refused
    }

    /// Whether every connection opened and stayed up.
    pub fn connections_held(&self) -> bool {
        self.connect_failed == 0 && self.disconnected == 0 && self.refused == 0
    }

    pub fn add(&mut self, o: &ErrorCounts) {
        self.mismatched += o.mismatched;
        self.truncated += o.truncated;
        self.reordered += o.reordered;
        self.duplicated += o.duplicated;
        self.lost += o.lost;
        self.connect_failed += o.connect_failed;
        self.disconnected += o.disconnected;
        self.refused += o.refused;
        self.late += o.late;
        self.warmup += o.warmup;
    }
}

/// Connect failures of a churn run, by the reason the system gave.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectErrors {
    /// The server's host refused (`ECONNREFUSED`): nothing listening, or a full backlog on a
    /// Unix socket.
    pub refused: u64,
    /// No answer within the connect timeout (`ETIMEDOUT`, or bench's own `--connect-timeout`).
    pub timed_out: u64,
    /// No local address and port left to connect from (`EADDRNOTAVAIL`): the ephemeral ports
    /// toward this server are used up, usually by connections in TIME_WAIT.
    pub addr_not_available: u64,
    /// Any other failure, a failed TLS handshake included.
    pub other: u64,
}

impl ConnectErrors {
    /// Connect failures by reason, e.g. "3 refused, 1 timed out"; "none" if there were none.
    pub fn summary(&self) -> String {
        count_list(&[
            (self.refused, "refused"),
            (self.timed_out, "timed out"),
            (
                self.addr_not_available,
                "no local address/port (see --source)",
            ),
            (self.other, "other"),
        ])
    }

    /// All of them.
    pub fn total(&self) -> u64 {
        self.refused + self.timed_out + self.addr_not_available + self.other
    }

    pub fn add(&mut self, o: &ConnectErrors) {
        self.refused += o.refused;
        self.timed_out += o.timed_out;
        self.addr_not_available += o.addr_not_available;
        self.other += o.other;
    }
}

/// What a churn run measured of its connections; the report has it in churn runs only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ChurnReport {
    /// Connections opened whose attempt began in the measured period.
    pub connections_opened: u64,
    /// `connections_opened / duration_s`.
    pub connections_per_s: f64,
    /// From the start of each attempt (open loop: its scheduled start) until the connection
    /// was open, TLS handshake included.
    pub connect_us: LatencySummary,
    /// From the same start until the first reply was in and verified.
    pub first_echo_us: LatencySummary,
    /// Attempts of the measured period that failed, by reason.
    pub connect_errors: ConnectErrors,
    /// TLS endpoints only: the handshakes of `connections_opened` that were full ones
    /// (certificate and signature; after a HelloRetryRequest too) ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_handshakes_full: Option<u64>,
    /// ... and those that resumed an earlier session; the two add up to `connections_opened`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_handshakes_resumed: Option<u64>,
}

/// One interval of a run, as the report gives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Seconds from the start of the measured period to the start of this interval.
    pub start_s: f64,
    /// Its length in seconds (the last one may be shorter than `--interval`).
    pub duration_s: f64,
    /// Correct replies received in the interval.
    pub messages: u64,
    /// `messages / duration_s`.
    pub msgs_per_s: f64,
    /// Round-trip latency of those replies.
    pub latency_us: IntervalLatency,
    /// Errors noticed in the interval (every failing kind together).
    pub errors: u64,
    /// Connections open at the end of the interval.
    pub connections_open: u64,
}

/// The few latency figures an interval carries, in microseconds (0 when it had no replies).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct IntervalLatency {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl IntervalLatency {
    pub fn from_histogram(h: &Histogram<u64>) -> IntervalLatency {
        if h.is_empty() {
            return IntervalLatency::default();
        }
        let us = |ns: u64| round3(ns as f64 / 1000.0);
        IntervalLatency {
            p50: us(h.value_at_quantile(0.50)),
            p99: us(h.value_at_quantile(0.99)),
            max: us(h.max()),
        }
    }
}

/// A threshold's verdict on one report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdResult {
    /// The condition as written.
    pub threshold: String,
    /// The figure it was checked against, in `unit`.
    pub actual: f64,
    /// The limit, in `unit`.
    pub limit: f64,
    /// `us`, `msgs/s`, `count` or `us/msg`.
    pub unit: String,
    pub passed: bool,
}

/// Everything a run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The endpoint as given (merged reports: each distinct one, comma-separated).
    pub endpoint: String,
    /// `tcp`, `udp`, `unix` or `unixgram` (`mixed` in a merge of several).
    pub transport: String,
    /// Connections (or datagram sockets) asked for.
    pub connections: u64,
    /// Those that opened.
    pub connections_established: u64,
    /// Bytes per message.
    pub size: u64,
    /// Messages in flight per connection (the cap, in open loop).
    pub pipeline: u64,
    /// `closed` or `open` (`mixed` in a merge of both).
    pub mode: String,
    /// Open loop: the target messages per second over all connections; `null` in closed loop.
    pub rate: Option<f64>,
    /// Load-generating threads.
    pub threads: u64,
    /// What drove the connections: `io_uring` or `epoll` (the load threads' own loops, for
    /// plain TCP and Unix), or `tokio` (a task per connection: TLS and datagrams); `mixed` in
    /// a merge of several, `unknown` for a log without a report.
    #[serde(default = "unknown")]
    pub io: String,
    /// UDP sockets sent several queued messages per call and took replies that arrived
    /// together in one receive (`--udp-offload`, where the kernel supports it).
    #[serde(default)]
    pub udp_offload: bool,
    /// Length of the measured period, in seconds.
    pub duration_s: f64,
    /// Warm-up before it, in seconds (not measured).
    pub warmup_s: f64,
    /// Reply timeout, in seconds.
    pub timeout_s: f64,
    /// Messages sent in the measured period.
    pub messages_sent: u64,
    /// Correct replies to them.
    pub messages_received: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Open loop: messages of the measured period that were due but never went out, because
    /// the load generator fell behind its schedule (too little CPU, or a pipeline kept full by
    /// slow replies). Not among `messages_sent`, nor counted as lost: they never reached the
    /// server. 0 in closed loop.
    #[serde(default)]
    pub not_sent: u64,
    /// Round trips per second: `messages_received / duration_s`.
    pub msgs_per_s: f64,
    pub bytes_per_s_sent: f64,
    pub bytes_per_s_received: f64,
    /// Round-trip latency of the measured messages (from the scheduled send time in open loop).
    pub latency_us: LatencySummary,
    /// Time to open each connection.
    pub connect_us: LatencySummary,
    pub errors: ErrorCounts,
    /// CPU time this process used during the measured period (all threads, user + system).
    pub client_cpu_s: f64,
    /// `client_cpu_s` per received message, in microseconds; `null` when none was received.
    pub client_cpu_us_per_msg: Option<f64>,
    /// No verification error: every message checked came back, whole, right and once (and in
    /// order, on stream transports).
    pub ok: bool,
    /// The run was stopped early (Ctrl-C or SIGTERM): the measured period ended then, and
    /// `duration_s` is what it lasted. In a merge: any of the runs was.
    #[serde(default)]
    pub interrupted: bool,
    /// Runs this report stands for (1 unless merged).
    #[serde(default = "one")]
    pub runs: u64,
    /// Wall-clock time the measured period began, in seconds since the epoch (in a merge,
    /// the earliest run's); absent from reports that predate it and from logs of other tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_unix_s: Option<f64>,
    /// The part of a split run (`--shard I/N`) this report covers; absent for a whole run and
    /// in a merge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    /// The host name of the machine (or pod) that ran the load (in a merge: each distinct one,
    /// comma-separated); empty in a report written before this field existed.
    #[serde(default)]
    pub host: String,
    /// The measured period in intervals (`--interval`, 1 s by default), in order; empty in
    /// reports that predate it.
    #[serde(default)]
    pub intervals: Vec<Interval>,
    /// The `--threshold` conditions and whether each held; empty when none were given.
    #[serde(default)]
    pub thresholds: Vec<ThresholdResult>,
    /// Merges only: whether the measured periods of the runs overlap in time (they should, if
    /// they are parts of one load).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub periods_overlap: Option<bool>,
    /// Churn runs only: connections opened per second, connect and first-echo times, and
    /// connect failures by reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub churn: Option<ChurnReport>,
}

fn one() -> u64 {
    1
}

impl Report {
    /// Whether the run passed: every message verified and every connection held up. The exit
    /// code follows this.
    pub fn passed(&self) -> bool {
        self.ok && self.errors.connections_held()
    }

    /// Whether the transport carries datagrams, which may arrive out of order.
    pub fn datagrams(&self) -> bool {
        matches!(self.transport.as_str(), "udp" | "unixgram")
    }

    /// Whether the run passed and every threshold held.
    pub fn passed_with_thresholds(&self) -> bool {
        self.passed() && self.thresholds.iter().all(|t| t.passed)
    }

    /// Recomputes the figures derived from counts, duration and CPU time.
    pub(crate) fn derive_rates(&mut self) {
        let per_s = |n: u64| {
            if self.duration_s > 0.0 {
                round3(n as f64 / self.duration_s)
            } else {
                0.0
            }
        };
        self.msgs_per_s = per_s(self.messages_received);
        self.bytes_per_s_sent = per_s(self.bytes_sent);
        self.bytes_per_s_received = per_s(self.bytes_received);
        if let Some(churn) = &mut self.churn {
            churn.connections_per_s = per_s(churn.connections_opened);
        }
        self.client_cpu_us_per_msg = (self.messages_received > 0)
            .then(|| round3(self.client_cpu_s * 1e6 / self.messages_received as f64));
        self.ok = self.errors.verified(self.datagrams());
    }
}

/// Three decimals: nanosecond resolution for microsecond figures, and stable JSON.
pub(crate) fn round3(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}

/// Six decimals: microsecond resolution for figures in seconds.
pub(crate) fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// `t` to the nearest millisecond.
pub(crate) fn round_to_millis(t: Duration) -> Duration {
    Duration::from_millis(((t.as_nanos() + 500_000) / 1_000_000) as u64)
}

/// Seconds since the epoch, to the millisecond (as the histogram log's StartTime).
pub fn unix_seconds(t: SystemTime) -> f64 {
    let since = round_to_millis(t.duration_since(UNIX_EPOCH).unwrap_or_default());
    since.as_millis() as f64 / 1e3
}

/// What a report read back from an older log says of a field it lacks.
fn unknown() -> String {
    "unknown".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_a_histogram() {
        let mut h = super::super::recorder::new_histogram();
        for ns in 1..=1000u64 {
            h.record(ns * 1000).unwrap();
        }
        let s = LatencySummary::from_histogram(&h);
        assert_eq!(s.count, 1000);
        assert!((s.min - 1.0).abs() < 0.01, "{s:?}");
        assert!((s.p50 - 500.0).abs() < 1.0, "{s:?}");
        assert!((s.p99 - 990.0).abs() < 1.0, "{s:?}");
        assert!((s.max - 1000.0).abs() < 1.0, "{s:?}");
        assert!((s.mean - 500.5).abs() < 1.0, "{s:?}");
        assert_eq!(
            LatencySummary::from_histogram(&super::super::recorder::new_histogram()),
            LatencySummary::default()
        );
    }
}
