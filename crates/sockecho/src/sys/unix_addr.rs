//! Unix socket addresses, where Linux and other systems differ: Linux has an abstract namespace
//! (names that are no file, `@NAME` in endpoints), which the server may bind, clients may reach
//! and datagram clients bind to be replied to.

use std::io;
use std::os::unix::net::SocketAddr;

/// A unique address for one client datagram socket, so the server has somewhere to reply. On
/// Linux an abstract name, so no file is left behind; the clock's nanoseconds keep apart
/// processes of other PID namespaces that share this network namespace and may have the same
/// process id. Elsewhere a path in the temporary directory.
pub(crate) fn client_address() -> io::Result<SocketAddr> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = format!(
        "sockecho-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    #[cfg(target_os = "linux")]
    {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(name.as_bytes())
    }
    #[cfg(not(target_os = "linux"))]
    {
        SocketAddr::from_pathname(std::env::temp_dir().join(name))
    }
}

/// The address of abstract name `name`. Only Linux has them: elsewhere an error says so.
pub(crate) fn abstract_address(name: &[u8]) -> io::Result<SocketAddr> {
    #[cfg(target_os = "linux")]
    {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(name)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = name;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "abstract Unix socket names (@NAME) need Linux",
        ))
    }
}

/// The abstract name `addr` is bound to, if it is one (never, off Linux).
pub(crate) fn abstract_name(addr: &SocketAddr) -> Option<&[u8]> {
    #[cfg(target_os = "linux")]
    {
        use std::os::linux::net::SocketAddrExt;
        addr.as_abstract_name()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = addr;
        None
    }
}

/// Where to send a reply: the sender's path or (on Linux) abstract name. An unbound sender has
/// neither.
pub(crate) fn reply_address(peer: &SocketAddr) -> Option<rustix::net::SocketAddrUnix> {
    if let Some(path) = peer.as_pathname() {
        return rustix::net::SocketAddrUnix::new(path).ok();
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::linux::net::SocketAddrExt;
        peer.as_abstract_name()
            .and_then(|name| rustix::net::SocketAddrUnix::new_abstract_name(name).ok())
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// Abstract name `name` as a connect takes it: rustix's form for the `connect` call, socket2's
/// for an io_uring connect request, which points at the raw address.
#[cfg(target_os = "linux")]
pub(crate) fn abstract_connect_addresses(
    name: &[u8],
) -> io::Result<(rustix::net::SocketAddrUnix, socket2::SockAddr)> {
    use std::os::unix::ffi::OsStrExt;
    // socket2 takes an abstract name as a path whose first byte is NUL.
    let mut raw = Vec::with_capacity(name.len() + 1);
    raw.push(0u8);
    raw.extend_from_slice(name);
    let sockaddr = socket2::SockAddr::unix(std::ffi::OsStr::from_bytes(&raw))?;
    Ok((
        rustix::net::SocketAddrUnix::new_abstract_name(name)?,
        sockaddr,
    ))
}
