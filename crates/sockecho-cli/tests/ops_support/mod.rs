//! Helpers for the operations tests (access control, limits, reflection guard, metrics, socket
//! activation): connect or send from a chosen loopback address, tell a refused connection from a
//! served one, and scrape `--metrics` with a minimal HTTP/1.1 client, waiting for a counter to
//! reach a value. Every wait is bounded; the tests that use this also declare `mod common;`.
#![allow(dead_code)] // each test crate uses a different subset

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::common::{Server, WAIT};

/// How long a dropped datagram is given to show up anyway before the test calls it dropped.
pub const QUIET: Duration = Duration::from_millis(300);

pub fn ip(text: &str) -> IpAddr {
    text.parse()
        .unwrap_or_else(|e| panic!("{text:?} is not an address: {e}"))
}

/// A TCP connection to `server` from `local` (any port), with read and write timeouts. Any
/// 127.x.y.z address works as a source on Linux loopback without configuration.
pub fn tcp_connect_from(local: IpAddr, server: SocketAddr) -> TcpStream {
    let socket = Socket::new(
        Domain::for_address(server),
        Type::STREAM,
        Some(Protocol::TCP),
    )
    .expect("tcp socket");
    socket
        .bind(&SocketAddr::new(local, 0).into())
        .unwrap_or_else(|e| panic!("bind a client socket to {local}: {e}"));
    socket
        .connect_timeout(&server.into(), WAIT)
        .unwrap_or_else(|e| panic!("connect from {local} to {server}: {e}"));
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream.set_write_timeout(Some(WAIT)).expect("timeout");
    stream
}

/// Asserts the server closed `stream` without serving it: a write is never echoed, and the
/// read ends in EOF or a reset (not a timeout).
pub fn assert_closed_unserved(stream: &mut TcpStream, what: &str) {
    // The write may already fail if the close has arrived; either way the read tells.
    let _ = stream.write_all(b"anyone there?");
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
            ) => {}
        Ok(n) => panic!("{what}: expected a refused connection, got {:?}", &buf[..n]),
        Err(e) => panic!("{what}: expected a refused connection, but it stayed open: {e}"),
    }
}

/// A UDP socket bound to `local` (any port), with a read timeout.
pub fn udp_from(local: IpAddr) -> UdpSocket {
    let socket = UdpSocket::bind(SocketAddr::new(local, 0))
        .unwrap_or_else(|e| panic!("bind a UDP socket to {local}: {e}"));
    socket.set_read_timeout(Some(WAIT)).expect("timeout");
    socket
}

/// Asserts nothing arrives on `socket` within [`QUIET`].
pub fn assert_no_datagram(socket: &UdpSocket, what: &str) {
    socket.set_read_timeout(Some(QUIET)).expect("timeout");
    let mut buf = [0u8; 2048];
    match socket.recv_from(&mut buf) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        Ok((n, from)) => panic!("{what}: expected no reply, got {:?} from {from}", &buf[..n]),
        Err(e) => panic!("{what}: expected no reply, got an error: {e}"),
    }
    socket.set_read_timeout(Some(WAIT)).expect("timeout");
}

/// Every datagram already queued on `socket`, without waiting for more.
pub fn queued_datagrams(socket: &UdpSocket) -> Vec<Vec<u8>> {
    socket.set_nonblocking(true).expect("nonblocking");
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    loop {
        match socket.recv(&mut buf) {
            Ok(n) => got.push(buf[..n].to_vec()),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("receive: {e}"),
        }
    }
    socket.set_nonblocking(false).expect("blocking");
    got
}

/// One HTTP response: status code, header block and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

/// The `--metrics` endpoint of a running server.
#[derive(Debug, Clone, Copy)]
pub struct Metrics {
    pub addr: SocketAddr,
}

impl Metrics {
    /// Reads the address from the server's `metrics on http://ADDR/metrics` line.
    pub fn of(server: &Server) -> Metrics {
        let log = server.wait_for("metrics on http://");
        let addr = log
            .split("metrics on http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no metrics address in the log:\n{log}"));
        Metrics { addr }
    }

    /// `GET path` over a fresh connection (`Connection: close`).
    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path)
    }

    pub fn request(&self, method: &str, path: &str) -> Response {
        let mut stream = crate::common::tcp_connect(self.addr);
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .expect("send the request");
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .unwrap_or_else(|e| panic!("{method} {path}: reading the response: {e}"));
        let raw = String::from_utf8(raw).expect("response is UTF-8");
        let (head, body) = raw
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("{method} {path}: no end of headers in {raw:?}"));
        let (status_line, headers) = head.split_once("\r\n").unwrap_or((head, ""));
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|s| s.get(..3))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{method} {path}: bad status line {status_line:?}"));
        Response {
            status,
            headers: headers.to_owned(),
            body: body.to_owned(),
        }
    }

    /// The `/metrics` text, asserting it was served.
    pub fn scrape(&self) -> String {
        let response = self.get("/metrics");
        assert_eq!(response.status, 200, "{response:?}");
        response.body
    }

    /// The value of one series, e.g. `sockecho_connections_total{transport="tcp"}`.
    pub fn value(&self, series: &str) -> u64 {
        let text = self.scrape();
        series_value(&text, series).unwrap_or_else(|| panic!("no series {series} in\n{text}"))
    }

    /// Waits until every series has its expected value, failing after [`WAIT`] with the last
    /// scrape. Counters move a moment after the traffic that moves them (a connection's bytes
    /// are counted when it ends), so tests poll rather than read once.
    pub fn wait_values(&self, expected: &[(&str, u64)]) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = self.scrape();
            let matches = expected
                .iter()
                .all(|(series, want)| series_value(&text, series) == Some(*want));
            if matches {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "waited for {expected:?}; last scrape:\n{text}"
            );
            // A scrape has no readiness event to wait on; the poll is short.
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The value of `series` (name and labels exactly as encoded) in a metrics text.
pub fn series_value(text: &str, series: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        if name != series {
            return None;
        }
        Some(
            value
                .parse()
                .unwrap_or_else(|e| panic!("{line:?}: value is not a count: {e}")),
        )
    })
}

/// `sockecho_connections_rejected_total{transport="tcp",reason=REASON}`.
pub fn tcp_rejected(reason: &str) -> String {
    format!("sockecho_connections_rejected_total{{transport=\"tcp\",reason=\"{reason}\"}}")
}

/// `sockecho_datagrams_dropped_total{transport="udp",reason=REASON}`.
pub fn udp_dropped(reason: &str) -> String {
    format!("sockecho_datagrams_dropped_total{{transport=\"udp\",reason=\"{reason}\"}}")
}

pub const TCP_CONNECTIONS: &str = "sockecho_connections_total{transport=\"tcp\"}";
pub const TCP_BYTES: &str = "sockecho_bytes_echoed_total{transport=\"tcp\"}";
pub const UDP_ECHOED: &str = "sockecho_datagrams_echoed_total{transport=\"udp\"}";
