//! Socket creation, send flags and the questions asked of an inherited socket, where the Unix
//! systems differ.

use std::io;

use std::os::fd::AsFd;

use rustix::net::{AddressFamily, SendFlags};
use socket2::{Domain, Protocol, Socket, Type};

/// Send flags that make a write to a peer that has gone an `EPIPE` error rather than a
/// `SIGPIPE`. Apple's systems have no such flag: there the socket option `SO_NOSIGPIPE`, which
/// socket2, std and mio set on the sockets they create, does the same, and Rust programs ignore
/// `SIGPIPE` anyway.
#[cfg(not(target_vendor = "apple"))]
pub(crate) const NO_SIGPIPE: SendFlags = SendFlags::NOSIGNAL;
#[cfg(target_vendor = "apple")]
pub(crate) const NO_SIGPIPE: SendFlags = SendFlags::empty();

/// A non-blocking, close-on-exec socket: made so in one call where the system allows it.
pub(crate) fn nonblocking(domain: Domain, ty: Type, protocol: Protocol) -> io::Result<Socket> {
    #[cfg(any(
        target_os = "linux",
        target_os = "android",
        target_os = "freebsd",
        target_os = "netbsd",
        target_os = "openbsd",
        target_os = "dragonfly"
    ))]
    {
        Socket::new(domain, ty.nonblocking().cloexec(), Some(protocol))
    }
    #[cfg(not(any(
        target_os = "linux",
        target_os = "android",
        target_os = "freebsd",
        target_os = "netbsd",
        target_os = "openbsd",
        target_os = "dragonfly"
    )))]
    {
        // socket2 sets close-on-exec itself here.
        let socket = Socket::new(domain, ty, Some(protocol))?;
        socket.set_nonblocking(true)?;
        Ok(socket)
    }
}

/// The address family of socket `fd`: `SO_DOMAIN` where the system has it, else the family of
/// the address it is bound to.
pub(crate) fn family(fd: impl AsFd) -> Result<AddressFamily, rustix::io::Errno> {
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    {
        rustix::net::sockopt::socket_domain(fd)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    {
        Ok(rustix::net::getsockname(fd)?.address_family())
    }
}

/// Whether stream socket `fd` is listening (`SO_ACCEPTCONN`). Systems where rustix cannot ask
/// answer yes: `accept` then reports a socket that is not listening.
pub(crate) fn is_listening(fd: impl AsFd) -> Result<bool, rustix::io::Errno> {
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    {
        rustix::net::sockopt::socket_acceptconn(fd)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    {
        let _ = fd;
        Ok(true)
    }
}
