//! The `--metrics` endpoint: a minimal HTTP/1.1 client, the value of one series, and a bounded
//! wait for counters to reach expected values.

use std::io::{Read, Write};
use std::net::SocketAddr;

use super::net::tcp_connect;
use super::server::Server;
use super::wait::poll_until;

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
        let mut stream = tcp_connect(self.addr);
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

    /// Waits until every series has its expected value, failing after
    /// [`WAIT`](super::WAIT) with the last scrape. Counters move a moment after the traffic that moves them (a connection's bytes
    /// are counted when it ends), so tests poll rather than read once.
    pub fn wait_values(&self, expected: &[(&str, u64)]) -> String {
        poll_until(&format!("{expected:?}"), || {
            let text = self.scrape();
            let matches = expected
                .iter()
                .all(|(series, want)| series_value(&text, series) == Some(*want));
            if matches { Ok(text) } else { Err(text) }
        })
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
