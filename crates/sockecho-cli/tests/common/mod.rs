//! Shared helpers for the black-box tests: start `sockecho serve` and learn its real endpoints
//! from the `listening on` lines, watch its log, signal it, and run one-shot commands with a
//! deadline. Every wait here is bounded; nothing sleeps to wait for readiness.
#![allow(dead_code)] // each test crate uses a different subset of the helpers

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

/// Upper bound for anything that should happen "at once" (readiness, a log line, an echo).
pub const WAIT: Duration = Duration::from_secs(10);

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sockecho")
}

/// `sockecho ARGS`, with the log environment cleared so the flags alone decide verbosity.
pub fn sockecho<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut cmd = Command::new(bin());
    cmd.args(args).env_remove("RUST_LOG").env_remove("NO_COLOR");
    cmd
}

/// Runs `sockecho ARGS` to completion with `stdin` as its input (a pipe, not a terminal),
/// killing it and failing the test if it takes longer than `limit`.
pub fn run(args: &[&str], stdin: &[u8], limit: Duration) -> Output {
    let mut cmd = assert_cmd::Command::from_std(sockecho(args));
    cmd.write_stdin(stdin.to_vec()).timeout(limit);
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("sockecho {args:?} did not finish within {limit:?}: {e}"));
    assert_no_panic(&String::from_utf8_lossy(&output.stderr));
    output
}

pub fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn stdout_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A panic is a bug whatever the input.
pub fn assert_no_panic(text: &str) {
    assert!(!text.contains("panicked"), "the binary panicked:\n{text}");
}

/// An endpoint as printed by the server, parsed independently of the library under test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ep {
    Tcp(SocketAddr),
    Udp(SocketAddr),
    Unix(PathBuf),
    UnixGram(PathBuf),
}

impl Ep {
    pub fn parse(text: &str) -> Ep {
        let inet = |rest: &str| -> SocketAddr {
            rest.parse()
                .unwrap_or_else(|e| panic!("{text:?} does not hold an IP address and port: {e}"))
        };
        if let Some(rest) = text.strip_prefix("tcp://") {
            Ep::Tcp(inet(rest))
        } else if let Some(rest) = text.strip_prefix("udp://") {
            Ep::Udp(inet(rest))
        } else if let Some(rest) = text.strip_prefix("unixgram:") {
            Ep::UnixGram(rest.into())
        } else if let Some(rest) = text.strip_prefix("unix:") {
            Ep::Unix(rest.into())
        } else {
            panic!("{text:?} is not in endpoint syntax")
        }
    }

    pub fn tcp(&self) -> SocketAddr {
        match self {
            Ep::Tcp(a) => *a,
            other => panic!("expected a tcp endpoint, got {other:?}"),
        }
    }

    pub fn udp(&self) -> SocketAddr {
        match self {
            Ep::Udp(a) => *a,
            other => panic!("expected a udp endpoint, got {other:?}"),
        }
    }

    pub fn path(&self) -> &Path {
        match self {
            Ep::Unix(p) | Ep::UnixGram(p) => p,
            other => panic!("expected a unix endpoint, got {other:?}"),
        }
    }

    /// The endpoint as the command line writes it.
    pub fn arg(&self) -> String {
        match self {
            Ep::Tcp(a) => format!("tcp://{a}"),
            Ep::Udp(a) => format!("udp://{a}"),
            Ep::Unix(p) => format!("unix:{}", p.display()),
            Ep::UnixGram(p) => format!("unixgram:{}", p.display()),
        }
    }
}

/// Everything the child has written to stderr so far, and whether it has closed it.
#[derive(Default)]
struct LogState {
    text: String,
    closed: bool,
}

#[derive(Default)]
struct Log {
    state: Mutex<LogState>,
    changed: Condvar,
}

/// A running `sockecho serve`. Killed on drop.
pub struct Server {
    child: Child,
    /// The endpoints from the `listening on` lines, in the order they were logged.
    pub endpoints: Vec<Ep>,
    log: Arc<Log>,
    reader: Option<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

impl Server {
    /// `sockecho serve ENDPOINTS FLAGS`, waiting for one `listening on` line per endpoint.
    pub fn start(endpoints: &[&str], flags: &[&str]) -> Server {
        let mut args = vec!["serve"];
        args.extend_from_slice(endpoints);
        args.extend_from_slice(flags);
        Server::start_expecting(&args, endpoints.len())
    }

    /// `sockecho ARGS`, waiting for `listeners` lines saying `listening on`.
    pub fn start_expecting(args: &[&str], listeners: usize) -> Server {
        Server::start_in(Path::new("."), args, listeners)
    }

    /// Starts `sockecho ARGS` with stderr collected, without waiting for anything.
    pub fn spawn(args: &[&str]) -> Server {
        Server::spawn_command(sockecho(args))
    }

    /// Like [`start_expecting`](Self::start_expecting), in working directory `cwd`.
    pub fn start_in(cwd: &Path, args: &[&str], listeners: usize) -> Server {
        let mut cmd = sockecho(args);
        cmd.current_dir(cwd);
        Server::start_command(cmd, listeners)
    }

    /// Runs `cmd` (which must end up running `sockecho serve`), waiting for `listeners` lines
    /// saying `listening on`.
    pub fn start_command(cmd: Command, listeners: usize) -> Server {
        let mut server = Server::spawn_command(cmd);
        server.wait_log(&format!("{listeners} `listening on` lines"), |log| {
            listening_lines(log).len() >= listeners
        });
        server.endpoints = listening_lines(&server.log())
            .iter()
            .map(|e| Ep::parse(e))
            .collect();
        server
    }

    fn spawn_command(mut cmd: Command) -> Server {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sockecho");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Log::default());
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            let mut lines = BufReader::new(stderr);
            let mut line = Vec::new();
            loop {
                line.clear();
                let n = lines.read_until(b'\n', &mut line).unwrap_or(0);
                let mut state = sink.state.lock().expect("log lock");
                if n == 0 {
                    state.closed = true;
                    sink.changed.notify_all();
                    return;
                }
                state.text.push_str(&String::from_utf8_lossy(&line));
                sink.changed.notify_all();
            }
        });
        Server {
            child,
            endpoints: Vec::new(),
            log,
            reader: Some(reader),
            status: None,
        }
    }

    /// The one endpoint whose text starts with `prefix` (e.g. `tcp://`, `udp://[`). Listeners
    /// log in no particular order, so tests look endpoints up rather than index them.
    pub fn find(&self, prefix: &str) -> &Ep {
        let found: Vec<&Ep> = self
            .endpoints
            .iter()
            .filter(|e| e.arg().starts_with(prefix))
            .collect();
        match found[..] {
            [one] => one,
            _ => panic!(
                "expected one endpoint starting with {prefix:?}: {:?}",
                self.endpoints
            ),
        }
    }

    /// The server's one TCP address.
    pub fn tcp(&self) -> SocketAddr {
        self.find("tcp://").tcp()
    }

    /// The server's one UDP address.
    pub fn udp(&self) -> SocketAddr {
        self.find("udp://").udp()
    }

    /// The endpoint of a server with a single listener, as the command line writes it.
    pub fn arg(&self) -> String {
        assert_eq!(self.endpoints.len(), 1, "{:?}", self.endpoints);
        self.endpoints[0].arg()
    }

    pub fn pid(&self) -> Pid {
        Pid::from_child(&self.child)
    }

    /// The stderr collected so far.
    pub fn log(&self) -> String {
        self.log.state.lock().expect("log lock").text.clone()
    }

    /// Waits until `ready(log)` holds, failing the test with the log after [`WAIT`] or if the
    /// server closes stderr (exits) first.
    pub fn wait_log(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        let mut state = self.log.state.lock().expect("log lock");
        loop {
            if ready(&state.text) {
                return state.text.clone();
            }
            let now = Instant::now();
            assert!(
                !state.closed && now < deadline,
                "waited for {what}; server {}; log so far:\n{}",
                if state.closed { "exited" } else { "timed out" },
                state.text
            );
            state = self
                .log
                .changed
                .wait_timeout(state, deadline - now)
                .expect("log lock")
                .0;
        }
    }

    /// Waits for a log line containing `needle`.
    pub fn wait_for(&self, needle: &str) -> String {
        self.wait_log(&format!("a log line with {needle:?}"), |log| {
            log.contains(needle)
        })
    }

    pub fn signal(&self, signal: Signal) {
        kill_process(self.pid(), signal).expect("signal the server");
    }

    /// Waits up to `limit` for the server to exit and returns its status, with the whole log
    /// collected.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let status = self
            .try_wait_exit(limit)
            .unwrap_or_else(|| panic!("server still running after {limit:?}:\n{}", self.log()));
        assert_no_panic(&self.log());
        status
    }

    /// Like [`wait_exit`](Self::wait_exit) but returns `None` if the server is still running.
    pub fn try_wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.status {
            return Some(status);
        }
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.status = Some(status);
                if let Some(reader) = self.reader.take() {
                    reader.join().expect("stderr reader");
                }
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            // Polling a child's exit has no readiness event to wait on; the poll is short.
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Whether the server is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Kills the server at once (no graceful shutdown).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.wait_exit(WAIT);
    }

    /// The resident set size of the server in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        if !std::thread::panicking() {
            assert_no_panic(&self.log());
        }
    }
}

/// The endpoints of every `listening on` line in `log`.
pub fn listening_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| {
            l.split_once("listening on ")
                .map(|(_, e)| e.trim().to_owned())
        })
        .collect()
}

/// A TCP connection with read and write timeouts, so a missing echo fails instead of hanging.
pub fn tcp_connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, WAIT)
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream.set_write_timeout(Some(WAIT)).expect("timeout");
    stream
}

/// A Unix stream connection with read and write timeouts.
pub fn unix_connect(path: &Path) -> UnixStream {
    let stream =
        UnixStream::connect(path).unwrap_or_else(|e| panic!("connect to {}: {e}", path.display()));
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream.set_write_timeout(Some(WAIT)).expect("timeout");
    stream
}

/// Writes `data` and reads back exactly as many bytes, asserting they are the same.
pub fn echo_once<S: Read + Write>(stream: &mut S, data: &[u8]) {
    stream.write_all(data).expect("write");
    let mut back = vec![0u8; data.len()];
    stream.read_exact(&mut back).expect("read the echo");
    assert_eq!(back, data, "echo differs from what was sent");
}

/// A UDP socket bound to loopback of the same family as `server`, with a read timeout.
pub fn udp_peer(server: SocketAddr) -> UdpSocket {
    let local: SocketAddr = if server.is_ipv6() {
        "[::1]:0".parse().expect("literal")
    } else {
        "127.0.0.1:0".parse().expect("literal")
    };
    let socket = UdpSocket::bind(local).expect("bind udp");
    socket.set_read_timeout(Some(WAIT)).expect("timeout");
    socket
}

/// Sends one datagram and returns the reply from `server`, checking where it came from.
pub fn udp_exchange(socket: &UdpSocket, server: SocketAddr, data: &[u8]) -> Vec<u8> {
    socket.send_to(data, server).expect("send");
    let mut buf = vec![0u8; 70_000];
    let (n, from) = socket.recv_from(&mut buf).expect("receive the echo");
    assert_eq!(from, server, "reply came from elsewhere");
    buf.truncate(n);
    buf
}

/// A Unix datagram socket bound at `path` (so the server can reply), with a read timeout.
pub fn unixgram_peer(path: &Path) -> UnixDatagram {
    let socket = UnixDatagram::bind(path).expect("bind unixgram");
    socket.set_read_timeout(Some(WAIT)).expect("timeout");
    socket
}

/// `len` bytes that cycle through every byte value, offset by `seed` so streams differ.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    // A cheap xorshift, so the data is not periodic with any buffer size.
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x as u8) ^ (i as u8)
        })
        .collect()
}

/// Asserts every byte value occurs in `data`.
pub fn assert_all_byte_values(data: &[u8]) {
    let mut seen = [false; 256];
    for &b in data {
        seen[b as usize] = true;
    }
    assert!(seen.iter().all(|&s| s), "test data misses some byte values");
}

/// A port that was free a moment ago: bound, read back, released. Connecting to it is refused.
pub fn closed_tcp_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local addr")
}

/// Whether the tests run as root, for whom directory permissions do not apply.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

// ---------------------------------------------------------------------------------------------
// TLS (for tls_*.rs)
// ---------------------------------------------------------------------------------------------

/// Starts `sockecho ARGS` (a `serve` with exactly one `tls://` listener) and returns it with the
/// address from its `listening on tls://` line. [`Server::start`] does not fit: [`Ep`] has no TLS
/// form.
pub fn start_tls_server(args: &[&str]) -> (Server, SocketAddr) {
    let server = Server::spawn(args);
    let log = server.wait_for("listening on tls://");
    let addr = log
        .lines()
        .find_map(|l| l.split_once("listening on tls://").map(|(_, a)| a.trim()))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address on the `listening on tls://` line:\n{log}"));
    (server, addr)
}

/// The SHA-256 fingerprint from the server's `self-signed certificate` line, checked to be 32
/// lowercase hex pairs joined by colons.
pub fn logged_fingerprint(log: &str) -> String {
    let line = log
        .lines()
        .find(|l| l.contains("TLS: self-signed certificate for this run"))
        .unwrap_or_else(|| panic!("no self-signed certificate line in the log:\n{log}"));
    let fingerprint = line
        .split_once("SHA-256 fingerprint ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no fingerprint on {line:?}"));
    let pairs: Vec<&str> = fingerprint.split(':').collect();
    let lower_hex =
        |p: &&str| p.len() == 2 && p.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    assert!(
        pairs.len() == 32 && pairs.iter().all(lower_hex),
        "{fingerprint:?} is not a SHA-256 fingerprint in ab:cd:... form"
    );
    fingerprint.to_owned()
}

/// A certificate and its key, as PEM files.
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The certificate's DER, for a client in the test to trust.
    pub der: Vec<u8>,
}

/// Makes a self-signed certificate for `names` (IP addresses become IP names) and writes it and
/// its key to `NAME.crt` and `NAME.key` in `dir`.
pub fn write_cert(dir: &Path, file_name: &str, names: &[&str]) -> CertFiles {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let made = rcgen::generate_simple_self_signed(names).expect("make a certificate");
    let cert = dir.join(format!("{file_name}.crt"));
    let key = dir.join(format!("{file_name}.key"));
    std::fs::write(&cert, made.cert.pem()).expect("write the certificate");
    std::fs::write(&key, made.signing_key.serialize_pem()).expect("write the key");
    CertFiles {
        cert,
        key,
        der: made.cert.der().to_vec(),
    }
}
