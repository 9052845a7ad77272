//! What both accepting paths apply to a new stream connection — the tokio accept loop in
//! `stream` and the io_uring engine's ring accept in `uring`: what a failed `accept` means and
//! how long to back off, the access rules and per-address limit, and how a Unix-domain peer is
//! named.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::access::PerIpSlot;
use super::shared::Shared;
use crate::CONN_LOG;
use crate::net_error::is_resource_exhaustion;
use crate::stats::TransportCounters;

/// First pause after an accept error; doubles while errors continue.
pub(crate) const BACKOFF_MIN: Duration = Duration::from_millis(10);
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Per-connection accept errors in a row after which accepting backs off as for running out of
/// descriptors: each such error used up one queued connection, but an endless run of them means
/// something else is wrong, and retrying at once would spin.
pub(crate) const FAILURES_BEFORE_BACKOFF: u32 = 16;

/// Numbers Unix-domain connections for logs, since their peers usually have no address.
static UNIX_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// What a failed `accept` means for the listener.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AcceptFailure {
    /// One queued connection failed (reset before it was accepted, refused by a firewall rule,
    /// a network error the kernel passed on): the listener is fine.
    Connection,
    /// Out of descriptors or memory: retrying at once would fail again, so back off.
    Resources,
    /// The listener itself is broken (not listening any more, not a socket): every retry
    /// would fail the same way, so stop accepting on it.
    Listener,
}

pub(crate) fn accept_failure(err: &std::io::Error) -> AcceptFailure {
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

/// How a Unix-domain peer is named in logs: a number of its own, and the peer's process id
/// when the kernel tells it.
pub(crate) fn unix_peer_name(pid: Option<i32>) -> String {
    let id = UNIX_CONN_ID.fetch_add(1, Ordering::Relaxed);
    match pid {
        Some(pid) => format!("unix#{id} (pid {pid})"),
        None => format!("unix#{id}"),
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
        let first = unix_peer_name(Some(42));
        let second = unix_peer_name(None);
        let number = |name: &str| -> u64 {
            name.trim_start_matches("unix#")
                .split(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .expect("a number after unix#")
        };
        assert!(first.ends_with(" (pid 42)"), "{first}");
        assert!(number(&second) > number(&first), "{first} then {second}");
    }
}
