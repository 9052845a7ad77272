//! Unix socket paths: a stale socket file is replaced, a live socket or a file that is not a
//! socket is refused and left alone, and the files a server created go when it stops.

use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::Path;

use crate::support::{
    Ep, Server, WAIT, echo_once, run, stderr_of, temp_dir, unix_connect, unixgram_peer,
};

fn is_socket(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

#[test]
fn a_stale_stream_socket_file_is_replaced() {
    let dir = temp_dir();
    let path = dir.path().join("stale.sock");
    drop(UnixListener::bind(&path).expect("bind"));
    assert!(
        is_socket(&path),
        "the stale file should remain after the listener is gone"
    );
    let server = Server::start(&[&format!("unix:{}", path.display())], &[]);
    echo_once(&mut unix_connect(&path), b"served on a reclaimed path");
    assert!(server.log().contains("stale"), "{}", server.log());
}

#[test]
fn a_stale_datagram_socket_file_is_replaced() {
    let dir = temp_dir();
    let path = dir.path().join("stale.dgram");
    drop(UnixDatagram::bind(&path).expect("bind"));
    assert!(is_socket(&path));
    let _server = Server::start(&[&format!("unixgram:{}", path.display())], &[]);
    let peer = unixgram_peer(&dir.path().join("me.sock"));
    peer.send_to(b"hi", &path).expect("send");
    let mut buf = [0u8; 8];
    let n = peer.recv(&mut buf).expect("reply");
    assert_eq!(&buf[..n], b"hi");
}

#[test]
fn a_regular_file_is_never_touched() {
    let dir = temp_dir();
    let path = dir.path().join("precious.txt");
    std::fs::write(&path, b"do not delete me\n").expect("write");
    for scheme in ["unix", "unixgram"] {
        let endpoint = format!("{scheme}:{}", path.display());
        let out = run(&["serve", &endpoint]);
        assert_eq!(out.status.code(), Some(1), "{scheme}: {}", stderr_of(&out));
        let err = stderr_of(&out);
        assert!(
            err.contains(&endpoint),
            "{scheme}: error does not name the endpoint: {err}"
        );
        assert!(err.contains("not a socket"), "{scheme}: {err}");
        assert_eq!(
            std::fs::read(&path).expect("the file is still there"),
            b"do not delete me\n",
            "{scheme}: file content changed"
        );
    }
}

#[test]
fn a_directory_at_the_path_is_never_touched() {
    let dir = temp_dir();
    let path = dir.path().join("sub");
    std::fs::create_dir(&path).expect("mkdir");
    std::fs::write(path.join("keep"), b"x").expect("write");
    let out = run(&["serve", &format!("unix:{}", path.display())]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(path.join("keep").exists(), "directory content touched");
}

#[test]
fn a_live_socket_is_address_in_use_and_keeps_working() {
    let dir = temp_dir();
    let path = dir.path().join("live.sock");
    let endpoint = format!("unix:{}", path.display());
    let first = Server::start(&[&endpoint], &[]);
    let out = run(&["serve", &endpoint]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(err.contains(&endpoint), "{err}");
    assert!(err.contains("address already in use"), "{err}");
    // The second server must not have removed or replaced the first one's socket.
    echo_once(&mut unix_connect(&path), b"first server still here");
    drop(first);
}

#[test]
fn a_live_datagram_socket_is_address_in_use() {
    let dir = temp_dir();
    let path = dir.path().join("live.dgram");
    let endpoint = format!("unixgram:{}", path.display());
    let _first = Server::start(&[&endpoint], &[]);
    let out = run(&["serve", &endpoint]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(err.contains(&endpoint), "{err}");
    assert!(err.contains("address already in use"), "{err}");
    let peer = unixgram_peer(&dir.path().join("me.sock"));
    peer.send_to(b"still?", &path).expect("send");
    let mut buf = [0u8; 8];
    let n = peer.recv(&mut buf).expect("first server still answers");
    assert_eq!(&buf[..n], b"still?");
}

#[test]
fn socket_files_are_removed_when_a_later_endpoint_fails_to_bind() {
    let dir = temp_dir();
    let path = dir.path().join("early.sock");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let out = run(&[
        "serve",
        &format!("unix:{}", path.display()),
        &format!("tcp://127.0.0.1:{port}"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(
        !path.exists(),
        "socket file of the first endpoint left behind"
    );
}

#[test]
fn a_stopping_server_leaves_a_socket_file_that_is_no_longer_its_own() {
    let dir = temp_dir();
    let path = dir.path().join("moved.sock");
    let endpoint = format!("unix:{}", path.display());
    let mut old = Server::start(&[&endpoint], &[]);
    // Someone removes the old server's file and a new server takes the path.
    std::fs::remove_file(&path).expect("remove");
    let _new = Server::start(&[&endpoint], &[]);
    old.signal(rustix::process::Signal::TERM);
    assert_eq!(old.wait_exit(WAIT).code(), Some(0), "{}", old.log());
    assert!(
        is_socket(&path),
        "the old server removed the new server's socket file"
    );
    echo_once(&mut unix_connect(&path), b"new server");
}

#[test]
fn a_symlink_at_the_path_is_never_followed_or_removed() {
    let dir = temp_dir();
    let stale = dir.path().join("stale.sock");
    drop(UnixListener::bind(&stale).expect("bind"));
    let link = dir.path().join("link.sock");
    std::os::unix::fs::symlink(&stale, &link).expect("symlink");
    let out = run(&["serve", &format!("unix:{}", link.display())]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(
        std::fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink()),
        "the symlink was replaced"
    );
    assert!(is_socket(&stale), "the symlink's target was removed");
}

#[test]
fn a_relative_path_is_served_and_removed_in_the_working_directory() {
    let dir = temp_dir();
    let mut server = Server::start_in(dir.path(), &["serve", "unix:rel.sock"], 1);
    assert_eq!(server.endpoints, [Ep::Unix("rel.sock".into())]);
    let path = dir.path().join("rel.sock");
    echo_once(&mut unix_connect(&path), b"relative");
    server.signal(rustix::process::Signal::TERM);
    assert_eq!(server.wait_exit(WAIT).code(), Some(0), "{}", server.log());
    assert!(!path.exists(), "relative socket file left behind");
}

/// `unix:@NAME` and `unixgram:@NAME` are names in Linux's abstract namespace, with no file, for
/// the server and the client alike; a file whose name starts with `@` stays reachable as
/// `unix:./@NAME`.
#[cfg(target_os = "linux")]
#[test]
fn an_at_sign_names_an_abstract_socket_and_leaves_no_file() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram, UnixStream};

    let dir = tempfile::tempdir().expect("tempdir");
    let name = format!("sockecho-test-{}", std::process::id());
    let mut server = Server::start_in(
        dir.path(),
        &[
            "serve",
            &format!("unix:@{name}"),
            &format!("unixgram:@{name}-gram"),
            "unix:./@file",
        ],
        3,
    );
    let mut listening: Vec<String> = server.endpoints.iter().map(|e| e.arg()).collect();
    listening.sort();
    assert_eq!(
        listening,
        [
            "unix:./@file".to_owned(),
            format!("unix:@{name}"),
            format!("unixgram:@{name}-gram"),
        ]
    );
    assert!(
        !dir.path().join(format!("@{name}")).exists(),
        "a file was made"
    );
    assert!(
        dir.path().join("@file").exists(),
        "unix:./@file made no file"
    );

    let stream_addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract name");
    let mut stream = UnixStream::connect_addr(&stream_addr).expect("connect to the abstract name");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    echo_once(&mut stream, b"abstract stream");

    let gram_addr =
        SocketAddr::from_abstract_name(format!("{name}-gram").as_bytes()).expect("abstract name");
    let client_addr =
        SocketAddr::from_abstract_name(format!("{name}-client").as_bytes()).expect("abstract name");
    let gram = UnixDatagram::bind_addr(&client_addr).expect("bind");
    gram.set_read_timeout(Some(WAIT)).expect("timeout");
    gram.send_to_addr(b"abstract datagram", &gram_addr)
        .expect("send");
    let mut buf = [0u8; 64];
    let n = gram.recv(&mut buf).expect("echo");
    assert_eq!(&buf[..n], b"abstract datagram");

    // The client reaches both abstract names the same way, and the file by its path.
    for endpoint in [
        format!("unix:@{name}"),
        format!("unixgram:@{name}-gram"),
        "unix:./@file".to_owned(),
    ] {
        let mut cmd =
            assert_cmd::Command::from_std(crate::support::sockecho(["client", &endpoint]));
        cmd.current_dir(dir.path())
            .write_stdin(b"through the client\n".to_vec())
            .timeout(WAIT);
        let out = cmd.output().expect("run the client");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "client {endpoint}: {stderr}");
        assert_eq!(
            out.stdout, b"through the client\n",
            "client {endpoint}: {stderr}"
        );
    }

    let mut file = crate::support::unix_connect(&dir.path().join("@file"));
    echo_once(&mut file, b"a file named @file");

    drop((stream, file));
    server.signal(rustix::process::Signal::TERM);
    assert_eq!(server.wait_exit(WAIT).code(), Some(0), "{}", server.log());
    assert!(
        !dir.path().join("@file").exists(),
        "socket file left behind"
    );
}
