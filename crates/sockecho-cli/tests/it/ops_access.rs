//! `--allow` and `--deny`: who is served over TCP and UDP, IPv4 and IPv6, including IPv4 clients
//! of the dual-stack listener, and the counters of who was turned away. Other loopback sources
//! (127.0.0.2, 127.0.0.3) stand in for other hosts.

use crate::support::{
    Metrics, Server, TCP_CONNECTIONS, UDP_ECHOED, assert_closed_unserved, assert_no_datagram,
    echo_once, ip, tcp_connect_from, tcp_rejected, udp_dropped, udp_exchange, udp_from,
};

const METRICS: [&str; 2] = ["--metrics", "127.0.0.1:0"];

fn flags<'a>(rules: &[&'a str]) -> Vec<&'a str> {
    let mut flags = rules.to_vec();
    flags.extend_from_slice(&METRICS);
    flags
}

#[test]
fn a_denied_tcp_peer_is_closed_at_once_and_counted() {
    let server = Server::start(&["tcp://127.0.0.1:0"], &flags(&["--deny", "127.0.0.2"]));
    let metrics = Metrics::of(&server);
    let addr = server.tcp();

    let mut denied = tcp_connect_from(ip("127.0.0.2"), addr);
    let denied_peer = denied.local_addr().expect("local addr");
    assert_closed_unserved(
        &mut denied,
        "a client from 127.0.0.2 under --deny 127.0.0.2",
    );
    metrics.wait_values(&[(&tcp_rejected("denied"), 1)]);

    let mut allowed = tcp_connect_from(ip("127.0.0.1"), addr);
    echo_once(&mut allowed, b"served");
    drop(allowed);
    metrics.wait_values(&[
        (TCP_CONNECTIONS, 1),
        (&tcp_rejected("denied"), 1),
        (&tcp_rejected("per_ip_limit"), 0),
    ]);
    assert!(
        !server.log().contains(&format!("{denied_peer} connected")),
        "a denied peer was logged as served:\n{}",
        server.log()
    );
}

#[test]
fn allow_serves_only_the_listed_addresses_and_is_repeatable() {
    let server = Server::start(
        &["tcp://127.0.0.1:0"],
        &flags(&["--allow", "127.0.0.2", "--allow", "127.0.0.3/32"]),
    );
    let metrics = Metrics::of(&server);
    let addr = server.tcp();

    assert_closed_unserved(
        &mut tcp_connect_from(ip("127.0.0.1"), addr),
        "127.0.0.1 is in no --allow rule",
    );
    echo_once(&mut tcp_connect_from(ip("127.0.0.2"), addr), b"two");
    echo_once(&mut tcp_connect_from(ip("127.0.0.3"), addr), b"three");
    metrics.wait_values(&[(TCP_CONNECTIONS, 2), (&tcp_rejected("denied"), 1)]);
}

#[test]
fn with_allow_127_0_0_1_a_client_from_127_0_0_2_is_refused() {
    let server = Server::start(&["tcp://127.0.0.1:0"], &["--allow", "127.0.0.1"]);
    let addr = server.tcp();
    assert_closed_unserved(
        &mut tcp_connect_from(ip("127.0.0.2"), addr),
        "127.0.0.2 under --allow 127.0.0.1",
    );
    echo_once(&mut tcp_connect_from(ip("127.0.0.1"), addr), b"one");
}

#[test]
fn deny_wins_over_allow() {
    let server = Server::start(
        &["tcp://127.0.0.1:0", "udp://127.0.0.1:0"],
        &flags(&["--allow", "127.0.0.0/8", "--deny", "127.0.0.2"]),
    );
    let metrics = Metrics::of(&server);
    let (tcp, udp) = (server.tcp(), server.udp());

    assert_closed_unserved(
        &mut tcp_connect_from(ip("127.0.0.2"), tcp),
        "127.0.0.2 is allowed by 127.0.0.0/8 but denied",
    );
    echo_once(
        &mut tcp_connect_from(ip("127.0.0.3"), tcp),
        b"allowed by the /8",
    );

    let denied = udp_from(ip("127.0.0.2"));
    denied.send_to(b"denied", udp).expect("send");
    metrics.wait_values(&[(&udp_dropped("denied"), 1), (&tcp_rejected("denied"), 1)]);
    assert_no_datagram(&denied, "a datagram from 127.0.0.2 under --deny 127.0.0.2");
    assert_eq!(udp_exchange(&udp_from(ip("127.0.0.3")), udp, b"ok"), b"ok");
    metrics.wait_values(&[(UDP_ECHOED, 1), (&udp_dropped("denied"), 1)]);
}

#[test]
fn a_denied_datagram_is_dropped_and_counted_while_others_are_echoed() {
    let server = Server::start(&["udp://127.0.0.1:0"], &flags(&["--deny", "127.0.0.2"]));
    let metrics = Metrics::of(&server);
    let udp = server.udp();

    let denied = udp_from(ip("127.0.0.2"));
    for i in 0..3 {
        denied
            .send_to(format!("denied {i}").as_bytes(), udp)
            .expect("send");
    }
    let allowed = udp_from(ip("127.0.0.1"));
    assert_eq!(udp_exchange(&allowed, udp, b"allowed"), b"allowed");
    metrics.wait_values(&[(&udp_dropped("denied"), 3), (UDP_ECHOED, 1)]);
    assert_no_datagram(&denied, "datagrams from 127.0.0.2 under --deny 127.0.0.2");
}

#[test]
fn udp_allow_drops_unlisted_sources() {
    let server = Server::start(&["udp://127.0.0.1:0"], &flags(&["--allow", "127.0.0.1"]));
    let metrics = Metrics::of(&server);
    let udp = server.udp();

    let outsider = udp_from(ip("127.0.0.2"));
    outsider.send_to(b"let me in", udp).expect("send");
    metrics.wait_values(&[(&udp_dropped("denied"), 1)]);
    assert_no_datagram(&outsider, "127.0.0.2 under --allow 127.0.0.1");
    assert_eq!(udp_exchange(&udp_from(ip("127.0.0.1")), udp, b"in"), b"in");
}

#[test]
fn ipv6_peers_are_matched_by_deny() {
    let server = Server::start(
        &["tcp://[::1]:0", "udp://[::1]:0"],
        &flags(&["--deny", "::1"]),
    );
    let metrics = Metrics::of(&server);
    let (tcp, udp) = (server.tcp(), server.udp());
    assert!(tcp.is_ipv6() && udp.is_ipv6(), "{:?}", server.endpoints);

    assert_closed_unserved(
        &mut tcp_connect_from(ip("::1"), tcp),
        "::1 under --deny ::1",
    );
    let denied = udp_from(ip("::1"));
    denied.send_to(b"v6", udp).expect("send");
    metrics.wait_values(&[
        (&tcp_rejected("denied"), 1),
        (&udp_dropped("denied"), 1),
        (TCP_CONNECTIONS, 0),
        (UDP_ECHOED, 0),
    ]);
    assert_no_datagram(&denied, "::1 under --deny ::1");
}

#[test]
fn ipv6_peers_are_matched_by_allow_and_ipv4_is_not_in_an_ipv6_rule() {
    // The dual-stack listener takes both families; only ::1 is allowed.
    let server = Server::start(&["tcp://*:0", "udp://*:0"], &flags(&["--allow", "::1"]));
    let metrics = Metrics::of(&server);
    let tcp_port = server.tcp().port();
    let udp_port = server.udp().port();
    let v6 = |port| std::net::SocketAddr::new(ip("::1"), port);
    let v4 = |port| std::net::SocketAddr::new(ip("127.0.0.1"), port);

    echo_once(&mut tcp_connect_from(ip("::1"), v6(tcp_port)), b"over ::1");
    assert_eq!(
        udp_exchange(&udp_from(ip("::1")), v6(udp_port), b"v6"),
        b"v6"
    );
    assert_closed_unserved(
        &mut tcp_connect_from(ip("127.0.0.1"), v4(tcp_port)),
        "127.0.0.1 under --allow ::1",
    );
    let v4_peer = udp_from(ip("127.0.0.1"));
    v4_peer.send_to(b"v4", v4(udp_port)).expect("send");
    metrics.wait_values(&[
        (TCP_CONNECTIONS, 1),
        (&tcp_rejected("denied"), 1),
        (UDP_ECHOED, 1),
        (&udp_dropped("denied"), 1),
    ]);
    assert_no_datagram(&v4_peer, "127.0.0.1 under --allow ::1");
}

#[test]
fn ipv4_clients_of_the_dual_stack_listener_are_matched_as_ipv4() {
    let server = Server::start(
        &["tcp://*:0", "udp://*:0"],
        &flags(&["--deny", "127.0.0.2"]),
    );
    let metrics = Metrics::of(&server);
    let log = server.log();
    let (tcp, udp) = (server.tcp(), server.udp());
    assert!(
        log.contains(&format!("listening on tcp://[::]:{}", tcp.port()))
            && log.contains(&format!("listening on udp://[::]:{}", udp.port())),
        "expected dual-stack listeners:\n{log}"
    );
    let tcp = std::net::SocketAddr::new(ip("127.0.0.1"), tcp.port());
    let udp = std::net::SocketAddr::new(ip("127.0.0.1"), udp.port());

    assert_closed_unserved(
        &mut tcp_connect_from(ip("127.0.0.2"), tcp),
        "127.0.0.2 (seen as ::ffff:127.0.0.2) under --deny 127.0.0.2",
    );
    let mut allowed = tcp_connect_from(ip("127.0.0.1"), tcp);
    echo_once(&mut allowed, b"v4 through [::]");
    drop(allowed);

    let denied = udp_from(ip("127.0.0.2"));
    denied.send_to(b"v4 denied", udp).expect("send");
    let allowed = udp_from(ip("127.0.0.1"));
    allowed.send_to(b"v4 allowed", udp).expect("send");
    let mut buf = [0u8; 64];
    let (n, _) = allowed.recv_from(&mut buf).expect("echo to 127.0.0.1");
    assert_eq!(&buf[..n], b"v4 allowed");
    metrics.wait_values(&[
        (TCP_CONNECTIONS, 1),
        (&tcp_rejected("denied"), 1),
        (UDP_ECHOED, 1),
        (&udp_dropped("denied"), 1),
    ]);
    assert_no_datagram(&denied, "127.0.0.2 through the dual-stack UDP socket");
}

#[test]
fn rules_in_ipv4_mapped_form_apply_to_ipv4_clients_of_the_dual_stack_listener() {
    let v4 = |addr: std::net::SocketAddr| std::net::SocketAddr::new(ip("127.0.0.1"), addr.port());
    let v6 = |addr: std::net::SocketAddr| std::net::SocketAddr::new(ip("::1"), addr.port());

    // One mapped address: only that IPv4 client is refused.
    let server = Server::start(
        &["tcp://*:0", "udp://*:0"],
        &flags(&["--deny", "::ffff:127.0.0.1"]),
    );
    let metrics = Metrics::of(&server);
    let (tcp, udp) = (v4(server.tcp()), v4(server.udp()));
    assert_closed_unserved(
        &mut tcp_connect_from(ip("127.0.0.1"), tcp),
        "127.0.0.1 under --deny ::ffff:127.0.0.1",
    );
    echo_once(&mut tcp_connect_from(ip("127.0.0.2"), tcp), b"other v4");
    let denied = udp_from(ip("127.0.0.1"));
    denied.send_to(b"mapped rule", udp).expect("send");
    metrics.wait_values(&[(&tcp_rejected("denied"), 1), (&udp_dropped("denied"), 1)]);
    assert_no_datagram(&denied, "127.0.0.1 under --deny ::ffff:127.0.0.1");
    drop(server);

    // The whole mapped block is all of IPv4; IPv6 clients are still served.
    let server = Server::start(&["tcp://*:0"], &flags(&["--deny", "::ffff:0:0/96"]));
    let metrics = Metrics::of(&server);
    assert_closed_unserved(
        &mut tcp_connect_from(ip("127.0.0.1"), v4(server.tcp())),
        "127.0.0.1 under --deny ::ffff:0:0/96",
    );
    echo_once(&mut tcp_connect_from(ip("::1"), v6(server.tcp())), b"v6");
    metrics.wait_values(&[(&tcp_rejected("denied"), 1), (TCP_CONNECTIONS, 1)]);
    drop(server);

    // A mapped allow rule serves the IPv4 clients it names, and only them.
    let server = Server::start(&["tcp://*:0"], &flags(&["--allow", "::ffff:127.0.0.0/104"]));
    let metrics = Metrics::of(&server);
    echo_once(
        &mut tcp_connect_from(ip("127.0.0.1"), v4(server.tcp())),
        b"allowed by the mapped /104",
    );
    assert_closed_unserved(
        &mut tcp_connect_from(ip("::1"), v6(server.tcp())),
        "::1 under --allow ::ffff:127.0.0.0/104",
    );
    metrics.wait_values(&[(TCP_CONNECTIONS, 1), (&tcp_rejected("denied"), 1)]);
}
