//! The report as an aligned table for people: load, timing, counts, throughput, churn (TLS
//! handshakes full and resumed among them), CPU, latency percentiles, errors and the verdict.

use std::fmt::Write as _;

use sockecho::bench::{ConnectErrors, LatencySummary, Report};

use crate::format::{bytes_si, group, micros};
use crate::output::errors::error_list;

pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let runs = if r.runs > 1 {
        format!(" (merge of {} runs)", r.runs)
    } else {
        String::new()
    };
    let _ = writeln!(out, "sockecho bench {}{runs}", r.endpoint);
    let mode = match (r.mode.as_str(), r.rate) {
        ("open", Some(rate)) => format!("open loop at {} msg/s", group(rate as u64)),
        (mode, _) => format!("{mode} loop"),
    };
    let _ = writeln!(
        out,
        "  load         {} {} ({} open) × {}, pipeline {}, {mode}, {} thread{} ({})",
        r.connections,
        if r.transport == "udp" || r.transport == "unixgram" {
            "sockets"
        } else {
            "connections"
        },
        r.connections_established,
        sockecho::bench::format_size(r.size as usize),
        r.pipeline,
        r.threads,
        if r.threads == 1 { "" } else { "s" },
        if r.udp_offload {
            format!("{}, UDP GSO/GRO", r.io)
        } else {
            r.io.clone()
        },
    );
    let _ = writeln!(
        out,
        "  measured     {:.3} s after {:.3} s of warm-up{}",
        r.duration_s,
        r.warmup_s,
        if r.interrupted {
            " (stopped early)"
        } else {
            ""
        },
    );
    let _ = writeln!(
        out,
        "  messages     {} sent, {} received ({} sent, {} received)",
        group(r.messages_sent),
        group(r.messages_received),
        bytes_si(r.bytes_sent as f64),
        bytes_si(r.bytes_received as f64),
    );
    if r.not_sent > 0 {
        // The load generator's own shortfall: not the server's fault, but the rate asked for
        // was not what the server got, so it must not pass unnoticed.
        let _ = writeln!(
            out,
            "  not sent     {} due but never sent: WARNING the load generator fell behind its \
             schedule (not counted as sent or lost)",
            group(r.not_sent),
        );
    }
    let _ = writeln!(
        out,
        "  throughput   {} msg/s round trips, {}/s sent, {}/s received",
        group(r.msgs_per_s.round() as u64),
        bytes_si(r.bytes_per_s_sent),
        bytes_si(r.bytes_per_s_received),
    );
    if let Some(c) = &r.churn {
        let _ = writeln!(
            out,
            "  churn        {} connections opened, {} conn/s; connect failures: {}",
            group(c.connections_opened),
            group(c.connections_per_s.round() as u64),
            connect_failures(&c.connect_errors),
        );
        if let (Some(full), Some(resumed)) = (c.tls_handshakes_full, c.tls_handshakes_resumed) {
            let _ = writeln!(
                out,
                "  TLS          handshakes: {} full, {} resumed",
                group(full),
                group(resumed),
            );
        }
    }
    let per_msg = r
        .client_cpu_us_per_msg
        .map_or(String::new(), |us| format!(", {us:.2} µs per message"));
    let _ = writeln!(out, "  client CPU   {:.3} s{per_msg}", r.client_cpu_s);
    if let Some(line) = over_time(r) {
        let _ = writeln!(out, "  over time    {line}");
    }
    let _ = writeln!(
        out,
        "\n  {:<10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "", "min", "p50", "p90", "p99", "p99.9", "p99.99", "max", "mean"
    );
    for (name, s) in [("latency", &r.latency_us), ("connect", &r.connect_us)] {
        let _ = writeln!(out, "  {name:<10} {}", latency_row(s));
    }
    if let Some(c) = &r.churn {
        let _ = writeln!(
            out,
            "  {:<10} {}",
            "1st echo",
            latency_row(&c.first_echo_us)
        );
    }
    let _ = writeln!(out, "\n  errors       {}", error_list(r));
    let _ = writeln!(
        out,
        "  result       {}",
        if r.passed() { "OK" } else { "FAILED" }
    );
    out
}

/// The spread of the intervals: the slowest and fastest throughput and the best and worst p99,
/// so a stall or a warm-up effect shows without reading the JSON.
fn over_time(r: &Report) -> Option<String> {
    let full: Vec<_> = r.intervals.iter().filter(|i| i.messages > 0).collect();
    if r.intervals.len() < 2 || full.is_empty() {
        return None;
    }
    let rates = full.iter().map(|i| i.msgs_per_s);
    let p99s = full.iter().map(|i| i.latency_us.p99);
    let (lo, hi) = (
        rates.clone().fold(f64::MAX, f64::min),
        rates.fold(0.0, f64::max),
    );
    let (best, worst) = (
        p99s.clone().fold(f64::MAX, f64::min),
        p99s.fold(0.0, f64::max),
    );
    Some(format!(
        "{} intervals of {:.3} s: {} to {} msg/s, p99 {} to {}",
        r.intervals.len(),
        r.intervals[0].duration_s,
        group(lo.round() as u64),
        group(hi.round() as u64),
        micros(best),
        micros(worst),
    ))
}

/// Connect failures by reason, e.g. "3 refused, 1 timed out"; "none" if there were none.
fn connect_failures(e: &ConnectErrors) -> String {
    e.summary()
}

fn latency_row(s: &LatencySummary) -> String {
    if s.count == 0 {
        return format!("{:>9}", "-");
    }
    [s.min, s.p50, s.p90, s.p99, s.p999, s.p9999, s.max, s.mean]
        .iter()
        .map(|&us| format!("{:>9}", micros(us)))
        .collect::<Vec<_>>()
        .join(" ")
}
