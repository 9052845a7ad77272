//! The metrics endpoint's own bounds: a cap on its connections that leaves the echo listeners
//! their descriptors, a deadline for each request head, an idle limit between requests, and a
//! cap on the size of a request head (431) — each counted in `/metrics`.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::{Metrics, Server, WAIT, echo_once, poll_until, series_value, tcp_connect};

/// `sockecho_metrics_connections_rejected_total{reason=REASON}`.
fn rejected(reason: &str) -> String {
    format!("sockecho_metrics_connections_rejected_total{{reason=\"{reason}\"}}")
}

/// Reads one HTTP/1.1 response (head, then a `Content-Length` body) from a kept-alive
/// connection; returns the status and the body.
fn read_response(stream: &mut TcpStream) -> (u16, String) {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => raw.push(byte[0]),
            Ok(_) => panic!("connection closed inside a response head: {raw:?}"),
            Err(e) => panic!("reading a response head: {e}; so far {raw:?}"),
        }
    }
    let head = String::from_utf8(raw).expect("UTF-8 head");
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).expect("response body");
    (status, String::from_utf8(body).expect("UTF-8 body"))
}

/// Waits for the server to close `stream` (EOF or reset) and returns how long that took.
fn time_until_closed(stream: &mut TcpStream) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 256];
    match stream.read(&mut buf) {
        Ok(0) => start.elapsed(),
        Ok(n) => panic!("expected the connection to be closed, got {:?}", &buf[..n]),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => start.elapsed(),
        Err(e) => panic!("expected the connection to be closed within {WAIT:?}: {e}"),
    }
}

#[test]
fn connections_beyond_the_limit_are_closed_while_the_echo_listener_and_held_ones_serve() {
    const LIMIT: usize = 64; // the default
    let server = Server::start(
        &["tcp://127.0.0.1:0"],
        // Long enough that the held connections outlive the test.
        &[
            "--metrics",
            "127.0.0.1:0",
            "--metrics-header-timeout",
            "60s",
        ],
    );
    let metrics = Metrics::of(&server);
    let mut held: Vec<TcpStream> = (0..LIMIT).map(|_| tcp_connect(metrics.addr)).collect();

    // Accepted in backlog order, so the extra one is accepted after every held one.
    let mut extra = tcp_connect(metrics.addr);
    let waited = time_until_closed(&mut extra);
    assert!(waited < WAIT, "the connection over the limit stayed open");

    // A held connection still answers, and counts the refusal.
    let first = &mut held[0];
    write!(first, "GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n").expect("request");
    let (status, body) = read_response(first);
    assert_eq!(status, 200, "{body}");
    assert_eq!(series_value(&body, &rejected("limit")), Some(1), "{body}");
    assert_eq!(
        series_value(&body, "sockecho_metrics_connections_open"),
        Some(LIMIT as u64),
        "{body}"
    );

    // The echo listener is untouched.
    echo_once(&mut tcp_connect(server.tcp()), b"still echoing");

    // Once held connections close, new ones are served again.
    held.truncate(LIMIT - 1);
    poll_until("a slot freed by a held connection's close", || {
        let mut probe = tcp_connect(metrics.addr);
        write!(
            probe,
            "GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
        )
        .expect("request");
        let mut reply = Vec::new();
        let _ = probe.read_to_end(&mut reply);
        if reply.starts_with(b"HTTP/1.1 200") {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&reply).into_owned())
        }
    });
}

#[test]
fn a_request_head_not_finished_in_time_is_dropped_even_if_it_trickles() {
    let server = Server::start(
        &["tcp://127.0.0.1:0"],
        &[
            "--metrics",
            "127.0.0.1:0",
            "--metrics-header-timeout",
            "300ms",
        ],
    );
    let metrics = Metrics::of(&server);

    let mut silent = tcp_connect(metrics.addr);
    silent
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n")
        .expect("partial head");
    let waited = time_until_closed(&mut silent);
    assert!(
        waited >= Duration::from_millis(200),
        "closed after {waited:?}"
    );

    // One byte every 50 ms keeps bytes moving but never finishes the head.
    let mut trickle = tcp_connect(metrics.addr);
    let start = Instant::now();
    let closed = loop {
        if trickle.write_all(b"X").is_err() {
            break start.elapsed();
        }
        trickle
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let mut buf = [0u8; 64];
        match trickle.read(&mut buf) {
            Ok(0) => break start.elapsed(),
            Ok(n) => panic!("unexpected reply {:?}", &buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break start.elapsed(),
        }
        assert!(
            start.elapsed() < WAIT,
            "a trickled head was held for {WAIT:?}"
        );
    };
    assert!(
        closed >= Duration::from_millis(200),
        "closed after {closed:?}"
    );
    metrics.wait_values(&[(&rejected("header_timeout"), 2)]);
}

#[test]
fn an_idle_kept_alive_connection_is_closed_after_the_idle_timeout() {
    let server = Server::start(
        &["tcp://127.0.0.1:0"],
        &[
            "--metrics",
            "127.0.0.1:0",
            "--metrics-idle-timeout",
            "300ms",
            "--metrics-header-timeout",
            "30s",
        ],
    );
    let metrics = Metrics::of(&server);
    let mut stream = tcp_connect(metrics.addr);
    for _ in 0..2 {
        write!(stream, "GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n").expect("request");
        assert_eq!(read_response(&mut stream), (200, "ok\n".to_owned()));
    }
    let waited = time_until_closed(&mut stream);
    assert!(
        waited >= Duration::from_millis(200),
        "closed after {waited:?}"
    );
    metrics.wait_values(&[
        (&rejected("idle_timeout"), 1),
        (&rejected("header_timeout"), 0),
    ]);
}

#[test]
fn a_request_head_over_8_kib_is_answered_431() {
    let server = Server::start(&["tcp://127.0.0.1:0"], &["--metrics", "127.0.0.1:0"]);
    let metrics = Metrics::of(&server);

    let ask = |filler: usize| {
        let mut stream = tcp_connect(metrics.addr);
        let head = format!(
            "GET /healthz HTTP/1.1\r\nHost: test\r\nX-Filler: {}\r\nConnection: close\r\n\r\n",
            "a".repeat(filler)
        );
        stream.write_all(head.as_bytes()).expect("request");
        read_response(&mut stream).0
    };
    assert_eq!(ask(6 * 1024), 200);
    assert_eq!(ask(9 * 1024), 431);
    assert_eq!(ask(500 * 1024), 431);
    metrics.wait_values(&[(&rejected("header_too_large"), 2)]);
}
