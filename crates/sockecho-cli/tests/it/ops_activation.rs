//! systemd integration: socket activation (`LISTEN_FDS`, sockets passed as descriptors 3 and
//! up) and readiness notification (`NOTIFY_SOCKET`). The test plays systemd: it binds the
//! sockets, hands them to the child, and listens on the notification socket.

use std::io::ErrorKind;
use std::net::{TcpListener, UdpSocket};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::time::Duration;

use crate::support::{
    Ep, Server, WAIT, assert_no_panic, echo_once, sockecho, stderr_of, tcp_connect, temp_dir,
    udp_exchange, udp_peer, unix_connect, unixgram_peer,
};
use command_fds::{CommandFdExt, FdMapping};
use rustix::process::Signal;

/// `sockecho serve ARGS` with `fds` as descriptors 3, 4, ... and `LISTEN_FDS` set (no
/// `LISTEN_PID`, which counts as "for this process").
fn activated(args: &[&str], fds: Vec<OwnedFd>) -> std::process::Command {
    let count = fds.len().to_string();
    let mappings = fds
        .into_iter()
        .zip(3..)
        .map(|(parent_fd, child_fd)| FdMapping {
            parent_fd,
            child_fd,
        })
        .collect();
    let mut cmd = sockecho(args);
    cmd.fd_mappings(mappings)
        .expect("distinct child descriptors")
        .env("LISTEN_FDS", count)
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDNAMES")
        .env_remove("NOTIFY_SOCKET");
    cmd
}

#[test]
fn serves_inherited_tcp_udp_unix_and_unixgram_sockets() {
    let dir = temp_dir();
    let stream_path = dir.path().join("activated.sock");
    let gram_path = dir.path().join("activated-gram.sock");
    let tcp = TcpListener::bind("127.0.0.1:0").expect("bind tcp");
    let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let unix = UnixListener::bind(&stream_path).expect("bind unix");
    let gram = UnixDatagram::bind(&gram_path).expect("bind unixgram");
    let (tcp_addr, udp_addr) = (
        tcp.local_addr().expect("addr"),
        udp.local_addr().expect("addr"),
    );

    let cmd = activated(
        &["serve"],
        vec![tcp.into(), udp.into(), unix.into(), gram.into()],
    );
    let mut server = Server::start_command(cmd, 4);
    let mut listening = server.endpoints.clone();
    listening.sort_by_key(Ep::arg);
    let mut expected = vec![
        Ep::Tcp(tcp_addr),
        Ep::Udp(udp_addr),
        Ep::Unix(stream_path.clone()),
        Ep::UnixGram(gram_path.clone()),
    ];
    expected.sort_by_key(Ep::arg);
    assert_eq!(listening, expected, "{}", server.log());

    echo_once(&mut tcp_connect(tcp_addr), b"over inherited tcp");
    let peer = udp_peer(udp_addr);
    assert_eq!(
        udp_exchange(&peer, udp_addr, b"inherited udp"),
        b"inherited udp"
    );
    echo_once(&mut unix_connect(&stream_path), b"over inherited unix");
    let gram_peer = unixgram_peer(&dir.path().join("client-gram.sock"));
    gram_peer
        .send_to(b"inherited unixgram", &gram_path)
        .expect("send");
    let mut buf = [0u8; 64];
    let n = gram_peer.recv(&mut buf).expect("unixgram echo");
    assert_eq!(&buf[..n], b"inherited unixgram");

    server.signal(Signal::TERM);
    let status = server.wait_exit(WAIT);
    assert_eq!(status.code(), Some(0), "{}", server.log());
    let log = server.log();
    assert!(
        log.contains("socket activation: serving 4 inherited socket(s)"),
        "{log}"
    );
    assert!(
        !log.contains(":54000"),
        "bound the default port despite socket activation:\n{log}"
    );
    // The socket files belong to whoever bound them (here the test), not to the server.
    assert!(
        stream_path.exists(),
        "the server removed {}",
        stream_path.display()
    );
    assert!(
        gram_path.exists(),
        "the server removed {}",
        gram_path.display()
    );
}

#[test]
fn inherited_sockets_are_served_next_to_endpoints_on_the_command_line() {
    let tcp = TcpListener::bind("127.0.0.1:0").expect("bind tcp");
    let inherited = tcp.local_addr().expect("addr");
    let cmd = activated(&["serve", "udp://127.0.0.1:0"], vec![tcp.into()]);
    let server = Server::start_command(cmd, 2);
    assert_eq!(server.tcp(), inherited);
    echo_once(&mut tcp_connect(inherited), b"inherited");
    let udp = server.udp();
    assert_eq!(udp_exchange(&udp_peer(udp), udp, b"bound"), b"bound");
    assert!(!server.log().contains(":54000"), "{}", server.log());
}

#[test]
fn a_descriptor_that_is_not_a_socket_is_refused_with_exit_2() {
    let file = tempfile::tempfile().expect("temp file");
    let cmd = activated(&["serve"], vec![file.into()]);
    let output = assert_cmd::Command::from_std(cmd)
        .timeout(WAIT)
        .output()
        .expect("run sockecho");
    let stderr = stderr_of(&output);
    assert_no_panic(&stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("inherited file descriptor 3")
            && stderr.contains("not a TCP, UDP or Unix socket"),
        "{stderr}"
    );
    assert!(!stderr.contains("listening on"), "{stderr}");
}

/// Runs `cmd` to completion (it must not start serving), returning its exit code and stderr.
fn refused(cmd: std::process::Command) -> (Option<i32>, String) {
    let output = assert_cmd::Command::from_std(cmd)
        .timeout(WAIT)
        .output()
        .expect("sockecho serve did not exit");
    let stderr = crate::support::stderr_of(&output);
    crate::support::assert_no_panic(&stderr);
    assert!(!stderr.contains("listening on"), "{stderr}");
    (output.status.code(), stderr)
}

#[test]
fn a_tcp_socket_that_is_bound_but_not_listening_is_refused_with_exit_2() {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .expect("addr")
                .into(),
        )
        .expect("bind");
    let (code, stderr) = refused(activated(&["serve"], vec![socket.into()]));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("inherited file descriptor 3") && stderr.contains("not listening"),
        "{stderr}"
    );
}

#[test]
fn a_connected_tcp_socket_is_refused_with_exit_2() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let connected = tcp_connect(listener.local_addr().expect("addr"));
    let (code, stderr) = refused(activated(&["serve"], vec![connected.into()]));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("inherited file descriptor 3") && stderr.contains("not listening"),
        "{stderr}"
    );
}

#[test]
fn a_listen_fds_that_is_not_a_count_is_refused_with_exit_2() {
    for value in ["abc", "-1", "99999999999"] {
        let mut cmd = crate::support::sockecho(["serve", "tcp://127.0.0.1:0"]);
        cmd.env("LISTEN_FDS", value).env_remove("LISTEN_PID");
        let (code, stderr) = refused(cmd);
        assert_eq!(code, Some(2), "LISTEN_FDS={value}: {stderr}");
        assert!(
            stderr.contains("LISTEN_FDS="),
            "LISTEN_FDS={value}: {stderr}"
        );
    }
}

#[test]
fn a_listen_fds_count_past_the_descriptors_passed_names_the_missing_one() {
    let tcp = TcpListener::bind("127.0.0.1:0").expect("bind tcp");
    let mut cmd = activated(&["serve"], vec![tcp.into()]);
    cmd.env("LISTEN_FDS", "3");
    let (code, stderr) = refused(cmd);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("inherited file descriptor 4"),
        "expected the first descriptor not passed to be named: {stderr}"
    );
}

#[test]
fn a_listen_pid_of_another_process_is_ignored_with_a_warning() {
    let tcp = TcpListener::bind("127.0.0.1:0").expect("bind tcp");
    let inherited = tcp.local_addr().expect("addr");
    let mut cmd = activated(&["serve", "tcp://127.0.0.1:0"], vec![tcp.into()]);
    cmd.env("LISTEN_PID", "1");
    let mut server = Server::start_command(cmd, 1);
    assert_ne!(server.tcp(), inherited, "served a socket meant for pid 1");
    let log = server.log();
    assert!(
        log.contains("LISTEN_FDS=1 is for process 1, not this one"),
        "no warning: {log}"
    );
    server.signal(Signal::TERM);
    assert_eq!(server.wait_exit(WAIT).code(), Some(0), "{}", server.log());
}

/// Receives one notification, failing after [`WAIT`].
fn notification(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no sd_notify message within {WAIT:?}: {e}"));
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn notifies_systemd_of_ready_and_stopping() {
    let dir = temp_dir();
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).expect("bind the notify socket");
    notify.set_read_timeout(Some(WAIT)).expect("timeout");

    let mut cmd = sockecho(["serve", "tcp://127.0.0.1:0"]);
    cmd.env("NOTIFY_SOCKET", &notify_path);
    let mut server = Server::start_command(cmd, 1);
    let ready = notification(&notify);
    assert!(
        ready.lines().any(|l| l == "READY=1"),
        "first notification: {ready:?}"
    );
    // Ready means serving.
    echo_once(&mut tcp_connect(server.tcp()), b"ready");
    notify
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    match notify.recv(&mut [0u8; 64]) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("unexpected notification before shutdown: {other:?}"),
    }
    notify.set_read_timeout(Some(WAIT)).expect("timeout");

    server.signal(Signal::TERM);
    let stopping = notification(&notify);
    assert!(
        stopping.lines().any(|l| l == "STOPPING=1"),
        "notification after SIGTERM: {stopping:?}"
    );
    assert_eq!(server.wait_exit(WAIT).code(), Some(0), "{}", server.log());
}
