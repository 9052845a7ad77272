//! Connection churn: each slot opens a connection, exchanges its messages, closes (the client
//! first, as the tutorial's client does) and opens the next one, at once (closed loop) or when
//! the thread's schedule of connection starts says (open loop, `--conn-rate`).
//!
//! This module holds what every churn loop shares: opening a non-blocking socket toward the
//! peer ([`Dialer`]), closing it the way the run asks ([`close`]), the thread's schedule of
//! connection starts ([`Starts`]), and the counting of failed attempts by reason
//! ([`count_failure`]). The loops themselves, for plain TCP and Unix connections with no task or
//! timer per connection: [`uring`] (connects, sends and receives as io_uring requests) where
//! the kernel allows it, [`epoll`] elsewhere or with `--io epoll`; for TLS, [`task`] (one tokio
//! task per slot, which opens connection after connection). Both loops are Linux's: elsewhere
//! plain slots run as tasks too.

#[cfg(target_os = "linux")]
pub(super) mod epoll;
pub(super) mod task;
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub(super) mod uring;

#[cfg(all(test, target_os = "linux"))]
mod loop_tests;

use std::cell::Cell;
use std::io;
#[cfg(target_os = "linux")]
use std::net::{IpAddr, SocketAddr};
#[cfg(target_os = "linux")]
use std::os::fd::{AsFd, OwnedFd};
#[cfg(target_os = "linux")]
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
#[cfg(target_os = "linux")]
use std::time::Duration;

use rustix::io::Errno;
#[cfg(target_os = "linux")]
use rustix::net::{AddressFamily, SocketFlags, SocketType};

use super::plan::Pacing;
#[cfg(target_os = "linux")]
use super::plan::STOP_POLL;
use super::recorder::Totals;
#[cfg(target_os = "linux")]
use super::timing::SendTimes;
#[cfg(target_os = "linux")]
use crate::connect::Peer;

/// Where a thread's churn connections go, and where they come from.
#[cfg(target_os = "linux")]
#[derive(Debug)]
pub(super) struct Dialer {
    target: Target,
    /// Local addresses to connect from, in turn (TCP only); empty lets the kernel choose.
    sources: Vec<IpAddr>,
    /// The next of `sources` to use.
    next_source: Cell<usize>,
    /// Set `TCP_NODELAY`: only worth its system call when a connection sends more than one
    /// message, since the first write of a connection never waits for an ACK.
    nodelay: bool,
    /// The same peer address as `target`, as the kernel takes it.
    sockaddr: socket2::SockAddr,
}

#[cfg(target_os = "linux")]
#[derive(Debug)]
enum Target {
    Tcp(SocketAddr),
    Unix(rustix::net::SocketAddrUnix),
}

/// How a connect attempt began.
#[cfg(target_os = "linux")]
pub(super) enum Dialed {
    /// The socket is connecting (or connected already, as Unix sockets are); it turns writable
    /// when the outcome is known.
    Pending(OwnedFd),
    /// It failed at once.
    Failed(io::Error),
}

#[cfg(target_os = "linux")]
impl Dialer {
    /// A dialer toward a plain TCP or Unix `peer`; `None` for other peers.
    pub fn new(peer: &Peer, sources: &[IpAddr], nodelay: bool) -> io::Result<Option<Dialer>> {
        let (target, sockaddr) = match peer {
            Peer::Tcp(addr) => (Target::Tcp(*addr), socket2::SockAddr::from(*addr)),
            Peer::Unix(path) => unix_addresses(path)?,
            _ => return Ok(None),
        };
        Ok(Some(Dialer {
            target,
            sockaddr,
            sources: sources.to_vec(),
            next_source: Cell::new(0),
            nodelay,
        }))
    }

    /// Begins a connect attempt on a new non-blocking socket.
    pub fn dial(&self) -> Dialed {
        match self.try_dial() {
            Ok(fd) => Dialed::Pending(fd),
            Err(e) => Dialed::Failed(e),
        }
    }

    fn try_dial(&self) -> io::Result<OwnedFd> {
        let fd = self.socket()?;
        let connected = match &self.target {
            Target::Tcp(addr) => rustix::net::connect(&fd, addr),
            Target::Unix(addr) => rustix::net::connect(&fd, addr),
        };
        connecting(connected)?;
        Ok(fd)
    }

    /// A new non-blocking socket for the next connection, bound to its source address if
    /// there are any, not connected yet.
    pub fn socket(&self) -> io::Result<OwnedFd> {
        let flags = SocketFlags::NONBLOCK | SocketFlags::CLOEXEC;
        match &self.target {
            Target::Tcp(addr) => {
                let family = if addr.is_ipv4() {
                    AddressFamily::INET
                } else {
                    AddressFamily::INET6
                };
                let fd = rustix::net::socket_with(family, SocketType::STREAM, flags, None)?;
                if let Some(source) = self.source() {
                    // As in `connect_tcp`: the port is left to `connect`, which only needs the
                    // whole 4-tuple to be unique.
                    let _ = crate::sys::sockopt::set_bind_address_no_port(&fd);
                    rustix::net::bind(&fd, &SocketAddr::new(source, 0))?;
                }
                if self.nodelay {
                    rustix::net::sockopt::set_tcp_nodelay(&fd, true)?;
                }
                Ok(fd)
            }
            Target::Unix(_) => Ok(rustix::net::socket_with(
                AddressFamily::UNIX,
                SocketType::STREAM,
                flags,
                None,
            )?),
        }
    }

    /// The peer's address in the kernel's form, for a connect request handed to io_uring.
    pub fn sockaddr(&self) -> &socket2::SockAddr {
        &self.sockaddr
    }

    fn source(&self) -> Option<IpAddr> {
        if self.sources.is_empty() {
            return None;
        }
        let i = self.next_source.get();
        self.next_source.set((i + 1) % self.sources.len());
        Some(self.sources[i])
    }
}

/// A non-blocking connect under way is not a failure.
#[cfg(target_os = "linux")]
fn connecting(result: rustix::io::Result<()>) -> io::Result<()> {
    match result {
        Ok(()) | Err(Errno::INPROGRESS) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A Unix peer's address for `connect` and for io_uring: a socket file's path, or `@NAME` for
/// a name in the abstract namespace (`crate::endpoint::abstract_unix_name`).
#[cfg(target_os = "linux")]
fn unix_addresses(path: &Path) -> io::Result<(Target, socket2::SockAddr)> {
    match crate::endpoint::abstract_unix_name(path) {
        Some(name) => {
            let (target, sockaddr) = crate::sys::unix_addr::abstract_connect_addresses(name)?;
            Ok((Target::Unix(target), sockaddr))
        }
        None => Ok((
            Target::Unix(rustix::net::SocketAddrUnix::new(path)?),
            socket2::SockAddr::unix(path)?,
        )),
    }
}

/// The outcome of a connect that has turned writable: `Ok` if it is open.
#[cfg(target_os = "linux")]
pub(super) fn connect_outcome(fd: impl AsFd) -> io::Result<()> {
    match rustix::net::sockopt::socket_error(fd)? {
        Ok(()) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Whether a connect's error says the connection was made and then reset (the server accepted
/// it and closed it at once), rather than never made.
#[cfg(target_os = "linux")]
pub(super) fn was_established(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error().map(Errno::from_raw_os_error),
        Some(Errno::CONNRESET | Errno::PIPE)
    )
}

/// Closes a churn connection: with a FIN (the client closes first, so TIME_WAIT, and the
/// source port it holds, stays on the client), or with a reset if `rst`, which leaves no
/// TIME_WAIT behind.
#[cfg(target_os = "linux")]
pub(super) fn close(fd: OwnedFd, rst: bool) {
    if rst {
        // Failure only means an orderly close instead.
        let _ = rustix::net::sockopt::set_socket_linger(&fd, Some(Duration::ZERO));
    }
    drop(fd);
}

/// Counts a failed connect attempt, by reason, if it began in the measured period.
pub(super) fn count_failure(totals: &mut Totals, e: &io::Error, measured: bool) {
    let kind = classify(e);
    if kind == Failure::AddrNotAvailable {
        warn_ports_used_up();
    }
    tracing::debug!("a churn connect failed: {e}");
    if !measured {
        return;
    }
    totals.errors.connect_failed += 1;
    let errors = &mut totals.connect_errors;
    match kind {
        Failure::Refused => errors.refused += 1,
        Failure::TimedOut => errors.timed_out += 1,
        Failure::AddrNotAvailable => errors.addr_not_available += 1,
        Failure::Other => errors.other += 1,
    }
}

/// Why a connect failed, as the report sorts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    Refused,
    TimedOut,
    AddrNotAvailable,
    Other,
}

pub(super) fn classify(e: &io::Error) -> Failure {
    match e.raw_os_error().map(Errno::from_raw_os_error) {
        Some(Errno::CONNREFUSED) => Failure::Refused,
        Some(Errno::TIMEDOUT) => Failure::TimedOut,
        Some(Errno::ADDRNOTAVAIL) => Failure::AddrNotAvailable,
        // A Unix listener with a full backlog refuses a non-blocking connect this way.
        Some(Errno::AGAIN) => Failure::Refused,
        _ if e.kind() == io::ErrorKind::TimedOut => Failure::TimedOut,
        _ => Failure::Other,
    }
}

/// Says once per process why connects fail with `EADDRNOTAVAIL`, and what to do about it.
fn warn_ports_used_up() {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "connect failed: no local port left toward the server (EADDRNOTAVAIL). Closed \
             connections hold their source port for a minute in TIME_WAIT, and one source \
             address has about 28 000 ports per server address: spread the connections over \
             more local addresses with --source (e.g. --source 127.0.0.2-127.0.0.20), lower \
             the connection rate, or close with --close rst (no TIME_WAIT). Counted under \
             churn.connect_errors.addr_not_available"
        );
    }
}

/// How long a churn loop may wait for events, in nanoseconds, from `now`: until the first of
/// `deadline` (the end of its phase), the next reply or connect timeout, and — in open loop,
/// while a slot is idle — the next start; at most `STOP_POLL`, so that a stop is heard.
#[cfg(target_os = "linux")]
pub(super) fn wait_nanos(
    deadline: u64,
    timeouts: &SendTimes,
    starts: Option<&Starts>,
    slot_idle: bool,
    now: u64,
) -> u64 {
    let mut wake = deadline;
    if let Some(at) = timeouts.next() {
        wake = wake.min(at);
    }
    if let Some(starts) = starts
        && slot_idle
    {
        wake = wake.min(starts.next_due());
    }
    wake.saturating_sub(now).min(STOP_POLL.as_nanos() as u64)
}

/// One thread's schedule of connection starts in open loop: start `n` is due at
/// `pacing.due(n)`, and starts a slot as soon as one is free (its latency counting from then
/// on, so a slow server cannot hide behind the slots it keeps busy).
#[derive(Debug)]
pub(super) struct Starts {
    pacing: Pacing,
    next: Cell<u64>,
}

impl Starts {
    /// Starts of lane `lane` of `lanes` (a load thread, or in a split run one thread of one
    /// shard), for `rate` connections per second over all of them, from `start` on: the lanes'
    /// starts interleave evenly, lane `l` taking the run's starts `l, l + lanes, ...`.
    pub fn new(start: u64, rate: f64, lane: usize, lanes: usize) -> Starts {
        let gap = 1e9 / rate;
        Starts {
            pacing: Pacing::new(start + (lane as f64 * gap) as u64, lanes as f64 * gap),
            next: Cell::new(0),
        }
    }

    /// When the next start is due.
    pub fn next_due(&self) -> u64 {
        self.pacing.due(self.next.get())
    }

    /// Takes the next start if it is due by `now` and before `end`: its scheduled time.
    pub fn take_due(&self, now: u64, end: u64) -> Option<u64> {
        let due = self.next_due();
        (due <= now && due < end).then(|| {
            self.next.set(self.next.get() + 1);
            due
        })
    }

    /// Takes the next start, whenever it is due, if it is before `end`.
    pub fn take(&self, end: u64) -> Option<u64> {
        self.take_due(u64::MAX, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_and_threads_together_start_connections_at_the_rate() {
        // 3 shards with 2, 1 and 3 threads at 1000 connections/s: lane = shard + thread · 3,
        // of threads · 3 lanes in each shard, as a load thread builds them.
        let (start, rate, count, end) = (1_000u64, 1000.0, 3usize, 1_000 + 30_000_000);
        let mut all = Vec::new();
        for (shard, threads) in [(0usize, 2usize), (1, 1), (2, 3)] {
            let mut own = Vec::new();
            for thread in 0..threads {
                let starts = Starts::new(start, rate, shard + thread * count, threads * count);
                while let Some(at) = starts.take(end) {
                    own.push(at);
                }
            }
            // Each shard opens a third of the connections, every third start of the run.
            assert_eq!(own.len(), 10, "shard {shard}");
            all.extend(own);
        }
        all.sort_unstable();
        let expected: Vec<u64> = (0..30).map(|k| start + k * 1_000_000).collect();
        assert_eq!(all, expected);
    }

    #[test]
    fn failures_are_sorted_by_reason() {
        let os = |e: Errno| io::Error::from_raw_os_error(e.raw_os_error());
        assert_eq!(classify(&os(Errno::CONNREFUSED)), Failure::Refused);
        assert_eq!(classify(&os(Errno::TIMEDOUT)), Failure::TimedOut);
        assert_eq!(
            classify(&os(Errno::ADDRNOTAVAIL)),
            Failure::AddrNotAvailable
        );
        assert_eq!(classify(&os(Errno::NETUNREACH)), Failure::Other);
        assert_eq!(classify(&io::ErrorKind::TimedOut.into()), Failure::TimedOut);
    }

    #[test]
    fn starts_interleave_over_threads() {
        // 1000 connections per second over two threads: thread 1 starts at 1 ms, 3 ms, ...
        let starts = Starts::new(0, 1000.0, 1, 2);
        assert_eq!(starts.take_due(0, u64::MAX), None);
        assert_eq!(starts.take_due(1_000_000, u64::MAX), Some(1_000_000));
        assert_eq!(starts.next_due(), 3_000_000);
        assert_eq!(starts.take(2_000_000), None);
        assert_eq!(starts.take(u64::MAX), Some(3_000_000));
    }
}
