//! `sockecho client` on datagram endpoints (UDP, unixgram): one datagram per input line, each
//! reply on its own line, and a missing reply reported with exit code 1.

use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use crate::support::{Server, WAIT, run_with_input, stderr_of, stdout_of, temp_dir};

#[test]
fn udp_sends_one_datagram_per_line_and_prints_each_reply() {
    let server = Server::start(&["udp://127.0.0.1:0"], &["--log-data"]);
    let out = run_with_input(&["client", &server.arg()], b"one\ntwo two\n\nlast");
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert_eq!(stdout_of(&out), "one\ntwo two\n\nlast\n");
    // Four datagrams, the empty line among them: the server saw each one separately.
    server.wait_for(": last\n");
    let log = server.log();
    assert!(
        log.contains(": one\n") && log.contains(": two two\n"),
        "{log}"
    );
}

#[test]
fn udp_over_ipv6_and_by_host_name() {
    let server = Server::start(&["udp://[::1]:0", "udp://127.0.0.1:0"], &[]);
    let out = run_with_input(&["client", &server.find("udp://[").arg()], b"six\n");
    assert_eq!(stdout_of(&out), "six\n", "{}", stderr_of(&out));
    assert!(out.status.success());
    let port = server.find("udp://127.").udp().port();
    let out = run_with_input(&["client", &format!("udp://localhost:{port}")], b"named\n");
    assert_eq!(stdout_of(&out), "named\n", "{}", stderr_of(&out));
    assert!(out.status.success());
}

#[test]
fn unixgram_sends_one_datagram_per_line_and_prints_each_reply() {
    let dir = temp_dir();
    let path = dir.path().join("g.sock");
    let endpoint = format!("unixgram:{}", path.display());
    let _server = Server::start(&[&endpoint], &[]);
    let out = run_with_input(&["client", &endpoint], b"alpha\nbeta\n");
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert_eq!(stdout_of(&out), "alpha\nbeta\n");
    // The client binds an abstract address: it leaves no file behind.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(left, ["g.sock"], "files in the socket directory");
}

#[test]
fn udp_lost_replies_are_reported_with_exit_code_1() {
    // A socket that receives but never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    silent.set_read_timeout(Some(WAIT)).expect("timeout");
    let endpoint = format!("udp://{}", silent.local_addr().expect("addr"));
    let out = run_with_input(&["client", "--timeout", "200ms", &endpoint], b"a\nbb\n");
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(stdout_of(&out), "", "nothing came back, nothing printed");
    assert!(err.contains("no reply to datagram 1"), "{err}");
    assert!(err.contains("no reply to datagram 2"), "{err}");
    assert!(err.contains("2 of 2"), "{err}");
    // The datagrams were really sent.
    let mut buf = [0u8; 16];
    let n = silent.recv(&mut buf).expect("first datagram");
    assert_eq!(&buf[..n], b"a");
    let n = silent.recv(&mut buf).expect("second datagram");
    assert_eq!(&buf[..n], b"bb");
}

#[test]
fn one_lost_reply_among_several_is_exit_code_1() {
    // Answers the first datagram and ignores the second.
    let half = UdpSocket::bind("127.0.0.1:0").expect("bind");
    half.set_read_timeout(Some(WAIT)).expect("timeout");
    let endpoint = format!("udp://{}", half.local_addr().expect("addr"));
    let responder = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let (n, from) = half.recv_from(&mut buf).expect("first datagram");
        half.send_to(&buf[..n], from).expect("reply");
        let (n, _) = half.recv_from(&mut buf).expect("second datagram");
        buf[..n].to_vec()
    });
    let out = run_with_input(
        &["client", "--timeout", "300ms", &endpoint],
        b"answered\nignored\n",
    );
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(stdout_of(&out), "answered\n");
    assert!(err.contains("no reply to datagram 2"), "{err}");
    assert!(err.contains("1 of 2"), "{err}");
    assert_eq!(responder.join().expect("responder"), b"ignored");
}

#[test]
fn unixgram_lost_replies_are_reported_with_exit_code_1() {
    let dir = temp_dir();
    let path = dir.path().join("silent.sock");
    let silent = UnixDatagram::bind(&path).expect("bind");
    silent.set_read_timeout(Some(WAIT)).expect("timeout");
    let endpoint = format!("unixgram:{}", path.display());
    let out = run_with_input(&["client", "--timeout", "200ms", &endpoint], b"hello?\n");
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no reply to datagram 1"), "{err}");
    assert!(err.contains("1 of 1"), "{err}");
    let mut buf = [0u8; 16];
    let n = silent.recv(&mut buf).expect("the datagram");
    assert_eq!(&buf[..n], b"hello?");
}

#[test]
fn the_default_reply_timeout_is_one_second() {
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("udp://{}", silent.local_addr().expect("addr"));
    let started = Instant::now();
    let out = run_with_input(&["client", &endpoint], b"anyone?\n");
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "gave up after {took:?}"
    );
}

#[test]
fn a_late_reply_is_not_taken_for_the_next_one() {
    // Answers the first datagram only after the client gave up on it, right before answering
    // the second: the client must print the second reply, not the stale first one.
    let slow = UdpSocket::bind("127.0.0.1:0").expect("bind");
    slow.set_read_timeout(Some(WAIT)).expect("timeout");
    let endpoint = format!("udp://{}", slow.local_addr().expect("addr"));
    let responder = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let (n1, from) = slow.recv_from(&mut buf).expect("first datagram");
        let first = buf[..n1].to_vec();
        // The second datagram only comes once the client has timed out on the first.
        let (n2, _) = slow.recv_from(&mut buf).expect("second datagram");
        let second = buf[..n2].to_vec();
        slow.send_to(&first, from).expect("late reply");
        slow.send_to(&second, from).expect("reply");
    });
    let out = run_with_input(
        &["client", "--timeout", "300ms", &endpoint],
        b"first\nsecond\n",
    );
    responder.join().expect("responder");
    assert_eq!(stdout_of(&out), "second\n", "{}", stderr_of(&out));
    assert_eq!(out.status.code(), Some(1), "the first reply was lost");
}

/// A line longer than one datagram can carry is reported with the limit and skipped; the next
/// line is still sent and its reply printed, and the exit code says something went unsent.
#[test]
fn a_line_too_long_for_a_datagram_is_skipped_with_the_limit() {
    let dir = temp_dir();
    let sock = dir.path().join("g.sock");
    let server = Server::start(
        &["udp://127.0.0.1:0", &format!("unixgram:{}", sock.display())],
        &["-q"],
    );
    let mut input = vec![b'x'; 70_000];
    input.extend_from_slice(b"\nafter\n");
    let out = run_with_input(&["client", server.endpoint("udp://")], &input);
    let err = stderr_of(&out);
    assert_eq!(stdout_of(&out), "after\n", "{err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("line 1 not sent: 70000 bytes do not fit in one datagram (at most 65507)"),
        "{err}"
    );
    assert!(
        err.contains("1 line(s) too long for one datagram were not sent"),
        "{err}"
    );
    assert!(!err.contains("lost"), "{err}");

    // A Unix datagram is bounded by the socket's send buffer instead; far past it, the same.
    let mut input = vec![b'y'; 8 << 20];
    input.extend_from_slice(b"\nafter\n");
    let out = run_with_input(&["client", server.endpoint("unixgram:")], &input);
    let err = stderr_of(&out);
    assert_eq!(stdout_of(&out), "after\n", "{err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("line 1 not sent: 8388608 bytes do not fit in one datagram (at most "),
        "{err}"
    );
}
