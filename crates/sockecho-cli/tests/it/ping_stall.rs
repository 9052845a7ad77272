//! `sockecho ping` with messages larger than the socket buffers, and against a peer that
//! accepts but never reads: ping reads while it writes, so a large echo completes, and every
//! wait ends at its timeout or on Ctrl-C.

use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{
    Server, Transcript, WAIT, run, sockecho, stderr_of, stdout_of, temp_dir, wait_child,
};
use rustix::process::{Pid, Signal, kill_process};

/// Larger than any default socket buffer pair, so a ping that writes the whole message before
/// reading would wait forever on the echo filling its receive buffer.
const LARGE: &str = "8MiB";

#[test]
fn large_messages_complete_over_unix_and_tcp() {
    let dir = temp_dir();
    let server = Server::start_every_transport(dir.path());
    for scheme in ["unix:", "tcp://"] {
        let endpoint = server.endpoint(scheme);
        let began = Instant::now();
        let out = run(&[
            "ping",
            endpoint,
            "-c",
            "2",
            "-s",
            LARGE,
            "-i",
            "100ms",
            "--timeout",
            "10s",
        ]);
        let text = stdout_of(&out);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{endpoint}: {text}\n{}",
            stderr_of(&out)
        );
        assert_eq!(
            text.matches(&format!("8388608 bytes from {endpoint}: seq="))
                .count(),
            2,
            "{text}"
        );
        assert!(text.contains("\n2 sent, 2 received, 0% loss"), "{text}");
        assert!(
            began.elapsed() < Duration::from_secs(20),
            "{endpoint} took {:?}",
            began.elapsed()
        );
    }
}

#[test]
fn a_peer_that_never_reads_times_out() {
    // Listening, never accepting: the kernel completes the connection and buffers what fits.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("tcp://{}", listener.local_addr().expect("addr"));
    let began = Instant::now();
    let out = run(&[
        "ping",
        &endpoint,
        "-c",
        "1",
        "-s",
        LARGE,
        "--timeout",
        "500ms",
    ]);
    let text = stdout_of(&out);
    assert_eq!(out.status.code(), Some(1), "{text}\n{}", stderr_of(&out));
    assert!(
        text.contains(&format!(
            "no reply from {endpoint}: seq=1 timeout after 500.000 ms"
        )),
        "{text}"
    );
    assert!(text.contains("\n1 sent, 0 received, 100% loss"), "{text}");
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "took {:?}",
        began.elapsed()
    );
    drop(listener);
}

#[test]
fn ctrl_c_ends_a_stalled_write() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("tcp://{}", listener.local_addr().expect("addr"));
    let mut child = sockecho(["ping", &endpoint, "-s", LARGE, "--timeout", "60s"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ping");
    let mut stdout = Transcript::lines(child.stdout.take().expect("piped stdout"));
    let (peer, _) = listener.accept().expect("ping connects");
    peer.set_read_timeout(Some(WAIT)).expect("read timeout");
    // The first bytes of the message have come, and the rest cannot fit in the buffers:
    // ping is now in the middle of a write that will not finish, its reply 60 s away.
    peer.peek(&mut [0u8; 1])
        .expect("the message starts to arrive");
    let signalled = Instant::now();
    kill_process(Pid::from_child(&child), Signal::INT).expect("send SIGINT");
    let status = wait_child(&mut child, WAIT).expect("ping stops on SIGINT");
    assert!(
        signalled.elapsed() < Duration::from_secs(2),
        "took {:?}",
        signalled.elapsed()
    );
    stdout.finish();
    let text = stdout.text();
    assert!(text.contains("\n1 sent, 0 received, 100% loss"), "{text}");
    // As for any Ctrl-C: exit 1 when a message went unanswered.
    assert_eq!(status.code(), Some(1), "{text}");
    drop(listener);
}
