//! Connected datagram sockets (UDP, Unix datagram) for every tool: opened toward a [`Peer`],
//! bound to a source address if asked, with kernel buffers sized for a pipeline of replies. A
//! Unix datagram socket binds a unique abstract name, so the server has somewhere to reply and
//! no file is left behind. UDP sockets can also send and receive in segments (GSO/GRO) on Linux.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd;

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
                let socket = std::os::unix::net::UnixDatagram::bind_addr(
                    &crate::sys::unix_addr::client_address()?,
                )?;
                super::unix::connect_unix_datagram(&socket, path)?;
                socket.set_nonblocking(true)?;
                grow_buffers(&socket, buffer);
                Ok(DatagramSocket::Unix(UnixDatagram::from_std(socket)?))
            }
            Peer::Tcp(_) | Peer::Tls(..) | Peer::Ws(..) | Peer::Unix(_) => {
                Err(wrong_peer("a datagram"))
            }
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
    /// whether sends may be segmented (false for Unix datagram sockets, and off Linux).
    pub fn enable_udp_offload(&self) -> bool {
        let DatagramSocket::Udp(s) = self else {
            return false;
        };
        #[cfg(target_os = "linux")]
        {
            // Without it (kernels before 5.0) replies simply come one by one.
            let _ = crate::sys::udp::enable_gro(s);
            true
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = s;
            false
        }
    }

    /// Sends `buf` as datagrams of `segment` bytes each (the last may be shorter), in one
    /// system call. Only after [`enable_udp_offload`](Self::enable_udp_offload) said yes.
    pub fn try_send_segmented(&self, buf: &[u8], segment: u16) -> io::Result<usize> {
        #[cfg(target_os = "linux")]
        if let DatagramSocket::Udp(s) = self {
            use crate::sys::udp::{MsgFlags, send_segmented};
            return s.try_io(Interest::WRITABLE, || {
                send_segmented(s, buf, segment, None, MsgFlags::MSG_DONTWAIT)
                    .map_err(io::Error::from)
            });
        }
        let _ = (buf, segment);
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Receives one datagram, or on UDP with offload on, several from the server handed over
    /// as one buffer. Returns the bytes read and the size of each datagram in them (all but
    /// the last exactly that long). `cmsg` is scratch space for the kernel's note of the size.
    pub fn try_recv_segmented(
        &self,
        buf: &mut [u8],
        cmsg: &mut [u8],
    ) -> io::Result<(usize, usize)> {
        #[cfg(target_os = "linux")]
        if let DatagramSocket::Udp(s) = self {
            return s.try_io(Interest::READABLE, || {
                crate::sys::udp::recv_segmented(s, buf, cmsg)
            });
        }
        let _ = cmsg;
        self.try_recv(buf).map(|n| (n, n))
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
/// large datagram. Always false off Linux.
pub fn udp_segmentation_supported(peer: SocketAddr) -> bool {
    #[cfg(target_os = "linux")]
    {
        crate::sys::udp::gso_supported(peer)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = peer;
        false
    }
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
