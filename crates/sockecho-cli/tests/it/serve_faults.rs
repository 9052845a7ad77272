//! `serve --fault`: the server misbehaves on purpose, and `sockecho bench` must see exactly
//! what it injected — the server's own count (`sockecho_faults_injected_total`) against the
//! report's error counts. Raw sockets check the connection-level faults byte by byte, and bad
//! specs are usage errors.
//!
//! Exact counts use `1/N` chances (every Nth event) and a fixed `--fault-seed`; the bench's
//! datagram reachability probe is the first datagram, which a `1/N` chance with N > 1 spares.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::metrics::{Metrics, series_value};
use crate::support::{
    Server, WAIT, bench_json, echo_once, int, num, run, stderr_of, tcp_connect, temp_dir,
    unixgram_peer,
};

/// `sockecho serve` on one endpoint with metrics and these faults.
fn serve(endpoint: &str, faults: &[&str]) -> (Server, Metrics) {
    let mut flags = vec!["--metrics", "127.0.0.1:0", "--fault-seed", "42", "-q"];
    for fault in faults {
        flags.extend(["--fault", fault]);
    }
    let server = Server::start(&[endpoint], &flags);
    let metrics = Metrics::of(&server);
    (server, metrics)
}

/// How many faults of `kind` the server says it injected.
fn injected(metrics: &Metrics, kind: &str) -> u64 {
    let series = format!("sockecho_faults_injected_total{{kind=\"{kind}\"}}");
    let text = metrics.scrape();
    series_value(&text, &series).unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

/// A short datagram bench: one socket, several messages in flight, and a loss timeout long
/// enough that only what the server dropped counts as lost, even on a busy machine.
fn bench_udp(server: &Server, size: &str) -> (i32, serde_json::Value) {
    let target = server.arg();
    let (code, report, _) = bench_json(&[
        &target,
        "-c",
        "1",
        "-s",
        size,
        "--pipeline",
        "8",
        "-d",
        "300ms",
        "--warmup",
        "0s",
        "--timeout",
        "500ms",
    ]);
    (code, report)
}

fn bench_tcp(server: &Server, extra: &[&str]) -> (i32, serde_json::Value) {
    let target = server.arg();
    let mut args = vec![target.as_str(), "-d", "300ms", "--warmup", "0s"];
    args.extend_from_slice(extra);
    let (code, report, _) = bench_json(&args);
    (code, report)
}

#[test]
fn dropped_datagrams_are_counted_lost_one_for_one() {
    let (server, metrics) = serve("udp://127.0.0.1:0", &["drop@1/10"]);
    let (code, report) = bench_udp(&server, "64");
    let dropped = injected(&metrics, "drop");
    assert!(dropped > 0, "{report:#}");
    assert_eq!(int(&report, "errors.lost"), dropped, "{report:#}");
    assert_eq!(int(&report, "errors.mismatched"), 0);
    assert_eq!(int(&report, "errors.duplicated"), 0);
    assert_eq!(
        int(&report, "messages_sent"),
        int(&report, "messages_received") + dropped,
        "{report:#}"
    );
    assert_eq!(code, 1, "a lossy run fails");
}

#[test]
fn duplicated_datagrams_are_counted_duplicated() {
    let (server, metrics) = serve("udp://127.0.0.1:0", &["duplicate@1/10"]);
    let (code, report) = bench_udp(&server, "64");
    let duplicated = injected(&metrics, "duplicate");
    assert!(duplicated > 0, "{report:#}");
    // bench stops reading once its last message is answered, so the copies of the last few
    // replies (at most the 8 in flight) can arrive after it has stopped: never more counted
    // than injected, and no more than that missing.
    let counted = int(&report, "errors.duplicated");
    assert!(
        counted <= duplicated && duplicated - counted <= 8,
        "bench counted {counted} duplicates, the server injected {duplicated}: {report:#}"
    );
    assert_eq!(int(&report, "errors.lost"), 0);
    assert_eq!(
        int(&report, "messages_sent"),
        int(&report, "messages_received")
    );
    assert_eq!(code, 1);
}

#[test]
fn truncated_datagrams_are_counted_truncated() {
    let (server, metrics) = serve("udp://127.0.0.1:0", &["truncate=32B@1/10"]);
    let (code, report) = bench_udp(&server, "64");
    let truncated = injected(&metrics, "truncate");
    assert!(truncated > 0, "{report:#}");
    assert_eq!(int(&report, "errors.truncated"), truncated, "{report:#}");
    assert_eq!(int(&report, "errors.mismatched"), 0);
    assert_eq!(int(&report, "errors.lost"), 0);
    assert_eq!(
        int(&report, "messages_sent"),
        int(&report, "messages_received") + truncated
    );
    assert_eq!(code, 1);
}

#[test]
fn corrupted_datagrams_are_counted_mismatched() {
    let (server, metrics) = serve("udp://127.0.0.1:0", &["corrupt@1/10"]);
    let (code, report) = bench_udp(&server, "1KiB");
    let corrupted = injected(&metrics, "corrupt");
    assert!(corrupted > 0, "{report:#}");
    assert_eq!(int(&report, "errors.mismatched"), corrupted, "{report:#}");
    // A flipped byte in the sequence header leaves its message unanswered as well: counted
    // once as mismatched (the reply) and once as lost (the message).
    assert!(int(&report, "errors.lost") <= corrupted, "{report:#}");
    assert_eq!(
        int(&report, "messages_sent"),
        int(&report, "messages_received") + corrupted,
        "{report:#}"
    );
    assert_eq!(code, 1);
}

#[test]
fn delayed_datagrams_shift_latency_by_the_delay() {
    let (server, metrics) = serve("udp://127.0.0.1:0", &["delay=40ms±5ms"]);
    let (code, report) = bench_udp(&server, "64");
    assert!(num(&report, "latency_us.p50") >= 35_000.0, "{report:#}");
    assert!(num(&report, "latency_us.min") >= 35_000.0, "{report:#}");
    assert!(injected(&metrics, "delay") >= int(&report, "messages_received"));
    assert_eq!(int(&report, "errors.lost"), 0, "{report:#}");
    assert_eq!(code, 0, "reordered datagrams are no error: {report:#}");
}

#[test]
fn delayed_stream_echoes_shift_latency_by_the_delay() {
    let (server, metrics) = serve("tcp://127.0.0.1:0", &["delay=30ms"]);
    let (code, report) = bench_tcp(&server, &[]);
    assert!(num(&report, "latency_us.p50") >= 30_000.0, "{report:#}");
    assert!(int(&report, "messages_received") > 0);
    assert!(injected(&metrics, "delay") >= int(&report, "messages_received"));
    assert_eq!(code, 0, "{report:#}");
}

#[test]
fn resets_are_counted_disconnected() {
    let (server, metrics) = serve("tcp://127.0.0.1:0", &["reset-after=16KiB"]);
    let (code, report) = bench_tcp(&server, &["-c", "2"]);
    assert_eq!(injected(&metrics, "reset-after"), 2, "{report:#}");
    assert_eq!(int(&report, "errors.disconnected"), 2, "{report:#}");
    assert_eq!(int(&report, "errors.mismatched"), 0);
    assert_eq!(
        int(&report, "errors.truncated"),
        0,
        "cut at a message boundary"
    );
    assert_eq!(code, 1);
}

#[test]
fn timed_closes_are_counted_disconnected() {
    // Closes come long after the reachability probe has come and gone, even on a busy
    // machine, so only the two measured connections meet them; the run ends as soon as both
    // are closed, well before its generous duration.
    let (server, metrics) = serve("tcp://127.0.0.1:0", &["close-after=1s"]);
    let target = server.arg();
    let (code, report, _) = bench_json(&[&target, "-d", "20s", "--warmup", "0s", "-c", "2"]);
    assert_eq!(int(&report, "errors.disconnected"), 2, "{report:#}");
    assert_eq!(injected(&metrics, "close-after"), 2, "{report:#}");
    assert_eq!(int(&report, "errors.mismatched"), 0);
    assert_eq!(code, 1);
}

#[test]
fn sliced_echoes_still_verify() {
    let (server, metrics) = serve("tcp://127.0.0.1:0", &["slice=7B"]);
    let (code, report) = bench_tcp(&server, &["-c", "2", "-s", "100"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["ok"], true);
    assert!(int(&report, "messages_received") > 0);
    // The probe connection and the two measured ones.
    assert_eq!(injected(&metrics, "slice"), 3);
}

#[test]
fn a_bandwidth_cap_bounds_throughput() {
    let (server, metrics) = serve("tcp://127.0.0.1:0", &["bandwidth=64KiB/s"]);
    let (code, report) = bench_tcp(&server, &["-s", "1KiB", "--pipeline", "4"]);
    let received = num(&report, "bytes_received");
    let cap = 64.0 * 1024.0 * num(&report, "duration_s");
    // Over the measured period the cap allows `cap` bytes, plus one paced piece (20 ms worth)
    // and the messages still in flight at its end, whose echoes are waited for and counted.
    let bound = cap + 64.0 * 1024.0 / 50.0 + 4.0 * 1024.0;
    assert!(received <= bound, "{received} > {bound} bytes: {report:#}");
    assert!(
        received >= cap / 2.0,
        "the cap, not something else, limits: {report:#}"
    );
    assert!(injected(&metrics, "bandwidth") >= 1);
    assert_eq!(code, 0, "{report:#}");
}

#[test]
fn raw_sockets_see_refusal_black_hole_and_reset() {
    let (server, metrics) = serve("tcp://127.0.0.1:0", &["refuse@1/2", "blackhole@1/3"]);
    // Connections are numbered as accepted: the first is served as usual, the second (every
    // second) reset at once, the third (every third) never answered.
    let mut served = tcp_connect(server.tcp());
    echo_once(&mut served, b"hello");
    let mut buf = [0u8; 64];
    // The kernel completes the handshake before the server accepts; the reset that follows
    // may reach the client while its connect is still being confirmed, or at its first read.
    let got = TcpStream::connect_timeout(&server.tcp(), WAIT).and_then(|mut refused| {
        refused.set_read_timeout(Some(WAIT))?;
        refused.read(&mut buf)
    });
    assert!(
        matches!(&got, Err(e) if e.kind() == ErrorKind::ConnectionReset),
        "{got:?}"
    );
    let mut hole = tcp_connect(server.tcp());
    hole.write_all(b"anyone there?").unwrap();
    hole.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let e = hole
        .read(&mut buf)
        .expect_err("a black hole answers nothing");
    assert!(
        matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{e}"
    );
    assert_eq!(injected(&metrics, "refuse"), 1);
    assert_eq!(injected(&metrics, "blackhole"), 1);
    drop(server);

    let (server, metrics) = serve("tcp://127.0.0.1:0", &["reset-after=10B"]);
    let mut stream = tcp_connect(server.tcp());
    stream.write_all(b"0123456789abcdefghij").unwrap();
    let mut echoed = Vec::new();
    let end = loop {
        match stream.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => echoed.extend_from_slice(&buf[..n]),
            Err(e) => break Err(e),
        }
    };
    assert_eq!(echoed, b"0123456789");
    assert!(
        matches!(&end, Err(e) if e.kind() == ErrorKind::ConnectionReset),
        "{end:?}"
    );
    assert_eq!(injected(&metrics, "reset-after"), 1);
}

#[test]
fn unix_datagram_replies_meet_the_same_faults() {
    let dir = temp_dir();
    let path = dir.path().join("faulty.sock");
    let endpoint = format!("unixgram:{}", path.display());
    let (server, metrics) = serve(&endpoint, &["drop@1/2", "truncate=3B@1/3"]);
    let peer = unixgram_peer(&dir.path().join("peer.sock"));
    for i in 0..6u8 {
        peer.send_to(&[i; 8], &path).unwrap();
    }
    // Datagrams 2, 4 and 6 are dropped; of the others (1, 3, 5), the third is cut to 3 bytes.
    let mut buf = [0u8; 64];
    let mut replies = Vec::new();
    for _ in 0..3 {
        let n = peer.recv(&mut buf).expect("a reply");
        replies.push(buf[..n].to_vec());
    }
    assert_eq!(replies, [vec![0u8; 8], vec![2u8; 8], vec![4u8; 3]]);
    peer.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    assert!(peer.recv(&mut buf).is_err(), "no reply beyond the three");
    assert_eq!(injected(&metrics, "drop"), 3);
    assert_eq!(injected(&metrics, "truncate"), 1);
    drop(server);
}

#[test]
fn the_seed_is_logged_and_malformed_faults_are_usage_errors() {
    let server = Server::start(
        &["udp://127.0.0.1:0"],
        &["--fault", "drop=1%", "--fault-seed", "7"],
    );
    let log = server.wait_for("injecting faults");
    assert!(log.contains("drop@1% (seed 7;"), "{log}");

    for (spec, part) in [
        ("delay=10xs", "\"10xs\""),
        ("jitter=5ms", "\"jitter\""),
        ("drop=150%", "\"150%\""),
    ] {
        let out = run(&["serve", "tcp://127.0.0.1:0", "--fault", spec]);
        assert_eq!(out.status.code(), Some(2), "{spec}");
        let err = stderr_of(&out);
        assert!(err.contains(part), "{spec}: {err}");
        assert!(err.contains("reset-after=64KiB|2s"), "kinds listed: {err}");
    }
    let out = run(&[
        "serve",
        "tcp://127.0.0.1:0",
        "--fault",
        "drop",
        "--fault",
        "drop@5%",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains("given twice"),
        "{}",
        stderr_of(&out)
    );
}
