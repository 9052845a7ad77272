//! Runtime errors of `serve`: one clear line naming the endpoint, exit code 1, no panic.

use std::os::unix::fs::PermissionsExt;

use crate::support::{is_root, run, stderr_of, temp_dir};

/// Runs `sockecho serve ARGS`, expects it to fail at once with exit code 1, and returns stderr.
fn serve_fails(args: &[&str]) -> String {
    let mut all = vec!["serve"];
    all.extend_from_slice(args);
    let out = run(&all);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "sockecho {all:?}: {err}");
    assert!(
        err.starts_with("error: ") || err.contains("\nerror: "),
        "{err}"
    );
    err
}

#[test]
fn tcp_address_in_use_names_the_endpoint() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("tcp://{}", taken.local_addr().expect("addr"));
    let err = serve_fails(&[&endpoint]);
    assert!(
        err.contains(&format!("cannot listen on {endpoint}")),
        "{err}"
    );
    assert!(err.contains("address already in use"), "{err}");
}

#[test]
fn udp_address_in_use_names_the_endpoint() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("udp://{}", taken.local_addr().expect("addr"));
    let err = serve_fails(&[&endpoint]);
    assert!(err.contains(&endpoint), "{err}");
    assert!(err.contains("address already in use"), "{err}");
}

#[test]
fn ipv6_address_in_use_names_the_endpoint_in_brackets() {
    let taken = std::net::TcpListener::bind("[::1]:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let endpoint = format!("tcp://[::1]:{port}");
    let err = serve_fails(&[&endpoint]);
    assert!(err.contains(&endpoint), "{err}");
    assert!(err.contains("address already in use"), "{err}");
}

#[test]
fn the_same_endpoint_twice_is_address_in_use() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    drop(taken);
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let err = serve_fails(&[&endpoint, &endpoint]);
    assert!(err.contains("address already in use"), "{err}");
}

#[test]
fn missing_directory_names_the_endpoint() {
    let err = serve_fails(&["unix:/nonexistent/dir/s.sock"]);
    assert!(err.contains("unix:/nonexistent/dir/s.sock"), "{err}");
    assert!(err.contains("no such directory"), "{err}");
    let err = serve_fails(&["unixgram:/nonexistent/dir/g.sock"]);
    assert!(err.contains("unixgram:/nonexistent/dir/g.sock"), "{err}");
    assert!(err.contains("no such directory"), "{err}");
}

#[test]
fn unknown_host_names_the_endpoint() {
    let err = serve_fails(&["tcp://no-such-host.invalid:1"]);
    assert!(err.contains("tcp://no-such-host.invalid:1"), "{err}");
    assert!(err.contains("no-such-host.invalid"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
}

#[test]
fn an_address_of_another_host_is_not_available() {
    // TEST-NET-1 (RFC 5737) is never assigned to a local interface.
    let err = serve_fails(&["tcp://192.0.2.1:0"]);
    assert!(err.contains("tcp://192.0.2.1:0"), "{err}");
    assert!(err.contains("not available"), "{err}");
}

#[test]
fn permission_denied_names_the_endpoint() {
    let dir = temp_dir();
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).expect("mkdir");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o500)).expect("chmod");
    let endpoint = format!("unix:{}", locked.join("s.sock").display());
    if is_root() {
        // Root bypasses directory permissions, so there is nothing to deny.
        eprintln!("skipped: running as root, directory permissions do not apply");
        return;
    }
    let err = serve_fails(&[&endpoint]);
    assert!(err.contains(&endpoint), "{err}");
    assert!(err.contains("permission denied"), "{err}");
}

/// sysfs refuses new files even to root (EPERM), or is mounted read-only in some containers.
#[test]
fn a_path_where_no_one_may_create_a_socket_names_the_endpoint() {
    let endpoint = "unix:/sys/sockecho-test.sock";
    let err = serve_fails(&[endpoint]);
    assert!(err.contains(endpoint), "{err}");
    assert!(
        err.contains("permission denied") || err.contains("read-only"),
        "{err}"
    );
}
