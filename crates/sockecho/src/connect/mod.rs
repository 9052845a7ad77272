//! Reaching a server: the one place the clients, ping and the load generator open sockets, so
//! name resolution, source binding, the TLS handshake and its error texts are written once.
//!
//! - [`resolve`]: an endpoint's host to the addresses to try.
//! - [`tcp`]: a TCP connection, from a source address if asked, and the first of several
//!   addresses that accepts.
//! - [`tls`]: [`ConnectOptions`] and [`TlsClient`], the trust decision made once and the
//!   handshake under its timeout.
//! - [`stream`]: a stream endpoint of any transport (TCP, TLS, Unix) as one [`BoxStream`].
//! - [`datagram`]: [`DatagramSocket`], connected UDP and Unix datagram sockets (the latter bound
//!   to a unique abstract name so the server can reply).
//! - [`peer`]: [`Peer`], the resolved address every socket of a session talks to.
//! - [`probe`]: whether a datagram endpoint echoes at all.
//!
//! Failures are [`ConnectError`]s: the endpoint, and one line saying what went wrong.

pub mod datagram;
mod error;
pub mod peer;
pub mod probe;
pub mod resolve;
pub mod stream;
pub mod tcp;
pub mod tls;

pub use datagram::DatagramSocket;
pub use error::ConnectError;
pub use peer::Peer;
pub use probe::probe_datagram;
pub use resolve::resolve;
pub use stream::{BoxStream, ByteStream, connect_stream, connect_stream_with};
pub use tls::{ConnectOptions, TlsClient};
