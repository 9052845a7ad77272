//! Counters a running server updates, and the snapshot of them that `run` returns.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Live counters, shared by every loop of one server. Read them while it runs with
/// [`Counters::snapshot`].
#[derive(Debug, Default)]
pub struct Counters {
    pub(crate) connections_accepted: AtomicU64,
    pub(crate) connections_closed: AtomicU64,
    /// Connections still open when the grace period ended, closed without finishing.
    pub(crate) connections_cut: AtomicU64,
    pub(crate) connection_errors: AtomicU64,
    pub(crate) stream_bytes: AtomicU64,
    pub(crate) datagrams: AtomicU64,
    pub(crate) datagram_bytes: AtomicU64,
    /// Datagrams that could not be echoed (unnamed Unix sender, send failure).
    pub(crate) datagrams_dropped: AtomicU64,
    pub(crate) accept_errors: AtomicU64,
}

/// A point-in-time copy of a server's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Stream connections accepted.
    pub connections_accepted: u64,
    /// Stream connections finished (any reason, including errors and cuts).
    pub connections_closed: u64,
    /// Connections closed at the end of the shutdown grace period before they finished.
    pub connections_cut: u64,
    /// Connections that ended with an I/O error (e.g. reset by the peer).
    pub connection_errors: u64,
    /// Bytes echoed on stream connections.
    pub stream_bytes: u64,
    /// Datagrams echoed.
    pub datagrams: u64,
    /// Payload bytes of echoed datagrams.
    pub datagram_bytes: u64,
    /// Datagrams received but not echoed.
    pub datagrams_dropped: u64,
    /// Failed `accept` calls (e.g. out of file descriptors); the server survives them.
    pub accept_errors: u64,
}

impl Stats {
    /// Stream connections open at the time of the snapshot.
    pub fn connections_open(&self) -> u64 {
        self.connections_accepted
            .saturating_sub(self.connections_closed)
    }
}

impl Counters {
    /// Copies every counter.
    pub fn snapshot(&self) -> Stats {
        Stats {
            connections_accepted: self.connections_accepted.load(Relaxed),
            connections_closed: self.connections_closed.load(Relaxed),
            connections_cut: self.connections_cut.load(Relaxed),
            connection_errors: self.connection_errors.load(Relaxed),
            stream_bytes: self.stream_bytes.load(Relaxed),
            datagrams: self.datagrams.load(Relaxed),
            datagram_bytes: self.datagram_bytes.load(Relaxed),
            datagrams_dropped: self.datagrams_dropped.load(Relaxed),
            accept_errors: self.accept_errors.load(Relaxed),
        }
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }
}
