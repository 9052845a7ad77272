//! `--metrics ADDR`: the Prometheus text moves with the traffic, `/healthz` and `/readyz` answer,
//! and readiness turns to 503 while the server drains after SIGTERM.

use std::io::Read;
use std::net::Shutdown;

use crate::support::{
    Metrics, Server, TCP_BYTES, TCP_CONNECTIONS, UDP_ECHOED, WAIT, echo_once, poll_until,
    series_value, tcp_connect, udp_exchange, udp_peer,
};
use rustix::process::Signal;

const TCP_OPEN: &str = "sockecho_connections_open{transport=\"tcp\"}";
const UDP_BYTES: &str = "sockecho_datagram_bytes_echoed_total{transport=\"udp\"}";
const TCP_CLOSED_NORMAL: &str =
    "sockecho_connections_closed_total{transport=\"tcp\",reason=\"normal\"}";

#[test]
fn counters_move_with_the_traffic() {
    let server = Server::start(
        &["tcp://127.0.0.1:0", "udp://127.0.0.1:0"],
        &["--metrics", "127.0.0.1:0"],
    );
    let metrics = Metrics::of(&server);

    let response = metrics.get("/metrics");
    assert_eq!(response.status, 200, "{response:?}");
    assert!(
        response
            .headers
            .to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{}",
        response.headers
    );
    assert!(
        response.body.trim_end().ends_with("# EOF"),
        "{}",
        response.body
    );
    for (series, want) in [
        (TCP_CONNECTIONS, 0),
        (TCP_BYTES, 0),
        (TCP_OPEN, 0),
        (UDP_ECHOED, 0),
        (UDP_BYTES, 0),
    ] {
        assert_eq!(series_value(&response.body, series), Some(want), "{series}");
    }

    // An open connection shows as open; its bytes are counted as they are echoed.
    let mut stream = tcp_connect(server.tcp());
    echo_once(&mut stream, b"hello metrics");
    echo_once(&mut stream, b"!");
    metrics.wait_values(&[(TCP_CONNECTIONS, 1), (TCP_OPEN, 1)]);
    drop(stream);
    metrics.wait_values(&[
        (TCP_CONNECTIONS, 1),
        (TCP_OPEN, 0),
        (TCP_BYTES, 14),
        (TCP_CLOSED_NORMAL, 1),
    ]);

    let peer = udp_peer(server.udp());
    assert_eq!(udp_exchange(&peer, server.udp(), b"dgram"), b"dgram");
    assert_eq!(udp_exchange(&peer, server.udp(), b"two"), b"two");
    metrics.wait_values(&[(UDP_ECHOED, 2), (UDP_BYTES, 8), (TCP_BYTES, 14)]);
}

/// Echoes `len` bytes on `stream` (writing from a second thread, so neither side waits for the
/// other's buffers) and checks they came back unchanged. The stream stays open.
fn echo_in_full<S>(stream: &mut S, writer: S, len: usize)
where
    S: Read + std::io::Write + Send + 'static,
{
    let data = crate::support::pattern(len, 3);
    let sent = data.clone();
    let mut writer = writer;
    let write = std::thread::spawn(move || writer.write_all(&sent).expect("write"));
    let mut back = vec![0u8; len];
    stream.read_exact(&mut back).expect("read the echo");
    write.join().expect("writer thread");
    assert!(back == data, "the echo differs");
}

/// A long-lived connection is the common case for a monitored server: its bytes must show in
/// `/metrics` while it is open, on TCP and Unix stream listeners alike (whichever I/O path
/// serves them; the suite also runs with `SOCKECHO_IO=epoll`).
#[test]
fn bytes_echoed_move_while_the_connection_is_open() {
    const MIB: usize = 1 << 20;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("m.sock");
    let server = Server::start(
        &["tcp://127.0.0.1:0", &format!("unix:{}", path.display())],
        &["--metrics", "127.0.0.1:0"],
    );
    let metrics = Metrics::of(&server);

    let mut tcp = tcp_connect(server.tcp());
    let writer = tcp.try_clone().expect("clone");
    echo_in_full(&mut tcp, writer, MIB);
    metrics.wait_values(&[(TCP_BYTES, MIB as u64), (TCP_OPEN, 1)]);

    let mut unix = crate::support::unix_connect(&path);
    let writer = unix.try_clone().expect("clone");
    echo_in_full(&mut unix, writer, MIB);
    metrics.wait_values(&[
        (
            "sockecho_bytes_echoed_total{transport=\"unix\"}",
            MIB as u64,
        ),
        ("sockecho_connections_open{transport=\"unix\"}", 1),
    ]);

    // Closing adds nothing more: the bytes were counted once.
    drop((tcp, unix));
    metrics.wait_values(&[
        (TCP_OPEN, 0),
        (TCP_BYTES, MIB as u64),
        ("sockecho_connections_open{transport=\"unix\"}", 0),
        (
            "sockecho_bytes_echoed_total{transport=\"unix\"}",
            MIB as u64,
        ),
    ]);
}

#[test]
fn health_readiness_and_unknown_paths() {
    let server = Server::start(&["tcp://127.0.0.1:0"], &["--metrics", "127.0.0.1:0"]);
    let metrics = Metrics::of(&server);

    let health = metrics.get("/healthz");
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    let ready = metrics.get("/readyz");
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));
    let unknown = metrics.get("/nope");
    assert_eq!(unknown.status, 404, "{unknown:?}");
    let post = metrics.request("POST", "/metrics");
    assert_eq!(post.status, 405, "{post:?}");
}

#[test]
fn readiness_turns_503_while_draining() {
    let mut server = Server::start(
        &["tcp://127.0.0.1:0"],
        &["--metrics", "127.0.0.1:0", "--grace", "2s"],
    );
    let metrics = Metrics::of(&server);
    // A client that stays connected keeps the server draining for the grace period.
    let mut holder = tcp_connect(server.tcp());
    echo_once(&mut holder, b"hold on");
    metrics.wait_values(&[(TCP_OPEN, 1)]);
    assert_eq!(metrics.get("/readyz").status, 200);

    server.signal(Signal::TERM);
    let draining = poll_until("/readyz to stop answering 200 after SIGTERM", || {
        let ready = metrics.get("/readyz");
        if ready.status != 200 {
            Ok(ready)
        } else {
            Err(ready.body)
        }
    });
    assert_eq!(
        (draining.status, draining.body.as_str()),
        (503, "draining\n")
    );
    // Liveness is unaffected by draining.
    let health = metrics.get("/healthz");
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));

    // The drain half-closes the idle connection; closing our side lets the server exit.
    let mut rest = Vec::new();
    holder
        .read_to_end(&mut rest)
        .expect("EOF from the draining server");
    assert!(rest.is_empty(), "{rest:?}");
    holder.shutdown(Shutdown::Both).expect("close");
    drop(holder);
    let status = server.wait_exit(WAIT);
    assert_eq!(status.code(), Some(0), "{}", server.log());
}
