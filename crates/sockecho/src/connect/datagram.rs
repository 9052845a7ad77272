//! Connected datagram sockets (UDP, Unix datagram) for every tool: opened toward a [`Peer`],
//! bound to a source address if asked, with kernel buffers sized for a pipeline of replies. A
//! Unix datagram socket binds a unique abstract name, so the server has somewhere to reply and
//! no file is left behind. UDP sockets can also send and receive in segments (GSO/GRO).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd;
use std::os::linux::net::SocketAddrExt;

use tokio::io::{Interest, Ready};
use tokio::net::{UdpSocket, UnixDatagram};

use super::peer::{Peer, wrong_peer};

/// Largest UDP payload over IPv4 (65 535 less the IP and UDP headers); IPv6 allows 20 bytes
/// more, but one limit for both keeps a session portable between address families.
pub const MAX_UDP_SIZE: usize = 65_507;

/// A connected datagram socket.
#[derive(Debug)]
pub enum DatagramSocket {
    Udp(UdpSocket),
    Unix(UnixDatagram),
}

impl DatagramSocket {
    /// Opens a socket connected to `peer` (udp or unixgram), bound to `source` if given, with
    /// kernel buffers of at least `buffer` bytes so a full pipeline of replies fits. A Unix
    /// datagram socket binds a unique abstract address, so the server has somewhere to reply and
    /// no file is left behind. Needs a tokio runtime.
    pub fn open(peer: &Peer, source: Option<IpAddr>, buffer: usize) -> io::Result<DatagramSocket> {
        match peer {
            Peer::Udp(addr) => {
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
            Peer::UnixGram(path) => {
                let socket = std::os::unix::net::UnixDatagram::bind_addr(&abstract_address()?)?;
                super::unix::connect_unix_datagram(&socket, path)?;
                socket.set_nonblocking(true)?;
                grow_buffers(&socket, buffer);
                Ok(DatagramSocket::Unix(UnixDatagram::from_std(socket)?))
            }
            Peer::Tcp(_) | Peer::Tls(..) | Peer::Unix(_) => Err(wrong_peer("a datagram")),
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

/// Whether this kernel knows `UDP_SEGMENT` for sockets like those that will load `peer`. One
/// that does not would not refuse the option in a send but ignore it, and send a burst as one
/// large datagram.
pub fn udp_segmentation_supported(peer: SocketAddr) -> bool {
    use nix::sys::socket::{getsockopt, sockopt};
    let any: SocketAddr = match peer {
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

/// A unique abstract-namespace address for one client datagram socket. The clock's nanoseconds
/// keep apart processes of other PID namespaces that share this network namespace and may have
/// the same process id.
fn abstract_address() -> io::Result<std::os::unix::net::SocketAddr> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = format!(
        "sockecho-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
}
