//! `sockecho ping` and `sockecho bench` against a `tls://` server that pins its self-signed
//! certificate: replies in sequence, verified load with the JSON report, and the refusal of a
//! server whose certificate does not match.

use std::net::SocketAddr;

use crate::support::{Server, logged_fingerprint, run, start_tls_server, stderr_of, stdout_of};
use serde_json::Value;

fn self_signed_server() -> (Server, SocketAddr, String) {
    let (server, addr) = start_tls_server(&["serve", "tls://127.0.0.1:0", "-q"]);
    let fingerprint = logged_fingerprint(&server.log());
    (server, addr, fingerprint)
}

#[test]
fn ping_over_tls_replies_in_sequence() {
    let (_server, addr, fingerprint) = self_signed_server();
    let endpoint = format!("tls://{addr}");
    let out = run(&[
        "ping",
        "-c",
        "3",
        "-i",
        "50ms",
        &endpoint,
        "--pin-sha256",
        &fingerprint,
    ]);
    let text = stdout_of(&out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", stderr_of(&out));
    let prefix = format!("64 bytes from {endpoint}: seq=");
    let seqs: Vec<u64> = text
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|rest| {
            let (seq, time) = rest.split_once(" time=").expect("a time on the line");
            assert!(time.ends_with(" ms"), "{rest}");
            seq.parse().expect("a sequence number")
        })
        .collect();
    assert_eq!(seqs, [1, 2, 3], "{text}");
    assert!(text.contains("\n3 sent, 3 received, 0% loss"), "{text}");
}

/// `sockecho bench ENDPOINT ARGS --json`: exit code and report.
fn bench(endpoint: &str, args: &[&str]) -> (Option<i32>, Value) {
    let mut all = vec!["bench", endpoint, "--json"];
    all.extend_from_slice(args);
    let out = run(&all);
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bench {args:?}: no JSON report ({e}):\n{}\n{}",
            stdout_of(&out),
            stderr_of(&out)
        )
    });
    (out.status.code(), report)
}

fn int(report: &Value, field: &str) -> u64 {
    report
        .pointer(field)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no integer {field} in {report:#}"))
}

/// A run that passed: every message sent in the measured period came back whole, in order.
fn assert_clean_run(report: &Value, connections: u64, size: u64) {
    assert_eq!(report["ok"], Value::Bool(true), "{report:#}");
    assert_eq!(report["transport"], "tls", "{report:#}");
    assert_eq!(int(report, "/connections_established"), connections);
    // The connect time includes the handshake, once per connection.
    assert_eq!(int(report, "/connect_us/count"), connections);
    let received = int(report, "/messages_received");
    assert!(received > 0, "{report:#}");
    assert_eq!(int(report, "/messages_sent"), received, "{report:#}");
    assert_eq!(int(report, "/bytes_received"), received * size);
    assert_eq!(int(report, "/latency_us/count"), received);
    let errors = report["errors"].as_object().expect("errors object");
    for (kind, n) in errors {
        assert_eq!(n.as_u64(), Some(0), "errors.{kind}: {report:#}");
    }
}

#[test]
fn bench_over_tls_verifies_every_echo() {
    let (_server, addr, fingerprint) = self_signed_server();
    let endpoint = format!("tls://{addr}");
    let pin = ["--pin-sha256", fingerprint.as_str()];

    let (code, report) = bench(
        &endpoint,
        &[
            &pin[..],
            &["-c", "4", "-s", "256", "-d", "500ms", "--warmup", "100ms"],
        ]
        .concat(),
    );
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["endpoint"], endpoint.as_str());
    assert_clean_run(&report, 4, 256);

    // Messages larger than rustls' send buffer, several in flight, sent on a schedule: writes
    // that rustls takes only in part, and records it holds until the socket has room.
    let (code, report) = bench(
        &endpoint,
        &[
            &pin[..],
            &[
                "-c",
                "2",
                "-s",
                "200KiB",
                "--pipeline",
                "3",
                "--rate",
                "200",
                "-d",
                "300ms",
                "--warmup",
                "50ms",
            ],
        ]
        .concat(),
    );
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["mode"], "open");
    assert_clean_run(&report, 2, 200 * 1024);
}

#[test]
fn bench_refuses_a_server_whose_certificate_does_not_match_the_pin() {
    let (_server, addr, fingerprint) = self_signed_server();
    let endpoint = format!("tls://{addr}");
    let wrong = "00".repeat(32);
    let out = run(&["bench", &endpoint, "--pin-sha256", &wrong, "-d", "200ms"]);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(out.stdout.is_empty(), "no report: {}", stdout_of(&out));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!("error: cannot reach {endpoint}: ")),
        "{err}"
    );
    assert!(
        err.contains("fingerprint does not match") && err.contains(&fingerprint),
        "{err}"
    );
}
