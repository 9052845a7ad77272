//! What the stream loops need from a socket ([`Wire`]: reads and writes that never wait, and
//! [`AsyncWire`] for a tokio task to wait on), and the plain TCP or Unix socket of a run
//! ([`StreamSocket`]) that offers them with as few system calls as a round trip allows.

use std::io::{self, IoSlice};
use std::net::IpAddr;
use std::os::fd::AsFd;

use tokio::io::{Interest, Ready};
use tokio::net::{TcpStream, UnixStream};

use crate::connect::{Peer, connect_tcp, connect_unix_stream, wrong_peer};

/// What a connection needs from its socket: reads and writes that never wait (`WouldBlock`
/// when they cannot go on).
pub(crate) trait Wire {
    /// Reads what has arrived; `Ok(0)` at the end of the stream. A read shorter than `buf`
    /// means the socket had no more.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes some of `bufs`.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
}

/// A [`Wire`] a tokio task can wait on.
pub(crate) trait AsyncWire: Wire {
    /// Waits until the connection is ready for `interest`.
    async fn ready(&mut self, interest: Interest) -> io::Result<Ready>;
}

impl AsyncWire for StreamSocket {
    async fn ready(&mut self, interest: Interest) -> io::Result<Ready> {
        StreamSocket::ready(self, interest).await
    }
}

impl Wire for StreamSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        StreamSocket::read(self, buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        StreamSocket::write_vectored(self, bufs)
    }
}

/// A connected stream socket.
#[derive(Debug)]
pub enum StreamSocket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl StreamSocket {
    /// Connects to `peer` (tcp or unix), from `source` if given.
    pub async fn connect(peer: &Peer, source: Option<IpAddr>) -> io::Result<StreamSocket> {
        match peer {
            Peer::Tcp(addr) => Ok(StreamSocket::Tcp(connect_tcp(*addr, source).await?)),
            Peer::Unix(path) => Ok(StreamSocket::Unix(connect_unix_stream(path).await?)),
            Peer::Tls(..) | Peer::Ws(..) | Peer::Udp(_) | Peer::UnixGram(_) => {
                Err(wrong_peer("a plain stream"))
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
    #[cfg(target_os = "linux")]
    pub fn into_fd(self) -> io::Result<std::os::fd::OwnedFd> {
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

pub(super) fn send_once(fd: impl AsFd, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
    use rustix::net::{SendAncillaryBuffer, sendmsg};
    // A peer that closed gives an error here, not a SIGPIPE.
    Ok(sendmsg(
        fd,
        bufs,
        &mut SendAncillaryBuffer::default(),
        crate::sys::socket::NO_SIGPIPE,
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
