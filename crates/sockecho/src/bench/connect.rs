//! Opening sockets for a run: find out which address of the endpoint answers (so an unreachable
//! server, or one whose certificate is not trusted, is one clear error before any load starts),
//! then open each connection or datagram socket from its source address.
//!
//! With `--source`, a TCP socket binds its local address before it connects, so each address
//! adds its own ephemeral port range toward the server. It sets `IP_BIND_ADDRESS_NO_PORT` first:
//! the port is then chosen by `connect`, which only needs the whole 4-tuple to be unique, instead
//! of by `bind`, which would reserve the port for every destination and search the range with
//! the slower bind-conflict check.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::socket::sockopt::IpBindAddressNoPort;

use tokio::io::{Interest, Ready};
use tokio::net::{TcpSocket, TcpStream, UdpSocket, UnixDatagram, UnixStream};

use super::BenchError;
use super::payload::Pattern;
use super::tls::TlsClient;
use crate::client::{ClientError, ConnectOptions};
use crate::net_error::describe_connect_error;
use crate::{Endpoint, Host};

/// Probe datagrams sent before a datagram endpoint is declared unreachable.
const PROBE_TRIES: u32 = 3;

/// Connection number carried by probe messages, so they never pass for a load message.
const PROBE_CONN: u32 = u32::MAX;

/// The resolved address every socket of a run talks to.
#[derive(Debug, Clone)]
pub enum Target {
    Tcp(SocketAddr),
    /// TCP, each connection secured by the run's one TLS client before it counts as open.
    Tls(SocketAddr, TlsClient),
    Udp(SocketAddr),
    Unix(PathBuf),
    UnixGram(PathBuf),
}

/// Finds the address of `endpoint` that answers: a stream endpoint must accept a connection (a
/// TLS one must also complete a handshake under `options`), a datagram one must echo a probe
/// message of `size` bytes within `timeout` (three tries).
pub async fn find_target(
    endpoint: &Endpoint,
    size: usize,
    timeout: Duration,
    connect_timeout: Duration,
    options: &ConnectOptions,
) -> Result<Target, BenchError> {
    let unreachable = |problem: String| BenchError::Unreachable {
        endpoint: endpoint.clone(),
        problem,
    };
    // `Unreachable` names the endpoint itself, so only the client's problem text is kept.
    let from_client = |e: ClientError| match e {
        ClientError::Connect { problem, .. } => unreachable(problem),
        other => unreachable(other.to_string()),
    };
    let no_answer = |_| {
        unreachable(format!(
            "no answer within {connect_timeout:?} — is the host reachable?"
        ))
    };
    match endpoint {
        Endpoint::Tcp(_) | Endpoint::Unix(_) => {
            // With the options: a PROXY-speaking server closes a probe without the header.
            let (_probe, reached) = tokio::time::timeout(
                connect_timeout,
                crate::client::connect_stream_with(endpoint, options),
            )
            .await
            .map_err(no_answer)?
            .map_err(from_client)?;
            match reached {
                Endpoint::Tcp(hp) => match hp.host {
                    Host::Ip(ip) => Ok(Target::Tcp(SocketAddr::new(ip, hp.port))),
                    _ => Err(unreachable("connected, but to no IP address".into())),
                },
                Endpoint::Unix(path) => Ok(Target::Unix(path)),
                _ => Err(unreachable("not a stream endpoint".into())),
            }
        }
        Endpoint::Udp(_) => {
            let addrs = crate::client::resolve(endpoint)
                .await
                .map_err(from_client)?;
            let mut last = String::from("no address to try");
            for addr in addrs {
                let target = Target::Udp(addr);
                match probe_datagram(&target, size, timeout).await {
                    Ok(()) => return Ok(target),
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
            let addrs = crate::client::resolve(endpoint)
                .await
                .map_err(from_client)?;
            tokio::time::timeout(connect_timeout, find_tls(addrs, client, options))
                .await
                .map_err(no_answer)?
                .map_err(unreachable)
        }
        Endpoint::UnixGram(path) => {
            let target = Target::UnixGram(path.clone());
            probe_datagram(&target, size, timeout)
                .await
                .map_err(unreachable)?;
            Ok(target)
        }
    }
}

/// The first of `addrs` that accepts a connection, if the TLS handshake on that connection
/// succeeds. A failed handshake is the server's answer, so the other addresses are not tried
/// after it, as the stream client does not try them either.
async fn find_tls(
    addrs: Vec<SocketAddr>,
    client: TlsClient,
    options: &ConnectOptions,
) -> Result<Target, String> {
    let mut last = String::from("no address to connect to");
    for addr in addrs {
        match connect_tcp(addr, None).await {
            Ok(mut tcp) => {
                if let Some(proxy) = &options.send_proxy {
                    proxy
                        .send(&mut tcp)
                        .await
                        .map_err(|e| format!("cannot send the PROXY header: {e}"))?;
                }
                client.handshake(tcp).await?;
                return Ok(Target::Tls(addr, client));
            }
            Err(e) => last = describe_connect_error(&e),
        }
    }
    Err(last)
}

/// Sends a probe message (up to three times) and waits for any reply.
pub(crate) async fn probe_datagram(
    target: &Target,
    size: usize,
    timeout: Duration,
) -> Result<(), String> {
    let socket = DatagramSocket::open(target, None, 0).map_err(|e| describe_connect_error(&e))?;
    let message = Pattern::new(size).message(0, PROBE_CONN);
    let mut buf = vec![0u8; size + 1];
    for _ in 0..PROBE_TRIES {
        socket
            .send(&message)
            .await
            .map_err(|e| describe_connect_error(&e))?;
        match tokio::time::timeout(timeout, socket.recv(&mut buf)).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => return Err(describe_connect_error(&e)),
            Err(_elapsed) => continue,
        }
    }
    Err(format!(
        "no reply to {PROBE_TRIES} probe datagrams within {timeout:?} each — is an echo server \
         running there?"
    ))
}

/// A connected stream socket.
#[derive(Debug)]
pub enum StreamSocket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl StreamSocket {
    /// Connects to `target` (tcp or unix), from `source` if given.
    pub async fn connect(target: &Target, source: Option<IpAddr>) -> io::Result<StreamSocket> {
        match target {
            Target::Tcp(addr) => Ok(StreamSocket::Tcp(connect_tcp(*addr, source).await?)),
            Target::Unix(path) => Ok(StreamSocket::Unix(UnixStream::connect(path).await?)),
            Target::Tls(..) | Target::Udp(_) | Target::UnixGram(_) => {
                Err(wrong_target("a plain stream"))
            }
        }
    }

    /// Waits until the socket is ready for `interest`.
    pub async fn ready(&self, interest: Interest) -> io::Result<Ready> {
        match self {
            StreamSocket::Tcp(s) => s.ready(interest).await,
            StreamSocket::Unix(s) => s.ready(interest).await,
        }
    }

    /// Reads what has arrived, without blocking; `WouldBlock` when nothing has.
    ///
    /// A stream socket's `read` returns less than asked only when it has emptied the receive
    /// queue, so after a short read the socket's readiness is cleared at once rather than
    /// learned from one more `read` that would only fail with `EAGAIN`: one system call saved
    /// per round trip. Tokio clears readiness only if no new event came in the meantime, so
    /// bytes arriving just after the read still wake the connection.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut short = 0;
        let result = match self {
            StreamSocket::Tcp(s) => s.try_io(Interest::READABLE, || read_once(s, buf, &mut short)),
            StreamSocket::Unix(s) => s.try_io(Interest::READABLE, || read_once(s, buf, &mut short)),
        };
        match result {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && short > 0 => Ok(short),
            other => other,
        }
    }

    /// Takes the socket out of tokio, for the thread's own event loop. It stays non-blocking.
    pub fn into_fd(self) -> io::Result<OwnedFd> {
        Ok(match self {
            StreamSocket::Tcp(s) => s.into_std()?.into(),
            StreamSocket::Unix(s) => s.into_std()?.into(),
        })
    }

    /// Writes some of `bufs`, without blocking.
    ///
    /// `sendmsg` rather than `writev`, and `recv` rather than `read` above: the socket calls
    /// skip the file layer's per-call checks, a measurable share of a 64-byte round trip.
    pub fn write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            StreamSocket::Tcp(s) => s.try_io(Interest::WRITABLE, || send_once(s, bufs)),
            StreamSocket::Unix(s) => s.try_io(Interest::WRITABLE, || send_once(s, bufs)),
        }
    }
}

/// A socket was asked to open on a target of the other kind (a bug in the caller).
fn wrong_target(wanted: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("not {wanted} target"))
}

/// A TCP connection to `addr`, from `source` if given, that sends each write at once.
pub(crate) async fn connect_tcp(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        // Best effort: without it (kernels before 4.2) the bind still works, reserving a port.
        if let Err(e) = nix::sys::socket::setsockopt(&socket, IpBindAddressNoPort, &true) {
            tracing::debug!("IP_BIND_ADDRESS_NO_PORT: {e}");
        }
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(addr).await?;
    // Pipelined messages must go out when written, not wait for earlier ACKs.
    stream.set_nodelay(true)?;
    Ok(stream)
}

pub(super) fn send_once(fd: impl AsFd, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
    use rustix::net::{SendAncillaryBuffer, SendFlags, sendmsg};
    // NOSIGNAL: a peer that closed gives an error here, not a SIGPIPE.
    Ok(sendmsg(
        fd,
        bufs,
        &mut SendAncillaryBuffer::default(),
        SendFlags::NOSIGNAL,
    )?)
}

fn read_once(fd: impl AsFd, buf: &mut [u8], short: &mut usize) -> io::Result<usize> {
    let (n, _) = rustix::net::recv(fd, &mut *buf, rustix::net::RecvFlags::empty())?;
    if n > 0 && n < buf.len() {
        *short = n;
        return Err(io::ErrorKind::WouldBlock.into());
    }
    Ok(n)
}

/// A connected datagram socket.
#[derive(Debug)]
pub enum DatagramSocket {
    Udp(UdpSocket),
    Unix(UnixDatagram),
}

impl DatagramSocket {
    /// Opens a socket connected to `target` (udp or unixgram), bound to `source` if given, with
    /// kernel buffers of at least `buffer` bytes so a full pipeline of replies fits. A Unix
    /// datagram socket binds a unique abstract address, so the server has somewhere to reply and
    /// no file is left behind. Needs a tokio runtime.
    pub fn open(
        target: &Target,
        source: Option<IpAddr>,
        buffer: usize,
    ) -> io::Result<DatagramSocket> {
        match target {
            Target::Udp(addr) => {
                let local = match (source, addr) {
                    (Some(ip), _) => SocketAddr::new(ip, 0),
                    (None, SocketAddr::V4(_)) => (Ipv4Addr::UNSPECIFIED, 0).into(),
                    (None, SocketAddr::V6(_)) => (Ipv6Addr::UNSPECIFIED, 0).into(),
                };
                let socket = std::net::UdpSocket::bind(local)?;
                socket.connect(addr)?;
                socket.set_nonblocking(true)?;
                grow_buffers(&socket, buffer);
                Ok(DatagramSocket::Udp(UdpSocket::from_std(socket)?))
            }
            Target::UnixGram(path) => {
                let socket = std::os::unix::net::UnixDatagram::bind_addr(&abstract_address()?)?;
                socket.connect(path)?;
                socket.set_nonblocking(true)?;
                grow_buffers(&socket, buffer);
                Ok(DatagramSocket::Unix(UnixDatagram::from_std(socket)?))
            }
            Target::Tcp(_) | Target::Tls(..) | Target::Unix(_) => Err(wrong_target("a datagram")),
        }
    }

    pub async fn ready(&self, interest: Interest) -> io::Result<Ready> {
        match self {
            DatagramSocket::Udp(s) => s.ready(interest).await,
            DatagramSocket::Unix(s) => s.ready(interest).await,
        }
    }

    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            DatagramSocket::Udp(s) => s.try_recv(buf),
            DatagramSocket::Unix(s) => s.try_recv(buf),
        }
    }

    /// Turns on UDP segmentation offload: sends of several equal-size datagrams in one call
    /// (GSO), and replies the kernel hands over together (GRO, split again by
    /// [`try_recv_segmented`](Self::try_recv_segmented)). The receiver gets the same datagrams
    /// either way, but not the same way: on loopback a burst reaches the receiving socket as one
    /// packet, and is split there unless that socket also takes coalesced buffers. Returns
    /// whether sends may be segmented (false for Unix datagram sockets).
    pub fn enable_udp_offload(&self) -> bool {
        let DatagramSocket::Udp(s) = self else {
            return false;
        };
        // Without it (kernels before 5.0) replies simply come one by one.
        let _ = crate::udp_gro::enable(s);
        true
    }

    /// Sends `buf` as datagrams of `segment` bytes each (the last may be shorter), in one
    /// system call. Only after [`enable_udp_offload`](Self::enable_udp_offload) said yes.
    pub fn try_send_segmented(&self, buf: &[u8], segment: u16) -> io::Result<usize> {
        use nix::sys::socket::{ControlMessage, MsgFlags, UnixAddr, sendmsg};
        use std::os::fd::AsRawFd;
        let DatagramSocket::Udp(s) = self else {
            return Err(io::ErrorKind::Unsupported.into());
        };
        s.try_io(Interest::WRITABLE, || {
            sendmsg::<UnixAddr>(
                s.as_raw_fd(),
                &[io::IoSlice::new(buf)],
                &[ControlMessage::UdpGsoSegments(&segment)],
                MsgFlags::MSG_DONTWAIT,
                None,
            )
            .map_err(io::Error::from)
        })
    }

    /// Receives one datagram, or on UDP with offload on, several from the server handed over
    /// as one buffer. Returns the bytes read and the size of each datagram in them (all but
    /// the last exactly that long). `cmsg` is scratch space for the kernel's note of the size.
    pub fn try_recv_segmented(
        &self,
        buf: &mut [u8],
        cmsg: &mut [u8],
    ) -> io::Result<(usize, usize)> {
        use nix::sys::socket::{MsgFlags, UnixAddr, recvmsg};
        use std::os::fd::AsRawFd;
        let DatagramSocket::Udp(s) = self else {
            return self.try_recv(buf).map(|n| (n, n));
        };
        s.try_io(Interest::READABLE, || {
            let mut iov = [io::IoSliceMut::new(buf)];
            let msg =
                recvmsg::<UnixAddr>(s.as_raw_fd(), &mut iov, Some(cmsg), MsgFlags::MSG_DONTWAIT)
                    .map_err(io::Error::from)?;
            let segment =
                crate::udp_gro::segment_size(msg.cmsgs().into_iter().flatten(), msg.bytes);
            Ok((msg.bytes, segment))
        })
    }

    pub fn try_send(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            DatagramSocket::Udp(s) => s.try_send(buf),
            DatagramSocket::Unix(s) => s.try_send(buf),
        }
    }

    pub async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            DatagramSocket::Udp(s) => s.send(buf).await,
            DatagramSocket::Unix(s) => s.send(buf).await,
        }
    }

    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            DatagramSocket::Udp(s) => s.recv(buf).await,
            DatagramSocket::Unix(s) => s.recv(buf).await,
        }
    }
}

/// Whether this kernel knows `UDP_SEGMENT` for sockets like those that will load `target`. One
/// that does not would not refuse the option in a send but ignore it, and send a burst as one
/// large datagram.
pub fn udp_segmentation_supported(target: SocketAddr) -> bool {
    use nix::sys::socket::{getsockopt, sockopt};
    let any: SocketAddr = match target {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    std::net::UdpSocket::bind(any).is_ok_and(|s| getsockopt(&s, sockopt::UdpGsoSegment).is_ok())
}

/// Raises the socket's buffers to `bytes` if they are smaller; a refusal only means datagrams
/// may be dropped under a deep pipeline, which the run then reports as lost.
fn grow_buffers(socket: &impl AsFd, bytes: usize) {
    let sock = socket2::SockRef::from(socket);
    if sock.recv_buffer_size().is_ok_and(|n| n < bytes) {
        let _ = sock.set_recv_buffer_size(bytes);
    }
    if sock.send_buffer_size().is_ok_and(|n| n < bytes) {
        let _ = sock.set_send_buffer_size(bytes);
    }
}

/// A unique abstract-namespace address for one client datagram socket.
fn abstract_address() -> io::Result<std::os::unix::net::SocketAddr> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "sockecho-bench-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
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
        let deferred =
            nix::sys::socket::getsockopt(&stream, IpBindAddressNoPort).expect("getsockopt");
        assert!(deferred, "IP_BIND_ADDRESS_NO_PORT is set before the bind");
        let (_, peer) = listener.accept().await.expect("accept");
        assert_eq!(peer, local);
    }
}
