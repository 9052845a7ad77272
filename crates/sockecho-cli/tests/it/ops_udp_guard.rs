//! The UDP reflection guard: datagrams from the source ports of services that answer anything
//! (chargen 19, DNS 53, ...) are dropped and counted, so a spoofed datagram cannot set two echo
//! services bouncing it forever; `--no-reflection-guard` answers them. Ports below 1024 need
//! root to bind; where that is refused the port is skipped with a note.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};

use crate::support::{
    Metrics, Server, UDP_ECHOED, WAIT, assert_no_datagram, ip, queued_datagrams, udp_dropped,
    udp_exchange, udp_from,
};

/// A UDP socket on `addr`, or `None` (with a note) if this process may not bind it.
fn bind_source(addr: &str) -> Option<UdpSocket> {
    match UdpSocket::bind(addr) {
        Ok(socket) => {
            socket.set_read_timeout(Some(WAIT)).expect("timeout");
            Some(socket)
        }
        Err(e) if matches!(e.kind(), ErrorKind::PermissionDenied | ErrorKind::AddrInUse) => {
            eprintln!("note: cannot bind {addr} ({e}); skipping that source port");
            None
        }
        Err(e) => panic!("bind {addr}: {e}"),
    }
}

#[test]
fn datagrams_from_service_ports_are_dropped_by_default() {
    let server = Server::start(&["udp://127.0.0.1:0"], &["--metrics", "127.0.0.1:0"]);
    let metrics = Metrics::of(&server);
    let udp = server.udp();

    // Source addresses of their own (127.0.0.5), so no other test's port 19 collides. 11211
    // (memcached) needs no privilege, so the guard is exercised even without root.
    let sources: Vec<(String, UdpSocket)> = ["7", "19", "53", "123", "11211"]
        .into_iter()
        .map(|port| format!("127.0.0.5:{port}"))
        .filter_map(|addr| bind_source(&addr).map(|s| (addr, s)))
        .collect();
    assert!(!sources.is_empty(), "no service port could be bound");
    for (addr, socket) in &sources {
        socket
            .send_to(format!("from {addr}").as_bytes(), udp)
            .expect("send");
    }
    metrics.wait_values(&[
        (&udp_dropped("reflection_guard"), sources.len() as u64),
        (UDP_ECHOED, 0),
    ]);
    // One quiet period covers every source: their datagrams have all been dropped by now.
    let (first_addr, first) = &sources[0];
    assert_no_datagram(first, &format!("a datagram from {first_addr}"));
    for (addr, socket) in &sources[1..] {
        let replies = queued_datagrams(socket);
        assert!(replies.is_empty(), "{addr} got replies: {replies:?}");
    }

    // An ordinary (ephemeral) source port is answered.
    let ordinary = udp_from(ip("127.0.0.5"));
    assert_eq!(udp_exchange(&ordinary, udp, b"ephemeral"), b"ephemeral");
    metrics.wait_values(&[
        (UDP_ECHOED, 1),
        (&udp_dropped("reflection_guard"), sources.len() as u64),
    ]);
}

#[test]
fn chargen_source_port_is_dropped_by_default() {
    let server = Server::start(&["udp://127.0.0.1:0"], &["--metrics", "127.0.0.1:0"]);
    let metrics = Metrics::of(&server);
    let udp = server.udp();
    let Some(chargen) = bind_source("127.0.0.1:19") else {
        eprintln!("note: port 19 needs root; the guard is covered through port 11211 elsewhere");
        return;
    };
    chargen.send_to(b"from port 19", udp).expect("send");
    metrics.wait_values(&[(&udp_dropped("reflection_guard"), 1)]);
    assert_no_datagram(&chargen, "a datagram from 127.0.0.1:19");
    assert_eq!(
        udp_exchange(&udp_from(ip("127.0.0.1")), udp, b"ephemeral"),
        b"ephemeral"
    );
}

#[test]
fn no_reflection_guard_answers_service_ports() {
    let server = Server::start(
        &["udp://127.0.0.1:0"],
        &["--no-reflection-guard", "--metrics", "127.0.0.1:0"],
    );
    let metrics = Metrics::of(&server);
    let udp = server.udp();
    let mut answered = 0;
    // 127.0.0.6: a source address no other test binds service ports on.
    for addr in ["127.0.0.6:19", "127.0.0.6:11211"] {
        let Some(socket) = bind_source(addr) else {
            continue;
        };
        let mut buf = [0u8; 64];
        socket.send_to(addr.as_bytes(), udp).expect("send");
        let (n, from): (usize, SocketAddr) = socket
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("no echo for {addr} with --no-reflection-guard: {e}"));
        assert_eq!(&buf[..n], addr.as_bytes());
        assert_eq!(from, udp);
        answered += 1;
    }
    assert!(answered > 0, "no service port could be bound");
    metrics.wait_values(&[
        (UDP_ECHOED, answered),
        (&udp_dropped("reflection_guard"), 0),
    ]);
}
