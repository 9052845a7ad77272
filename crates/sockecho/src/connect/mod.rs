//! Reaching a server: the one place the clients, ping and the load generator open sockets, so
//! name resolution, source binding, the TLS handshake and its error texts are written once.
//!
//! - `resolve.rs`: [`resolve`](fn@resolve), an endpoint's host to the addresses to try.
//! - `tcp.rs`: [`connect_tcp`], a TCP connection from a source address if asked,
//!   [`connect_first`], the first of several addresses that accepts, and
//!   [`send_proxy_header`], the PROXY protocol header some servers expect first.
//! - `tls.rs`: [`ConnectOptions`] and [`TlsClient`], the trust decision made once and the
//!   handshake under its timeout; `last_session.rs`: what a client that resumes sessions
//!   remembers between its connections.
//! - `boxed.rs`: [`BoxStream`], a connected stream of any transport behind one type;
//!   `framing.rs`: [`Framing`], how writes become WebSocket messages.
//! - `stream.rs`: [`connect_stream_with`], a stream endpoint of any transport (TCP, TLS,
//!   WebSocket, Unix) as one [`BoxStream`].
//! - `ws.rs`: [`WsClient`], TCP, TLS for `wss://` and the WebSocket upgrade, and [`WsStream`],
//!   a WebSocket read and written as a byte stream.
//! - `peer.rs`: [`Peer`], the resolved address every socket of a session talks to.
//! - `datagram.rs`: [`DatagramSocket`], connected UDP and Unix datagram sockets (the latter
//!   bound to a unique abstract name so the server can reply).
//! - `probe.rs`: [`probe_datagram`], whether a datagram endpoint echoes at all.
//! - `unix.rs`: Unix sockets by path, or by `@NAME` in the abstract namespace.
//!
//! Failures are [`ConnectError`]s: the endpoint, and one line saying what went wrong.

mod boxed;
mod datagram;
mod error;
mod framing;
mod last_session;
mod peer;
mod probe;
mod resolve;
mod stream;
mod tcp;
mod tls;
mod unix;
mod ws;

pub use boxed::{BoxStream, ByteStream};
pub use datagram::{DatagramSocket, MAX_UDP_SIZE, udp_segmentation_supported};
pub use error::ConnectError;
pub use framing::Framing;
pub use peer::Peer;
pub(crate) use peer::wrong_peer;
pub use probe::probe_datagram;
pub use resolve::resolve;
pub use stream::{connect_stream, connect_stream_with};
pub use tcp::{connect_first, connect_tcp, send_proxy_header};
pub use tls::{ConnectOptions, TlsClient};
pub(crate) use unix::connect_unix_stream;
pub(crate) use ws::into_io as ws_error_into_io;
pub use ws::{WsClient, WsConnection, WsStream};
