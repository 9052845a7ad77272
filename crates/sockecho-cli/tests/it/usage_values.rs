//! Flag values that parse but make no sense (a zero timeout, an unusable address, a malformed
//! fingerprint, an output that cannot be written) are usage errors, exit code 2, found before
//! anything is bound, connected or run; and the one zero that has a meaning (`--idle-timeout 0`,
//! never) keeps the server useful.

use std::time::{Duration, Instant};

use crate::support::{Server, echo_once, run, stderr_of, stdout_of, tcp_connect, temp_dir};
use rustix::process::Signal;

/// Runs `args`, expecting exit code 2, a message containing `needle`, nothing on stdout, and
/// an answer at once (no bind, connect or run happened first).
fn assert_rejected(args: &[&str], needle: &str) {
    let began = Instant::now();
    let out = run(args);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "sockecho {args:?}: {err}");
    assert!(
        err.contains(needle),
        "sockecho {args:?}: {needle:?} not in {err}"
    );
    assert!(
        stdout_of(&out).is_empty(),
        "sockecho {args:?} printed {}",
        stdout_of(&out)
    );
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "sockecho {args:?} took {:?}",
        began.elapsed()
    );
}

#[test]
fn zero_durations_that_would_make_a_command_useless_are_refused() {
    for args in [
        &["serve", "tcp://127.0.0.1:0", "--tls-handshake-timeout", "0"][..],
        &[
            "serve",
            "tcp://127.0.0.1:0",
            "--tls-handshake-timeout",
            "0ms",
        ],
        &["client", "udp://127.0.0.1:9", "--timeout", "0"],
        &["ping", "tcp://127.0.0.1:9", "-i", "0"],
        &["ping", "tcp://127.0.0.1:9", "--timeout", "0s"],
        &["bench", "tcp://127.0.0.1:9", "-d", "0"],
        &["bench", "tcp://127.0.0.1:9", "--timeout", "0"],
        &["bench", "tcp://127.0.0.1:9", "--connect-timeout", "0"],
    ] {
        assert_rejected(args, ": must be longer than zero");
    }
}

#[test]
fn zero_and_absurd_counts_and_sizes_are_refused() {
    for args in [
        &["ping", "tcp://127.0.0.1:9", "-c", "0"][..],
        &["ping", "tcp://127.0.0.1:9", "-s", "0"],
        &["bench", "tcp://127.0.0.1:9", "-c", "0"],
        &["bench", "tcp://127.0.0.1:9", "-s", "0"],
        &["bench", "tcp://127.0.0.1:9", "--pipeline", "0"],
        &["bench", "tcp://127.0.0.1:9", "--threads", "0"],
        &["serve", "tcp://127.0.0.1:0", "--threads", "0"],
        &["serve", "tcp://127.0.0.1:0", "--max-conns", "0"],
        &["serve", "tcp://127.0.0.1:0", "--max-conns-per-ip", "0"],
        &["serve", "tcp://127.0.0.1:0", "--udp-rate", "0"],
    ] {
        assert_rejected(args, "");
    }
    // A message no run could hold in memory.
    assert_rejected(
        &["ping", "tcp://127.0.0.1:9", "-s", "100GiB"],
        "larger than the 256 MiB limit",
    );
    assert_rejected(
        &["bench", "tcp://127.0.0.1:9", "-s", "100GiB"],
        "larger than the 256 MiB limit",
    );
}

#[test]
fn an_unusable_metrics_address_is_a_usage_error() {
    for bad in ["nonsense", "127.0.0.1", "localhost:99999", ":9100"] {
        assert_rejected(
            &["serve", "tcp://127.0.0.1:0", "--metrics", bad],
            "is not an address to listen on",
        );
    }
}

#[test]
fn a_malformed_pin_is_a_usage_error() {
    for tool in ["client", "ping", "bench"] {
        assert_rejected(
            &[tool, "tls://127.0.0.1:9", "--pin-sha256", "zz"],
            "is not a hex digit",
        );
        assert_rejected(
            &[tool, "tls://127.0.0.1:9", "--pin-sha256", "abcd"],
            "found 4 hex digits",
        );
    }
}

#[test]
fn an_unwritable_histogram_log_is_refused_before_the_run() {
    let server = Server::start(&["tcp://127.0.0.1:0"], &["-q"]);
    let dir = temp_dir();
    let missing = dir.path().join("no-such-dir").join("run.hlog");
    let missing = missing.to_str().expect("a UTF-8 path");
    // A 20-second run: refused at once, not after it.
    assert_rejected(
        &[
            "bench",
            server.endpoint("tcp://"),
            "-d",
            "20s",
            "--save-hist",
            missing,
        ],
        &format!("cannot write the histogram log {missing} (--save-hist)"),
    );
    let a_dir = dir.path().to_str().expect("a UTF-8 path");
    assert_rejected(
        &[
            "bench",
            server.endpoint("tcp://"),
            "-d",
            "20s",
            "--save-hist",
            a_dir,
        ],
        "(--save-hist)",
    );
    assert_rejected(
        &["bench", "merge", "nothing.hlog", "--save-hist", missing],
        "(--save-hist)",
    );
}

#[test]
fn merge_may_write_over_one_of_its_inputs() {
    let server = Server::start(&["tcp://127.0.0.1:0"], &["-q"]);
    let dir = temp_dir();
    let log = dir.path().join("run.hlog");
    let log = log.to_str().expect("a UTF-8 path");
    let out = run(&[
        "bench",
        server.endpoint("tcp://"),
        "-d",
        "200ms",
        "--warmup",
        "0s",
        "--save-hist",
        log,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let before = std::fs::read(log).expect("the log was written");
    let out = run(&["bench", "merge", log, "--save-hist", log]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let after = std::fs::read(log).expect("the merged log");
    assert!(
        !after.is_empty() && after.starts_with(b"#"),
        "{}",
        String::from_utf8_lossy(&after)
    );
    assert!(before.len() > 100 && after.len() > 100);
}

#[test]
fn idle_timeout_zero_means_never() {
    let mut server = Server::start(&["tcp://127.0.0.1:0"], &["--idle-timeout", "0"]);
    let mut stream = tcp_connect(server.tcp());
    // Idle for longer than any timer a zero could have set, then still served.
    std::thread::sleep(Duration::from_millis(300));
    echo_once(&mut stream, b"still here");
    server.signal(Signal::TERM);
    drop(stream);
    let status = server.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", server.log());
}
