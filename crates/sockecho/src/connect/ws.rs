//! WebSocket on a client connection: [`WsClient`], the one setup every connection of a session
//! shares (the upgrade request, and TLS for `wss://`), and [`WsStream`], a WebSocket seen as a
//! byte stream so the clients and ping use it like any other [`BoxStream`].
//!
//! The upgrade is part of connecting: a connection counts as open once the server answered
//! `101`, so connect times include TCP, TLS (for `wss://`) and the upgrade.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Bytes, Error as WsError, Message};

use super::boxed::BoxStream;
use super::error::ConnectError;
use super::framing::Framing;
use super::tcp::{connect_first, connect_tcp, send_proxy_header};
use super::tls::{ConnectOptions, TlsClient};
use crate::net_error::describe_connect_error;
use crate::proxy_protocol::SendProxy;
use crate::tls::TlsError;
use crate::{Endpoint, WsTarget};

/// An open WebSocket of a session, over TCP or TLS.
pub type WsConnection = WebSocketStream<BoxStream>;

/// How every WebSocket connection of a session is opened. Cheap to clone.
#[derive(Clone)]
pub struct WsClient {
    /// `ws://HOST:PORT/PATH` as the user wrote it: the `Host` header and the request target.
    /// Always `ws://`, as TLS is done here before the upgrade.
    uri: String,
    /// The TLS setup for `wss://`.
    tls: Option<TlsClient>,
    /// How long the upgrade may take once the connection is open.
    upgrade_timeout: Duration,
    send_proxy: Option<SendProxy>,
}

impl WsClient {
    /// The client for a `ws://` or `wss://` endpoint; `None` for any other.
    pub fn new(
        endpoint: &Endpoint,
        options: &ConnectOptions,
    ) -> Result<Option<WsClient>, TlsError> {
        let (target, tls) = match endpoint {
            Endpoint::Ws(target) => (target, None),
            Endpoint::Wss(target) => (target, Some(TlsClient::new(&target.addr.host, options)?)),
            _ => return Ok(None),
        };
        Ok(Some(WsClient {
            uri: request_uri(target),
            tls,
            upgrade_timeout: options.tls_handshake_timeout,
            send_proxy: options.send_proxy,
        }))
    }

    /// Connects to `addr` (from `source` if given), sets up TLS for `wss://`, and upgrades. The
    /// error is one line saying what failed.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        source: Option<IpAddr>,
    ) -> Result<WsConnection, String> {
        let mut tcp = connect_tcp(addr, source)
            .await
            .map_err(|e| describe_connect_error(&e))?;
        send_proxy_header(&mut tcp, self.send_proxy.as_ref()).await?;
        self.upgrade_on(tcp).await
    }

    /// Connects to the first of `addrs` that accepts, then TLS and the upgrade there.
    pub async fn connect_first(
        &self,
        endpoint: &Endpoint,
        addrs: Vec<SocketAddr>,
    ) -> Result<(WsConnection, SocketAddr), ConnectError> {
        let (mut tcp, addr) = connect_first(endpoint, addrs).await?;
        send_proxy_header(&mut tcp, self.send_proxy.as_ref())
            .await
            .map_err(|problem| ConnectError::new(endpoint, problem))?;
        let ws = self
            .upgrade_on(tcp)
            .await
            .map_err(|problem| ConnectError::new(endpoint, problem))?;
        Ok((ws, addr))
    }

    async fn upgrade_on(&self, tcp: tokio::net::TcpStream) -> Result<WsConnection, String> {
        let stream: BoxStream = match &self.tls {
            Some(tls) => Box::new(tls.handshake(tcp).await?),
            None => Box::new(tcp),
        };
        // The client never limits what it takes: the echo of its own messages.
        let config = WebSocketConfig::default()
            .max_message_size(None)
            .max_frame_size(None);
        let upgrade =
            tokio_tungstenite::client_async_with_config(self.uri.as_str(), stream, Some(config));
        match tokio::time::timeout(self.upgrade_timeout, upgrade).await {
            Ok(Ok((ws, _response))) => Ok(ws),
            Ok(Err(WsError::Http(response))) => Err(format!(
                "WebSocket upgrade refused: the server answered HTTP {}{}",
                response.status(),
                response
                    .body()
                    .as_deref()
                    .map(|body| format!(" ({})", String::from_utf8_lossy(body).trim()))
                    .unwrap_or_default()
            )),
            Ok(Err(e)) => Err(format!("WebSocket upgrade failed: {e}")),
            Err(_) => Err(format!(
                "no answer to the WebSocket upgrade within {:?} — does the server speak \
                 WebSocket on this path?",
                self.upgrade_timeout
            )),
        }
    }
}

impl fmt::Debug for WsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsClient")
            .field("uri", &self.uri)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

fn request_uri(target: &WsTarget) -> String {
    format!("ws://{}{}", target.addr, target.path)
}

/// A WebSocket read and written as a byte stream: what is written goes out as messages (cut
/// as [`Framing`] says), the payloads of the messages that come back are read in order, and
/// shutting down writes starts the close handshake. Pings are answered; the server's close
/// ends the stream.
pub struct WsStream {
    ws: WsConnection,
    framing: Framing,
    /// Lines: the start of a line whose newline has not been written yet.
    partial: Vec<u8>,
    /// Lines: for each message sent and not yet echoed, whether a newline followed it.
    newline_owed: VecDeque<bool>,
    /// The rest of the message being read.
    incoming: Bytes,
    /// Lines: whether a newline is still to be read after `incoming`.
    newline_due: bool,
    /// The server's close came, or the connection ended.
    ended: bool,
    /// Lines: a shutdown waiting for the echoes still due (see `poll_shutdown`).
    shutdown_waiting: Option<Waker>,
}

impl WsStream {
    pub fn new(ws: WsConnection, framing: Framing) -> WsStream {
        WsStream {
            ws,
            framing,
            partial: Vec::new(),
            newline_owed: VecDeque::new(),
            incoming: Bytes::new(),
            newline_due: false,
            ended: false,
            shutdown_waiting: None,
        }
    }

    /// Queues one message (the sink must be ready). Lines that are not UTF-8 go as binary.
    fn send(&mut self, data: Vec<u8>) -> io::Result<()> {
        let message = match self.framing {
            Framing::Writes => Message::Binary(data.into()),
            Framing::Lines => match String::from_utf8(data) {
                Ok(text) => Message::Text(text.into()),
                Err(e) => Message::Binary(e.into_bytes().into()),
            },
        };
        Pin::new(&mut self.ws).start_send(message).map_err(into_io)
    }

    fn poll_sink_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_ready(cx).map_err(into_io)
    }

    /// Sends what is queued as far as the socket takes it now; the rest goes at the next flush.
    fn push(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match Pin::new(&mut self.ws).poll_flush(cx) {
            Poll::Ready(Err(e)) => Err(into_io(e)),
            Poll::Ready(Ok(())) | Poll::Pending => Ok(()),
        }
    }
}

impl AsyncWrite for WsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.framing {
            Framing::Writes => {
                // One message at a time in tungstenite's buffer, so writes wait for the socket.
                ready!(Pin::new(&mut this.ws).poll_flush(cx)).map_err(into_io)?;
                ready!(this.poll_sink_ready(cx))?;
                this.send(buf.to_vec())?;
                this.push(cx)?;
                Poll::Ready(Ok(buf.len()))
            }
            Framing::Lines => {
                let mut taken = 0;
                while let Some(at) = buf[taken..].iter().position(|&b| b == b'\n') {
                    match this.poll_sink_ready(cx) {
                        Poll::Ready(result) => result?,
                        Poll::Pending if taken > 0 => break,
                        Poll::Pending => return Poll::Pending,
                    }
                    let mut line = std::mem::take(&mut this.partial);
                    line.extend_from_slice(&buf[taken..taken + at]);
                    this.send(line)?;
                    this.newline_owed.push_back(true);
                    taken += at + 1;
                }
                if !buf[taken..].contains(&b'\n') {
                    this.partial.extend_from_slice(&buf[taken..]);
                    taken = buf.len();
                }
                this.push(cx)?;
                Poll::Ready(Ok(taken))
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().ws)
            .poll_flush(cx)
            .map_err(into_io)
    }

    /// Sends an unfinished last line, then the close frame.
    ///
    /// WebSocket has no half-close: a server may answer a close at once and drop the echoes it
    /// has not sent yet (Python's `websockets` does). So with lines the close waits until every
    /// message sent has come back (or the connection ended), woken by the reading side.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.partial.is_empty() {
            ready!(this.poll_sink_ready(cx))?;
            let line = std::mem::take(&mut this.partial);
            this.send(line)?;
            this.newline_owed.push_back(false);
        }
        if this.framing == Framing::Lines && !this.newline_owed.is_empty() && !this.ended {
            ready!(Pin::new(&mut this.ws).poll_flush(cx)).map_err(into_io)?;
            this.shutdown_waiting = Some(cx.waker().clone());
            return Poll::Pending;
        }
        Pin::new(&mut this.ws).poll_close(cx).map_err(into_io)
    }
}

impl AsyncRead for WsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Messages a write queued and the socket did not take at once go out while waiting for
        // their echo: the tools write and then only read.
        this.push(cx)?;
        loop {
            if !this.incoming.is_empty() {
                let n = this.incoming.len().min(buf.remaining());
                buf.put_slice(&this.incoming.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if this.newline_due {
                if buf.remaining() == 0 {
                    return Poll::Ready(Ok(()));
                }
                this.newline_due = false;
                buf.put_slice(b"\n");
                return Poll::Ready(Ok(()));
            }
            let message = match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                None | Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => {
                    this.ended = true;
                    if let Some(shutdown) = this.shutdown_waiting.take() {
                        shutdown.wake();
                    }
                    return Poll::Ready(Ok(()));
                }
                Some(Err(e)) => return Poll::Ready(Err(into_io(e))),
                Some(Ok(message)) => message,
            };
            match message {
                Message::Text(_) | Message::Binary(_) => {
                    if this.framing == Framing::Lines {
                        // A message the client never sent (a greeting) reads as a line too.
                        this.newline_due = this.newline_owed.pop_front().unwrap_or(true);
                        if this.newline_owed.is_empty()
                            && let Some(shutdown) = this.shutdown_waiting.take()
                        {
                            shutdown.wake();
                        }
                    }
                    this.incoming = message.into_data();
                }
                // tungstenite answers pings itself; a close ends the stream at the next poll.
                Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_) => {}
            }
        }
    }
}

/// A WebSocket failure as an I/O error; I/O errors keep their kind.
pub(crate) fn into_io(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            io::Error::new(io::ErrorKind::BrokenPipe, "the WebSocket is closed")
        }
        other => io::Error::new(io::ErrorKind::InvalidData, other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HostPort;

    #[test]
    fn the_request_names_host_port_and_path() {
        let target = WsTarget {
            addr: HostPort {
                host: crate::Host::Name("localhost".into()),
                port: 8080,
            },
            path: "/echo?x=1".into(),
        };
        assert_eq!(request_uri(&target), "ws://localhost:8080/echo?x=1");
    }
}
