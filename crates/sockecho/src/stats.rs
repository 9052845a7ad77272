//! Counters a running server updates, and the snapshots of them that `run` returns and the
//! metrics endpoint exports.
//!
//! Each transport has its own set, so metrics can carry a transport label; a snapshot of the
//! whole server adds them up. The last PROXY protocol headers taken are kept beside them.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::endpoint::Transport;
use crate::proxy_protocol::recent::{Received, RecentHeaders};
use crate::server::fault::FaultKind;

/// Every transport a server counts separately, in a fixed order.
pub const TRANSPORTS: [Transport; 7] = [
    Transport::Tcp,
    Transport::Udp,
    Transport::Tls,
    Transport::Ws,
    Transport::Wss,
    Transport::Unix,
    Transport::UnixGram,
];

/// Live counters of one server, shared by all of its loops. Read them while it runs with
/// [`Counters::snapshot`] or [`Counters::by_transport`].
#[derive(Debug, Default)]
pub struct Counters {
    per_transport: [TransportCounters; TRANSPORTS.len()],
    faults: FaultCounters,
    /// The last PROXY protocol headers taken (`--proxy-protocol`).
    pub(crate) recent_proxy: RecentHeaders,
}

impl Counters {
    /// The last PROXY protocol headers the server took, oldest first (empty without
    /// `--proxy-protocol`).
    pub fn recent_proxy_headers(&self) -> Vec<Received> {
        self.recent_proxy.snapshot()
    }

    /// The counters of one transport.
    pub fn transport(&self, transport: Transport) -> &TransportCounters {
        let index = TRANSPORTS
            .iter()
            .position(|t| *t == transport)
            .unwrap_or_default();
        &self.per_transport[index]
    }

    /// The whole server's counters, added up over transports.
    pub fn snapshot(&self) -> Stats {
        self.per_transport
            .iter()
            .map(TransportCounters::snapshot)
            .fold(Stats::default(), |sum, s| sum.plus(&s))
    }

    /// Faults injected so far, by kind (`--fault`).
    pub fn faults(&self) -> &FaultCounters {
        &self.faults
    }

    /// Each transport's counters.
    pub fn by_transport(&self) -> Vec<(Transport, Stats)> {
        TRANSPORTS
            .iter()
            .zip(&self.per_transport)
            .map(|(t, c)| (*t, c.snapshot()))
            .collect()
    }
}

/// Generates the live counter struct, its snapshot struct and the code that copies and adds
/// them, from one list, so a new counter cannot be forgotten in one of the places.
macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        /// Live counters of one transport.
        #[derive(Debug, Default)]
        pub struct TransportCounters {
            $(pub(crate) $name: AtomicU64,)*
        }

        /// A point-in-time copy of counters.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
        pub struct Stats {
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        impl TransportCounters {
            /// Copies every counter.
            pub fn snapshot(&self) -> Stats {
                Stats { $($name: self.$name.load(Relaxed),)* }
            }
        }

        impl Stats {
            fn plus(&self, other: &Stats) -> Stats {
                Stats { $($name: self.$name + other.$name,)* }
            }
        }
    };
}

counters! {
    /// Stream connections accepted (and served).
    connections_accepted,
    /// Stream connections finished (any reason, including errors and cuts).
    connections_closed,
    /// Connections closed at the end of the shutdown grace period before they finished.
    connections_cut,
    /// Connections that ended with an I/O error (e.g. reset by the peer).
    connection_errors,
    /// Connections closed because they were idle for the idle timeout.
    connections_idle_closed,
    /// Connections refused at once because `--allow`/`--deny` rejects the peer.
    connections_denied,
    /// Connections refused at once because the peer's address already has `--max-conns-per-ip`.
    connections_over_ip_limit,
    /// TLS handshakes that failed or timed out.
    tls_handshake_failures,
    /// Bytes echoed on stream connections.
    stream_bytes,
    /// Datagrams echoed.
    datagrams,
    /// Payload bytes of echoed datagrams.
    datagram_bytes,
    /// Datagrams received but not echoed because the reply could not be sent (or the Unix
    /// sender has no address).
    datagrams_dropped,
    /// Datagrams dropped because `--allow`/`--deny` rejects the sender.
    datagrams_denied,
    /// Datagrams dropped by the per-source rate limit (`--udp-rate`).
    datagrams_rate_limited,
    /// Datagrams dropped by the reflection guard (well-known service source port, broadcast or
    /// multicast source).
    datagrams_reflection_blocked,
    /// Failed `accept` calls (e.g. out of file descriptors); the server survives them.
    accept_errors,
    /// PROXY v1 headers that named the client (`--proxy-protocol`).
    proxy_headers_v1,
    /// PROXY v2 headers that named the client.
    proxy_headers_v2,
    /// PROXY headers without a client address (v2 LOCAL, v1 UNKNOWN): the peer itself is used.
    proxy_headers_local,
    /// Connections refused because a peer outside `--proxy-from` sent a PROXY header.
    proxy_untrusted,
    /// Connections from a trusted proxy closed because they did not start with a header.
    proxy_header_missing,
    /// Connections closed because their PROXY header was malformed.
    proxy_header_malformed,
    /// Connections closed because their PROXY header was longer than the limit.
    proxy_header_too_long,
    /// Connections closed because their PROXY header did not complete in time.
    proxy_header_timeout,
    /// Connections that closed (or failed) before their PROXY header was complete.
    proxy_header_closed,
}

impl Stats {
    /// Stream connections open at the time of the snapshot.
    pub fn connections_open(&self) -> u64 {
        self.connections_accepted
            .saturating_sub(self.connections_closed)
    }
}

/// Faults injected, one counter per [`FaultKind`].
#[derive(Debug, Default)]
pub struct FaultCounters([AtomicU64; FaultKind::ALL.len()]);

impl FaultCounters {
    pub(crate) fn add(&self, kind: FaultKind, n: u64) {
        self.0[kind.index()].fetch_add(n, Relaxed);
    }

    /// Faults of `kind` injected so far.
    pub fn get(&self, kind: FaultKind) -> u64 {
        self.0[kind.index()].load(Relaxed)
    }
}

impl TransportCounters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }
}
