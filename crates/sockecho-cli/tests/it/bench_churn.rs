//! `sockecho bench --churn`: connections that open, exchange their messages and close, checked
//! against servers that count what they accepted and echoed, or that reset connections on a
//! known schedule; closed and open loop, on TCP, Unix and TLS, closing with FIN or RST; TLS
//! handshakes counted full or resumed, in a run and in a merge. Also: open loop over more
//! connections than the file-descriptor budget would allow one timer each.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;

use crate::support::{
    RUN, Server, assert_no_panic, bench_json, bin, echo_with, int, poll_until, run,
    start_tls_server, start_tls_server_with, stderr_of, stdout_of, tcp_server, temp_dir,
    tls_server_without_resumption, write_cert,
};

/// What a counting test server saw: connections accepted (the bench's reachability probe
/// included) and bytes echoed.
#[derive(Default)]
struct Seen {
    accepted: AtomicU64,
    echoed: AtomicU64,
    reset: AtomicU64,
}

/// A TCP echo server that counts, and resets (accepts, then closes with `SO_LINGER` 0) every
/// `reset_every`th connection after the probe, if given.
fn counting_server(reset_every: Option<u64>) -> (std::net::SocketAddr, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let counts = seen.clone();
    let addr = tcp_server(move |stream, n| {
        counts.accepted.fetch_add(1, Ordering::SeqCst);
        if let Some(every) = reset_every
            && n > 0
            && (n as u64).is_multiple_of(every)
        {
            let _ = socket2::SockRef::from(&stream).set_linger(Some(std::time::Duration::ZERO));
            counts.reset.fetch_add(1, Ordering::SeqCst);
            return;
        }
        let echoed = &counts.echoed;
        echo_with(stream, |chunk, _| {
            echoed.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        });
    });
    (addr, seen)
}

/// Waits until the server has accepted `want` connections; they may still sit in its backlog
/// when the bench exits.
fn wait_accepted(seen: &Seen, want: u64) {
    poll_until("the server to accept every connection", || {
        let got = seen.accepted.load(Ordering::SeqCst);
        if got == want {
            Ok(())
        } else {
            Err(format!("{got} accepted, {want} expected"))
        }
    });
}

fn opened(report: &Value) -> u64 {
    int(report, "churn.connections_opened")
}

/// The churn figures every healthy run has: every opened connection sent its messages and got
/// every reply, and each has a connect and a first-echo time.
fn assert_churn_healthy(report: &Value, per_conn: u64) {
    let opened = opened(report);
    assert!(opened > 0, "{report:#}");
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(
        int(report, "messages_sent"),
        opened * per_conn,
        "{report:#}"
    );
    assert_eq!(
        int(report, "messages_received"),
        int(report, "messages_sent")
    );
    assert_eq!(int(report, "churn.connect_us.count"), opened, "{report:#}");
    assert_eq!(
        int(report, "churn.first_echo_us.count"),
        opened,
        "{report:#}"
    );
    assert_eq!(int(report, "connect_us.count"), opened, "{report:#}");
    for kind in ["refused", "timed_out", "addr_not_available", "other"] {
        assert_eq!(int(report, &format!("churn.connect_errors.{kind}")), 0);
    }
    let per_s = report["churn"]["connections_per_s"].as_f64().unwrap();
    let duration = report["duration_s"].as_f64().unwrap();
    assert!(
        (per_s - opened as f64 / duration).abs() < 0.01,
        "{report:#}"
    );
}

#[test]
fn connections_reported_are_connections_accepted() {
    let (addr, seen) = counting_server(None);
    let (code, report, out) = bench_json(&[
        &format!("tcp://{addr}"),
        "--churn",
        "-c",
        "3",
        "--messages-per-conn",
        "3",
        "-s",
        "100",
        "-d",
        "300ms",
        "--warmup",
        "0s",
    ]);
    assert_eq!(code, 0, "{}", stderr_of(&out));
    assert_churn_healthy(&report, 3);
    assert_eq!(report["mode"], "closed");
    // Handshakes are counted for TLS endpoints only.
    for field in ["tls_handshakes_full", "tls_handshakes_resumed"] {
        assert!(report["churn"].get(field).is_none(), "{report:#}");
    }
    let opened = opened(&report);
    // Every connection the bench opened, and its reachability probe, was accepted ...
    wait_accepted(&seen, opened + 1);
    // ... and every byte of every message came back through the server.
    poll_until("the server to echo every byte", || {
        let echoed = seen.echoed.load(Ordering::SeqCst);
        if echoed == opened * 3 * 100 {
            Ok(())
        } else {
            Err(format!("{echoed} bytes echoed"))
        }
    });
}

#[test]
fn a_server_resetting_every_third_connection_shows_in_the_errors() {
    let (addr, seen) = counting_server(Some(3));
    let (code, report, out) = bench_json(&[
        &format!("tcp://{addr}"),
        "--churn",
        "-c",
        "2",
        "-d",
        "300ms",
        "--warmup",
        "0s",
    ]);
    assert_eq!(code, 1, "{}", stderr_of(&out));
    let opened = opened(&report);
    wait_accepted(&seen, opened + 1);
    let reset = seen.reset.load(Ordering::SeqCst);
    assert!(reset > 0, "{report:#}");
    // Each reset connection broke with its one message unanswered.
    assert_eq!(int(&report, "errors.disconnected"), reset, "{report:#}");
    assert_eq!(int(&report, "errors.lost"), reset, "{report:#}");
    assert_eq!(int(&report, "messages_sent"), opened, "{report:#}");
    assert_eq!(int(&report, "messages_received"), opened - reset);
    assert_eq!(int(&report, "errors.mismatched"), 0);
    assert_eq!(int(&report, "churn.connect_errors.refused"), 0);
    assert_eq!(report["ok"], false);
}

#[test]
fn open_loop_churn_starts_connections_on_schedule() {
    let server = Server::start(&["tcp://127.0.0.1:0"], &["-q"]);
    let (code, report, out) = bench_json(&[
        server.endpoint("tcp://"),
        "--churn",
        "--conn-rate",
        "200",
        "-c",
        "10",
        "-d",
        "500ms",
        "--warmup",
        "0s",
    ]);
    assert_eq!(code, 0, "{}", stderr_of(&out));
    assert_churn_healthy(&report, 1);
    assert_eq!(report["mode"], "open");
    // Starts every 5 ms over 500 ms: exactly 100, however the server keeps up.
    assert_eq!(opened(&report), 100, "{report:#}");
}

#[test]
fn churn_on_unix_and_tls_and_with_resets() {
    let dir = temp_dir();
    let server = Server::start_every_transport(dir.path());
    let (_tls_server, tls_addr) = start_tls_server(&["serve", "tls://127.0.0.1:0"]);
    let tls = format!("tls://{tls_addr}");
    let cases: [(&str, &[&str]); 4] = [
        (server.endpoint("unix:"), &[]),
        (server.endpoint("tcp://"), &["--close", "rst"]),
        (&tls, &["--insecure"]),
        (&tls, &["--insecure", "--tls-resume", "--close", "rst"]),
    ];
    for (endpoint, extra) in cases {
        let mut args = vec![
            endpoint,
            "--churn",
            "-c",
            "2",
            "--messages-per-conn",
            "2",
            "--pipeline",
            "2",
            "-d",
            "300ms",
            "--warmup",
            "50ms",
        ];
        args.extend_from_slice(extra);
        let (code, report, out) = bench_json(&args);
        assert_eq!(code, 0, "{endpoint} {extra:?}: {}", stderr_of(&out));
        assert_churn_healthy(&report, 2);
    }
}

/// A TLS churn run's handshakes: (full, resumed).
fn handshakes(report: &Value) -> (u64, u64) {
    (
        int(report, "churn.tls_handshakes_full"),
        int(report, "churn.tls_handshakes_resumed"),
    )
}

/// A TLS server whose certificate is signed by a CA of its own, written to `dir`: the server
/// (stopped when dropped), its `tls://` endpoint, and the CA file a client trusts.
fn tls_churn_server(dir: &std::path::Path) -> (Server, String, String) {
    let cert = write_cert(dir, "server", &["127.0.0.1"]);
    let ca = cert.cert.to_str().expect("a UTF-8 temp path").to_owned();
    let (server, addr) = start_tls_server_with(&cert);
    (server, format!("tls://{addr}"), ca)
}

/// The arguments of a short TLS churn run of `slots` slots from the start (no warm-up),
/// resuming sessions if `resume`.
fn tls_churn_args<'a>(
    endpoint: &'a str,
    ca: &'a str,
    slots: &'a str,
    resume: bool,
) -> Vec<&'a str> {
    let mut args = vec![
        endpoint, "--ca", ca, "--churn", "-c", slots, "-d", "300ms", "--warmup", "0s",
    ];
    if resume {
        args.push("--tls-resume");
    }
    args
}

#[test]
fn tls_churn_counts_full_and_resumed_handshakes() {
    let dir = temp_dir();
    let (_server, endpoint, ca) = tls_churn_server(dir.path());
    // More slots than rustls' own store keeps tickets for one server (8): slots sharing one
    // store would run out of tickets when many reconnect at once, and make full handshakes.
    let slots = 30;
    let slots_arg = slots.to_string();
    for resume in [false, true] {
        let args = tls_churn_args(&endpoint, &ca, &slots_arg, resume);
        let (code, report, out) = bench_json(&args);
        assert_eq!(code, 0, "resume {resume}: {}", stderr_of(&out));
        assert_churn_healthy(&report, 1);
        let opened = opened(&report);
        let (full, resumed) = handshakes(&report);
        if resume {
            // A slot's first connection has no session to resume; each later one resumes its
            // slot's last, whatever the other slots do.
            assert_eq!(full, slots, "{report:#}");
            assert_eq!(resumed, opened - slots, "{report:#}");
            assert!(resumed > 0, "{report:#}");
        } else {
            assert_eq!((full, resumed), (opened, 0), "{report:#}");
        }
        assert!(
            !stderr_of(&out).contains("resumed none"),
            "{}",
            stderr_of(&out)
        );
    }

    // The table says it in a line of its own.
    let mut args = vec!["bench"];
    args.extend(tls_churn_args(&endpoint, &ca, &slots_arg, true));
    let out = run(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let table = stdout_of(&out);
    let line = table
        .lines()
        .find(|l| l.trim_start().starts_with("TLS "))
        .unwrap_or_else(|| panic!("no TLS line:\n{table}"));
    assert!(
        line.contains(&format!("handshakes: {slots} full, ")),
        "{line}"
    );
    assert!(
        line.ends_with(" resumed") && !line.ends_with(" 0 resumed"),
        "{line}"
    );
}

#[test]
fn a_server_that_resumes_nothing_gets_a_warning_not_a_failure() {
    let addr = tls_server_without_resumption();
    let (code, report, out) = bench_json(&[
        &format!("tls://{addr}"),
        "--insecure",
        "--churn",
        "-c",
        "2",
        "-d",
        "300ms",
        "--warmup",
        "0s",
        "--tls-resume",
    ]);
    assert_eq!(code, 0, "{}", stderr_of(&out));
    assert_churn_healthy(&report, 1);
    assert_eq!(handshakes(&report), (opened(&report), 0), "{report:#}");
    let warning = format!(
        "the server resumed none of the {} TLS handshakes",
        opened(&report)
    );
    assert!(stderr_of(&out).contains(&warning), "{}", stderr_of(&out));
}

#[test]
fn merged_tls_churn_runs_add_up_their_handshakes() {
    let dir = temp_dir();
    let (_server, endpoint, ca) = tls_churn_server(dir.path());
    let mut logs = Vec::new();
    let mut counts = Vec::new();
    for resume in [false, true] {
        let log = dir.path().join(format!("resume-{resume}.hlog"));
        let log = log.to_str().expect("a UTF-8 temp path").to_owned();
        let mut args = tls_churn_args(&endpoint, &ca, "2", resume);
        args.extend(["--save-hist", &log]);
        let (code, report, out) = bench_json(&args);
        assert_eq!(code, 0, "{}", stderr_of(&out));
        counts.push(handshakes(&report));
        logs.push(log);
    }
    // One run of full handshakes only, one mostly resumed: a sum shows both.
    assert_eq!(counts[0].1, 0, "{counts:?}");
    assert!(counts[1].1 > 0, "{counts:?}");

    let mut args = vec!["bench", "merge", "--json"];
    args.extend(logs.iter().map(String::as_str));
    let out = run(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let merged: Value = serde_json::from_str(&stdout_of(&out)).expect("merged JSON");
    assert_eq!(
        handshakes(&merged),
        (counts[0].0 + counts[1].0, counts[0].1 + counts[1].1),
        "{merged:#}"
    );
    assert_eq!(
        opened(&merged),
        counts.iter().map(|(f, r)| f + r).sum::<u64>(),
        "{merged:#}"
    );
}

#[test]
fn churn_table_names_connections_per_second_and_first_echo() {
    let server = Server::start(&["tcp://127.0.0.1:0"], &["-q"]);
    let out = crate::support::run(&[
        "bench",
        server.endpoint("tcp://"),
        "--churn",
        "-d",
        "200ms",
        "--warmup",
        "0s",
    ]);
    let table = stdout_of(&out);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(table.contains("connections opened"), "{table}");
    assert!(table.contains("conn/s"), "{table}");
    assert!(table.contains("1st echo"), "{table}");
    assert!(!table.contains("handshakes"), "{table}");
}

/// 3000 open-loop connections (then UDP sockets) under an open-file limit of 5000: one timer
/// descriptor each would need 6000, but a load thread's loop keeps every send time in one heap,
/// and its tokio tasks share one timer.
#[test]
fn open_loop_needs_no_descriptor_per_connection_for_its_timers() {
    let server = Server::start(
        &["tcp://127.0.0.1:0", "udp://127.0.0.1:0"],
        &["-q", "--max-conns", "4000"],
    );
    for scheme in ["tcp://", "udp://"] {
        let script = format!(
            "ulimit -n 5000 && exec \"$0\" bench {} -c 3000 --rate 3000 -d 1s --warmup 0s \
             --timeout 2s --json",
            server.endpoint(scheme)
        );
        let mut cmd = assert_cmd::Command::from_std({
            let mut c = Command::new("sh");
            c.arg("-c").arg(script).arg(bin()).env_remove("RUST_LOG");
            c
        });
        let out = cmd.timeout(RUN).output().expect("bench runs");
        assert_no_panic(&stderr_of(&out));
        assert_eq!(out.status.code(), Some(0), "{scheme}: {}", stderr_of(&out));
        let report: Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
        assert_eq!(int(&report, "connections_established"), 3000);
        assert_eq!(report["mode"], "open");
        assert_eq!(
            int(&report, "messages_received"),
            int(&report, "messages_sent")
        );
        assert_eq!(int(&report, "messages_sent"), 3000, "{report:#}");
    }
}
