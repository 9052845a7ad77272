//! A sweep as a table for people: one row per step (offered and achieved rate, latency
//! percentiles, errors, whether it kept up), then how the sweep ended and what a search found.

use std::fmt::Write as _;

use sockecho::bench::sweep::Sweep;

use crate::format::{group, micros};

pub fn render(sweep: &Sweep) -> String {
    let mut out = String::new();
    if let Some(first) = sweep.steps.first() {
        let _ = writeln!(
            out,
            "sockecho bench {} — sweep over {} step{}",
            first.endpoint,
            sweep.steps.len(),
            if sweep.steps.len() == 1 { "" } else { "s" }
        );
    }
    let _ = writeln!(
        out,
        "\n  {:>12} {:>12} {:>9} {:>9} {:>9} {:>9} {:>7}  kept up",
        "offered/s", "achieved/s", "p50", "p99", "p99.9", "max", "errors"
    );
    for ((r, rate), kept) in sweep.steps.iter().zip(&sweep.rates).zip(&sweep.kept_up) {
        let l = &r.latency_us;
        let _ = writeln!(
            out,
            "  {:>12} {:>12} {:>9} {:>9} {:>9} {:>9} {:>7}  {}",
            group(*rate as u64),
            group(r.msgs_per_s.round() as u64),
            micros(l.p50),
            micros(l.p99),
            micros(l.p999),
            micros(l.max),
            r.errors.failing(r.datagrams()),
            if *kept { "yes" } else { "no" }
        );
    }
    if let Some(why) = &sweep.stopped {
        let _ = writeln!(out, "\n  stopped      {why}");
    }
    if let Some(found) = &sweep.find_max {
        let answer = match found.max_rate {
            Some(rate) => format!("{} msg/s", group(rate as u64)),
            None => "no rate met it".into(),
        };
        let _ = writeln!(out, "  max rate     {answer} with {}", found.target);
    }
    out
}
