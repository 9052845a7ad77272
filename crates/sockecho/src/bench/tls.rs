//! TLS connections for a run: one client configuration that every connection shares, the
//! handshake as part of opening a connection (so it counts in the connect time), and the view of
//! a TLS stream that the stream connection loop drives.
//!
//! The plain stream path reads and writes its socket directly. A TLS connection cannot: rustls
//! sits between the messages and the socket, buffering records both ways. [`TlsSocket`] offers
//! the loop the same three operations ([`Wire`]) through tokio-rustls' `AsyncRead` and
//! `AsyncWrite`: a read or a write is one poll that must not wait, so `Pending` means
//! `WouldBlock`, and all waiting happens in [`AsyncWire::ready`], which also sends whatever records
//! rustls still holds. Verification, pipelining and latency are the plain path's, unchanged.

use std::fmt;
use std::io::{self, IoSlice};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf, Ready};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::connect::connect_tcp;
use super::stream::{AsyncWire, Wire};
use crate::Host;
use crate::client::ConnectOptions;
use crate::net_error::describe_connect_error;
use crate::tls::{TlsError, client_connector, describe_handshake_error, server_name};

/// How every connection of a run sets up TLS. Cheap to clone: the configuration is shared.
#[derive(Clone)]
pub struct TlsClient {
    /// The trust decision (system roots, CA file, pin or none). Built once per run, because
    /// loading the system roots reads many files.
    connector: TlsConnector,
    /// Sent in SNI and checked against the certificate: the endpoint's host as the user wrote
    /// it, not the address it resolved to.
    name: ServerName<'static>,
    /// How long one handshake may take.
    handshake_timeout: Duration,
}

impl TlsClient {
    /// The client for connections to `host`, trusting what `options` say.
    pub fn new(host: &Host, options: &ConnectOptions) -> Result<TlsClient, TlsError> {
        Ok(TlsClient {
            connector: client_connector(&options.tls)?,
            name: server_name(&host.to_string())?,
            handshake_timeout: options.tls_handshake_timeout,
        })
    }

    /// Connects to `addr` (from `source` if given) and completes the handshake. The error is
    /// one line saying what failed.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        source: Option<IpAddr>,
    ) -> Result<TlsSocket, String> {
        let tcp = connect_tcp(addr, source)
            .await
            .map_err(|e| describe_connect_error(&e))?;
        self.handshake(tcp).await
    }

    /// Completes the handshake on a connected socket, within the handshake timeout.
    pub async fn handshake(&self, tcp: TcpStream) -> Result<TlsSocket, String> {
        let handshake = self.connector.connect(self.name.clone(), tcp);
        match tokio::time::timeout(self.handshake_timeout, handshake).await {
            Ok(Ok(stream)) => Ok(TlsSocket {
                stream: Box::new(stream),
            }),
            Ok(Err(e)) => Err(format!(
                "TLS handshake failed: {}",
                describe_handshake_error(&e)
            )),
            Err(_) => Err(format!(
                "TLS handshake timed out after {:?} — does the server speak TLS?",
                self.handshake_timeout
            )),
        }
    }
}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClient")
            .field("name", &self.name)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

/// An open TLS connection of a run.
#[derive(Debug)]
pub struct TlsSocket {
    /// Boxed: a TLS session is over a kilobyte, and a thread keeps its connections, plain ones
    /// too, in one list until the run starts.
    stream: Box<TlsStream<TcpStream>>,
}

impl TlsSocket {
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
