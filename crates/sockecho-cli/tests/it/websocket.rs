//! `ws://` and `wss://` from the outside: the server against a WebSocket client written here
//! frame by frame (text, binary, ping, fragments, close codes, the size limit, plain HTTP at the
//! endpoint, shutdown), and `client`, `ping` and `bench` against the server.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use rustix::process::Signal;

use crate::support::{
    Metrics, Server, WAIT, bench_json, int, run, run_with_input, stderr_of, stdout_of, tcp_connect,
};

const OP_CONTINUATION: u8 = 0;
const OP_TEXT: u8 = 1;
const OP_BINARY: u8 = 2;
const OP_CLOSE: u8 = 8;
const OP_PING: u8 = 9;
const OP_PONG: u8 = 10;

/// A WebSocket client that writes and reads frames itself, so what the server sends is seen
/// exactly, frame by frame.
struct RawWs {
    stream: TcpStream,
}

impl RawWs {
    /// Connects and upgrades on `path`, asserting the server switches protocols.
    fn open(addr: SocketAddr, path: &str) -> RawWs {
        let mut stream = tcp_connect(addr);
        let head = http_exchange(
            &mut stream,
            &format!(
                "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            ),
        );
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        // RFC 6455's example key and its answer.
        assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
        RawWs { stream }
    }

    /// Sends one frame, masked as a client must.
    fn send(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        let mut frame = vec![(u8::from(fin) << 7) | opcode];
        let len = payload.len();
        if len < 126 {
            frame.push(0x80 | len as u8);
        } else if len <= 0xffff {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).expect("send a frame");
    }

    /// Reads one whole frame: its opcode and payload. Server frames are never masked.
    fn recv(&mut self) -> (u8, Vec<u8>) {
        let mut head = [0u8; 2];
        self.stream.read_exact(&mut head).expect("a frame header");
        assert_eq!(head[0] & 0x80, 0x80, "an echo is one final frame");
        assert_eq!(head[1] & 0x80, 0, "server frames are not masked");
        let len = match head[1] & 0x7f {
            126 => {
                let mut n = [0u8; 2];
                self.stream.read_exact(&mut n).expect("length");
                u64::from(u16::from_be_bytes(n))
            }
            127 => {
                let mut n = [0u8; 8];
                self.stream.read_exact(&mut n).expect("length");
                u64::from_be_bytes(n)
            }
            n => u64::from(n),
        };
        let mut payload = vec![0u8; len as usize];
        self.stream
            .read_exact(&mut payload)
            .expect("a frame payload");
        (head[0] & 0x0f, payload)
    }

    /// Reads a close frame and returns its code.
    fn recv_close(&mut self) -> u16 {
        let (opcode, payload) = self.recv();
        assert_eq!(opcode, OP_CLOSE, "a close frame: {payload:?}");
        u16::from_be_bytes([payload[0], payload[1]])
    }

    /// Asserts the server ended the connection.
    fn assert_ended(&mut self) {
        let mut rest = Vec::new();
        self.stream
            .read_to_end(&mut rest)
            .expect("the server closes cleanly");
        assert!(rest.is_empty(), "nothing after the close: {rest:?}");
    }
}

/// Sends `request` and reads the response head (up to the blank line), byte by byte so no
/// frame that follows is taken.
fn http_exchange(stream: &mut TcpStream, request: &str) -> String {
    stream.write_all(request.as_bytes()).expect("send request");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("a response head");
        head.push(byte[0]);
    }
    String::from_utf8(head).expect("an ASCII head")
}

/// The address of the server's one `ws://` listener.
fn ws_addr(server: &Server) -> SocketAddr {
    server.find("ws://").tcp()
}

fn start_ws(flags: &[&str]) -> Server {
    Server::start(&["ws://127.0.0.1:0/echo"], flags)
}

#[test]
fn messages_come_back_as_they_were_sent() {
    let server = start_ws(&[]);
    let mut ws = RawWs::open(ws_addr(&server), "/echo");
    ws.send(true, OP_TEXT, "héllo".as_bytes());
    assert_eq!(ws.recv(), (OP_TEXT, "héllo".as_bytes().to_vec()));
    ws.send(true, OP_BINARY, &[0, 255, 1, 254]);
    assert_eq!(ws.recv(), (OP_BINARY, vec![0, 255, 1, 254]));
    let big: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    ws.send(true, OP_BINARY, &big);
    assert_eq!(ws.recv(), (OP_BINARY, big));
    ws.send(true, OP_PING, b"are you there");
    assert_eq!(ws.recv(), (OP_PONG, b"are you there".to_vec()));
    // Three fragments, with a ping between them, make one message.
    ws.send(false, OP_TEXT, b"frag");
    ws.send(true, OP_PING, b"p");
    ws.send(false, OP_CONTINUATION, b"men");
    ws.send(true, OP_CONTINUATION, b"ted");
    assert_eq!(ws.recv(), (OP_PONG, b"p".to_vec()));
    assert_eq!(ws.recv(), (OP_TEXT, b"fragmented".to_vec()));
    // The close code comes back, and the server ends the connection.
    ws.send(true, OP_CLOSE, &[0x0f, 0xa0, b'b', b'y', b'e']); // 4000
    assert_eq!(ws.recv_close(), 4000);
    ws.assert_ended();
    let log = server.wait_for("disconnected");
    let expected = "héllo".len() + 4 + 70_000 + "fragmented".len();
    assert!(
        log.contains(&format!("({expected} bytes echoed")),
        "payload bytes counted: {log}"
    );
}

#[test]
fn a_message_over_the_limit_is_closed_with_1009() {
    let server = start_ws(&["--ws-max-message", "1KiB"]);
    let mut ws = RawWs::open(ws_addr(&server), "/echo");
    ws.send(true, OP_BINARY, &[7u8; 1024]);
    assert_eq!(ws.recv(), (OP_BINARY, vec![7u8; 1024]));
    // Over the limit in fragments too: the size is the whole message's.
    ws.send(false, OP_BINARY, &[1u8; 600]);
    ws.send(true, OP_CONTINUATION, &[2u8; 600]);
    assert_eq!(ws.recv_close(), 1009);
    let log = server.wait_for("closed with 1009");
    assert!(log.contains("--ws-max-message"), "{log}");
}

#[test]
fn idle_connections_are_closed_and_counted_under_ws() {
    let server = start_ws(&["--idle-timeout", "200ms", "--metrics", "127.0.0.1:0"]);
    let metrics = Metrics::of(&server);
    let mut ws = RawWs::open(ws_addr(&server), "/echo");
    ws.send(true, OP_BINARY, b"0123456789");
    assert_eq!(ws.recv(), (OP_BINARY, b"0123456789".to_vec()));
    // Nothing more is sent: the server closes normally once the idle timeout passes.
    assert_eq!(ws.recv_close(), 1000);
    ws.send(true, OP_CLOSE, &1000u16.to_be_bytes());
    ws.assert_ended();
    metrics.wait_values(&[
        ("sockecho_connections_total{transport=\"ws\"}", 1),
        ("sockecho_connections_open{transport=\"ws\"}", 0),
        (
            "sockecho_connections_closed_total{transport=\"ws\",reason=\"idle_timeout\"}",
            1,
        ),
        ("sockecho_bytes_echoed_total{transport=\"ws\"}", 10),
    ]);
}

#[test]
fn plain_http_is_told_what_the_endpoint_is() {
    let server = start_ws(&[]);
    let mut stream = tcp_connect(ws_addr(&server));
    let head = http_exchange(&mut stream, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 426 Upgrade Required"), "{head}");
    assert!(head.contains("Upgrade: websocket"), "{head}");
    let mut body = String::new();
    stream
        .read_to_string(&mut body)
        .expect("body, then the end");
    assert!(body.contains("WebSocket echo endpoint"), "{body}");

    let mut stream = tcp_connect(ws_addr(&server));
    let head = http_exchange(
        &mut stream,
        "GET /elsewhere HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    );
    assert!(head.starts_with("HTTP/1.1 404 Not Found"), "{head}");
    let mut body = String::new();
    stream
        .read_to_string(&mut body)
        .expect("body, then the end");
    assert!(body.contains("echoes at /echo"), "{body}");
}

#[test]
fn shutdown_says_going_away() {
    let mut server = start_ws(&[]);
    let mut ws = RawWs::open(ws_addr(&server), "/echo");
    ws.send(true, OP_TEXT, b"before");
    assert_eq!(ws.recv(), (OP_TEXT, b"before".to_vec()));
    server.signal(Signal::TERM);
    assert_eq!(ws.recv_close(), 1001);
    ws.send(true, OP_CLOSE, &1001u16.to_be_bytes());
    ws.assert_ended();
    assert!(server.wait_exit(WAIT).success());
    assert!(server.log().contains("server shutdown"), "{}", server.log());
}

#[test]
fn client_pipe_sends_lines_and_gets_them_back() {
    let server = Server::start(&["ws://127.0.0.1:0/echo", "wss://127.0.0.1:0"], &[]);
    let input: &[u8] = b"one\ntwo words\n\xff\xfe binary\n\nlast line without newline";
    for (prefix, extra) in [("ws://", None), ("wss://", Some("--insecure"))] {
        let endpoint = server.endpoint(prefix).to_owned();
        let mut args = vec!["client", endpoint.as_str()];
        args.extend(extra);
        let out = run_with_input(&args, input);
        assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
        assert_eq!(out.stdout, input, "{prefix}: {}", stderr_of(&out));
    }
    // Five lines, five messages, on each connection.
    let log = server.log();
    assert_eq!(
        log.matches("disconnected (").count(),
        2,
        "two connections: {log}"
    );
}

#[test]
fn client_names_a_refused_upgrade() {
    let server = start_ws(&[]);
    let wrong = format!("ws://{}/nowhere", ws_addr(&server));
    let out = run_with_input(&["client", &wrong], b"x\n");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(err.contains("404"), "{err}");
}

#[test]
fn bench_and_ping_verify_over_ws_and_wss() {
    let server = Server::start(&["ws://127.0.0.1:0/echo", "wss://127.0.0.1:0/"], &["-q"]);
    for (prefix, transport) in [("ws://", "ws"), ("wss://", "wss")] {
        let endpoint = server.endpoint(prefix).to_owned();
        let (code, report, out) = bench_json(&[
            &endpoint,
            "--insecure",
            "-c",
            "2",
            "-s",
            "300",
            "--pipeline",
            "3",
            "-d",
            "600ms",
            "--warmup",
            "100ms",
        ]);
        assert_eq!(code, 0, "{transport}: {}", stderr_of(&out));
        assert_eq!(report["transport"], transport);
        assert_eq!(report["ok"], true, "{report:#}");
        let sent = int(&report, "messages_sent");
        assert!(sent > 0, "{report:#}");
        assert_eq!(int(&report, "messages_received"), sent, "{report:#}");
        assert_eq!(int(&report, "bytes_received"), sent * 300, "{report:#}");
        assert_eq!(int(&report, "connect_us.count"), 2, "{report:#}");

        let out = run(&["ping", &endpoint, "--insecure", "-c", "2", "-i", "100ms"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
        let text = stdout_of(&out);
        assert!(text.contains("2 sent, 2 received"), "{text}");
    }
}

#[test]
fn churn_is_refused_on_websocket() {
    let out = run(&["bench", "ws://127.0.0.1:9/", "--churn", "-d", "100ms"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("without --churn"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn log_data_shows_messages_escaped() {
    let server = start_ws(&["--log-data"]);
    let mut ws = RawWs::open(ws_addr(&server), "/echo");
    ws.send(true, OP_TEXT, b"red \x1b[31m text");
    assert_eq!(ws.recv(), (OP_TEXT, b"red \x1b[31m text".to_vec()));
    let log = server.wait_for("red \\x1b[31m text");
    assert!(
        !log.contains('\x1b'),
        "no raw escape reaches the log: {log:?}"
    );
}
