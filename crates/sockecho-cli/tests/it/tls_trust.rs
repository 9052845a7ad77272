//! `sockecho client` against `sockecho serve` over `tls://`: each way of trusting the server
//! (a pinned fingerprint, a CA file, nothing at all) with the echo it gives or the one-line error
//! and exit code it fails with.

use std::net::SocketAddr;

use crate::support::{
    Server, assert_all_byte_values, logged_fingerprint, pattern, run_with_input, start_tls_server,
    start_tls_server_with, stderr_of, temp_dir, write_cert,
};

/// A server with a self-signed certificate made for the run, and its logged fingerprint.
fn self_signed_server() -> (Server, SocketAddr, String) {
    let (server, addr) = start_tls_server(&["serve", "tls://127.0.0.1:0"]);
    let fingerprint = logged_fingerprint(&server.log());
    (server, addr, fingerprint)
}

/// Runs the pipe client with `flags` on `data` and asserts the echo is exact, exit 0.
fn assert_echoes(endpoint: &str, flags: &[&str], data: &[u8]) -> std::process::Output {
    let mut args = vec!["client", endpoint];
    args.extend_from_slice(flags);
    let out = run_with_input(&args, data);
    assert_eq!(
        out.status.code(),
        Some(0),
        "client {flags:?}: {}",
        stderr_of(&out)
    );
    assert_eq!(
        out.stdout.len(),
        data.len(),
        "client {flags:?}: echo length"
    );
    assert!(out.stdout == data, "client {flags:?}: echo differs");
    out
}

/// Runs the client with `flags` and asserts it fails with one line of error, exit 1.
fn assert_refused(endpoint: &str, flags: &[&str]) -> String {
    let mut args = vec!["client", endpoint];
    args.extend_from_slice(flags);
    let out = run_with_input(&args, b"hello\n");
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "client {flags:?}: {err}");
    assert!(
        out.stdout.is_empty(),
        "client {flags:?}: nothing should echo"
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.starts_with("warning:")).collect();
    assert_eq!(lines.len(), 1, "one line of error: {err}");
    assert!(
        lines[0].starts_with(&format!("error: cannot connect to {endpoint}: ")),
        "the error names the endpoint: {err}"
    );
    lines[0].to_owned()
}

#[test]
fn a_pinned_client_echoes_a_mebibyte_exactly_in_either_fingerprint_form() {
    let (_server, addr, fingerprint) = self_signed_server();
    let endpoint = format!("tls://{addr}");
    let data = pattern(1 << 20, 41);
    assert_all_byte_values(&data);

    let out = assert_echoes(&endpoint, &["--pin-sha256", &fingerprint], &data);
    assert_eq!(
        stderr_of(&out),
        "",
        "a pinned client has nothing to warn about"
    );

    // As another tool may print it: upper case, no colons.
    let bare = fingerprint.replace(':', "").to_uppercase();
    assert_eq!(bare.len(), 64);
    assert_echoes(&endpoint, &["--pin-sha256", &bare], &data);
}

#[test]
fn a_wrong_pin_is_refused_and_the_real_fingerprint_shown() {
    let (server, addr, fingerprint) = self_signed_server();
    let endpoint = format!("tls://{addr}");
    // Same form, first byte changed.
    let first = u8::from_str_radix(&fingerprint[..2], 16).expect("hex");
    let wrong = format!("{:02x}{}", first ^ 0xff, &fingerprint[2..]);

    let line = assert_refused(&endpoint, &["--pin-sha256", &wrong]);
    assert!(
        line.contains("fingerprint does not match"),
        "says why: {line}"
    );
    assert!(line.contains(&fingerprint), "shows the real one: {line}");
    // The server sees a client that gave up, and goes on.
    server.wait_for("TLS handshake failed");
    let data = pattern(1000, 3);
    assert_echoes(&endpoint, &["--pin-sha256", &fingerprint], &data);
}

#[test]
fn system_roots_do_not_trust_a_self_signed_server() {
    let (_server, addr, _) = self_signed_server();
    let endpoint = format!("tls://{addr}");
    let line = assert_refused(&endpoint, &[]);
    // A system with no root certificates at all fails before connecting, with its own message.
    assert!(
        line.contains("not trusted") || line.contains("no trusted root certificates"),
        "{line}"
    );
    assert!(
        line.contains("--ca") && line.contains("--pin-sha256"),
        "suggests the way out: {line}"
    );
}

#[test]
fn a_ca_file_trusts_a_certificate_by_host_name_and_by_ip_address() {
    let dir = temp_dir();
    let cert = write_cert(dir.path(), "server", &["localhost", "127.0.0.1"]);
    let (server, addr) = start_tls_server_with(&cert);
    assert!(
        !server.log().contains("self-signed"),
        "--cert/--key replace the self-signed certificate:\n{}",
        server.log()
    );
    let ca = cert.cert.to_str().expect("utf-8 path");
    let data = pattern(64 * 1024, 5);
    // localhost may resolve to ::1 first, where nothing listens; the client tries each address.
    assert_echoes(
        &format!("tls://localhost:{}", addr.port()),
        &["--ca", ca],
        &data,
    );
    assert_echoes(&format!("tls://{addr}"), &["--ca", ca], &data);
}

#[test]
fn a_ca_file_does_not_make_a_certificate_valid_for_another_host() {
    let dir = temp_dir();
    let cert = write_cert(dir.path(), "other", &["other.example"]);
    let (_server, addr) = start_tls_server_with(&cert);
    let endpoint = format!("tls://{addr}");
    let line = assert_refused(
        &endpoint,
        &["--ca", cert.cert.to_str().expect("utf-8 path")],
    );
    assert!(line.contains("not valid for host 127.0.0.1"), "{line}");
    assert!(
        line.contains("other.example"),
        "names what it is for: {line}"
    );
}

#[test]
fn insecure_connects_to_anything_and_says_so() {
    let (_server, addr, _) = self_signed_server();
    let data = pattern(100_000, 9);
    let out = assert_echoes(&format!("tls://{addr}"), &["--insecure"], &data);
    let err = stderr_of(&out);
    assert!(
        err.starts_with("warning: --insecure:") && err.contains("not checked"),
        "a loud warning on stderr: {err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}
