//! What the server logs: a line per connection and disconnection with the peer and byte count,
//! payloads only with `--log-data`, and less with `-q`.

use std::io::Read;
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;

use crate::support::{
    Server, WAIT, echo_once, poll_until, run, stderr_of, tcp_connect, temp_dir, udp_exchange,
    udp_peer, unix_connect,
};
use rustix::process::Signal;

#[test]
fn tcp_connections_are_logged_with_peer_and_byte_count() {
    let server = Server::start(&["tcp://127.0.0.1:0"], &[]);
    let mut stream = tcp_connect(server.tcp());
    let peer = stream.local_addr().expect("local addr");
    server.wait_for(&format!("{peer} connected"));
    echo_once(&mut stream, b"twelve bytes");
    drop(stream);
    let log = server.wait_for(&format!("{peer} disconnected ("));
    let line = log
        .lines()
        .find(|l| l.contains(&format!("{peer} disconnected (")))
        .expect("disconnected line");
    assert!(line.contains("(12 bytes echoed"), "{line}");
    assert!(line.contains("peer closed"), "{line}");
}

#[test]
fn unix_connections_are_logged_with_the_peer_process() {
    let dir = temp_dir();
    let path = dir.path().join("s.sock");
    let server = Server::start(&[&format!("unix:{}", path.display())], &[]);
    let mut stream = unix_connect(&path);
    let pid = std::process::id();
    server.wait_log("a unix connected line", |log| {
        log.lines()
            .any(|l| l.contains("unix#") && l.contains(&format!("(pid {pid}) connected")))
    });
    echo_once(&mut stream, b"abc");
    drop(stream);
    server.wait_log("a unix disconnected line", |log| {
        log.lines().any(|l| {
            l.contains(&format!("(pid {pid}) disconnected (3 bytes echoed")) && l.contains("unix#")
        })
    });
}

#[test]
fn payloads_are_not_logged_by_default() {
    let server = Server::start(&["tcp://127.0.0.1:0", "udp://127.0.0.1:0"], &[]);
    let udp = server.udp();
    assert_eq!(
        udp_exchange(&udp_peer(udp), udp, b"datagram-secret-4712"),
        b"datagram-secret-4712"
    );
    let mut stream = tcp_connect(server.tcp());
    let peer = stream.local_addr().expect("local addr");
    echo_once(&mut stream, b"stream-secret-4711\n");
    drop(stream);
    // The disconnection is logged last: any logging of either payload would come before it.
    let log = server.wait_for(&format!("{peer} disconnected ("));
    assert!(
        !log.contains("secret-4711"),
        "stream payload logged:\n{log}"
    );
    assert!(
        !log.contains("secret-4712"),
        "datagram payload logged:\n{log}"
    );
}

#[test]
fn log_data_logs_stream_and_datagram_payloads_trimmed_and_escaped() {
    let server = Server::start(&["tcp://127.0.0.1:0", "udp://127.0.0.1:0"], &["--log-data"]);
    let mut stream = tcp_connect(server.tcp());
    let peer = stream.local_addr().expect("local addr");
    echo_once(&mut stream, b"  hello log-data \r\n");
    server.wait_for(&format!("{peer}: hello log-data\n"));
    echo_once(&mut stream, b"caf\xc3\xa9 \xff end\n");
    server.wait_for(&format!("{peer}: caf\u{e9} \\xff end\n"));

    let udp = server.udp();
    let socket = udp_peer(udp);
    let from = socket.local_addr().expect("local addr");
    assert_eq!(udp_exchange(&socket, udp, b"udp words\n"), b"udp words\n");
    server.wait_for(&format!("{from}: udp words\n"));
}

/// A payload is logged as one line whatever it holds: line breaks, carriage returns and terminal
/// escapes show as escapes, so a peer cannot forge log lines or recolour the operator's terminal.
#[test]
fn log_data_escapes_what_could_forge_a_line_or_drive_a_terminal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gram = dir.path().join("g.sock");
    let server = Server::start(
        &["tcp://127.0.0.1:0", &format!("unixgram:{}", gram.display())],
        &["--log-data"],
    );
    let forged = b"hi\nINFO 127.0.0.1:1 connected\r\x1b[31mred\x1b[0m\x07 \\n\n";
    let mut stream = tcp_connect(server.tcp());
    let peer = stream.local_addr().expect("local addr");
    echo_once(&mut stream, forged);
    let expected = r"hi\nINFO 127.0.0.1:1 connected\r\x1b[31mred\x1b[0m\x07 \\n";
    server.wait_for(&format!("{peer}: {expected}\n"));

    // The same over a datagram socket, from a peer whose path holds a line break too.
    let client_path = dir.path().join("evil\nname");
    let client = crate::support::unixgram_peer(&client_path);
    client.send_to(forged, &gram).expect("send");
    let mut buf = [0u8; 256];
    let n = client.recv(&mut buf).expect("echo");
    assert_eq!(&buf[..n], forged);
    let shown = format!("{}", client_path.display()).replace('\n', r"\n");
    let log = server.wait_for(&format!("{shown}: {expected}\n"));
    assert!(
        !log.contains('\x1b'),
        "raw escape character in the log:\n{log}"
    );
    assert!(
        !log.contains('\r'),
        "raw carriage return in the log:\n{log}"
    );
    assert!(
        !log.lines().any(|l| l.starts_with("INFO 127.0.0.1:1")),
        "a forged line made it into the log:\n{log}"
    );
}

#[test]
fn quiet_hides_connection_lines_but_keeps_lifecycle_lines() {
    let mut server = Server::start(&["tcp://127.0.0.1:0"], &["-q"]);
    let mut stream = tcp_connect(server.tcp());
    let peer = stream.local_addr().expect("local addr");
    echo_once(&mut stream, b"quietly");
    stream.shutdown(Shutdown::Write).expect("half-close");
    assert_eq!(stream.read(&mut [0u8; 8]).expect("read EOF"), 0);
    drop(stream);
    server.signal(Signal::TERM);
    let status = server.wait_exit(WAIT);
    assert!(status.success(), "exit status {status}");
    let log = server.log();
    assert!(
        !log.contains(&peer.to_string()),
        "-q keeps connection lines:\n{log}"
    );
    assert!(
        !log.contains("connected"),
        "-q keeps connection lines:\n{log}"
    );
    assert!(log.contains("listening on tcp://127.0.0.1:"), "{log}");
    assert!(log.contains("received SIGTERM"), "{log}");
}

#[test]
fn double_quiet_shows_nothing_but_errors() {
    let dir = temp_dir();
    let path = dir.path().join("q.sock");
    let mut server = Server::spawn(&["serve", &format!("unix:{}", path.display()), "-qq"]);
    // With -qq there is no `listening on` line to wait for, so readiness is the socket accepting.
    let mut stream = connect_when_ready(&path);
    echo_once(&mut stream, b"very quietly");
    drop(stream);
    server.signal(Signal::TERM);
    let status = server.wait_exit(WAIT);
    assert!(status.success(), "exit status {status}");
    let log = server.log();
    assert_eq!(log, "", "-qq logged more than errors");
    assert!(!path.exists(), "socket file left behind");
}

#[test]
fn double_quiet_still_reports_errors() {
    let out = run(&["serve", "-qq", "unix:/nonexistent/dir/s.sock"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(err.contains("unix:/nonexistent/dir/s.sock"), "{err}");
}

fn connect_when_ready(path: &Path) -> UnixStream {
    // Not bound yet is the only reason to fail here; poll until it is.
    let stream = poll_until(&format!("a listener on {}", path.display()), || {
        UnixStream::connect(path)
    });
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream
}
