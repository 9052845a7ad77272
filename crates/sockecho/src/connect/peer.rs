//! [`Peer`]: the resolved address every socket of a session talks to, decided once so each
//! socket opened later needs no resolving.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::tls::TlsClient;
use super::ws::WsClient;

/// The resolved address every socket of a session talks to.
#[derive(Debug, Clone)]
pub enum Peer {
    Tcp(SocketAddr),
    /// TCP, each connection secured by the session's one TLS client before it counts as open.
    Tls(SocketAddr, TlsClient),
    /// A WebSocket (over TLS for `wss://`): a connection is open once the upgrade is done.
    Ws(SocketAddr, WsClient),
    Udp(SocketAddr),
    Unix(PathBuf),
    UnixGram(PathBuf),
}

impl Peer {
    /// Whether the peer takes datagrams rather than connections.
    pub fn is_datagram(&self) -> bool {
        matches!(self, Peer::Udp(_) | Peer::UnixGram(_))
    }
}

/// A socket was asked to open toward a peer of the other kind (a bug in the caller).
pub(crate) fn wrong_peer(wanted: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("not {wanted} target"))
}
