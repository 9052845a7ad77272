//! Client connection errors: one clear line naming the endpoint, exit code 1.

use crate::support::{closed_tcp_port, run, run_with_input, stderr_of, temp_dir};

/// Runs `sockecho client ENDPOINT` with empty piped input; expects exit 1 and a single line.
fn client_fails(endpoint: &str) -> String {
    let out = run(&["client", endpoint]);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "client {endpoint}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        err.contains(endpoint),
        "error does not name {endpoint}: {err}"
    );
    assert!(out.stdout.is_empty(), "stdout: {:?}", out.stdout);
    err
}

#[test]
fn tcp_connection_refused() {
    let endpoint = format!("tcp://{}", closed_tcp_port());
    let err = client_fails(&endpoint);
    assert!(err.contains("connection refused"), "{err}");
}

#[test]
fn ipv6_connection_refused() {
    let listener = std::net::TcpListener::bind("[::1]:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let err = client_fails(&format!("tcp://[::1]:{port}"));
    assert!(err.contains("connection refused"), "{err}");
}

#[test]
fn unix_socket_file_missing() {
    let dir = temp_dir();
    let endpoint = format!("unix:{}", dir.path().join("nobody.sock").display());
    let err = client_fails(&endpoint);
    assert!(err.contains("no such socket file"), "{err}");
}

#[test]
fn unix_socket_file_nobody_listens_on() {
    let dir = temp_dir();
    let path = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
    let err = client_fails(&format!("unix:{}", path.display()));
    assert!(err.contains("connection refused"), "{err}");
}

#[test]
fn unixgram_socket_file_missing() {
    let dir = temp_dir();
    let endpoint = format!("unixgram:{}", dir.path().join("nobody.sock").display());
    let out = run_with_input(&["client", &endpoint], b"hello\n");
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&endpoint), "{err}");
    assert!(err.contains("no such socket file"), "{err}");
}

#[test]
fn udp_port_nobody_listens_on() {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("udp://{}", socket.local_addr().expect("addr"));
    drop(socket);
    let out = run_with_input(&["client", "--timeout", "2s", &endpoint], b"hello\n");
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&endpoint), "{err}");
}

#[test]
fn unknown_host() {
    let err = client_fails("tcp://no-such-host.invalid:1");
    assert!(err.contains("no-such-host.invalid"), "{err}");
}

#[test]
fn wildcard_host_is_not_a_server_address() {
    let err = client_fails("tcp://*:1");
    assert!(err.contains("no host given"), "{err}");
}
