//! Endpoint forms `serve` accepts, and the `listening on` lines it prints for them: the real
//! bound address in endpoint syntax, for several endpoints of any kind in one process.

use std::collections::HashSet;
use std::net::{SocketAddr, ToSocketAddrs};

use crate::support::{
    Ep, Server, echo_once, listening_lines, run_with_input, stderr_of, stdout_of, tcp_connect,
    temp_dir, udp_exchange, udp_peer, unix_connect, unixgram_peer,
};

#[test]
fn one_process_serves_every_kind_of_endpoint_at_once() {
    let dir = temp_dir();
    let unix = dir.path().join("s.sock");
    let unixgram = dir.path().join("g.sock");
    let unix_arg = format!("unix:{}", unix.display());
    let unixgram_arg = format!("unixgram:{}", unixgram.display());
    let server = Server::start(
        &[
            "tcp://127.0.0.1:0",
            "udp://127.0.0.1:0",
            &unix_arg,
            &unixgram_arg,
            "tcp://[::1]:0",
            "udp://[::1]:0",
        ],
        &[],
    );
    assert_eq!(server.endpoints.len(), 6, "{:?}", server.endpoints);
    let mut kinds = HashSet::new();
    for (i, endpoint) in server.endpoints.iter().enumerate() {
        let msg = format!("message to endpoint {i}\n");
        match endpoint {
            Ep::Tcp(addr) => echo_once(&mut tcp_connect(*addr), msg.as_bytes()),
            Ep::Udp(addr) => {
                assert_eq!(
                    udp_exchange(&udp_peer(*addr), *addr, msg.as_bytes()),
                    msg.as_bytes()
                );
            }
            Ep::Unix(path) => {
                assert_eq!(path, &unix);
                echo_once(&mut unix_connect(path), msg.as_bytes());
            }
            Ep::UnixGram(path) => {
                assert_eq!(path, &unixgram);
                let peer = unixgram_peer(&dir.path().join("me.sock"));
                peer.send_to(msg.as_bytes(), path).expect("send");
                let mut buf = [0u8; 64];
                let n = peer.recv(&mut buf).expect("reply");
                assert_eq!(&buf[..n], msg.as_bytes());
            }
            Ep::Ws(..) => panic!("no WebSocket endpoint was asked for: {endpoint:?}"),
        }
        kinds.insert(endpoint.arg().split(':').next().map(str::to_owned));
    }
    assert_eq!(
        kinds.len(),
        4,
        "every transport listed: {:?}",
        server.endpoints
    );
    let v6 = server
        .endpoints
        .iter()
        .filter(|e| e.arg().contains("[::1]:"))
        .count();
    assert_eq!(
        v6, 2,
        "IPv6 endpoints are printed in brackets: {:?}",
        server.endpoints
    );
}

#[test]
fn port_zero_is_logged_as_the_real_port() {
    let server = Server::start(&["tcp://127.0.0.1:0", "udp://127.0.0.1:0"], &[]);
    for endpoint in &server.endpoints {
        let addr = match endpoint {
            Ep::Tcp(a) | Ep::Udp(a) => *a,
            other => panic!("unexpected {other:?}"),
        };
        assert_ne!(addr.port(), 0, "{endpoint:?}");
        assert_eq!(addr.ip().to_string(), "127.0.0.1");
    }
    // The printed port is the one that answers.
    echo_once(&mut tcp_connect(server.tcp()), b"x");
    let lines = listening_lines(&server.log());
    assert!(
        lines.iter().any(|l| l.starts_with("tcp://127.0.0.1:")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("udp://127.0.0.1:")),
        "{lines:?}"
    );
}

#[test]
fn bare_host_and_port_means_tcp() {
    let server = Server::start(&["127.0.0.1:0"], &[]);
    let addr = server.tcp();
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    echo_once(&mut tcp_connect(addr), b"bare host:port\n");
}

#[test]
fn bare_port_means_tcp_on_all_interfaces_ipv4_and_ipv6() {
    let server = Server::start(&["0"], &[]);
    let port = server.tcp().port();
    assert!(
        server
            .endpoints
            .iter()
            .all(|e| matches!(e, Ep::Tcp(a) if a.ip().is_unspecified())),
        "expected wildcard addresses: {:?}",
        server.endpoints
    );
    let v4: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let v6: SocketAddr = format!("[::1]:{port}").parse().expect("addr");
    echo_once(&mut tcp_connect(v4), b"over IPv4");
    echo_once(&mut tcp_connect(v6), b"over IPv6");
}

#[test]
fn star_host_listens_on_every_interface_for_tcp_and_udp() {
    let server = Server::start(&["tcp://*:0", "udp://*:0"], &[]);
    let tcp_port = server.tcp().port();
    let udp_port = server.udp().port();
    for ip in ["127.0.0.1", "[::1]"] {
        let tcp: SocketAddr = format!("{ip}:{tcp_port}").parse().expect("addr");
        echo_once(&mut tcp_connect(tcp), format!("tcp via {ip}").as_bytes());
        let udp: SocketAddr = format!("{ip}:{udp_port}").parse().expect("addr");
        let msg = format!("udp via {ip}");
        // The reply must come from the address the datagram was sent to.
        assert_eq!(
            udp_exchange(&udp_peer(udp), udp, msg.as_bytes()),
            msg.as_bytes()
        );
    }
}

#[test]
fn a_host_name_listens_on_each_of_its_addresses_with_one_port() {
    let addrs: HashSet<SocketAddr> = ("localhost", 0)
        .to_socket_addrs()
        .expect("resolve localhost")
        .collect();
    let server = Server::start_expecting(&["serve", "tcp://localhost:0"], addrs.len());
    let ports: HashSet<u16> = server.endpoints.iter().map(|e| e.tcp().port()).collect();
    assert_eq!(
        ports.len(),
        1,
        "one port for all addresses: {:?}",
        server.endpoints
    );
    for endpoint in &server.endpoints {
        let addr = endpoint.tcp();
        assert!(addr.ip().is_loopback(), "{addr}");
        echo_once(&mut tcp_connect(addr), b"via localhost");
    }
}

/// The default endpoint is TCP port 54000 on every interface. Port 54000 may be taken on a
/// shared machine, so this test checks the default only when the port can be bound.
#[test]
fn no_endpoint_means_tcp_port_54000_on_all_interfaces() {
    // Dual-stack: this also claims IPv4 port 54000.
    let probe = std::net::TcpListener::bind("[::]:54000");
    if let Err(e) = probe {
        eprintln!("skipped: port 54000 is not free here ({e})");
        return;
    }
    drop(probe);
    let mut server = Server::spawn(&["serve"]);
    let log = server.wait_log("listening or an error", |log| {
        log.contains("listening on") || log.contains("error:")
    });
    if log.contains("address already in use") {
        eprintln!("skipped: port 54000 was taken meanwhile:\n{log}");
        return;
    }
    let lines = listening_lines(&log);
    assert_eq!(lines, ["tcp://[::]:54000"], "{log}");
    echo_once(
        &mut tcp_connect("127.0.0.1:54000".parse().expect("addr")),
        b"v4",
    );
    echo_once(
        &mut tcp_connect("[::1]:54000".parse().expect("addr")),
        b"v6",
    );
    // The client's default endpoint is the same port on localhost.
    let out = run_with_input(&["client"], b"default client\n");
    assert_eq!(stdout_of(&out), "default client\n");
    assert!(out.status.success(), "{}", stderr_of(&out));
    server.kill();
}
