//! `sockecho ping` against `sockecho serve` on every transport, against a UDP socket that never
//! answers, against nothing at all, and stopped by Ctrl-C: lines, sequence numbers, summary and
//! exit codes.

use std::net::UdpSocket;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{
    Server, Transcript, WAIT, closed_tcp_port, run, sockecho, stderr_of, stdout_of, temp_dir,
    wait_child,
};
use rustix::process::{Pid, Signal, kill_process};

/// The reply lines' sequence numbers, in order.
fn reply_seqs(text: &str, peer: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| l.strip_prefix(&format!("64 bytes from {peer}: seq=")))
        .map(|rest| {
            let (seq, time) = rest
                .split_once(" time=")
                .expect("a time on every reply line");
            let ms: f64 = time
                .strip_suffix(" ms")
                .expect("time in ms")
                .parse()
                .expect("a number of ms");
            assert!(ms > 0.0 && ms < 5_000.0, "time {ms} ms");
            seq.parse().expect("a sequence number")
        })
        .collect()
}

#[test]
fn every_transport_replies_in_sequence() {
    let dir = temp_dir();
    let server = Server::start_every_transport(dir.path());
    for scheme in ["tcp://", "udp://", "unix:", "unixgram:"] {
        let endpoint = server.endpoint(scheme);
        let out = run(&["ping", endpoint, "-c", "3", "-i", "100ms"]);
        let text = stdout_of(&out);
        assert_eq!(out.status.code(), Some(0), "{text}\n{}", stderr_of(&out));
        assert!(
            text.starts_with(&format!("PING {endpoint}: 64 bytes per message")),
            "{text}"
        );
        assert_eq!(reply_seqs(&text, endpoint), [1, 2, 3], "{text}");
        assert!(
            text.contains(&format!("--- {endpoint} ping statistics ---")),
            "{text}"
        );
        assert!(
            text.contains("\n3 sent, 3 received, 0% loss, time "),
            "{text}"
        );
        let rtt = text
            .lines()
            .find_map(|l| l.strip_prefix("rtt min/avg/max/mdev = "))
            .unwrap_or_else(|| panic!("no rtt line:\n{text}"));
        let parts: Vec<f64> = rtt
            .strip_suffix(" ms")
            .expect("ms")
            .split('/')
            .map(|x| x.parse().expect("number"))
            .collect();
        assert_eq!(parts.len(), 4);
        assert!(parts[0] <= parts[1] && parts[1] <= parts[2], "{rtt}");
    }
}

#[test]
fn a_silent_udp_peer_times_out_each_sequence() {
    // Bound, never read: the datagrams are accepted and never answered.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("udp://{}", silent.local_addr().expect("addr"));
    let began = Instant::now();
    let out = run(&[
        "ping",
        &endpoint,
        "-c",
        "3",
        "-i",
        "100ms",
        "--timeout",
        "200ms",
        "-s",
        "20",
    ]);
    let text = stdout_of(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    for seq in 1..=3 {
        assert!(
            text.contains(&format!(
                "no reply from {endpoint}: seq={seq} timeout after 200.000 ms"
            )),
            "{text}"
        );
    }
    assert!(text.contains("\n3 sent, 0 received, 100% loss"), "{text}");
    assert!(!text.contains("rtt min"), "{text}");
    // Three sends 100 ms apart, the last timing out 200 ms later.
    assert!(began.elapsed() < Duration::from_secs(5));
}

#[test]
fn nothing_listening_is_one_line_and_exit_1() {
    let endpoint = format!("tcp://{}", closed_tcp_port());
    let out = run(&["ping", &endpoint, "-c", "1"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "error: cannot reach {endpoint}: connection refused"
        )),
        "{err}"
    );
}

#[test]
fn bad_arguments_exit_2() {
    for args in [
        &["ping", "-c", "0"][..],
        &["ping", "-i", "never"],
        &["ping", "-s", "0"],
        &["ping", "nohost"],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr_of(&out));
    }
}

#[test]
fn ctrl_c_prints_the_summary() {
    let server = Server::start(&["tcp://127.0.0.1:0"], &["-q"]);
    let endpoint = server.endpoint("tcp://").to_owned();
    let mut child = sockecho(["ping", &endpoint, "-i", "50ms"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ping");
    let mut stdout = Transcript::lines(child.stdout.take().expect("piped stdout"));
    stdout.wait_until("three replies", |text| text.matches(" seq=").count() >= 3);
    kill_process(Pid::from_child(&child), Signal::INT).expect("send SIGINT");
    let status = wait_child(&mut child, WAIT).expect("ping stops on SIGINT");
    stdout.finish();
    let text = stdout.text();
    let lines: Vec<&str> = text.lines().collect();
    let stats = lines
        .iter()
        .find(|l| l.contains(" sent, "))
        .unwrap_or_else(|| panic!("no summary after SIGINT:\n{text}"));
    let numbers: Vec<u64> = stats
        .split(", ")
        .take(2)
        .map(|p| p.split(' ').next().expect("count").parse().expect("number"))
        .collect();
    let (sent, received) = (numbers[0], numbers[1]);
    assert!(received >= 3 && sent >= received, "{text}");
    assert!(
        text.contains(&format!("--- {endpoint} ping statistics ---")),
        "{text}"
    );
    // Exit 0 only if every message sent was answered (one may have been in flight).
    assert_eq!(
        status.code(),
        Some(if sent == received { 0 } else { 1 }),
        "{text}"
    );
}
