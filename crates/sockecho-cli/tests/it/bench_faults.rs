//! `sockecho bench` against echo servers that misbehave in known ways, written here: the report
//! must count exactly the kind of fault injected, and the exit code must say the run failed.
//! Also: open-loop latency must show a server stall that closed loop hides, and `--source`
//! spreads connections over local addresses.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{bench_json, echo_with, int, num, stderr_of, tcp_server, udp_server};

#[test]
fn a_flipped_byte_is_a_mismatch() {
    // Flips one byte of every 50th read.
    let addr = tcp_server(|stream, _| {
        let mut reads = 0u64;
        echo_with(stream, |chunk, _| {
            reads += 1;
            if reads.is_multiple_of(50) {
                let i = chunk.len() / 2;
                chunk[i] ^= 0x20;
            }
        });
    });
    let (code, report, _) = bench_json(&[
        &format!("tcp://{addr}"),
        "-c",
        "2",
        "-d",
        "400ms",
        "--warmup",
        "0s",
    ]);
    assert_eq!(code, 1);
    assert_eq!(report["ok"], false);
    let mismatched = int(&report, "errors.mismatched");
    assert!(mismatched > 0, "{report:#}");
    assert_eq!(int(&report, "errors.truncated"), 0);
    assert_eq!(int(&report, "errors.lost"), 0);
    // Every message is accounted for: answered right, or mismatched.
    assert_eq!(
        int(&report, "messages_sent"),
        int(&report, "messages_received") + mismatched,
        "{report:#}"
    );
}

#[test]
fn a_stream_cut_mid_message_is_truncated() {
    // Echoes 10.5 messages of 64 bytes, then closes.
    let addr = tcp_server(|mut stream, n| {
        if n == 0 {
            return; // the reachability probe
        }
        let mut buf = [0u8; 64 * 11];
        let mut got = 0;
        while got < buf.len() {
            match stream.read(&mut buf[got..]) {
                Ok(0) | Err(_) => return,
                Ok(k) => {
                    let keep = (10 * 64 + 32).min(got + k);
                    if keep > got {
                        let _ = stream.write_all(&buf[got..keep]);
                    }
                    got += k;
                }
            }
            if got >= 10 * 64 + 32 {
                break;
            }
        }
        // Read what else comes (without echoing), so the close is a clean FIN rather than a
        // reset that could discard the half message still queued at the client.
        let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
        while matches!(stream.read(&mut buf), Ok(k) if k > 0) {}
        let _ = stream.shutdown(std::net::Shutdown::Write);
    });
    let began = Instant::now();
    let (code, report, out) = bench_json(&[
        &format!("tcp://{addr}"),
        "--pipeline",
        "4",
        "-d",
        "2s",
        "--warmup",
        "0s",
    ]);
    assert_eq!(code, 1, "{}", stderr_of(&out));
    assert_eq!(int(&report, "errors.truncated"), 1, "{report:#}");
    assert_eq!(int(&report, "errors.disconnected"), 1, "{report:#}");
    assert_eq!(int(&report, "messages_received"), 10, "{report:#}");
    // The three other messages in flight when the stream ended are lost.
    assert_eq!(int(&report, "errors.lost"), 3, "{report:#}");
    assert_eq!(report["ok"], false);
    assert!(
        stderr_of(&out).contains("1 disconnected"),
        "{}",
        stderr_of(&out)
    );
    // The only connection died, so the run ended without waiting out its 2 s.
    assert!(began.elapsed() < Duration::from_millis(1800));
}

#[test]
fn a_short_datagram_is_truncated() {
    // Every third datagram comes back cut to half its length.
    let addr = udp_server(|data, n| {
        if n % 3 == 2 {
            Some(data[..data.len() / 2].to_vec())
        } else {
            Some(data.to_vec())
        }
    });
    let (code, report, _) = bench_json(&[
        &format!("udp://{addr}"),
        "-s",
        "200",
        "-d",
        "1s",
        "--warmup",
        "0s",
        // Nothing is dropped here, so a generous timeout costs no time, and a reply that a
        // busy machine holds back is still counted for what it is.
        "--timeout",
        "5s",
    ]);
    assert_eq!(code, 1);
    let truncated = int(&report, "errors.truncated");
    let received = int(&report, "messages_received");
    assert!(truncated > 0, "{report:#}");
    assert_eq!(int(&report, "errors.mismatched"), 0, "{report:#}");
    assert_eq!(int(&report, "errors.lost"), 0, "{report:#}");
    assert_eq!(int(&report, "messages_sent"), received + truncated);
    // One in three.
    let share = truncated as f64 / (received + truncated) as f64;
    assert!((0.25..0.42).contains(&share), "share {share}:\n{report:#}");
}

#[test]
fn dropped_datagrams_are_lost_not_a_hang() {
    // Drops every second datagram (the bench's first, its reachability probe, goes through).
    let addr = udp_server(|data, n| (n % 2 == 0).then(|| data.to_vec()));
    let began = Instant::now();
    let (code, report, _) = bench_json(&[
        &format!("udp://{addr}"),
        "-c",
        "4",
        "--pipeline",
        "16",
        "-d",
        "1s",
        "--warmup",
        "0s",
        // Long enough that only the datagrams the server dropped time out, even when a busy
        // machine holds a reply back; the deeper pipeline keeps enough messages going while
        // the dropped ones wait it out.
        "--timeout",
        "500ms",
    ]);
    assert!(began.elapsed() < Duration::from_secs(10));
    assert_eq!(code, 1);
    let sent = int(&report, "messages_sent");
    let received = int(&report, "messages_received");
    let lost = int(&report, "errors.lost");
    assert!(sent > 100, "{report:#}");
    assert_eq!(sent, received + lost, "{report:#}");
    let loss = lost as f64 / sent as f64;
    assert!((0.4..0.6).contains(&loss), "loss {loss}:\n{report:#}");
    assert_eq!(int(&report, "errors.mismatched"), 0);
}

/// Message size of the stall runs below.
const STALL_SIZE: u64 = 64;

/// A server that echoes at once, except that each connection, once it has echoed 150 messages
/// (300 ms into an open-loop run at 500/s), pauses once for 200 ms. Counting messages, not
/// time since the accept, puts the pause inside the measured period however late a busy
/// machine starts it.
fn stalling_server() -> std::net::SocketAddr {
    tcp_server(|stream, _| {
        let mut stalled = false;
        echo_with(stream, |_, offset| {
            if !stalled && offset >= 150 * STALL_SIZE {
                stalled = true;
                std::thread::sleep(Duration::from_millis(200));
            }
        });
    })
}

#[test]
fn open_loop_latency_shows_a_stall_that_closed_loop_hides() {
    let addr = stalling_server();
    let endpoint = format!("tcp://{addr}");
    let size = STALL_SIZE.to_string();
    let (code, open, out) = bench_json(&[
        &endpoint, "-s", &size, "--rate", "500", "-d", "1s", "--warmup", "0s",
    ]);
    assert_eq!(code, 0, "{}", stderr_of(&out));
    // About 100 of the 500 messages were due during the stall; each waited for its end, so
    // their latencies, measured from when they were due, spread from 200 ms down to 0.
    let p90 = num(&open, "latency_us.p90");
    let p99 = num(&open, "latency_us.p99");
    assert!(p99 >= 150_000.0, "open-loop p99 {p99} µs:\n{open:#}");
    assert!(p90 >= 20_000.0, "open-loop p90 {p90} µs:\n{open:#}");
    assert!(num(&open, "latency_us.max") >= 190_000.0);

    let addr = stalling_server();
    let endpoint = format!("tcp://{addr}");
    // Two seconds, so that a busy machine still gets well over a thousand round trips done.
    let (code, closed, out) = bench_json(&[&endpoint, "-s", &size, "-d", "2s", "--warmup", "0s"]);
    assert_eq!(code, 0, "{}", stderr_of(&out));
    // Closed loop sent nothing while waiting: one slow message among thousands.
    assert!(num(&closed, "latency_us.max") >= 190_000.0, "{closed:#}");
    let p99 = num(&closed, "latency_us.p99");
    assert!(p99 < 50_000.0, "closed-loop p99 {p99} µs:\n{closed:#}");
    assert!(int(&closed, "messages_received") > 1_000, "{closed:#}");
}

#[test]
fn a_reset_connection_is_counted_and_the_others_go_on() {
    // The first bench connection (after the probe) is closed 200 ms in; the other stays.
    let addr = tcp_server(|stream, n| {
        if n == 1 {
            let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
            let mut s = stream;
            let mut buf = [0u8; 4096];
            let began = Instant::now();
            while began.elapsed() < Duration::from_millis(200) {
                match s.read(&mut buf) {
                    Ok(0) => return,
                    Ok(k) => {
                        if s.write_all(&buf[..k]).is_err() {
                            return;
                        }
                    }
                    Err(_) => {}
                }
            }
            return; // dropping the stream closes it
        }
        echo_with(stream, |_, _| {});
    });
    let (code, report, _) = bench_json(&[
        &format!("tcp://{addr}"),
        "-c",
        "2",
        // Long enough that the survivor gets its 200 round trips done on a busy machine.
        "-d",
        "2s",
        "--warmup",
        "0s",
    ]);
    assert_eq!(code, 1);
    assert_eq!(int(&report, "errors.disconnected"), 1, "{report:#}");
    assert_eq!(int(&report, "connections_established"), 2);
    assert_eq!(int(&report, "errors.mismatched"), 0);
    // The surviving connection kept going through the whole period.
    assert!(int(&report, "messages_received") > 200, "{report:#}");
}

#[test]
fn source_addresses_spread_connections() {
    let peers = Arc::new(Mutex::new(BTreeSet::new()));
    let seen = peers.clone();
    let addr = tcp_server(move |stream, _| {
        if let Ok(peer) = stream.peer_addr() {
            seen.lock().expect("peers").insert(peer.ip().to_string());
        }
        echo_with(stream, |_, _| {});
    });
    let (code, report, out) = bench_json(&[
        &format!("tcp://{addr}"),
        "-c",
        "4",
        "--source",
        "127.0.0.2-127.0.0.3",
        "-d",
        "200ms",
        "--warmup",
        "0s",
    ]);
    assert_eq!(code, 0, "{}", stderr_of(&out));
    assert_eq!(int(&report, "connections_established"), 4);
    let peers = peers.lock().expect("peers").clone();
    assert!(peers.contains("127.0.0.2"), "{peers:?}");
    assert!(peers.contains("127.0.0.3"), "{peers:?}");
}
