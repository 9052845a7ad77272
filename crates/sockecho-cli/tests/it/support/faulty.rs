//! Small misbehaving echo servers (corrupting, truncating, lossy, stalling; a TLS one that never
//! lets a session resume), so the bench's and ping's error counts can be checked against a
//! known fault. Each runs on threads of its own
//! for the rest of the test process; its socket is bound to port 0 on loopback.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::thread;

/// A TCP server on 127.0.0.1 that runs `handler(stream, n)` on a thread for each connection,
/// `n` counting accepted connections from 0. The bench's reachability probe is connection 0.
pub fn tcp_server<F>(handler: F) -> SocketAddr
where
    F: Fn(TcpStream, usize) + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind test server");
    let addr = listener.local_addr().expect("local addr");
    let handler = Arc::new(handler);
    thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { continue };
            let handler = handler.clone();
            thread::spawn(move || handler(stream, n));
        }
    });
    addr
}

/// Echoes `stream` through `transform(chunk, offset)`, which may change the chunk; returns when
/// the peer closes.
pub fn echo_with(mut stream: TcpStream, mut transform: impl FnMut(&mut [u8], u64)) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; 64 * 1024];
    let mut offset = 0u64;
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        transform(&mut buf[..n], offset);
        offset += n as u64;
        if stream.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

/// A TLS echo server on 127.0.0.1 (a self-signed certificate; clients connect with
/// `--insecure`) that never lets a client resume: no session tickets, no session cache, as a
/// server may be configured.
pub fn tls_server_without_resumption() -> SocketAddr {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])
        .expect("make a certificate");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("rustls' default versions")
        .with_no_client_auth()
        .with_single_cert(vec![made.cert.der().clone()], key)
        .expect("a certificate and its key");
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    let config = Arc::new(config);
    tcp_server(move |stream, _| {
        let _ = stream.set_nodelay(true);
        let conn = rustls::ServerConnection::new(config.clone()).expect("a server connection");
        let mut tls = rustls::StreamOwned::new(conn, stream);
        let mut buf = vec![0u8; 64 * 1024];
        // The client closing, or resetting, ends the connection.
        while let Ok(n @ 1..) = tls.read(&mut buf) {
            if tls.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    })
}

/// A UDP server on 127.0.0.1: for the `n`th datagram received (from 0), `reply(data, n)` says
/// what to send back, if anything.
pub fn udp_server<F>(mut reply: F) -> SocketAddr
where
    F: FnMut(&[u8], usize) -> Option<Vec<u8>> + Send + 'static,
{
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind test server");
    let addr = socket.local_addr().expect("local addr");
    thread::spawn(move || {
        let mut buf = vec![0u8; 65_536];
        let mut n = 0;
        loop {
            let Ok((len, peer)) = socket.recv_from(&mut buf) else {
                continue;
            };
            if let Some(out) = reply(&buf[..len], n) {
                let _ = socket.send_to(&out, peer);
            }
            n += 1;
        }
    });
    addr
}
