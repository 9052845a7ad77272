//! Stopping `sockecho bench` early: the first SIGINT (Ctrl-C) or SIGTERM ends the measured period
//! and the run reports what it measured; before the measured period there is nothing to report
//! (exit 130); a second signal quits at once (exit 130).

use std::io::Read;
use std::net::TcpListener;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Server, WAIT, int, num, sockecho, stderr_of, stdout_of, wait_child};
use rustix::process::{Pid, Signal, kill_process};

/// Starts `sockecho bench ARGS --json` with its output captured.
fn start(args: &[&str]) -> Child {
    let mut full = vec!["bench"];
    full.extend_from_slice(args);
    full.push("--json");
    sockecho(&full)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sockecho bench")
}

/// Waits for `child` to exit within `limit`, returning its output and how long that took.
fn finish(mut child: Child, limit: Duration) -> (Output, Duration) {
    let began = Instant::now();
    let status = wait_child(&mut child, limit)
        .unwrap_or_else(|| panic!("bench did not stop within {limit:?}"));
    let took = began.elapsed();
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_end(&mut stdout)
        .expect("read");
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_end(&mut stderr)
        .expect("read");
    (
        Output {
            status,
            stdout,
            stderr,
        },
        took,
    )
}

fn signal(child: &Child, signal: Signal) {
    kill_process(Pid::from_child(child), signal).expect("send a signal");
}

#[test]
fn a_stopped_run_reports_what_it_measured() {
    let server = Server::start(&["tcp://127.0.0.1:0", "udp://127.0.0.1:0"], &["-q"]);
    // Each loop: io_uring and epoll for TCP, a task per socket for UDP.
    for (scheme, io, stop) in [
        ("tcp://", "uring", Signal::INT),
        ("tcp://", "epoll", Signal::TERM),
        ("udp://", "auto", Signal::INT),
    ] {
        let child = start(&[
            server.endpoint(scheme),
            "--io",
            io,
            "-c",
            "4",
            "-d",
            "60s",
            "--warmup",
            "200ms",
        ]);
        std::thread::sleep(Duration::from_millis(1500));
        signal(&child, stop);
        let (out, took) = finish(child, WAIT);
        let label = format!("{scheme} --io {io}");
        assert_eq!(out.status.code(), Some(0), "{label}: {}", stderr_of(&out));
        assert!(
            took < Duration::from_secs(3),
            "{label}: took {took:?} to stop"
        );
        assert!(stderr_of(&out).contains("bench: stopping"), "{label}");
        let report: serde_json::Value =
            serde_json::from_str(&stdout_of(&out)).unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(report["interrupted"], true, "{label}");
        assert_eq!(report["ok"], true, "{label}: {report:#}");
        // Started about 0.3 s after launch (connect, then 200 ms of warm-up), stopped at 1.5 s.
        let duration = num(&report, "duration_s");
        assert!(
            (0.3..3.0).contains(&duration),
            "{label}: measured {duration} s"
        );
        let received = int(&report, "messages_received");
        assert!(received > 100, "{label}: {report:#}");
        assert_eq!(
            received,
            int(&report, "messages_sent"),
            "{label}: {report:#}"
        );
        let rate = num(&report, "msgs_per_s");
        assert!(
            (rate - received as f64 / duration).abs() < 1.0,
            "{label}: the rate counts the shortened period: {report:#}"
        );
    }
}

#[test]
fn a_run_stopped_during_warm_up_has_nothing_to_report() {
    let server = Server::start(&["tcp://127.0.0.1:0"], &["-q"]);
    let child = start(&[server.endpoint("tcp://"), "-d", "10s", "--warmup", "30s"]);
    std::thread::sleep(Duration::from_millis(800));
    signal(&child, Signal::INT);
    let (out, took) = finish(child, WAIT);
    assert_eq!(out.status.code(), Some(130), "{}", stderr_of(&out));
    assert!(took < Duration::from_secs(3), "took {took:?} to stop");
    assert!(stdout_of(&out).is_empty(), "no report: {}", stdout_of(&out));
    assert!(
        stderr_of(&out).contains("before the measured period began"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn a_second_signal_quits_without_waiting_for_replies() {
    // A server that accepts and never reads: no reply ever comes, so after the first signal
    // bench would wait the whole 30 s timeout for the messages in flight.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            match stream {
                Ok(s) => held.push(s),
                Err(_) => return,
            }
        }
    });
    let endpoint = format!("tcp://{addr}");
    let child = start(&[&endpoint, "-d", "60s", "--warmup", "0s", "--timeout", "30s"]);
    std::thread::sleep(Duration::from_millis(1000));
    signal(&child, Signal::INT);
    std::thread::sleep(Duration::from_millis(500));
    signal(&child, Signal::INT);
    let (out, took) = finish(child, WAIT);
    assert_eq!(out.status.code(), Some(130), "{}", stderr_of(&out));
    assert!(took < Duration::from_secs(3), "took {took:?} to quit");
}

/// At the highest rate bench accepts, far beyond what it can send, the first signal still ends
/// the run at once: what was due and not sent is counted in one step, not walked through.
#[test]
fn a_run_far_behind_its_schedule_stops_at_once() {
    let server = Server::start(&["tcp://127.0.0.1:0", "udp://127.0.0.1:0"], &["-q"]);
    for (scheme, io) in [("tcp://", "uring"), ("tcp://", "epoll"), ("udp://", "auto")] {
        let child = start(&[
            server.endpoint(scheme),
            "--io",
            io,
            "--rate",
            "1e9",
            "-d",
            "60s",
            "--warmup",
            "0s",
        ]);
        std::thread::sleep(Duration::from_millis(1500));
        signal(&child, Signal::TERM);
        let (out, took) = finish(child, WAIT);
        let label = format!("{scheme} --io {io}");
        assert_eq!(out.status.code(), Some(0), "{label}: {}", stderr_of(&out));
        assert!(
            took < Duration::from_secs(3),
            "{label}: took {took:?} to stop"
        );
        let report: serde_json::Value =
            serde_json::from_str(&stdout_of(&out)).unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(report["interrupted"], true, "{label}");
        assert!(
            int(&report, "not_sent") > int(&report, "messages_sent"),
            "{label}: {report:#}"
        );
        assert_eq!(int(&report, "errors.lost"), 0, "{label}: {report:#}");
    }
}
