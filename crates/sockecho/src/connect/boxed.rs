//! [`BoxStream`]: a connected byte stream of any transport, boxed so that every transport looks
//! the same to the code that reads and writes it.

use tokio::io::{AsyncRead, AsyncWrite};

/// A connected byte stream of any transport.
pub trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ByteStream for T {}

/// A connected stream socket, boxed so every transport looks the same to the code using it.
pub type BoxStream = Box<dyn ByteStream>;
