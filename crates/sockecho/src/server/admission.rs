//! What every accepting path applies to a new stream connection — the tokio accept loop in
//! `stream` and the engines' own accepting in `engine::uring` and `engine::epoll`: what a failed
//! `accept` means and how long to back off ([`AcceptErrors`]), the access rules and per-address
//! limit, and how a peer is named.

use std::io;
use std::net::SocketAddr;
#[cfg(target_os = "linux")]
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::access::PerIpSlot;
use super::conn::PeerName;
use super::shared::Shared;
#[cfg(target_os = "linux")]
use crate::Transport;
use crate::net_error::is_resource_exhaustion;
use crate::stats::TransportCounters;
use crate::{CONN_LOG, Endpoint};

/// First pause after an accept error; doubles while errors continue.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Per-connection accept errors in a row after which accepting backs off as for running out of
/// descriptors: each such error used up one queued connection, but an endless run of them means
/// something else is wrong, and retrying at once would spin.
const FAILURES_BEFORE_BACKOFF: u32 = 16;

/// Numbers Unix-domain connections for logs, since their peers usually have no address.
static UNIX_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// What to do after a failed `accept`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AfterFailure {
    /// The listener is broken for good: stop accepting on it (the others go on).
    GiveUp,
    /// Accept again at once.
    Retry,
    /// Accept again after this long.
    BackOff(Duration),
}

/// The run of accept errors since the last success, kept by each accepting loop: it counts,
/// classifies and logs each error (a burst of them once, not per call), and says whether to
/// give the listener up, retry at once, or back off — never retrying in a tight loop.
#[derive(Debug)]
pub(crate) struct AcceptErrors {
    /// Errors since the last success.
    failures: u32,
    /// The next pause; doubles while errors continue.
    backoff: Duration,
    /// Whether the current burst has been logged.
    burst_logged: bool,
}

impl Default for AcceptErrors {
    fn default() -> Self {
        AcceptErrors {
            failures: 0,
            backoff: BACKOFF_MIN,
            burst_logged: false,
        }
    }
}

impl AcceptErrors {
    /// An `accept` on the listener at `endpoint` failed with `err`.
    pub(crate) fn failed(
        &mut self,
        err: &io::Error,
        endpoint: &Endpoint,
        counters: &TransportCounters,
    ) -> AfterFailure {
        TransportCounters::add(&counters.accept_errors, 1);
        self.failures += 1;
        match accept_failure(err) {
            AcceptFailure::Listener => {
                tracing::error!(
                    "accept on {endpoint} failed: {err}; this listener is unusable, so it stops \
                     accepting (the others go on)"
                );
                return AfterFailure::GiveUp;
            }
            // One connection failed before it could be accepted (e.g. the client reset it):
            // the next one can be accepted at once, unless such failures keep coming without a
            // success between them.
            AcceptFailure::Connection if self.failures < FAILURES_BEFORE_BACKOFF => {
                tracing::debug!("accept on {endpoint} failed: {err}");
                return AfterFailure::Retry;
            }
            AcceptFailure::Connection | AcceptFailure::Resources => {}
        }
        if !self.burst_logged {
            tracing::warn!(
                "accept on {endpoint} failed: {err}; backing off until it succeeds again"
            );
            self.burst_logged = true;
        }
        let pause = self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        AfterFailure::BackOff(pause)
    }

    /// An `accept` succeeded: the run of errors, if any, is over.
    pub(crate) fn succeeded(&mut self) {
        self.failures = 0;
        self.backoff = BACKOFF_MIN;
        if std::mem::take(&mut self.burst_logged) {
            tracing::info!("accepting again");
        }
    }
}

/// What a failed `accept` means for the listener.
#[derive(Debug, PartialEq, Eq)]
enum AcceptFailure {
    /// One queued connection failed (reset before it was accepted, refused by a firewall rule,
    /// a network error the kernel passed on): the listener is fine.
    Connection,
    /// Out of descriptors or memory: retrying at once would fail again, so back off.
    Resources,
    /// The listener itself is broken (not listening any more, not a socket): every retry
    /// would fail the same way, so stop accepting on it.
    Listener,
}

fn accept_failure(err: &io::Error) -> AcceptFailure {
    use rustix::io::Errno;
    if is_resource_exhaustion(err) {
        return AcceptFailure::Resources;
    }
    let Some(errno) = err.raw_os_error().map(Errno::from_raw_os_error) else {
        return AcceptFailure::Listener;
    };
    // accept(2): Linux passes pending network errors of the new connection on as accept
    // errors, and they should be treated like EAGAIN.
    match errno {
        // Linux's alone.
        #[cfg(target_os = "linux")]
        Errno::NONET => AcceptFailure::Connection,
        Errno::CONNABORTED
        | Errno::PROTO
        | Errno::PERM
        | Errno::INTR
        | Errno::AGAIN
        | Errno::NETDOWN
        | Errno::NOPROTOOPT
        | Errno::HOSTDOWN
        | Errno::HOSTUNREACH
        | Errno::OPNOTSUPP
        | Errno::NETUNREACH
        | Errno::TIMEDOUT
        | Errno::CONNRESET => AcceptFailure::Connection,
        _ => AcceptFailure::Listener,
    }
}

/// Applies `--allow`/`--deny` and `--max-conns-per-ip` to a new TCP peer. `None` refuses it;
/// `Some(slot)` admits it, holding its per-address slot if there is a limit.
pub(crate) fn admit(
    shared: &Shared,
    counters: &TransportCounters,
    peer: SocketAddr,
) -> Option<Option<PerIpSlot>> {
    if !shared.config.access.permits(peer.ip()) {
        TransportCounters::add(&counters.connections_denied, 1);
        tracing::debug!(target: CONN_LOG, "{peer} refused: not allowed by --allow/--deny");
        return None;
    }
    let Some(limit) = &shared.per_ip else {
        return Some(None);
    };
    match limit.acquire(peer.ip()) {
        Some(slot) => Some(Some(slot)),
        None => {
            TransportCounters::add(&counters.connections_over_ip_limit, 1);
            tracing::debug!(target: CONN_LOG, "{peer} refused: --max-conns-per-ip reached");
            None
        }
    }
}

/// Names a connection an engine has just accepted on a `transport` listener and applies the
/// access rules and per-address limit to it. `None` refuses it (dropping `fd` closes it at
/// once), or it failed between the accept and now.
///
/// The peer's address is looked up (one `getpeername`) only when admission or a log needs it;
/// with the connection log off and no rule that depends on the address, the peer stays
/// [`PeerName::Unnamed`] and admitting it costs no system call.
#[cfg(target_os = "linux")]
pub(crate) fn admit_accepted(
    shared: &Shared,
    transport: Transport,
    fd: &OwnedFd,
) -> Option<(PeerName, Option<PerIpSlot>)> {
    let named = shared.config.log_data || tracing::enabled!(target: CONN_LOG, tracing::Level::INFO);
    if transport == Transport::Unix {
        if !named {
            return Some((PeerName::Unnamed, None));
        }
        let pid = rustix::net::sockopt::socket_peercred(fd)
            .ok()
            .map(|cred| cred.pid.as_raw_nonzero().get());
        return Some((unix_peer_name(pid), None));
    }
    let needs_address = !shared.config.access.is_open() || shared.per_ip.is_some();
    if !named && !needs_address {
        return Some((PeerName::Unnamed, None));
    }
    let address = peer_address(fd)?;
    let ip_slot = admit(shared, shared.counters.transport(transport), address)?;
    Some((PeerName::Inet(address), ip_slot))
}

/// The peer of an accepted TCP connection, IPv4 clients of a dual-stack socket named plainly.
#[cfg(target_os = "linux")]
fn peer_address(fd: &OwnedFd) -> Option<SocketAddr> {
    let address = socket2::SockRef::from(fd).peer_addr().ok()?.as_socket()?;
    Some(SocketAddr::new(address.ip().to_canonical(), address.port()))
}

/// How a Unix-domain peer is named in logs: a number of its own, and the peer's process id
/// when the kernel tells it.
pub(crate) fn unix_peer_name(pid: Option<i32>) -> PeerName {
    PeerName::Unix {
        number: UNIX_CONN_ID.fetch_add(1, Ordering::Relaxed),
        pid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_errors_are_told_apart() {
        use rustix::io::Errno;
        let failure = |errno: Errno| accept_failure(&std::io::Error::from(errno));
        assert_eq!(failure(Errno::CONNABORTED), AcceptFailure::Connection);
        assert_eq!(failure(Errno::PERM), AcceptFailure::Connection);
        assert_eq!(failure(Errno::MFILE), AcceptFailure::Resources);
        assert_eq!(failure(Errno::NOBUFS), AcceptFailure::Resources);
        assert_eq!(failure(Errno::INVAL), AcceptFailure::Listener);
        assert_eq!(failure(Errno::BADF), AcceptFailure::Listener);
        assert_eq!(failure(Errno::NOTSOCK), AcceptFailure::Listener);
    }

    #[test]
    fn unix_peers_are_numbered_in_turn() {
        let first = unix_peer_name(Some(42)).to_string();
        let second = unix_peer_name(None).to_string();
        let number = |name: &str| -> u64 {
            name.trim_start_matches("unix#")
                .split(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .expect("a number after unix#")
        };
        assert!(first.ends_with(" (pid 42)"), "{first}");
        assert!(!second.contains("pid"), "{second}");
        assert!(number(&second) > number(&first), "{first} then {second}");
    }
}
