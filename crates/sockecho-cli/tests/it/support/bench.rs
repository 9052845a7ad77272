//! The `sockecho bench --json` report: running a bench for it, reading its fields, and
//! checking every field scripts rely on is there.

use std::process::Output;

use serde_json::Value;

use super::process::{run, stderr_of, stdout_of};

/// Runs `sockecho bench ARGS --json` and returns the exit code and the parsed report.
pub fn bench_json(args: &[&str]) -> (i32, Value, Output) {
    let mut full = vec!["bench"];
    full.extend_from_slice(args);
    full.push("--json");
    let out = run(&full);
    let text = stdout_of(&out);
    let report: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "bench {args:?} printed no JSON report ({e}):\n{text}\nstderr:\n{}",
            stderr_of(&out)
        )
    });
    (out.status.code().unwrap_or(-1), report, out)
}

/// A number field of a report, by path such as `errors.lost`.
pub fn num(report: &Value, path: &str) -> f64 {
    let mut v = report;
    for key in path.split('.') {
        v = v
            .get(key)
            .unwrap_or_else(|| panic!("report has no field {path}:\n{report:#}"));
    }
    v.as_f64()
        .unwrap_or_else(|| panic!("field {path} is not a number: {v}"))
}

pub fn int(report: &Value, path: &str) -> u64 {
    num(report, path) as u64
}

/// The fields scripts rely on, all of which every report must have.
pub const REQUIRED_FIELDS: [&str; 28] = [
    "endpoint",
    "transport",
    "io",
    "interrupted",
    "connections",
    "size",
    "pipeline",
    "mode",
    "rate",
    "duration_s",
    "warmup_s",
    "messages_sent",
    "messages_received",
    "bytes_sent",
    "bytes_received",
    "msgs_per_s",
    "bytes_per_s_sent",
    "bytes_per_s_received",
    "latency_us",
    "connect_us",
    "errors",
    "client_cpu_s",
    "client_cpu_us_per_msg",
    "ok",
    "latency_us.p9999",
    "connect_us.p50",
    "errors.disconnected",
    "errors.connect_failed",
];

/// Checks every required field is present (`rate` and the CPU per message may be null).
pub fn assert_fields(report: &Value) {
    for path in REQUIRED_FIELDS {
        let mut v = report;
        for key in path.split('.') {
            v = v
                .get(key)
                .unwrap_or_else(|| panic!("report lacks {path}:\n{report:#}"));
        }
    }
    for key in ["min", "mean", "p50", "p90", "p99", "p999", "p9999", "max"] {
        assert!(report["latency_us"][key].is_number(), "latency_us.{key}");
        assert!(report["connect_us"][key].is_number(), "connect_us.{key}");
    }
    for key in [
        "mismatched",
        "truncated",
        "reordered",
        "duplicated",
        "lost",
        "connect_failed",
        "disconnected",
    ] {
        assert!(report["errors"][key].is_u64(), "errors.{key}");
    }
}
