//! Datagram echo (UDP, Unix datagram): each datagram back to its own sender, unchanged and
//! whole, from 0 bytes to the largest UDP payload, for many peers on one socket.

use std::os::unix::net::UnixDatagram;

use crate::support::{
    Server, assert_all_byte_values, pattern, temp_dir, udp_exchange, udp_peer, unixgram_peer,
};

/// The largest UDP payload over IPv4: 65 535 − 8 (UDP header) − 20 (IPv4 header).
const UDP_MAX_V4: usize = 65_507;

#[test]
fn udp_echoes_empty_and_maximum_datagrams_whole() {
    let server = Server::start(&["udp://127.0.0.1:0"], &[]);
    let addr = server.udp();
    assert_ne!(addr.port(), 0);
    let peer = udp_peer(addr);
    assert_eq!(udp_exchange(&peer, addr, b""), b"", "empty datagram");
    let big = pattern(UDP_MAX_V4, 7);
    assert_all_byte_values(&big);
    let back = udp_exchange(&peer, addr, &big);
    assert_eq!(back.len(), UDP_MAX_V4, "largest datagram was cut");
    assert!(back == big, "largest datagram changed");
    assert_eq!(udp_exchange(&peer, addr, b"hello\n"), b"hello\n");
}

#[test]
fn udp_over_ipv6_echoes() {
    let server = Server::start(&["udp://[::1]:0"], &[]);
    let addr = server.udp();
    assert!(addr.is_ipv6(), "{addr}");
    let peer = udp_peer(addr);
    assert_eq!(udp_exchange(&peer, addr, b"six"), b"six");
    let big = pattern(UDP_MAX_V4, 8);
    assert!(
        udp_exchange(&peer, addr, &big) == big,
        "large IPv6 datagram"
    );
}

#[test]
fn udp_replies_go_to_each_sender_among_many_peers() {
    let server = Server::start(&["udp://127.0.0.1:0"], &[]);
    let addr = server.udp();
    let peers: Vec<_> = (0..50).map(|_| udp_peer(addr)).collect();
    // Everyone sends before anyone reads, so the server has datagrams from all peers queued.
    for (i, peer) in peers.iter().enumerate() {
        peer.send_to(format!("peer {i}").as_bytes(), addr)
            .expect("send");
    }
    for (i, peer) in peers.iter().enumerate() {
        let mut buf = [0u8; 64];
        let (n, from) = peer.recv_from(&mut buf).expect("reply");
        assert_eq!(from, addr);
        assert_eq!(&buf[..n], format!("peer {i}").as_bytes(), "peer {i}");
    }
    // No peer got a second, foreign reply.
    for (i, peer) in peers.iter().enumerate() {
        peer.set_nonblocking(true).expect("nonblocking");
        let extra = peer.recv_from(&mut [0u8; 64]);
        assert!(extra.is_err(), "peer {i} got an extra datagram: {extra:?}");
    }
}

#[test]
fn udp_datagrams_keep_their_boundaries() {
    let server = Server::start(&["udp://127.0.0.1:0"], &[]);
    let addr = server.udp();
    let peer = udp_peer(addr);
    for msg in [&b"one"[..], b"two two", b"", b"three three three"] {
        peer.send_to(msg, addr).expect("send");
    }
    for msg in [&b"one"[..], b"two two", b"", b"three three three"] {
        let mut buf = [0u8; 64];
        let n = peer.recv(&mut buf).expect("reply");
        assert_eq!(&buf[..n], msg);
    }
}

#[test]
fn unixgram_echoes_empty_and_large_datagrams_whole() {
    let dir = temp_dir();
    let path = dir.path().join("g.sock");
    let server = Server::start(&[&format!("unixgram:{}", path.display())], &[]);
    assert_eq!(server.find("unix").path(), path);
    let peer = unixgram_peer(&dir.path().join("me.sock"));
    for data in [Vec::new(), b"hello\n".to_vec(), pattern(UDP_MAX_V4, 9)] {
        peer.send_to(&data, &path).expect("send");
        let mut buf = vec![0u8; 100_000];
        let (n, from) = peer.recv_from(&mut buf).expect("reply");
        assert_eq!(from.as_pathname(), Some(path.as_path()));
        assert_eq!(n, data.len(), "datagram of {} bytes", data.len());
        assert!(
            buf[..n] == data[..],
            "datagram of {} bytes changed",
            data.len()
        );
    }
}

#[test]
fn unixgram_replies_go_to_each_sender_among_many_peers() {
    let dir = temp_dir();
    let path = dir.path().join("g.sock");
    let _server = Server::start(&[&format!("unixgram:{}", path.display())], &[]);
    let peers: Vec<UnixDatagram> = (0..20)
        .map(|i| unixgram_peer(&dir.path().join(format!("p{i}.sock"))))
        .collect();
    for (i, peer) in peers.iter().enumerate() {
        peer.send_to(format!("peer {i}").as_bytes(), &path)
            .expect("send");
    }
    for (i, peer) in peers.iter().enumerate() {
        let mut buf = [0u8; 64];
        let n = peer.recv(&mut buf).expect("reply");
        assert_eq!(&buf[..n], format!("peer {i}").as_bytes(), "peer {i}");
    }
}

#[test]
fn unixgram_survives_a_sender_it_cannot_answer() {
    let dir = temp_dir();
    let path = dir.path().join("g.sock");
    let mut server = Server::start(&[&format!("unixgram:{}", path.display())], &[]);
    // An unbound socket has no address to reply to: the datagram is dropped, nothing breaks.
    let anonymous = UnixDatagram::unbound().expect("unbound");
    anonymous.send_to(b"who am I", &path).expect("send");
    let peer = unixgram_peer(&dir.path().join("me.sock"));
    peer.send_to(b"still there?", &path).expect("send");
    let mut buf = [0u8; 64];
    let n = peer.recv(&mut buf).expect("reply");
    assert_eq!(&buf[..n], b"still there?");
    assert!(server.running(), "server died:\n{}", server.log());
}

/// A peer that sends but never reads fills its receive queue with replies (about ten). The
/// server must drop its further replies (counted) rather than wait for room, so the other peers
/// keep getting theirs and SIGTERM still stops the server at once.
#[test]
fn a_unixgram_peer_that_never_reads_does_not_stall_the_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("g.sock");
    let mut server = Server::start(&[&format!("unixgram:{}", path.display())], &[]);
    let stuck = unixgram_peer(&dir.path().join("stuck.sock"));
    // More than its receive queue holds; once the server stalls, its own queue fills and
    // these sends time out, so count the ones that went.
    stuck
        .set_write_timeout(Some(std::time::Duration::from_millis(200)))
        .expect("timeout");
    let sent = (0..30)
        .filter(|_| stuck.send_to(b"never read", &path).is_ok())
        .count();
    assert!(
        sent >= 15,
        "only {sent} datagrams from the stuck peer went out"
    );
    let peer = unixgram_peer(&dir.path().join("reader.sock"));
    for timeout in [
        UnixDatagram::set_read_timeout,
        UnixDatagram::set_write_timeout,
    ] {
        timeout(&peer, Some(std::time::Duration::from_secs(2))).expect("timeout");
    }
    let mut buf = [0u8; 64];
    for i in 0..50u32 {
        let message = format!("reader {i}");
        peer.send_to(message.as_bytes(), &path)
            .unwrap_or_else(|e| panic!("the server stopped receiving: {e}\n{}", server.log()));
        let n = peer.recv(&mut buf).unwrap_or_else(|e| {
            panic!(
                "no echo for {message:?} behind a peer that never reads: {e}\n{}",
                server.log()
            )
        });
        assert_eq!(&buf[..n], message.as_bytes());
    }
    let asked = std::time::Instant::now();
    server.signal(rustix::process::Signal::TERM);
    let status = server.wait_exit(std::time::Duration::from_secs(10));
    let took = asked.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        took < std::time::Duration::from_millis(1500),
        "took {took:?} to stop:\n{}",
        server.log()
    );
}

#[test]
fn udp_listeners_stop_at_once_on_sigterm() {
    // The UDP loop blocks in its receive; a drain must wake it rather than wait for the
    // receive's 2 s timeout. An idle socket and one that has just echoed both stop at once.
    for warm in [false, true] {
        let dir = temp_dir();
        let unixgram = format!("unixgram:{}", dir.path().join("d.sock").display());
        let mut server = Server::start(&["udp://127.0.0.1:0", "udp://[::]:0", &unixgram], &[]);
        if warm {
            let addr = server.find("udp://127.").udp();
            assert_eq!(udp_exchange(&udp_peer(addr), addr, b"warm"), b"warm");
        }
        let asked = std::time::Instant::now();
        server.signal(rustix::process::Signal::TERM);
        let status = server.wait_exit(std::time::Duration::from_secs(10));
        let took = asked.elapsed();
        assert!(status.success(), "{status:?}");
        assert!(
            took < std::time::Duration::from_millis(1500),
            "took {took:?} to stop (warm: {warm}):\n{}",
            server.log()
        );
    }
}
