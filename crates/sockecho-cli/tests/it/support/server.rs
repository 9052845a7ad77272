//! A `sockecho serve` child: start it, learn its real endpoints from the `listening on` lines,
//! watch its log, signal it and wait for its exit. Every wait is bounded by [`WAIT`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process};

use super::WAIT;
use super::process::{assert_no_panic, sockecho};
use super::transcript::Transcript;
use super::wait::wait_child;

/// An endpoint as printed by the server, parsed independently of the library under test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ep {
    Tcp(SocketAddr),
    Udp(SocketAddr),
    Unix(PathBuf),
    UnixGram(PathBuf),
    /// `ws://` or `wss://`: the address, and the endpoint as written (with its path).
    Ws(SocketAddr, String),
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
        } else if let Some(rest) = text
            .strip_prefix("ws://")
            .or_else(|| text.strip_prefix("wss://"))
        {
            let host_port = rest.split_once('/').map_or(rest, |(hp, _)| hp);
            Ep::Ws(inet(host_port), text.to_owned())
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
            Ep::Tcp(a) | Ep::Ws(a, _) => *a,
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
            Ep::Ws(_, text) => text.clone(),
        }
    }
}

/// A running `sockecho serve`. Killed on drop.
pub struct Server {
    child: Child,
    /// The endpoints from the `listening on` lines, in the order they were logged.
    pub endpoints: Vec<Ep>,
    /// The same endpoints as the log wrote them, for passing on to another command.
    listening: Vec<String>,
    log: Transcript,
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

    /// `sockecho serve` on TCP and UDP at 127.0.0.1 and on Unix stream and datagram sockets in
    /// `dir` (`s.sock`, `g.sock`), quietly; for tools that should behave alike on every
    /// transport.
    pub fn start_every_transport(dir: &Path) -> Server {
        let unix = format!("unix:{}", dir.join("s.sock").display());
        let unixgram = format!("unixgram:{}", dir.join("g.sock").display());
        Server::start(
            &["tcp://127.0.0.1:0", "udp://127.0.0.1:0", &unix, &unixgram],
            &["-q"],
        )
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
        server.listening = listening_lines(&server.log());
        server.endpoints = server.listening.iter().map(|e| Ep::parse(e)).collect();
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
        let log = Transcript::lines(stderr);
        Server {
            child,
            endpoints: Vec::new(),
            listening: Vec::new(),
            log,
            status: None,
        }
    }

    /// The one endpoint whose text starts with `prefix` (e.g. `tcp://`, `udp://[`). Listeners
    /// log in no particular order, so tests look endpoints up rather than index them.
    pub fn find(&self, prefix: &str) -> &Ep {
        &self.endpoints[self.index_of(prefix)]
    }

    /// The text of the one endpoint starting with `prefix`, as logged, for another command's
    /// arguments.
    pub fn endpoint(&self, prefix: &str) -> &str {
        &self.listening[self.index_of(prefix)]
    }

    fn index_of(&self, prefix: &str) -> usize {
        let found: Vec<usize> = (0..self.listening.len())
            .filter(|&i| self.listening[i].starts_with(prefix))
            .collect();
        match found[..] {
            [one] => one,
            _ => panic!(
                "expected one endpoint starting with {prefix:?}: {:?}",
                self.listening
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
        self.log.text()
    }

    /// Waits until `ready(log)` holds, failing the test with the log after [`WAIT`] or if the
    /// server closes stderr (exits) first.
    pub fn wait_log(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        self.log.wait_until(what, ready)
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
        let status = wait_child(&mut self.child, limit)?;
        self.status = Some(status);
        self.log.finish();
        Some(status)
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
        self.log.finish();
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
