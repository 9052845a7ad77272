//! `sockecho serve` with `tls://` listeners, from the outside: certificate and key flags, peers
//! that never finish (or never start) a handshake, a TLS client at a plain server or at one that
//! gets TLS wrong, and shutdown with a TLS connection open.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::{
    Metrics, Server, WAIT, echo_once, logged_fingerprint, pattern, run, run_with_input,
    start_tls_server, start_tls_server_with, stderr_of, tcp_connect, temp_dir, write_cert,
};
use rustix::process::Signal;

fn path(p: &std::path::Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `sockecho serve tls://127.0.0.1:0 ARGS`, expected to fail at once: its exit code and stderr.
fn serve_fails(args: &[&str]) -> (Option<i32>, String) {
    let mut all = vec!["serve", "tls://127.0.0.1:0"];
    all.extend_from_slice(args);
    let out = run(&all);
    let err = stderr_of(&out);
    assert!(!err.contains("listening on"), "it must not serve: {err}");
    (out.status.code(), err)
}

#[test]
fn cert_without_key_is_a_usage_error() {
    let (code, err) = serve_fails(&["--cert", "server.crt"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--key"), "names the missing flag: {err}");
    let (code, err) = serve_fails(&["--key", "server.key"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--cert"), "names the missing flag: {err}");
}

#[test]
fn unusable_certificate_or_key_files_are_named() {
    let dir = temp_dir();
    let good = write_cert(dir.path(), "good", &["localhost"]);
    let other = write_cert(dir.path(), "other", &["localhost"]);
    let missing = dir.path().join("missing.crt");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "this is not PEM\n").expect("write");

    let cases = [
        (
            "a missing certificate",
            path(&missing),
            path(&good.key),
            path(&missing),
        ),
        (
            "a certificate that is no PEM",
            path(&garbage),
            path(&good.key),
            path(&garbage),
        ),
        (
            "a key that is no PEM",
            path(&good.cert),
            path(&garbage),
            path(&garbage),
        ),
        (
            "another certificate's key",
            path(&good.cert),
            path(&other.key),
            path(&other.key),
        ),
    ];
    for (what, cert, key, named) in cases {
        let (code, err) = serve_fails(&["--cert", cert, "--key", key]);
        assert_eq!(code, Some(1), "{what}: {err}");
        assert!(err.starts_with("error: "), "{what}: {err}");
        assert!(
            err.contains(named),
            "{what}: the message names {named}: {err}"
        );
    }
}

/// The address from the `metrics on http://ADDR/metrics` line.
fn metrics_addr(server: &Server) -> SocketAddr {
    let log = server.wait_for("metrics on http://");
    log.split("metrics on http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no metrics address in the log:\n{log}"))
}

/// `GET /metrics` over a plain std socket; the body.
fn scrape(addr: SocketAddr) -> String {
    let mut stream = tcp_connect(addr);
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the response");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// Reads until the server closes `stream`; what arrived, and how long that took from `since`.
/// A reset counts as closed; a read timeout fails the test.
fn read_until_closed(stream: &mut TcpStream, since: Instant) -> (Vec<u8>, Duration) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!(
                "the server did not close the connection within {:?}: {e}",
                since.elapsed()
            ),
        }
    }
    (got, since.elapsed())
}

/// A client that pins the server's certificate echoes `data`.
fn assert_pinned_client_works(addr: SocketAddr, fingerprint: &str) {
    let data = pattern(10_000, 77);
    let out = run_with_input(
        &[
            "client",
            &format!("tls://{addr}"),
            "--pin-sha256",
            fingerprint,
        ],
        &data,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(out.stdout == data, "echo differs");
}

#[test]
fn a_stalled_handshake_is_cut_at_the_timeout_logged_and_counted() {
    let (server, addr) = start_tls_server(&[
        "serve",
        "tls://127.0.0.1:0",
        "--tls-handshake-timeout",
        "300ms",
        "--metrics",
        "127.0.0.1:0",
    ]);
    let fingerprint = logged_fingerprint(&server.log());
    let metrics = metrics_addr(&server);

    // Connects and says nothing.
    let mut stalled = TcpStream::connect(addr).expect("connect");
    let since = Instant::now();
    stalled
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let (got, took) = read_until_closed(&mut stalled, since);
    assert!(got.is_empty(), "nothing to say to a silent peer: {got:?}");
    assert!(
        took >= Duration::from_millis(200),
        "closed after {took:?}, before the 300ms timeout"
    );
    server.wait_for("TLS handshake failed");
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("TLS handshake failed"))
        .expect("the line waited for");
    assert!(line.contains("WARN"), "a warning: {line}");

    assert_pinned_client_works(addr, &fingerprint);
    let text = scrape(metrics);
    assert!(
        text.lines()
            .any(|l| l == "sockecho_tls_handshake_failures_total{transport=\"tls\"} 1"),
        "one handshake failure counted:\n{text}"
    );
}

#[test]
fn plain_text_at_the_tls_port_is_refused_without_harm() {
    let (mut server, addr) = start_tls_server(&["serve", "tls://127.0.0.1:0"]);
    let fingerprint = logged_fingerprint(&server.log());

    let mut plain = tcp_connect(addr);
    plain
        .write_all(b"GET / HTTP/1.0\r\nHost: example\r\n\r\n")
        .expect("send");
    let (got, _) = read_until_closed(&mut plain, Instant::now());
    assert!(
        !got.starts_with(b"GET"),
        "the text must not be echoed: {got:?}"
    );
    let log = server.wait_for("TLS handshake failed");
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("does not speak TLS")),
        "{log}"
    );
    assert!(server.running(), "the server survives:\n{log}");
    assert_pinned_client_works(addr, &fingerprint);
}

#[test]
fn a_tls_client_at_a_plain_server_is_told_it_does_not_speak_tls() {
    let server = Server::start(&["tcp://127.0.0.1:0"], &["-q"]);
    let endpoint = format!("tls://{}", server.tcp());
    // Any pin: the handshake fails before a certificate could be looked at.
    let pin = "00".repeat(32);
    let out = run_with_input(&["client", &endpoint, "--pin-sha256", &pin], b"hello\n");
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(out.stdout.is_empty());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!("error: cannot connect to {endpoint}: ")),
        "{err}"
    );
    assert!(err.contains("does not speak TLS"), "{err}");
}

/// A server that answers any ClientHello with a lone ServerHelloDone record: TLS framing, but not
/// a handshake any client can go on with.
fn out_of_order_tls_server() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr");
    // Detached: it serves the one client the test runs, and ends with the test process.
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        let _ = stream.read(&mut [0u8; 4096]);
        let _ = stream.write_all(&[0x16, 0x03, 0x03, 0x00, 0x04, 0x0e, 0x00, 0x00, 0x00]);
        // Until the client hangs up.
        let _ = stream.read(&mut [0u8; 4096]);
    });
    addr
}

#[test]
fn a_handshake_error_says_tls_handshake_failed_once() {
    let endpoint = format!("tls://{}", out_of_order_tls_server());
    let pin = "00".repeat(32);
    let out = run_with_input(&["client", &endpoint, "--pin-sha256", &pin], b"hello\n");
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!("error: cannot connect to {endpoint}: ")),
        "{err}"
    );
    assert_eq!(
        err.matches("TLS handshake failed").count(),
        1,
        "said once: {err}"
    );
}

/// A blocking rustls client that trusts only `cert_der`, connected to `addr` as `localhost`.
fn rustls_client(
    addr: SocketAddr,
    cert_der: &[u8],
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(cert_der.to_vec()))
        .expect("a usable root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("a DNS name");
    let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client connection");
    rustls::StreamOwned::new(conn, tcp_connect(addr))
}

#[test]
fn sigterm_echoes_what_arrived_then_closes_the_tls_stream() {
    let dir = temp_dir();
    let cert = write_cert(dir.path(), "server", &["localhost", "127.0.0.1"]);
    let (mut server, addr) = start_tls_server_with(&cert);
    let mut tls = rustls_client(addr, &cert.der);
    let before = pattern(64 * 1024, 1);
    echo_once(&mut tls, &before);

    // Handed to the kernel before the signal; the echo comes after it.
    let after = pattern(32 * 1024, 2);
    tls.write_all(&after).expect("write");
    tls.flush().expect("flush");
    server.signal(Signal::TERM);

    let mut rest = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => rest.extend_from_slice(&buf[..n]),
            Err(e) => panic!(
                "after {} of {} bytes: {e} (expected the echo, then close_notify)",
                rest.len(),
                after.len()
            ),
        }
    }
    assert_eq!(rest.len(), after.len(), "the remaining echo");
    assert!(rest == after, "the remaining echo differs");
    drop(tls);
    let status = server.wait_exit(WAIT);
    assert_eq!(status.code(), Some(0), "{}", server.log());
}

/// Bytes echoed over TLS show in `/metrics` while the connection is still open.
#[test]
fn tls_bytes_echoed_move_while_the_connection_is_open() {
    let dir = temp_dir();
    let cert = write_cert(dir.path(), "server", &["localhost"]);
    let (server, addr) = start_tls_server(&[
        "serve",
        "tls://127.0.0.1:0",
        "--cert",
        path(&cert.cert),
        "--key",
        path(&cert.key),
        "--metrics",
        "127.0.0.1:0",
    ]);
    let metrics = Metrics::of(&server);
    let mut tls = rustls_client(addr, &cert.der);
    for seed in 0..16 {
        echo_once(&mut tls, &pattern(64 * 1024, seed));
    }
    metrics.wait_values(&[
        ("sockecho_bytes_echoed_total{transport=\"tls\"}", 1 << 20),
        ("sockecho_connections_open{transport=\"tls\"}", 1),
    ]);
    drop(tls);
}

#[test]
fn a_flood_of_failed_handshakes_is_summarised_not_logged_line_by_line() {
    const PEERS: usize = 40;
    let (mut server, addr) = start_tls_server(&[
        "serve",
        "tls://127.0.0.1:0",
        "-q",
        "--metrics",
        "127.0.0.1:0",
    ]);
    let metrics = Metrics::of(&server);
    for _ in 0..PEERS {
        let mut plain = tcp_connect(addr);
        plain
            .write_all(b"GET / HTTP/1.0\r\n\r\n")
            .expect("send plain text");
        read_until_closed(&mut plain, Instant::now());
    }
    metrics.wait_values(&[(
        "sockecho_tls_handshake_failures_total{transport=\"tls\"}",
        PEERS as u64,
    )]);

    // The summary of the rest comes at the latest when the server stops.
    server.signal(Signal::TERM);
    assert_eq!(server.wait_exit(WAIT).code(), Some(0));
    let log = server.log();
    let one_by_one = log
        .lines()
        .filter(|l| l.contains("TLS handshake failed"))
        .count();
    assert!(
        (1..=5).contains(&one_by_one),
        "{one_by_one} failures logged one by one:\n{log}"
    );
    let summarised: usize = log
        .lines()
        .filter_map(|l| {
            let (_, rest) = l.split_once("WARN ")?;
            let (n, tail) = rest.trim_start().split_once(' ')?;
            tail.starts_with("more TLS handshake failures")
                .then(|| n.parse::<usize>().ok())?
        })
        .sum();
    assert_eq!(one_by_one + summarised, PEERS, "{log}");
}
