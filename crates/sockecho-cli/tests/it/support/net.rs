//! Raw sockets for talking to the server under test, each with [`WAIT`] as its read and write
//! timeout so a missing reply fails instead of hanging: connect and echo once, datagram peers,
//! connecting or sending from a chosen loopback address, closed ports, and telling a refused
//! connection from a served one.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::Path;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use super::WAIT;

/// A TCP connection with read and write timeouts, so a missing echo fails instead of hanging.
pub fn tcp_connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, WAIT)
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream.set_write_timeout(Some(WAIT)).expect("timeout");
    stream
}

/// A Unix stream connection with read and write timeouts.
pub fn unix_connect(path: &Path) -> UnixStream {
    let stream =
        UnixStream::connect(path).unwrap_or_else(|e| panic!("connect to {}: {e}", path.display()));
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream.set_write_timeout(Some(WAIT)).expect("timeout");
    stream
}

/// Writes `data` and reads back exactly as many bytes, asserting they are the same.
pub fn echo_once<S: Read + Write>(stream: &mut S, data: &[u8]) {
    stream.write_all(data).expect("write");
    let mut back = vec![0u8; data.len()];
    stream.read_exact(&mut back).expect("read the echo");
    assert_eq!(back, data, "echo differs from what was sent");
}

/// Echoes `data` through `stream` while reading the echo as it comes, so that no socket buffer
/// need hold the whole of it (a write-then-read of megabytes can stall when the kernel keeps
/// the buffers small, as it does under memory pressure from many tests at once).
pub fn echo_streaming(stream: &TcpStream, data: &[u8]) {
    let mut writer = stream.try_clone().expect("clone the stream");
    let mut reader = stream;
    std::thread::scope(|scope| {
        let sending = scope.spawn(move || writer.write_all(data).expect("write"));
        let mut back = vec![0u8; data.len()];
        reader.read_exact(&mut back).expect("read the echo");
        sending.join().expect("the writer finished");
        assert!(back == data, "echo differs from what was sent");
    });
}

/// A UDP socket bound to loopback of the same family as `server`, with a read timeout.
pub fn udp_peer(server: SocketAddr) -> UdpSocket {
    let local: SocketAddr = if server.is_ipv6() {
        "[::1]:0".parse().expect("literal")
    } else {
        "127.0.0.1:0".parse().expect("literal")
    };
    let socket = UdpSocket::bind(local).expect("bind udp");
    socket.set_read_timeout(Some(WAIT)).expect("timeout");
    socket
}

/// Sends one datagram and returns the reply from `server`, checking where it came from.
pub fn udp_exchange(socket: &UdpSocket, server: SocketAddr, data: &[u8]) -> Vec<u8> {
    socket.send_to(data, server).expect("send");
    let mut buf = vec![0u8; 70_000];
    let (n, from) = socket.recv_from(&mut buf).expect("receive the echo");
    assert_eq!(from, server, "reply came from elsewhere");
    buf.truncate(n);
    buf
}

/// A Unix datagram socket bound at `path` (so the server can reply), with a read timeout.
pub fn unixgram_peer(path: &Path) -> UnixDatagram {
    let socket = UnixDatagram::bind(path).expect("bind unixgram");
    socket.set_read_timeout(Some(WAIT)).expect("timeout");
    socket
}

/// A TCP address on 127.0.0.1 that was free a moment ago: bound, read back, released.
/// Connecting to it is refused.
pub fn closed_tcp_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local addr")
}

/// A UDP address on 127.0.0.1 with nothing bound to it (bound, read back, released).
pub fn closed_udp_port() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.local_addr().expect("local addr")
}

/// How long a dropped datagram is given to show up anyway before the test calls it dropped.
pub const QUIET: Duration = Duration::from_millis(300);

pub fn ip(text: &str) -> IpAddr {
    text.parse()
        .unwrap_or_else(|e| panic!("{text:?} is not an address: {e}"))
}

/// A TCP connection to `server` from `local` (any port), with read and write timeouts. Any
/// 127.x.y.z address works as a source on Linux loopback without configuration.
pub fn tcp_connect_from(local: IpAddr, server: SocketAddr) -> TcpStream {
    let socket = Socket::new(
        Domain::for_address(server),
        Type::STREAM,
        Some(Protocol::TCP),
    )
    .expect("tcp socket");
    socket
        .bind(&SocketAddr::new(local, 0).into())
        .unwrap_or_else(|e| panic!("bind a client socket to {local}: {e}"));
    socket
        .connect_timeout(&server.into(), WAIT)
        .unwrap_or_else(|e| panic!("connect from {local} to {server}: {e}"));
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream.set_write_timeout(Some(WAIT)).expect("timeout");
    stream
}

/// Asserts the server closed `stream` without serving it: a write is never echoed, and the
/// read ends in EOF or a reset (not a timeout).
pub fn assert_closed_unserved(stream: &mut TcpStream, what: &str) {
    // The write may already fail if the close has arrived; either way the read tells.
    let _ = stream.write_all(b"anyone there?");
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
            ) => {}
        Ok(n) => panic!("{what}: expected a refused connection, got {:?}", &buf[..n]),
        Err(e) => panic!("{what}: expected a refused connection, but it stayed open: {e}"),
    }
}

/// A UDP socket bound to `local` (any port), with a read timeout.
pub fn udp_from(local: IpAddr) -> UdpSocket {
    let socket = UdpSocket::bind(SocketAddr::new(local, 0))
        .unwrap_or_else(|e| panic!("bind a UDP socket to {local}: {e}"));
    socket.set_read_timeout(Some(WAIT)).expect("timeout");
    socket
}

/// Asserts nothing arrives on `socket` within [`QUIET`].
pub fn assert_no_datagram(socket: &UdpSocket, what: &str) {
    socket.set_read_timeout(Some(QUIET)).expect("timeout");
    let mut buf = [0u8; 2048];
    match socket.recv_from(&mut buf) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        Ok((n, from)) => panic!("{what}: expected no reply, got {:?} from {from}", &buf[..n]),
        Err(e) => panic!("{what}: expected no reply, got an error: {e}"),
    }
    socket.set_read_timeout(Some(WAIT)).expect("timeout");
}

/// Every datagram already queued on `socket`, without waiting for more.
pub fn queued_datagrams(socket: &UdpSocket) -> Vec<Vec<u8>> {
    socket.set_nonblocking(true).expect("nonblocking");
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    loop {
        match socket.recv(&mut buf) {
            Ok(n) => got.push(buf[..n].to_vec()),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("receive: {e}"),
        }
    }
    socket.set_nonblocking(false).expect("blocking");
    got
}
