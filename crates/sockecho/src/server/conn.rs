//! One admitted stream connection's identity and accounting, shared by both paths that serve
//! it (the tokio loop in `stream` and the io_uring engine in `uring`): [`Admitted`] holds its
//! peer and limit slots, [`ConnLog`] counts and logs its opening and closing.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use tokio::sync::OwnedSemaphorePermit;

use super::access::PerIpSlot;
use super::echo::CloseReason;
use super::proxied::Via;
use super::shared::Shared;
use crate::CONN_LOG;
use crate::Transport;
use crate::stats::TransportCounters;

/// Who a connection's peer is, kept as it came from the accept and formatted only when a log
/// line names it: with the connection log off, accepting a connection formats nothing.
#[derive(Debug, Clone)]
pub(crate) enum PeerName {
    /// An IP peer (for a connection through a proxy, the client its PROXY header names).
    Inet(SocketAddr),
    /// A Unix-domain peer: a number of its own, and the peer's process id when the kernel
    /// tells it.
    Unix { number: u64, pid: Option<i32> },
    /// Not looked up: nothing would log it (the io_uring engine with the connection log off).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    Unnamed,
}

impl fmt::Display for PeerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerName::Inet(address) => address.fmt(f),
            PeerName::Unix {
                number,
                pid: Some(pid),
            } => write!(f, "unix#{number} (pid {pid})"),
            PeerName::Unix { number, pid: None } => write!(f, "unix#{number}"),
            PeerName::Unnamed => Ok(()),
        }
    }
}

/// A stream connection the accept loop admitted, whichever path serves it: who the peer is,
/// and the places it holds under the connection limits until it is dropped.
pub(crate) struct Admitted {
    /// The peer as logged: its address, or a number and pid for Unix sockets.
    pub(crate) peer: PeerName,
    pub(crate) transport: Transport,
    /// Its place under `--max-conns`, given back when the connection ends.
    _permit: OwnedSemaphorePermit,
    /// Its place under `--max-conns-per-ip`, if that is set.
    _ip_slot: Option<PerIpSlot>,
    /// The proxy and its PROXY header, when `peer` comes from one (boxed: rare, and large).
    pub(crate) via: Option<Box<Via>>,
}

impl Admitted {
    pub(crate) fn new(
        peer: PeerName,
        transport: Transport,
        permit: OwnedSemaphorePermit,
        ip_slot: Option<PerIpSlot>,
    ) -> Admitted {
        Admitted {
            peer,
            transport,
            _permit: permit,
            _ip_slot: ip_slot,
            via: None,
        }
    }

    /// The connection as served for a proxy, as the client the proxy's header names.
    pub(crate) fn via(self, via: Option<Via>) -> Admitted {
        Admitted {
            via: via.map(Box::new),
            ..self
        }
    }
}

/// The counters and log lines of one connection's life, whichever path serves it.
pub(crate) struct ConnLog {
    started: Instant,
    /// Bytes echoed so far.
    pub(crate) bytes: u64,
    /// How many of `bytes` were already added to the shared `stream_bytes` counter while the
    /// connection was open (so metrics move with a long-lived connection); the rest is added
    /// when it closes.
    pub(crate) counted: u64,
}

impl ConnLog {
    /// Counts and logs a new connection.
    pub(crate) fn opened(conn: &Admitted, shared: &Shared) -> ConnLog {
        let Admitted {
            peer,
            transport,
            via,
            ..
        } = conn;
        let counters = shared.counters.transport(*transport);
        TransportCounters::add(&counters.connections_accepted, 1);
        match via {
            None => {
                tracing::info!(target: CONN_LOG, peer = %peer, %transport, event = "connected", "{peer} connected");
            }
            Some(via) => {
                let Via { by, header } = &**via;
                tracing::info!(
                    target: CONN_LOG,
                    peer = %peer,
                    %transport,
                    event = "connected",
                    proxied_by = %by,
                    proxy_version = header.version.as_str(),
                    proxy_destination = header.addresses.map(|a| a.destination.to_string()),
                    proxy_alpn = header.alpn_text(),
                    proxy_authority = header.authority.as_deref(),
                    proxy_unique_id = header.unique_id_text(),
                    "{peer} connected via {by} (PROXY {})",
                    header.version
                );
            }
        }
        ConnLog {
            started: Instant::now(),
            bytes: 0,
            counted: 0,
        }
    }

    /// Counts and logs the end of a connection, with why it ended.
    pub(crate) fn closed(self, conn: &Admitted, shared: &Shared, result: io::Result<CloseReason>) {
        let Admitted {
            peer,
            transport,
            via,
            ..
        } = conn;
        let counters = shared.counters.transport(*transport);
        let ConnLog {
            started,
            bytes,
            counted,
        } = self;
        let proxied_by = via.as_ref().map(|via| via.by.to_string());
        let duration_ms = started.elapsed().as_secs_f64() * 1e3;
        let reason = match result {
            Ok(reason) => {
                match reason {
                    CloseReason::IdleTimeout => {
                        TransportCounters::add(&counters.connections_idle_closed, 1);
                    }
                    CloseReason::Cut => TransportCounters::add(&counters.connections_cut, 1),
                    CloseReason::PeerClosed | CloseReason::Drained | CloseReason::Fault => {}
                }
                std::borrow::Cow::Borrowed(reason.as_str())
            }
            Err(e) => {
                TransportCounters::add(&counters.connection_errors, 1);
                std::borrow::Cow::Owned(format!("error: {e}"))
            }
        };
        TransportCounters::add(&counters.stream_bytes, bytes.saturating_sub(counted));
        TransportCounters::add(&counters.connections_closed, 1);
        tracing::info!(
            target: CONN_LOG,
            peer = %peer,
            %transport,
            event = "disconnected",
            proxied_by,
            bytes,
            duration_ms,
            reason = &*reason,
            "{peer} disconnected ({bytes} bytes echoed in {:.3}s, {reason})",
            duration_ms / 1e3
        );
    }
}
