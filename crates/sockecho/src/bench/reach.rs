//! Before any load starts: find out which address of the endpoint answers, so an unreachable
//! server, or one whose certificate is not trusted, is one clear error up front, and every
//! connection of the run then goes to that one [`Peer`].

use std::net::SocketAddr;
use std::time::Duration;

use super::error::BenchError;
use crate::connect::{
    ConnectError, ConnectOptions, Peer, TlsClient, WsClient, connect_stream_with, probe_datagram,
    resolve,
};
use crate::{Endpoint, Host};

/// Finds the address of `endpoint` that answers: a stream endpoint must accept a connection (a
/// TLS one must also complete a handshake under `options`), a datagram one must echo a probe
/// message of `size` bytes within `timeout` (three tries).
pub async fn find_peer(
    endpoint: &Endpoint,
    size: usize,
    timeout: Duration,
    connect_timeout: Duration,
    options: &ConnectOptions,
) -> Result<Peer, BenchError> {
    let unreachable = |problem: String| BenchError::Unreachable {
        endpoint: endpoint.clone(),
        problem,
    };
    // `Unreachable` names the endpoint itself, so only the problem text is kept.
    let from_connect = |e: ConnectError| unreachable(e.problem);
    let no_answer = |_| {
        unreachable(format!(
            "no answer within {connect_timeout:?} — is the host reachable?"
        ))
    };
    match endpoint {
        Endpoint::Tcp(_) | Endpoint::Unix(_) => {
            // With the options: a PROXY-speaking server closes a probe without the header.
            let (_probe, reached) =
                tokio::time::timeout(connect_timeout, connect_stream_with(endpoint, options))
                    .await
                    .map_err(no_answer)?
                    .map_err(from_connect)?;
            match reached {
                Endpoint::Tcp(hp) => match hp.host {
                    Host::Ip(ip) => Ok(Peer::Tcp(SocketAddr::new(ip, hp.port))),
                    _ => Err(unreachable("connected, but to no IP address".into())),
                },
                Endpoint::Unix(path) => Ok(Peer::Unix(path)),
                _ => Err(unreachable("not a stream endpoint".into())),
            }
        }
        Endpoint::Udp(_) => {
            let addrs = resolve(endpoint).await.map_err(from_connect)?;
            let mut last = String::from("no address to try");
            for addr in addrs {
                let peer = Peer::Udp(addr);
                match probe_datagram(&peer, size, timeout).await {
                    Ok(()) => return Ok(peer),
                    Err(problem) => last = problem,
                }
            }
            Err(unreachable(last))
        }
        Endpoint::Tls(hp) => {
            let client = TlsClient::new(&hp.host, options).map_err(|source| BenchError::Tls {
                endpoint: endpoint.clone(),
                source,
            })?;
            let addrs = resolve(endpoint).await.map_err(from_connect)?;
            // The probe connection is dropped: it only shows the server answers and is trusted.
            let (_probe, addr) =
                tokio::time::timeout(connect_timeout, client.connect_first(endpoint, addrs))
                    .await
                    .map_err(no_answer)?
                    .map_err(from_connect)?;
            Ok(Peer::Tls(addr, client))
        }
        Endpoint::Ws(_) | Endpoint::Wss(_) => {
            let client = WsClient::new(endpoint, options)
                .map_err(|source| BenchError::Tls {
                    endpoint: endpoint.clone(),
                    source,
                })?
                .ok_or_else(|| unreachable("not a WebSocket endpoint".into()))?;
            let addrs = resolve(endpoint).await.map_err(from_connect)?;
            // The probe only shows the server answers, is trusted, and upgrades on the path.
            let (_probe, addr) =
                tokio::time::timeout(connect_timeout, client.connect_first(endpoint, addrs))
                    .await
                    .map_err(no_answer)?
                    .map_err(from_connect)?;
            Ok(Peer::Ws(addr, client))
        }
        Endpoint::UnixGram(path) => {
            let peer = Peer::UnixGram(path.clone());
            probe_datagram(&peer, size, timeout)
                .await
                .map_err(unreachable)?;
            Ok(peer)
        }
    }
}
