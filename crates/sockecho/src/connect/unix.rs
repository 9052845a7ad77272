//! Reaching a Unix-domain endpoint: a socket file's path, or `@NAME` for a name in Linux's
//! abstract namespace, the same way the server binds them.

use std::io;
use std::path::Path;

use tokio::net::UnixStream;

use crate::endpoint::abstract_unix_name;

/// Connects a stream socket to `path`, or to the abstract name it stands for.
pub(crate) async fn connect_unix_stream(path: &Path) -> io::Result<UnixStream> {
    let Some(addr) = abstract_address(path)? else {
        return UnixStream::connect(path).await;
    };
    // std connects to abstract names, tokio does not; the connect only waits while the
    // server's backlog is full, off the runtime's threads.
    let stream =
        tokio::task::spawn_blocking(move || std::os::unix::net::UnixStream::connect_addr(&addr))
            .await
            .map_err(io::Error::other)??;
    stream.set_nonblocking(true)?;
    UnixStream::from_std(stream)
}

/// Connects a datagram socket to `path`, or to the abstract name it stands for.
pub(crate) fn connect_unix_datagram(
    socket: &std::os::unix::net::UnixDatagram,
    path: &Path,
) -> io::Result<()> {
    match abstract_address(path)? {
        Some(addr) => socket.connect_addr(&addr),
        None => socket.connect(path),
    }
}

fn abstract_address(path: &Path) -> io::Result<Option<std::os::unix::net::SocketAddr>> {
    abstract_unix_name(path)
        .map(crate::sys::unix_addr::abstract_address)
        .transpose()
}
