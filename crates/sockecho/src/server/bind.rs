//! Opening listening sockets for each endpoint, with errors that name the endpoint.
//!
//! Unix socket paths get special care: a stale socket file (nobody listening) is replaced, a
//! live one is "address in use", and a file that is not a socket is never touched. The files
//! this server creates are removed when it stops. A path written `@NAME` is a name in Linux's
//! abstract namespace instead, with no file at all.

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use socket2::{Domain, Protocol, Type};
use tokio::net::{TcpListener, UdpSocket, UnixDatagram, UnixListener};

use crate::endpoint::{Endpoint, Host, HostPort, Transport, abstract_unix_name};
use crate::net_error::describe_bind_error;

/// Listen backlog; the kernel caps it at `net.core.somaxconn`.
const BACKLOG: i32 = 65_535;
/// Requested UDP socket buffer size.
const UDP_SOCKET_BUFFER: usize = 4 << 20;

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// An endpoint could not be bound.
    #[error("cannot listen on {endpoint}: {problem}")]
    Listen {
        endpoint: Endpoint,
        /// What went wrong and what to do about it.
        problem: String,
        /// The OS error behind it, when there is one.
        io: Option<io::Error>,
    },
    /// The TLS certificate could not be made or loaded.
    #[error("cannot set up TLS: {0}")]
    Tls(#[source] crate::tls::TlsError),
    /// An inherited socket (e.g. from systemd socket activation) is not one the server can
    /// serve — not listening, of another kind than it claims — or could not be set up. This is
    /// a mistake of whoever passed the socket, so the CLI treats it as a usage error.
    #[error("cannot serve inherited file descriptor {fd}: {problem}")]
    Inherited {
        /// The descriptor number as passed, e.g. 3 for the first socket-activation socket.
        fd: i32,
        /// What is wrong with it and what to do about it.
        problem: String,
        /// The OS error behind it, when there is one.
        #[source]
        io: Option<io::Error>,
    },
    /// `--io uring` was asked for, and this kernel or sandbox does not allow io_uring.
    #[error(
        "io_uring is not available here: it needs Linux 6.12 or later and is often blocked \
         in containers — use --io epoll (or auto)"
    )]
    IoUring(#[source] io::Error),
}

impl ServeError {
    fn io(endpoint: &Endpoint, err: io::Error) -> ServeError {
        ServeError::Listen {
            endpoint: endpoint.clone(),
            problem: describe_bind_error(endpoint, &err),
            io: Some(err),
        }
    }

    fn other(endpoint: &Endpoint, problem: impl Into<String>) -> ServeError {
        ServeError::Listen {
            endpoint: endpoint.clone(),
            problem: problem.into(),
            io: None,
        }
    }
}

/// A bound socket with the endpoint it is bound to.
#[derive(Debug)]
pub(crate) struct Listener {
    pub(crate) socket: Socket,
    /// The actual bound address, e.g. the real port for port 0.
    pub(crate) endpoint: Endpoint,
    /// Removes the Unix socket file when dropped.
    pub(crate) path_guard: Option<SocketFileGuard>,
}

#[derive(Debug)]
pub(crate) enum Socket {
    Stream(StreamListener),
    Udp(UdpSocket),
    UnixGram(UnixDatagram),
}

#[derive(Debug)]
pub(crate) enum StreamListener {
    Tcp(TcpListener),
    /// TCP whose connections start with a TLS handshake.
    Tls(TcpListener),
    Unix(UnixListener),
}

/// A bound socket detached from any runtime, so that worker threads can each register a
/// duplicate of it with their own runtime.
#[derive(Debug)]
pub(crate) enum StdSocket {
    Tcp(std::net::TcpListener),
    Tls(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
    Udp(std::net::UdpSocket),
    UnixGram(std::os::unix::net::UnixDatagram),
}

impl StreamListener {
    /// Sets `TCP_NODELAY` on a TCP listener, so that the connections it accepts start with it:
    /// Linux copies a listener's options to each connection it accepts, which saves a system
    /// call per connection. (Elsewhere the accept loop sets it on each connection.) Echoes are
    /// small and interactive: each one goes out at once.
    pub(crate) fn set_nodelay_for_accepted(&self) {
        let listener = match self {
            StreamListener::Tcp(l) | StreamListener::Tls(l) => l,
            StreamListener::Unix(_) => return,
        };
        if let Err(e) = socket2::SockRef::from(listener).set_tcp_nodelay(true) {
            tracing::debug!("TCP_NODELAY on a listener: {e}");
        }
    }

    /// The listening descriptor, taken out of the runtime (for the io_uring engine to accept
    /// on). It stays non-blocking.
    pub(crate) fn into_fd(self) -> io::Result<std::os::fd::OwnedFd> {
        self.set_nodelay_for_accepted();
        Ok(match self {
            StreamListener::Tcp(l) | StreamListener::Tls(l) => l.into_std()?.into(),
            StreamListener::Unix(l) => l.into_std()?.into(),
        })
    }

    /// A listener given back by the io_uring engine, registered with the current runtime again.
    pub(crate) fn from_fd(fd: std::os::fd::OwnedFd, endpoint: &Endpoint) -> io::Result<Self> {
        Ok(match endpoint {
            Endpoint::Unix(_) => StreamListener::Unix(UnixListener::from_std(fd.into())?),
            Endpoint::Tls(_) | Endpoint::Wss(_) => {
                StreamListener::Tls(TcpListener::from_std(fd.into())?)
            }
            _ => StreamListener::Tcp(TcpListener::from_std(fd.into())?),
        })
    }
}

impl Socket {
    pub(crate) fn into_std(self) -> io::Result<StdSocket> {
        Ok(match self {
            Socket::Stream(StreamListener::Tcp(l)) => StdSocket::Tcp(l.into_std()?),
            Socket::Stream(StreamListener::Tls(l)) => StdSocket::Tls(l.into_std()?),
            Socket::Stream(StreamListener::Unix(l)) => StdSocket::Unix(l.into_std()?),
            Socket::Udp(s) => StdSocket::Udp(s.into_std()?),
            Socket::UnixGram(s) => StdSocket::UnixGram(s.into_std()?),
        })
    }
}

impl StdSocket {
    /// A duplicate descriptor of the same socket, registered with the current runtime.
    pub(crate) fn clone_into_runtime(&self) -> io::Result<Socket> {
        Ok(match self {
            StdSocket::Tcp(l) => {
                Socket::Stream(StreamListener::Tcp(TcpListener::from_std(l.try_clone()?)?))
            }
            StdSocket::Tls(l) => {
                Socket::Stream(StreamListener::Tls(TcpListener::from_std(l.try_clone()?)?))
            }
            StdSocket::Unix(l) => Socket::Stream(StreamListener::Unix(UnixListener::from_std(
                l.try_clone()?,
            )?)),
            StdSocket::Udp(s) => Socket::Udp(UdpSocket::from_std(s.try_clone()?)?),
            StdSocket::UnixGram(s) => Socket::UnixGram(UnixDatagram::from_std(s.try_clone()?)?),
        })
    }
}

/// An already bound socket handed to the server, e.g. by systemd socket activation.
#[derive(Debug)]
pub enum InheritedSocket {
    Tcp(std::net::TcpListener),
    Udp(std::net::UdpSocket),
    Unix(std::os::unix::net::UnixListener),
    UnixGram(std::os::unix::net::UnixDatagram),
}

impl InheritedSocket {
    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        match self {
            InheritedSocket::Tcp(l) => l.as_fd(),
            InheritedSocket::Udp(s) => s.as_fd(),
            InheritedSocket::Unix(l) => l.as_fd(),
            InheritedSocket::UnixGram(s) => s.as_fd(),
        }
    }

    /// Checks that the socket is what its variant says — family, type, and for stream
    /// sockets, listening — so that a wrong socket fails at startup with its descriptor named,
    /// instead of making every `accept` fail later.
    fn check(&self) -> Result<(), String> {
        use rustix::net::{AddressFamily, SocketType, sockopt};
        let fd = self.fd();
        let (families, ty, kind): (&[AddressFamily], SocketType, &str) = match self {
            InheritedSocket::Tcp(_) => (
                &[AddressFamily::INET, AddressFamily::INET6],
                SocketType::STREAM,
                "a TCP socket",
            ),
            InheritedSocket::Udp(_) => (
                &[AddressFamily::INET, AddressFamily::INET6],
                SocketType::DGRAM,
                "a UDP socket",
            ),
            InheritedSocket::Unix(_) => (
                &[AddressFamily::UNIX],
                SocketType::STREAM,
                "a Unix stream socket",
            ),
            InheritedSocket::UnixGram(_) => (
                &[AddressFamily::UNIX],
                SocketType::DGRAM,
                "a Unix datagram socket",
            ),
        };
        let not_socket = |e: rustix::io::Errno| format!("not a socket ({e})");
        let family = crate::sys::socket::family(fd).map_err(not_socket)?;
        let actual = sockopt::socket_type(fd).map_err(not_socket)?;
        if !families.contains(&family) || actual != ty {
            return Err(format!("not {kind}"));
        }
        if ty == SocketType::STREAM
            && !crate::sys::socket::is_listening(fd).map_err(|e| format!("cannot query it: {e}"))?
        {
            return Err(format!(
                "{kind} that is not listening (bound without listen(), or connected); pass a \
                 listening socket (systemd: ListenStream=)"
            ));
        }
        Ok(())
    }
}

/// Registers an inherited socket with the runtime, after checking it is one the server can
/// serve. Its file, if any, belongs to whoever made it and is left alone at shutdown.
pub(crate) fn adopt(socket: InheritedSocket) -> Result<Listener, ServeError> {
    use std::os::fd::AsRawFd;
    let fd = socket.fd().as_raw_fd();
    socket.check().map_err(|problem| ServeError::Inherited {
        fd,
        problem,
        io: None,
    })?;
    register_inherited(socket).map_err(|e| ServeError::Inherited {
        fd,
        problem: format!("cannot register it with the runtime: {e}"),
        io: Some(e),
    })
}

fn register_inherited(socket: InheritedSocket) -> io::Result<Listener> {
    let (socket, endpoint) = match socket {
        InheritedSocket::Tcp(l) => {
            l.set_nonblocking(true)?;
            let endpoint = Endpoint::inet(Transport::Tcp, l.local_addr()?);
            (
                Socket::Stream(StreamListener::Tcp(TcpListener::from_std(l)?)),
                endpoint,
            )
        }
        InheritedSocket::Udp(s) => {
            s.set_nonblocking(true)?;
            super::datagram::receive_coalesced(&s);
            let endpoint = Endpoint::inet(Transport::Udp, s.local_addr()?);
            (Socket::Udp(UdpSocket::from_std(s)?), endpoint)
        }
        InheritedSocket::Unix(l) => {
            l.set_nonblocking(true)?;
            let endpoint = Endpoint::Unix(unix_path(&l.local_addr()?));
            (
                Socket::Stream(StreamListener::Unix(UnixListener::from_std(l)?)),
                endpoint,
            )
        }
        InheritedSocket::UnixGram(s) => {
            s.set_nonblocking(true)?;
            let endpoint = Endpoint::UnixGram(unix_path(&s.local_addr()?));
            (Socket::UnixGram(UnixDatagram::from_std(s)?), endpoint)
        }
    };
    Ok(Listener {
        socket,
        endpoint,
        path_guard: None,
    })
}

/// How an inherited Unix socket's address is shown: its path, or `@NAME` for an abstract name.
fn unix_path(addr: &std::os::unix::net::SocketAddr) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    if let Some(path) = addr.as_pathname() {
        return path.to_owned();
    }
    match crate::sys::unix_addr::abstract_name(addr) {
        Some(name) => PathBuf::from(std::ffi::OsStr::from_bytes(&[b"@", name].concat())),
        None => PathBuf::from("(unnamed)"),
    }
}

/// Binds one endpoint. A host that stands for several addresses (`*`, `localhost`) gives one
/// listener per address; with port 0 they all share the port the first one got.
pub(crate) async fn bind(endpoint: &Endpoint) -> Result<Vec<Listener>, ServeError> {
    match endpoint {
        Endpoint::Tcp(hp) | Endpoint::Udp(hp) | Endpoint::Tls(hp) => {
            bind_host_port(endpoint, hp).await
        }
        Endpoint::Ws(target) | Endpoint::Wss(target) => {
            bind_host_port(endpoint, &target.addr).await
        }
        Endpoint::Unix(path) if abstract_unix_name(path).is_some() => {
            let addr = abstract_address(endpoint, path)?;
            let listener = std::os::unix::net::UnixListener::bind_addr(&addr)
                .and_then(|l| {
                    l.set_nonblocking(true)?;
                    UnixListener::from_std(l)
                })
                .map_err(|e| ServeError::io(endpoint, e))?;
            Ok(vec![Listener {
                path_guard: None,
                socket: Socket::Stream(StreamListener::Unix(listener)),
                endpoint: endpoint.clone(),
            }])
        }
        Endpoint::UnixGram(path) if abstract_unix_name(path).is_some() => {
            let addr = abstract_address(endpoint, path)?;
            let socket = std::os::unix::net::UnixDatagram::bind_addr(&addr)
                .and_then(|s| {
                    s.set_nonblocking(true)?;
                    UnixDatagram::from_std(s)
                })
                .map_err(|e| ServeError::io(endpoint, e))?;
            grow_unixgram_send_buffer(&socket);
            Ok(vec![Listener {
                path_guard: None,
                socket: Socket::UnixGram(socket),
                endpoint: endpoint.clone(),
            }])
        }
        Endpoint::Unix(path) => {
            prepare_unix_path(endpoint, path, Transport::Unix)?;
            let listener = UnixListener::bind(path).map_err(|e| ServeError::io(endpoint, e))?;
            Ok(vec![Listener {
                path_guard: Some(SocketFileGuard::new(path)),
                socket: Socket::Stream(StreamListener::Unix(listener)),
                endpoint: endpoint.clone(),
            }])
        }
        Endpoint::UnixGram(path) => {
            prepare_unix_path(endpoint, path, Transport::UnixGram)?;
            let socket = UnixDatagram::bind(path).map_err(|e| ServeError::io(endpoint, e))?;
            grow_unixgram_send_buffer(&socket);
            Ok(vec![Listener {
                path_guard: Some(SocketFileGuard::new(path)),
                socket: Socket::UnixGram(socket),
                endpoint: endpoint.clone(),
            }])
        }
    }
}

/// Binds a TCP, UDP, TLS or WebSocket endpoint at each address its host stands for.
async fn bind_host_port(endpoint: &Endpoint, hp: &HostPort) -> Result<Vec<Listener>, ServeError> {
    let addrs = hp.resolve().await.map_err(|e| {
        ServeError::other(
            endpoint,
            format!(
                "cannot resolve host {}: {}",
                hp.host,
                crate::net_error::plain(&e)
            ),
        )
    })?;
    if hp.host == Host::Any {
        return bind_any(endpoint, addrs).await;
    }
    let mut out: Vec<Listener> = Vec::new();
    for mut addr in addrs {
        if let Some(first) = out.first()
            && addr.port() == 0
        {
            addr.set_port(first.endpoint.host_port().map_or(0, |hp| hp.port));
        }
        out.push(bind_inet(endpoint, addr, false).map_err(|e| ServeError::io(endpoint, e))?);
    }
    Ok(out)
}

/// Replies waiting in the receive queues of peers that do not read count against the server
/// socket's send buffer until they are read; a larger buffer lets more such peers sit there
/// before replies to the others start to be dropped. The kernel caps it at
/// net.core.wmem_max.
fn grow_unixgram_send_buffer(socket: &UnixDatagram) {
    if let Err(e) = socket2::SockRef::from(socket).set_send_buffer_size(UDP_SOCKET_BUFFER) {
        tracing::debug!("SO_SNDBUF on a Unix datagram socket: {e}");
    }
}

fn abstract_address(
    endpoint: &Endpoint,
    path: &Path,
) -> Result<std::os::unix::net::SocketAddr, ServeError> {
    let name = abstract_unix_name(path).unwrap_or_default();
    if name.is_empty() {
        return Err(ServeError::other(
            endpoint,
            "an abstract socket name needs at least one character after @",
        ));
    }
    crate::sys::unix_addr::abstract_address(name).map_err(|e| ServeError::io(endpoint, e))
}

/// All interfaces: one dual-stack IPv6 socket that also takes IPv4, or IPv4 alone where the
/// host has no IPv6.
async fn bind_any(
    endpoint: &Endpoint,
    addrs: Vec<SocketAddr>,
) -> Result<Vec<Listener>, ServeError> {
    let mut last_err = None;
    for addr in addrs {
        match bind_inet(endpoint, addr, true) {
            Ok(listener) => return Ok(vec![listener]),
            Err(e) if addr.is_ipv6() && is_no_ipv6(&e) => {
                tracing::debug!("IPv6 unavailable ({e}); listening on IPv4 only");
                last_err = Some(e);
            }
            Err(e) => return Err(ServeError::io(endpoint, e)),
        }
    }
    Err(ServeError::io(
        endpoint,
        last_err.unwrap_or_else(|| io::Error::other("no address to bind")),
    ))
}

fn is_no_ipv6(err: &io::Error) -> bool {
    use rustix::io::Errno;
    matches!(
        err.raw_os_error().map(Errno::from_raw_os_error),
        Some(Errno::AFNOSUPPORT | Errno::ADDRNOTAVAIL | Errno::PROTONOSUPPORT)
    )
}

fn bind_inet(endpoint: &Endpoint, addr: SocketAddr, dual_stack: bool) -> io::Result<Listener> {
    let transport = endpoint.transport();
    let domain = Domain::for_address(addr);
    let (ty, proto) = match transport {
        Transport::Udp => (Type::DGRAM, Protocol::UDP),
        _ => (Type::STREAM, Protocol::TCP),
    };
    let socket = crate::sys::socket::nonblocking(domain, ty, proto)?;
    if addr.is_ipv6() {
        socket.set_only_v6(!dual_stack)?;
    }
    let bound = if transport == Transport::Udp {
        // Room for bursts of large datagrams from many peers; the kernel caps these at
        // net.core.rmem_max / wmem_max, and a smaller buffer only means earlier drops.
        let _ = socket.set_recv_buffer_size(UDP_SOCKET_BUFFER);
        let _ = socket.set_send_buffer_size(UDP_SOCKET_BUFFER);
        super::datagram::receive_coalesced(&socket);
        socket.bind(&addr.into())?;
        let socket = UdpSocket::from_std(socket.into())?;
        let local = socket.local_addr()?;
        (Socket::Udp(socket), local)
    } else {
        // Lets a restarted server bind while old connections sit in TIME_WAIT.
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())?;
        socket.listen(BACKLOG)?;
        let listener = TcpListener::from_std(socket.into())?;
        let local = listener.local_addr()?;
        let listener = match transport {
            // WebSocket listeners accept like TCP and TLS ones; the endpoint says what follows.
            Transport::Tls | Transport::Wss => StreamListener::Tls(listener),
            _ => StreamListener::Tcp(listener),
        };
        (Socket::Stream(listener), local)
    };
    Ok(Listener {
        socket: bound.0,
        endpoint: endpoint.at(bound.1),
        path_guard: None,
    })
}

/// Makes `path` free for a new socket: removes a stale socket file, refuses a live socket or a
/// file of any other type.
fn prepare_unix_path(
    endpoint: &Endpoint,
    path: &Path,
    transport: Transport,
) -> Result<(), ServeError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ServeError::io(endpoint, e)),
    };
    if !meta.file_type().is_socket() {
        return Err(ServeError::other(
            endpoint,
            "the path exists and is not a socket; refusing to replace it (remove it or pick another path)",
        ));
    }
    let live = match transport {
        Transport::UnixGram => {
            let probe = std::os::unix::net::UnixDatagram::unbound()
                .map_err(|e| ServeError::io(endpoint, e))?;
            probe.connect(path)
        }
        _ => std::os::unix::net::UnixStream::connect(path).map(drop),
    };
    match live {
        Ok(()) => Err(ServeError::other(
            endpoint,
            "address already in use — another server is listening on this socket",
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!("removing stale socket file {}", path.display());
            std::fs::remove_file(path).map_err(|e| ServeError::io(endpoint, e))
        }
        // A socket of the other kind (stream vs datagram) answers "wrong type": it is in use by
        // something else, or at least not ours to remove.
        Err(e) => Err(ServeError::other(
            endpoint,
            format!(
                "a socket file is already there and could not be probed ({}); refusing to replace it",
                crate::net_error::plain(&e)
            ),
        )),
    }
}

/// Removes a Unix socket file on drop, but only if it is still the file this server created
/// (another process may have replaced it since).
#[derive(Debug)]
pub(crate) struct SocketFileGuard {
    path: PathBuf,
    identity: Option<(u64, u64)>,
}

impl SocketFileGuard {
    fn new(path: &Path) -> Self {
        SocketFileGuard {
            path: path.to_owned(),
            identity: file_identity(path),
        }
    }
}

fn file_identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

impl Drop for SocketFileGuard {
    fn drop(&mut self) {
        if self.identity.is_some()
            && file_identity(&self.path) == self.identity
            && let Err(e) = std::fs::remove_file(&self.path)
        {
            tracing::warn!("could not remove socket file {}: {e}", self.path.display());
        }
    }
}
