//! The view of a TLS connection that the stream connection loop drives. The connection itself,
//! handshake included (so it counts in the connect time), is opened by the run's one
//! [`TlsClient`](crate::connect::TlsClient).
//!
//! The plain stream path reads and writes its socket directly. A TLS connection cannot: rustls
//! sits between the messages and the socket, buffering records both ways. [`TlsSocket`] offers
//! the loop the same three operations ([`Wire`]) through tokio-rustls' `AsyncRead` and
//! `AsyncWrite`: a read or a write is one poll that must not wait, so `Pending` means
//! `WouldBlock`, and all waiting happens in [`AsyncWire::ready`], which also sends whatever records
//! rustls still holds. Verification, pipelining and latency are the plain path's, unchanged.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use rustls::HandshakeKind;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf, Ready};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::wire::{AsyncWire, Wire};

/// An open TLS connection of a run.
#[derive(Debug)]
pub struct TlsSocket {
    /// Boxed: a TLS session is over a kilobyte, and a thread keeps its connections, plain ones
    /// too, in one list until the run starts.
    stream: Box<TlsStream<TcpStream>>,
}

impl TlsSocket {
    pub fn new(stream: TlsStream<TcpStream>) -> TlsSocket {
        TlsSocket {
            stream: Box::new(stream),
        }
    }

    /// The TCP connection under the TLS session.
    pub fn tcp(&self) -> &TcpStream {
        self.stream.get_ref().0
    }

    /// Whether the handshake resumed an earlier session rather than making a full one.
    pub fn resumed(&self) -> bool {
        self.stream.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed)
    }

    /// Waits until reading may return data (or the end), or, with `interest` writable, until
    /// rustls takes more plaintext. Records rustls has sealed but not sent go out first whatever
    /// the caller waits for: the loop stops asking to write once rustls has taken every message,
    /// and the tail of the last one must still reach the server.
    fn poll_ready(&mut self, cx: &mut Context<'_>, interest: Interest) -> Poll<io::Result<Ready>> {
        let mut ready = Ready::EMPTY;
        if self.stream.get_ref().1.wants_write() {
            match Pin::new(&mut *self.stream).poll_flush(cx) {
                Poll::Ready(Ok(())) if interest.is_writable() => ready |= Ready::WRITABLE,
                Poll::Ready(Ok(())) | Poll::Pending => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            }
        } else if interest.is_writable() {
            // rustls' send buffer is empty, so it takes plaintext now.
            ready |= Ready::WRITABLE;
        }
        let (tcp, session) = self.stream.get_ref();
        if !session.wants_read() {
            // Decrypted bytes are waiting, or the server's close_notify came: a read returns at
            // once, whatever the socket says.
            ready |= Ready::READABLE;
        } else if interest.is_readable() {
            match tcp.poll_read_ready(cx) {
                Poll::Ready(Ok(())) => ready |= Ready::READABLE,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
        }
        if ready.is_empty() {
            Poll::Pending
        } else {
            Poll::Ready(Ok(ready))
        }
    }
}

/// One poll with a waker that does nothing: the loop learns `WouldBlock` and waits in
/// [`AsyncWire::ready`], which registers the real waker.
fn try_poll<T>(poll: impl FnOnce(&mut Context<'_>) -> Poll<io::Result<T>>) -> io::Result<T> {
    match poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(result) => result,
        Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
    }
}

impl AsyncWire for TlsSocket {
    async fn ready(&mut self, interest: Interest) -> io::Result<Ready> {
        std::future::poll_fn(|cx| self.poll_ready(cx, interest)).await
    }
}

impl Wire for TlsSocket {
    /// Reads decrypted bytes. tokio-rustls reads records until `buf` is full or the socket is
    /// empty, so a short read means the socket is drained, as on the plain path.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut buf = ReadBuf::new(buf);
        try_poll(|cx| Pin::new(&mut *self.stream).poll_read(cx, &mut buf))?;
        Ok(buf.filled().len())
    }

    /// Hands plaintext to rustls, which seals it and sends what the socket takes; the rest
    /// waits in rustls' buffer for [`AsyncWire::ready`] to send.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        try_poll(|cx| Pin::new(&mut *self.stream).poll_write_vectored(cx, bufs))
    }
}
