//! Usage errors: a malformed endpoint or flag is exit code 2 with a message that names the bad
//! text (and, for endpoints, lists the accepted forms); nothing on the command line panics.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use crate::support::{
    Server, WAIT, assert_no_panic, echo_once, run, sockecho, stderr_of, stdout_of, tcp_connect,
};
use rustix::process::Signal;

const MALFORMED: &[&str] = &[
    "",
    "tcp://localhost",
    "tcp://",
    "tcp://h:70000",
    "tcp://h:x",
    "tcp://h:-1",
    "tcp://::1:7",
    "tcp://[::1:7",
    "tcp://[::1]",
    "tcp://[::1]7",
    "tcp://[1.2.3.4]:7",
    "udp://:",
    "udp://host",
    "sctp://h:1",
    "http://example.com:80",
    "unix:",
    "unixgram:",
    "host",
    "bad host:1",
    "h@st:1",
    "99999",
    "65536",
    ":::",
    "[]:1",
    "tcp://\u{e9}t\u{e9}:1",
    "tcp://a..b:1",
];

fn assert_usage_error(args: &[&str], bad: &str) {
    let out = run(args);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "sockecho {args:?}: {err}");
    assert!(
        err.contains(&format!("{bad:?}")),
        "sockecho {args:?}: bad text not named: {err}"
    );
    assert!(
        err.contains("accepted forms")
            && err.contains("tcp://HOST:PORT")
            && err.contains("unix:PATH"),
        "sockecho {args:?}: accepted forms not shown: {err}"
    );
}

#[test]
fn serve_rejects_malformed_endpoints_with_exit_code_2() {
    for bad in MALFORMED {
        assert_usage_error(&["serve", bad], bad);
    }
}

#[test]
fn serve_rejects_a_malformed_endpoint_among_good_ones() {
    assert_usage_error(
        &["serve", "tcp://127.0.0.1:0", "udp://nope", "unix:/tmp/x"],
        "udp://nope",
    );
}

#[test]
fn client_rejects_malformed_endpoints_with_exit_code_2() {
    for bad in MALFORMED {
        assert_usage_error(&["client", bad], bad);
    }
}

#[test]
fn an_overlong_unix_path_is_a_usage_error() {
    let long = format!("unix:/tmp/{}", "a".repeat(120));
    assert_usage_error(&["serve", &long], &long);
    let long = format!("unixgram:/tmp/{}", "b".repeat(120));
    assert_usage_error(&["client", &long], &long);
}

#[test]
fn bad_flag_values_are_usage_errors() {
    let cases: &[&[&str]] = &[
        &["serve", "--max-conns", "0"],
        &["serve", "--max-conns", "-3"],
        &["serve", "--max-conns", "many"],
        &["serve", "--max-conns", "99999999999"],
        &["serve", "--idle-timeout", "soon"],
        &["serve", "--idle-timeout", "-1"],
        &["serve", "--grace", "1e400"],
        &["serve", "--grace", "NaN"],
        &["serve", "--threads", "0"],
        &["serve", "--bogus"],
        &["serve", "-q", "-v"],
        &["client", "--timeout", "nope"],
        &["client", "tcp://127.0.0.1:1", "tcp://127.0.0.1:2"],
        &["nonsense"],
        &[],
    ];
    for args in cases {
        let out = run(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "sockecho {args:?}: {}",
            stderr_of(&out)
        );
        assert!(
            !stderr_of(&out).trim().is_empty(),
            "sockecho {args:?}: no message"
        );
    }
}

#[test]
fn non_utf8_arguments_are_usage_errors_not_panics() {
    for sub in ["serve", "client"] {
        let out = assert_cmd::Command::from_std(sockecho([
            OsStr::new(sub),
            OsStr::from_bytes(b"tcp://\xff\xfe:1"),
        ]))
        .timeout(WAIT)
        .output()
        .expect("run");
        assert_no_panic(&stderr_of(&out));
        assert_eq!(out.status.code(), Some(2), "{sub}: {}", stderr_of(&out));
    }
}

#[test]
fn help_lists_the_endpoint_forms() {
    for args in [&["--help"][..], &["serve", "--help"], &["client", "--help"]] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let text = stdout_of(&out);
        assert!(text.contains("Usage: sockecho"), "{args:?}: {text}");
    }
    let text = stdout_of(&run(&["--help"]));
    for form in [
        "tcp://HOST:PORT",
        "udp://HOST:PORT",
        "unix:PATH",
        "unixgram:PATH",
    ] {
        assert!(text.contains(form), "--help does not show {form}: {text}");
    }
}

/// Durations far beyond any real use must not overflow a clock anywhere.
#[test]
fn huge_durations_do_not_panic() {
    let mut server = Server::start(
        &["tcp://127.0.0.1:0"],
        &["--idle-timeout", "1e18", "--grace", "1e18"],
    );
    let mut stream = tcp_connect(server.tcp());
    echo_once(&mut stream, b"still fine");
    server.signal(Signal::TERM);
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut stream, &mut rest).expect("EOF on shutdown");
    drop(stream);
    let status = server.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{}", server.log());
}
