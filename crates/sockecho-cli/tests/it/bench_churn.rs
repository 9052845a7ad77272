//! `sockecho bench --churn`: connections that open, exchange their messages and close, checked
//! against servers that count what they accepted and echoed, or that reset connections on a
//! known schedule; closed and open loop, on TCP, Unix and TLS, closing with FIN or RST. Also:
//! open loop over more connections than the file-descriptor budget would allow one timer each.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;

use crate::support::{
    RUN, Server, assert_no_panic, bench_json, bin, echo_with, int, poll_until, start_tls_server,
    stderr_of, stdout_of, tcp_server, temp_dir,
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
