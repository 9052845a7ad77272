//! Helpers for the bench and ping tests: start `sockecho serve` and learn its endpoints from its
//! `listening on` lines, run `sockecho bench`/`ping` to completion under a deadline, and small
//! misbehaving echo servers (corrupting, truncating, lossy, stalling) written here so the tool's
//! error counts can be checked against a known fault. Every wait is bounded.
#![allow(dead_code)] // each test crate uses a different subset

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Upper bound for anything that should happen at once (a server starting, a short run).
pub const WAIT: Duration = Duration::from_secs(20);

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sockecho")
}

/// `sockecho ARGS` with the environment cleared of settings that change its output.
pub fn sockecho(args: &[&str]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(args).env_remove("RUST_LOG").env_remove("NO_COLOR");
    cmd
}

/// Runs `sockecho ARGS` to completion (stdin closed), failing the test past `WAIT`.
pub fn run(args: &[&str]) -> Output {
    let mut cmd = assert_cmd::Command::from_std(sockecho(args));
    cmd.timeout(WAIT);
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("sockecho {args:?} did not finish: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "sockecho panicked:\n{stderr}");
    out
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `sockecho bench ARGS --json` and returns the exit code and the parsed report.
pub fn bench_json(args: &[&str]) -> (i32, Value, Output) {
    let mut full = vec!["bench"];
    full.extend_from_slice(args);
    full.push("--json");
    let out = run(&full);
    let text = stdout(&out);
    let report: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "bench {args:?} printed no JSON report ({e}):\n{text}\nstderr:\n{}",
            stderr(&out)
        )
    });
    (out.status.code().unwrap_or(-1), report, out)
}

/// A number field of a report, by path such as `errors.lost`.
pub fn num(report: &Value, path: &str) -> f64 {
    let mut v = report;
    for key in path.split('.') {
        v = v
            .get(key)
            .unwrap_or_else(|| panic!("report has no field {path}:\n{report:#}"));
    }
    v.as_f64()
        .unwrap_or_else(|| panic!("field {path} is not a number: {v}"))
}

pub fn int(report: &Value, path: &str) -> u64 {
    num(report, path) as u64
}

/// The fields scripts rely on, all of which every report must have.
pub const REQUIRED_FIELDS: [&str; 28] = [
    "endpoint",
    "transport",
    "io",
    "interrupted",
    "connections",
    "size",
    "pipeline",
    "mode",
    "rate",
    "duration_s",
    "warmup_s",
    "messages_sent",
    "messages_received",
    "bytes_sent",
    "bytes_received",
    "msgs_per_s",
    "bytes_per_s_sent",
    "bytes_per_s_received",
    "latency_us",
    "connect_us",
    "errors",
    "client_cpu_s",
    "client_cpu_us_per_msg",
    "ok",
    "latency_us.p9999",
    "connect_us.p50",
    "errors.disconnected",
    "errors.connect_failed",
];

/// Checks every required field is present (`rate` and the CPU per message may be null).
pub fn assert_fields(report: &Value) {
    for path in REQUIRED_FIELDS {
        let mut v = report;
        for key in path.split('.') {
            v = v
                .get(key)
                .unwrap_or_else(|| panic!("report lacks {path}:\n{report:#}"));
        }
    }
    for key in ["min", "mean", "p50", "p90", "p99", "p999", "p9999", "max"] {
        assert!(report["latency_us"][key].is_number(), "latency_us.{key}");
        assert!(report["connect_us"][key].is_number(), "connect_us.{key}");
    }
    for key in [
        "mismatched",
        "truncated",
        "reordered",
        "duplicated",
        "lost",
        "connect_failed",
        "disconnected",
    ] {
        assert!(report["errors"][key].is_u64(), "errors.{key}");
    }
}

/// A running `sockecho serve`, killed when dropped.
pub struct Serve {
    child: Child,
    pub endpoints: Vec<String>,
}

impl Serve {
    /// Starts `sockecho serve ENDPOINTS... ARGS` and waits for one `listening on` line per
    /// endpoint.
    pub fn start(endpoints: &[&str], args: &[&str]) -> Serve {
        let mut all: Vec<&str> = vec!["serve"];
        all.extend_from_slice(endpoints);
        all.extend_from_slice(args);
        let mut child = sockecho(&all)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sockecho serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    // Keep draining so the server never blocks on a full pipe.
                    continue;
                }
            }
        });
        let deadline = Instant::now() + WAIT;
        let mut found = Vec::new();
        let mut log = String::new();
        while found.len() < endpoints.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("serve did not report its endpoints:\n{log}"));
            log.push_str(&line);
            log.push('\n');
            if let Some(i) = line.find("listening on ") {
                found.push(line[i + "listening on ".len()..].trim().to_owned());
            }
        }
        Serve {
            child,
            endpoints: found,
        }
    }

    /// The endpoint that starts with `scheme` (e.g. `udp://`).
    pub fn find(&self, scheme: &str) -> &str {
        self.endpoints
            .iter()
            .find(|e| e.starts_with(scheme))
            .unwrap_or_else(|| panic!("no {scheme} endpoint among {:?}", self.endpoints))
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP server on 127.0.0.1 that runs `handler(stream, n)` on a thread for each connection,
/// `n` counting accepted connections from 0. The bench's reachability probe is connection 0.
pub fn tcp_server<F>(handler: F) -> SocketAddr
where
    F: Fn(TcpStream, usize) + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind test server");
    let addr = listener.local_addr().expect("local addr");
    let handler = std::sync::Arc::new(handler);
    thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { continue };
            let handler = handler.clone();
            thread::spawn(move || handler(stream, n));
        }
    });
    addr
}

/// Echoes `stream` through `transform(chunk, offset)`, which may change the chunk; returns when
/// the peer closes.
pub fn echo_with(mut stream: TcpStream, mut transform: impl FnMut(&mut [u8], u64)) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; 64 * 1024];
    let mut offset = 0u64;
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        transform(&mut buf[..n], offset);
        offset += n as u64;
        if stream.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

/// A UDP server on 127.0.0.1: for the `n`th datagram received (from 0), `reply(data, n)` says
/// what to send back, if anything.
pub fn udp_server<F>(mut reply: F) -> SocketAddr
where
    F: FnMut(&[u8], usize) -> Option<Vec<u8>> + Send + 'static,
{
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind test server");
    let addr = socket.local_addr().expect("local addr");
    thread::spawn(move || {
        let mut buf = vec![0u8; 65_536];
        let mut n = 0;
        loop {
            let Ok((len, peer)) = socket.recv_from(&mut buf) else {
                continue;
            };
            if let Some(out) = reply(&buf[..len], n) {
                let _ = socket.send_to(&out, peer);
            }
            n += 1;
        }
    });
    addr
}

/// A TCP port on 127.0.0.1 with nothing listening (bound, then closed).
pub fn closed_tcp_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A UDP port on 127.0.0.1 with nothing bound to it.
pub fn closed_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.local_addr().expect("addr").port()
}
