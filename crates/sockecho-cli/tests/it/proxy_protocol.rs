//! `serve --proxy-protocol` against headers written by hand here (and by Python's standard
//! library), and `client`/`ping`/`bench --send-proxy` against a server and a raw listener: the
//! header is stripped and what follows is echoed exactly, the named client is what access rules
//! and logs see, and every refusal is closed and counted.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{
    Metrics, Server, TCP_BYTES, TCP_CONNECTIONS, WAIT, assert_closed_unserved, bench_json,
    echo_once, ip, run, run_with_input, sockecho, start_tls_server, stderr_of, stdout_of,
    tcp_connect, tcp_connect_from, tcp_rejected,
};

const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// A v2 header built byte by byte: PROXY command, TCP over IPv4, `src` to `dst`, then `tlvs`
/// (type, value) pairs.
fn v2_tcp4(
    src: [u8; 4],
    src_port: u16,
    dst: [u8; 4],
    dst_port: u16,
    tlvs: &[(u8, &[u8])],
) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&src);
    body.extend_from_slice(&dst);
    body.extend_from_slice(&src_port.to_be_bytes());
    body.extend_from_slice(&dst_port.to_be_bytes());
    for (kind, value) in tlvs {
        body.push(*kind);
        body.extend_from_slice(&(value.len() as u16).to_be_bytes());
        body.extend_from_slice(value);
    }
    let mut header = V2_SIGNATURE.to_vec();
    header.extend_from_slice(&[0x21, 0x11]);
    header.extend_from_slice(&(body.len() as u16).to_be_bytes());
    header.extend_from_slice(&body);
    header
}

/// A v2 LOCAL header (a proxy's own health check), no addresses.
fn v2_local() -> Vec<u8> {
    let mut header = V2_SIGNATURE.to_vec();
    header.extend_from_slice(&[0x20, 0x00, 0, 0]);
    header
}

fn proxy_server(flags: &[&str]) -> (Server, Metrics) {
    let mut all = vec!["--proxy-protocol", "--metrics", "127.0.0.1:0"];
    all.extend_from_slice(flags);
    let server = Server::start(&["tcp://127.0.0.1:0"], &all);
    let metrics = Metrics::of(&server);
    (server, metrics)
}

fn headers(kind: &str) -> String {
    format!("sockecho_proxy_headers_total{{transport=\"tcp\",kind=\"{kind}\"}}")
}

fn header_errors(reason: &str) -> String {
    format!("sockecho_proxy_header_errors_total{{transport=\"tcp\",reason=\"{reason}\"}}")
}

/// Sends `header` and `data` in one write and asserts exactly `data` comes back.
fn header_then_echo(server: SocketAddr, header: &[u8], data: &[u8]) -> TcpStream {
    let mut stream = tcp_connect(server);
    stream
        .write_all(&[header, data].concat())
        .expect("send header and data");
    let mut back = vec![0; data.len()];
    stream.read_exact(&mut back).expect("read the echo");
    assert_eq!(back, data, "the echo after the header differs");
    echo_once(&mut stream, b"and more");
    stream
}

#[test]
fn v1_and_v2_headers_name_the_client_and_only_the_data_after_them_is_echoed() {
    let (server, metrics) = proxy_server(&[]);
    let addr = server.tcp();
    let v1 = format!("PROXY TCP4 203.0.113.7 127.0.0.1 4242 {}\r\n", addr.port());
    drop(header_then_echo(
        addr,
        v1.as_bytes(),
        b"after the v1 line\n",
    ));
    let v2 = v2_tcp4([198, 51, 100, 9], 1111, [127, 0, 0, 1], addr.port(), &[]);
    // Every byte value after the header, so nothing is mistaken for more header.
    let data: Vec<u8> = (0..=255).collect();
    drop(header_then_echo(addr, &v2, &data));
    // A header in pieces, with pauses between them, still works.
    let mut stream = tcp_connect(addr);
    for piece in v1.as_bytes().chunks(7) {
        stream.write_all(piece).expect("send a piece");
        stream.flush().expect("flush");
        std::thread::sleep(Duration::from_millis(5));
    }
    echo_once(&mut stream, b"slowly");
    drop(stream);

    metrics.wait_values(&[
        (&headers("v1"), 2),
        (&headers("v2"), 1),
        (TCP_CONNECTIONS, 3),
        // The headers themselves are not echoed bytes.
        (TCP_BYTES, 2 * 8 + 18 + 256 + 6),
    ]);
    // The side channel: the last headers, oldest first, in /info.
    let response = metrics.get("/info");
    assert_eq!(response.status, 200, "{response:?}");
    let info: Value = serde_json::from_str(&response.body).expect("/info is JSON");
    let entries = info["proxy_headers"].as_array().expect("a list of headers");
    let clients: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["client"].as_str())
        .collect();
    assert_eq!(
        clients,
        ["203.0.113.7:4242", "198.51.100.9:1111", "203.0.113.7:4242"],
        "{info:#}"
    );
    assert_eq!(entries[1]["version"], "v2");
    assert_eq!(
        entries[1]["destination"],
        format!("127.0.0.1:{}", addr.port()).as_str()
    );
    let log = server.wait_for("198.51.100.9:1111 disconnected");
    assert!(
        log.contains("203.0.113.7:4242 connected via 127.0.0.1:"),
        "{log}"
    );
    assert!(log.contains("(PROXY v2)"), "{log}");
}

#[test]
fn the_json_connection_event_carries_the_proxied_peer_and_the_tlvs() {
    let server = Server::spawn(&[
        "serve",
        "tcp://127.0.0.1:0",
        "--proxy-protocol",
        "--log-format",
        "json",
    ]);
    let log = server.wait_for("listening on tcp://");
    let addr: SocketAddr = log
        .split("listening on tcp://")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no TCP address in\n{log}"));
    let header = v2_tcp4(
        [192, 0, 2, 44],
        5555,
        [192, 0, 2, 1],
        443,
        &[
            (0x01, b"h2"),
            (0x02, b"echo.example"),
            (0x05, b"conn-42"),
            (0xea, b"vpce-0123"), // a vendor TLV, ignored
        ],
    );
    let stream = header_then_echo(addr, &header, b"json\n");
    let local = stream.local_addr().expect("local address");
    drop(stream);
    let log = server.wait_for("\"disconnected\"");
    let connected: serde_json::Map<String, Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v.as_object().cloned())
        .find(|e| e.get("event").and_then(Value::as_str) == Some("connected"))
        .unwrap_or_else(|| panic!("no connected event in\n{log}"));
    let field = |name: &str| {
        connected
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    assert_eq!(
        field("peer").as_deref(),
        Some("192.0.2.44:5555"),
        "{connected:?}"
    );
    assert_eq!(field("proxied_by"), Some(local.to_string()));
    assert_eq!(field("proxy_version").as_deref(), Some("v2"));
    assert_eq!(field("proxy_destination").as_deref(), Some("192.0.2.1:443"));
    assert_eq!(field("proxy_alpn").as_deref(), Some("h2"));
    assert_eq!(field("proxy_authority").as_deref(), Some("echo.example"));
    assert_eq!(field("proxy_unique_id").as_deref(), Some("conn-42"));
}

#[test]
fn deny_and_the_per_ip_limit_apply_to_the_proxied_address() {
    let (server, metrics) = proxy_server(&["--deny", "203.0.113.0/24", "--max-conns-per-ip", "1"]);
    let addr = server.tcp();
    let denied = b"PROXY TCP4 203.0.113.7 127.0.0.1 4242 54000\r\n";
    let mut stream = tcp_connect(addr);
    stream.write_all(denied).expect("send the header");
    assert_closed_unserved(&mut stream, "a proxied client under --deny");

    // The proxy's own address is 127.0.0.1 for both, yet each named client has its own slot.
    let first = header_then_echo(addr, b"PROXY TCP4 198.51.100.1 127.0.0.1 1 2\r\n", b"one");
    let _second = header_then_echo(addr, b"PROXY TCP4 198.51.100.2 127.0.0.1 1 2\r\n", b"two");
    let mut third = tcp_connect(addr);
    third
        .write_all(b"PROXY TCP4 198.51.100.1 127.0.0.1 3 2\r\n")
        .expect("send the header");
    assert_closed_unserved(&mut third, "a second connection of 198.51.100.1");
    drop(first);
    metrics.wait_values(&[
        (&tcp_rejected("denied"), 1),
        (&tcp_rejected("per_ip_limit"), 1),
        (&headers("v1"), 4),
    ]);
}

#[test]
fn a_header_from_an_untrusted_peer_is_refused_and_counted() {
    let (server, metrics) = proxy_server(&["--proxy-from", "127.0.0.2"]);
    let addr = server.tcp();
    let v1 = b"PROXY TCP4 192.0.2.1 127.0.0.1 4242 54000\r\n";

    let mut untrusted = tcp_connect_from(ip("127.0.0.1"), addr);
    untrusted.write_all(v1).expect("send the header");
    assert_closed_unserved(&mut untrusted, "a header from outside --proxy-from");
    let mut untrusted_v2 = tcp_connect_from(ip("127.0.0.3"), addr);
    untrusted_v2
        .write_all(&v2_tcp4([192, 0, 2, 1], 1, [127, 0, 0, 1], 2, &[]))
        .expect("send the header");
    assert_closed_unserved(&mut untrusted_v2, "a v2 header from outside --proxy-from");

    // Without a header, an untrusted peer is served as itself.
    let mut direct = tcp_connect_from(ip("127.0.0.1"), addr);
    echo_once(&mut direct, b"no header here\n");
    let direct_peer = direct.local_addr().expect("local address");
    drop(direct);

    let mut trusted = tcp_connect_from(ip("127.0.0.2"), addr);
    trusted.write_all(v1).expect("send the header");
    echo_once(&mut trusted, b"trusted");
    drop(trusted);

    metrics.wait_values(&[
        (&header_errors("untrusted"), 2),
        (&headers("v1"), 1),
        (TCP_CONNECTIONS, 2),
    ]);
    let log = server.wait_for("192.0.2.1:4242 disconnected");
    assert!(log.contains(&format!("{direct_peer} connected")), "{log}");
    assert!(log.contains("not in --proxy-from"), "{log}");
}

#[test]
fn missing_and_malformed_headers_from_a_trusted_proxy_close_and_are_counted() {
    let (server, metrics) = proxy_server(&[]);
    let addr = server.tcp();
    let cases: [(&[u8], &str); 4] = [
        (b"hello, no header\n", "missing"),
        (b"PROXY TCP4 192.0.2.1 127.0.0.1 70000 1\r\n", "malformed"),
        (b"PROXY TCP9 a b c d\r\n", "malformed"),
        (&[b'P'; 200], "missing"),
    ];
    for (sent, reason) in cases {
        let mut stream = tcp_connect(addr);
        stream.write_all(sent).expect("send");
        assert_closed_unserved(&mut stream, reason);
    }
    let mut long = tcp_connect(addr);
    long.write_all(&[b"PROXY ".as_slice(), &[b'1'; 150]].concat())
        .expect("send");
    assert_closed_unserved(&mut long, "a v1 line past 107 bytes");
    let mut bad_version = v2_local();
    bad_version[12] = 0x30;
    let mut stream = tcp_connect(addr);
    stream.write_all(&bad_version).expect("send");
    assert_closed_unserved(&mut stream, "v2 with version 3");

    metrics.wait_values(&[
        (&header_errors("missing"), 2),
        (&header_errors("malformed"), 3),
        (&header_errors("too_long"), 1),
        (TCP_CONNECTIONS, 0),
    ]);
    let log = server.wait_for("malformed PROXY header");
    assert!(log.contains("no PROXY header"), "{log}");
}

#[test]
fn an_incomplete_header_is_closed_after_the_header_timeout() {
    let (server, metrics) = proxy_server(&["--proxy-header-timeout", "300ms"]);
    let mut stream = tcp_connect(server.tcp());
    let began = Instant::now();
    stream.write_all(b"PROXY TCP4 192.0.2.1 12").expect("send");
    let mut buf = [0; 16];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("expected the server to close the connection, got {other:?}"),
    }
    let waited = began.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < WAIT,
        "closed after {waited:?}"
    );
    metrics.wait_values(&[(&header_errors("timeout"), 1)]);
    server.wait_for("no complete PROXY header within 300ms");
}

#[test]
fn a_local_header_is_served_as_the_proxy_itself() {
    let (server, metrics) = proxy_server(&[]);
    let stream = header_then_echo(server.tcp(), &v2_local(), b"health check");
    let local = stream.local_addr().expect("local address");
    drop(stream);
    metrics.wait_values(&[(&headers("local"), 1), (&headers("v2"), 0)]);
    server.wait_for(&format!("{local} connected via {local} (PROXY v2)"));
}

#[test]
fn python_standard_library_as_an_independent_sender() {
    let (server, metrics) = proxy_server(&[]);
    let script = r#"
import socket, struct, sys
port = int(sys.argv[1])
src, dst = socket.inet_aton("203.0.113.50"), socket.inet_aton("127.0.0.1")
body = src + dst + struct.pack("!HH", 6000, port)
authority = b"py.example"
body += struct.pack("!BH", 0x02, len(authority)) + authority
header = b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body
payload = b"from python\n"
with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
    s.sendall(header + payload)
    got = b""
    while len(got) < len(payload):
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
sys.stdout.write(got.decode())
"#;
    let port = server.tcp().port().to_string();
    let output = match std::process::Command::new("python3")
        .args(["-c", script, &port])
        .output()
    {
        Ok(output) => output,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            eprintln!("python3 not found: skipping the independent sender");
            return;
        }
        Err(e) => panic!("run python3: {e}"),
    };
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "from python\n");
    metrics.wait_values(&[(&headers("v2"), 1)]);
    server.wait_for("203.0.113.50:6000 disconnected");
}

#[test]
fn bench_send_proxy_v2_verifies_every_byte_against_a_proxy_protocol_server() {
    let (server, metrics) = proxy_server(&[]);
    let target = format!("tcp://{}", server.tcp());
    let (code, report, output) = bench_json(&[
        &target,
        "--send-proxy",
        "v2",
        "-c",
        "3",
        "-d",
        "300ms",
        "--warmup",
        "0s",
    ]);
    assert_eq!(code, 0, "{}", stderr_of(&output));
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["connections_established"], 3, "{report:#}");
    assert!(
        report["messages_received"].as_u64().unwrap_or(0) > 0,
        "{report:#}"
    );
    // The three connections and the probe that found the server all sent a header.
    metrics.wait_values(&[(&headers("v2"), 4), (&header_errors("missing"), 0)]);

    let ping = run(&[
        "ping",
        &target,
        "--send-proxy",
        "v1",
        "-c",
        "2",
        "-i",
        "50ms",
    ]);
    assert!(ping.status.success(), "{}", stderr_of(&ping));
    metrics.wait_values(&[(&headers("v1"), 1)]);
}

#[test]
fn client_send_proxy_v1_writes_the_exact_header_first() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let server = listener.local_addr().expect("address");
    let raw = std::thread::spawn(move || {
        let (stream, peer) = listener.accept().expect("accept");
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut header = String::new();
        reader.read_line(&mut header).expect("read the header");
        let mut rest = String::new();
        reader.read_line(&mut rest).expect("read the data");
        let mut stream = stream;
        stream.write_all(rest.as_bytes()).expect("echo");
        // Close only after the client's half-close, as an echo server does: closing first
        // races the client's own shutdown and can reset the connection under it.
        let mut tail = Vec::new();
        reader
            .read_to_end(&mut tail)
            .expect("read to the client's EOF");
        assert!(tail.is_empty(), "nothing follows the one line");
        (header, rest, peer)
    });
    let output = run_with_input(
        &["client", &format!("tcp://{server}"), "--send-proxy", "v1"],
        b"ping\n",
    );
    let (header, rest, peer) = raw.join().expect("the raw listener");
    assert_eq!(
        header,
        format!(
            "PROXY TCP4 127.0.0.1 127.0.0.1 {} {}\r\n",
            peer.port(),
            server.port()
        )
    );
    assert_eq!(rest, "ping\n");
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(stdout_of(&output), "ping\n");
}

#[test]
fn on_tls_the_header_comes_before_the_handshake() {
    let (server, addr) = start_tls_server(&["serve", "tls://127.0.0.1:0", "--proxy-protocol"]);
    let output = run_with_input(
        &[
            "client",
            &format!("tls://{addr}"),
            "--insecure",
            "--send-proxy",
            "v2",
            "--proxy-source",
            "[2001:db8::7]:4000",
        ],
        b"secret\n",
    );
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(stdout_of(&output), "secret\n");
    server.wait_for("[2001:db8::7]:4000 disconnected");

    // Without the header the trusted peer is closed before any handshake.
    let output = run_with_input(&["client", &format!("tls://{addr}"), "--insecure"], b"x\n");
    assert!(!output.status.success());
    server.wait_for("no PROXY header");
}

#[test]
fn send_proxy_is_refused_on_datagram_and_unix_endpoints() {
    for args in [
        &["client", "udp://127.0.0.1:9", "--send-proxy", "v1"][..],
        &[
            "ping",
            "unix:/nonexistent.sock",
            "--send-proxy",
            "v2",
            "-c",
            "1",
        ],
        &[
            "bench",
            "udp://127.0.0.1:9",
            "--send-proxy",
            "v2",
            "-d",
            "100ms",
        ],
    ] {
        let output = run(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
        assert!(
            stderr_of(&output).contains("tcp and tls endpoints only"),
            "{args:?}: {}",
            stderr_of(&output)
        );
    }
    let output = run(&["client", "--proxy-source", "192.0.2.1:1"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
}

#[test]
fn the_server_side_flags_come_from_the_environment_too() {
    let mut cmd = sockecho(["serve", "tcp://127.0.0.1:0"]);
    cmd.env("SOCKECHO_PROXY_PROTOCOL", "yes")
        .env("SOCKECHO_PROXY_FROM", "127.0.0.2,127.0.0.3")
        .env("SOCKECHO_PROXY_HEADER_TIMEOUT", "250ms");
    let server = Server::start_command(cmd, 1);
    server.wait_for("headers required from 127.0.0.2/32, 127.0.0.3/32");
    let mut untrusted = tcp_connect_from(ip("127.0.0.1"), server.tcp());
    untrusted
        .write_all(b"PROXY TCP4 192.0.2.1 127.0.0.1 1 2\r\n")
        .expect("send the header");
    assert_closed_unserved(&mut untrusted, "a header from outside SOCKECHO_PROXY_FROM");
    let mut stalled = tcp_connect_from(ip("127.0.0.3"), server.tcp());
    stalled.write_all(b"PROXY TCP4").expect("send");
    assert_closed_unserved(&mut stalled, "a header that stops");
    server.wait_for("no complete PROXY header within 250ms");
}
