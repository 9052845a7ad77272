//! The PROXY protocol (HAProxy's, versions 1 and 2): the header a load balancer puts in front of
//! a proxied TCP connection to say who the real client is.
//!
//! - [`parse`] frames and decodes a header from the first bytes of a connection, telling an
//!   incomplete header (read more) from one that can never become valid.
//! - [`read`] takes a header off a TCP socket without consuming a byte past it, so whatever the
//!   client sent after the header stays in the socket for the echo (or the TLS handshake).
//! - [`send`] writes a header after connecting, for the clients that test a PROXY-speaking
//!   backend.
//! - `header` holds what they share: the decoded [`ProxyHeader`], its [`Version`], the length
//!   limits and [`HeaderError`].
//! - [`recent`] keeps the last headers a server took, to be shown out of band.
//!
//! Decoding of the wire format is the `proxy-header` crate's; this module adds the limits an
//! untrusted sender must not exceed and the owned view the server logs.

mod encode;
mod header;
mod parse;
pub mod read;
pub mod recent;
pub mod send;

pub use encode::EncodeError;
pub use header::{Addresses, HeaderError, MAX_V1_LEN, MAX_V2_LEN, ProxyHeader, Version};
pub use parse::{frame_len, parse, starts_with_signature};
pub use send::SendProxy;
