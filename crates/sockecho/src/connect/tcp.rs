//! TCP connections: one to an address, from a source address if asked, and the first of a
//! name's addresses that accepts.
//!
//! With a source address, the socket binds its local address before it connects, so each source
//! adds its own ephemeral port range toward the server. It sets `IP_BIND_ADDRESS_NO_PORT` first:
//! the port is then chosen by `connect`, which only needs the whole 4-tuple to be unique, instead
//! of by `bind`, which would reserve the port for every destination and search the range with
//! the slower bind-conflict check.

use std::io;
use std::net::{IpAddr, SocketAddr};

use tokio::net::{TcpSocket, TcpStream};

use super::error::ConnectError;
use crate::Endpoint;
use crate::net_error::{describe_connect_error, plain};
use crate::proxy_protocol::SendProxy;

/// A TCP connection to `addr`, from `source` if given, that sends each write at once.
pub async fn connect_tcp(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        // Best effort: without it (kernels before 4.2, other systems) the bind still works,
        // reserving a port.
        #[cfg(target_os = "linux")]
        if let Err(e) = crate::sys::sockopt::set_bind_address_no_port(&socket) {
            tracing::debug!("IP_BIND_ADDRESS_NO_PORT: {e}");
        }
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(addr).await?;
    // Interactive lines and pipelined messages must go out when written, not wait for earlier
    // ACKs.
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Writes the PROXY protocol header `proxy` asks for, if any, on a new connection: first,
/// before any data or TLS handshake, as a load balancer would. The error is one line.
pub async fn send_proxy_header(
    stream: &mut TcpStream,
    proxy: Option<&SendProxy>,
) -> Result<(), String> {
    let Some(proxy) = proxy else {
        return Ok(());
    };
    proxy
        .send(stream)
        .await
        .map_err(|e| format!("cannot send the PROXY header: {}", plain(&e)))
}

/// TCP to the first of `addrs` (what `endpoint` resolved to) that accepts.
pub async fn connect_first(
    endpoint: &Endpoint,
    addrs: Vec<SocketAddr>,
) -> Result<(TcpStream, SocketAddr), ConnectError> {
    let mut last_err = None;
    for addr in addrs {
        match connect_tcp(addr, None).await {
            Ok(stream) => return Ok((stream, addr)),
            Err(e) => {
                tracing::debug!("connect to {addr} for {endpoint} failed: {e}");
                last_err = Some(e);
            }
        }
    }
    Err(connect_failed(endpoint, last_err))
}

/// The error of a connect that failed with `err`, or had no address to try.
pub(crate) fn connect_failed(endpoint: &Endpoint, err: Option<io::Error>) -> ConnectError {
    let problem = match &err {
        Some(e) => describe_connect_error(e),
        None => "no address to connect to".into(),
    };
    ConnectError::new(endpoint, problem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_source_address_is_bound_and_leaves_the_port_to_connect() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("listen");
        let server = listener.local_addr().expect("address");
        let source: IpAddr = "127.0.0.2".parse().expect("ip");
        let stream = connect_tcp(server, Some(source)).await.expect("connect");
        let local = stream.local_addr().expect("local address");
        assert_eq!(local.ip(), source);
        assert_ne!(local.port(), 0);
        #[cfg(target_os = "linux")]
        {
            let deferred = crate::sys::sockopt::bind_address_no_port(&stream).expect("getsockopt");
            assert!(deferred, "IP_BIND_ADDRESS_NO_PORT is set before the bind");
        }
        let (_, peer) = listener.accept().await.expect("accept");
        assert_eq!(peer, local);
    }
}
