//! Datagram listeners (UDP, Unix datagram): each datagram goes back to its sender unchanged.
//!
//! One socket serves any number of peers. The receive buffer holds the largest datagram the
//! transport can carry, so nothing is truncated: 65 507 bytes of UDP payload over IPv4, and up to
//! the socket buffer size for Unix datagrams.

use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;

use tokio::io::Interest;
use tokio::net::{UdpSocket, UnixDatagram};

use super::Shared;
use crate::Endpoint;
use crate::stats::Counters;

/// Larger than any UDP payload (65 507 over IPv4, 65 527 over IPv6).
const UDP_BUF: usize = 65_536;
/// Larger than any Unix datagram the default socket buffers (208 KiB) allow.
const UNIXGRAM_BUF: usize = 256 * 1024;

pub(crate) async fn serve_udp(socket: UdpSocket, endpoint: Endpoint, shared: Arc<Shared>) {
    let mut buf = vec![0u8; UDP_BUF];
    let counters = &shared.counters;
    loop {
        let (len, peer) = tokio::select! {
            biased;
            () = shared.drain.cancelled() => break,
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    // ICMP errors from earlier replies (port unreachable) surface here; they
                    // concern one peer, not the socket.
                    tracing::debug!("receive on {endpoint}: {e}");
                    continue;
                }
            },
        };
        let data = &buf[..len];
        log_datagram(&shared, &peer.to_string(), data);
        match socket.send_to(data, peer).await {
            Ok(_) => count_echo(counters, len),
            Err(e) => {
                Counters::add(&counters.datagrams_dropped, 1);
                tracing::debug!("reply to {peer} on {endpoint} failed: {e}");
            }
        }
    }
    tracing::debug!("stopped serving {endpoint}");
}

pub(crate) async fn serve_unixgram(socket: UnixDatagram, endpoint: Endpoint, shared: Arc<Shared>) {
    let mut buf = vec![0u8; UNIXGRAM_BUF];
    let counters = &shared.counters;
    loop {
        let (len, peer) = tokio::select! {
            biased;
            () = shared.drain.cancelled() => break,
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!("receive on {endpoint}: {e}");
                    continue;
                }
            },
        };
        let data = &buf[..len];
        let std_peer: std::os::unix::net::SocketAddr = peer.into();
        let Some(reply_to) = reply_address(&std_peer) else {
            Counters::add(&counters.datagrams_dropped, 1);
            tracing::debug!(
                "datagram from an unbound Unix socket on {endpoint}: no address to reply to"
            );
            continue;
        };
        let label = format!("{reply_to:?}");
        log_datagram(&shared, &label, data);
        let sent = socket
            .async_io(Interest::WRITABLE, || {
                rustix::net::sendto(
                    socket.as_fd(),
                    data,
                    rustix::net::SendFlags::empty(),
                    &reply_to,
                )
                .map_err(io::Error::from)
            })
            .await;
        match sent {
            Ok(_) => count_echo(counters, len),
            Err(e) => {
                Counters::add(&counters.datagrams_dropped, 1);
                tracing::debug!("reply to {label} on {endpoint} failed: {e}");
            }
        }
    }
    tracing::debug!("stopped serving {endpoint}");
}

/// Where to send a reply: the sender's path or abstract name. An unbound sender has neither.
fn reply_address(peer: &std::os::unix::net::SocketAddr) -> Option<rustix::net::SocketAddrUnix> {
    use std::os::linux::net::SocketAddrExt;
    if let Some(path) = peer.as_pathname() {
        return rustix::net::SocketAddrUnix::new(path).ok();
    }
    peer.as_abstract_name()
        .and_then(|name| rustix::net::SocketAddrUnix::new_abstract_name(name).ok())
}

fn count_echo(counters: &Counters, len: usize) {
    Counters::add(&counters.datagrams, 1);
    Counters::add(&counters.datagram_bytes, len as u64);
}

fn log_datagram(shared: &Shared, peer: &str, data: &[u8]) {
    if shared.config.log_data {
        tracing::info!(target: crate::DATA_LOG, "{peer}: {}", String::from_utf8_lossy(data).trim());
    } else {
        tracing::trace!("{peer}: {} byte datagram", data.len());
    }
}
