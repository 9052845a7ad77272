//! `--proxy-protocol`: who the client of a TCP or TLS connection really is, when a load balancer
//! says so in a PROXY header.
//!
//! This runs on tokio between `accept` and the echo, only when the option is on; the accept loop
//! and the echo paths (tokio or io_uring) are untouched otherwise. A trusted peer (in
//! `--proxy-from`) must start with a header, within a time limit; whatever it sent after the
//! header stays in the socket for the echo or the TLS handshake. Any other peer is served as
//! itself, unless it sends a header: that is refused, since only a trusted proxy may say who the
//! client is.

use std::net::SocketAddr;

use tokio::net::TcpStream;

use super::config::ProxyProtocol;
use super::shared::Shared;
use crate::proxy_protocol::read::{read_header, sends_header};
use crate::proxy_protocol::recent::Received;
use crate::proxy_protocol::{HeaderError, ProxyHeader, Version};
use crate::stats::TransportCounters;
use crate::{CONN_LOG, Transport};

/// What the header said about one connection, kept for its log lines.
#[derive(Debug)]
pub(crate) struct Via {
    /// The proxy: the connection's own peer.
    pub(crate) by: SocketAddr,
    pub(crate) header: ProxyHeader,
}

impl Via {
    /// The address the connection is served as: the header's client, or the proxy itself for a
    /// header without addresses (a health check).
    pub(crate) fn client(&self) -> SocketAddr {
        match self.header.source() {
            Some(source) => SocketAddr::new(source.ip().to_canonical(), source.port()),
            None => self.by,
        }
    }
}

/// Settles the header question for a new connection from `peer`. `None`: the connection is
/// refused (logged and counted here). `Some(None)`: served as `peer`; `Some(Some(via))`: served
/// as the client the header names.
pub(crate) async fn receive(
    stream: &TcpStream,
    peer: SocketAddr,
    transport: Transport,
    options: &ProxyProtocol,
    shared: &Shared,
) -> Option<Option<Via>> {
    let counters = shared.counters.transport(transport);
    let timeout = options.header_timeout;
    if !options.trusts(peer.ip()) {
        // Silence past the limit is a client that waits to be spoken to: serve it.
        let header = tokio::time::timeout(timeout, sends_header(stream)).await;
        if !matches!(header, Ok(Ok(true))) {
            return Some(None);
        }
        TransportCounters::add(&counters.proxy_untrusted, 1);
        tracing::warn!(
            target: CONN_LOG,
            peer = %peer,
            %transport,
            event = "proxy_header_refused",
            reason = "untrusted",
            "{peer} refused: sent a PROXY header but is not in --proxy-from"
        );
        return None;
    }
    let header = match tokio::time::timeout(timeout, read_header(stream)).await {
        Ok(result) => result,
        Err(_) => Err(HeaderError::Timeout(timeout)),
    };
    match header {
        Ok(header) => {
            let counter = match (header.addresses, header.version) {
                (None, _) => &counters.proxy_headers_local,
                (Some(_), Version::V1) => &counters.proxy_headers_v1,
                (Some(_), Version::V2) => &counters.proxy_headers_v2,
            };
            TransportCounters::add(counter, 1);
            let via = Via { by: peer, header };
            shared.counters.recent_proxy.push(Received::new(
                transport.as_str(),
                via.client(),
                peer,
                &via.header,
            ));
            Some(Some(via))
        }
        Err(e) => {
            let counter = match &e {
                HeaderError::Missing => &counters.proxy_header_missing,
                HeaderError::Malformed(_) => &counters.proxy_header_malformed,
                HeaderError::TooLong => &counters.proxy_header_too_long,
                HeaderError::Timeout(_) => &counters.proxy_header_timeout,
                HeaderError::Closed | HeaderError::Io(_) => &counters.proxy_header_closed,
            };
            TransportCounters::add(counter, 1);
            if matches!(e, HeaderError::Closed) {
                // A peer going away (a plain TCP health check, say) is not a fault.
                tracing::debug!(
                    target: CONN_LOG,
                    peer = %peer,
                    %transport,
                    event = "proxy_header_failed",
                    reason = e.reason(),
                    "{peer}: {e}"
                );
            } else {
                tracing::warn!(
                    target: CONN_LOG,
                    peer = %peer,
                    %transport,
                    event = "proxy_header_failed",
                    reason = e.reason(),
                    "{peer}: {e}; closed"
                );
            }
            None
        }
    }
}
