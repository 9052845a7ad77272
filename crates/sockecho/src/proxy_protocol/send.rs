//! The client side: a header written right after connecting, before anything else (before the
//! TLS handshake on `tls://`), so sockecho can stand in for a load balancer.

use std::io;
use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::header::{ProxyHeader, Version};

/// What `--send-proxy` and `--proxy-source` ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendProxy {
    pub version: Version,
    /// The client address the header claims. `None`: the connection's own local address.
    pub source: Option<SocketAddr>,
}

impl SendProxy {
    /// The header for a connection from `local` to `peer`: the claimed (or real) source, and
    /// the server's address as destination.
    pub fn header(&self, local: SocketAddr, peer: SocketAddr) -> io::Result<Vec<u8>> {
        ProxyHeader::new(self.version, self.source.unwrap_or(local), peer)
            .encode()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
    }

    /// Writes the header on a freshly connected stream.
    pub async fn send(&self, stream: &mut TcpStream) -> io::Result<()> {
        let header = self.header(stream.local_addr()?, stream.peer_addr()?)?;
        stream.write_all(&header).await
    }
}
