//! UDP segmentation offload: a burst of equal-size datagrams sent in one call (GSO), taken by
//! the server as one buffer (GRO), must come back as the same datagrams, one by one, in order;
//! per-datagram rules (rate limit, data log, counters) still count each one. And `bench` must
//! send its queued messages that way only when asked (`--udp-offload`), and verify each of the
//! replies that arrive together.

use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, sendmsg, setsockopt,
    sockopt,
};
use rustix::process::Signal;

use crate::support::{
    Metrics, Server, UDP_ECHOED, bench_json, int, stderr_of, udp_dropped, udp_peer,
};

/// Sends `data` as datagrams of `segment` bytes each (the last may be shorter) in one call.
fn send_segmented(socket: &UdpSocket, to: SocketAddr, data: &[u8], segment: u16) {
    let to = SockaddrStorage::from(to);
    sendmsg(
        socket.as_raw_fd(),
        &[IoSlice::new(data)],
        &[ControlMessage::UdpGsoSegments(&segment)],
        MsgFlags::empty(),
        Some(&to),
    )
    .expect("segmented send (UDP GSO)");
}

/// Receives one buffer and the datagram size the kernel noted for it, if it holds several.
fn recv_noting_segments(socket: &UdpSocket) -> (Vec<u8>, Option<usize>) {
    let mut buf = vec![0u8; 65_536];
    let mut cmsg = nix::cmsg_space!(i32);
    let (len, segment) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<SockaddrStorage>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::empty(),
        )
        .expect("receive");
        let segment = msg
            .cmsgs()
            .expect("control messages")
            .find_map(|c| match c {
                ControlMessageOwned::UdpGroSegments(size) => Some(size as usize),
                _ => None,
            });
        (msg.bytes, segment)
    };
    buf.truncate(len);
    (buf, segment)
}

/// Ten 100-byte datagrams, each filled with its index, then a 3-byte one.
fn burst() -> Vec<u8> {
    let mut data: Vec<u8> = (0..10u8).flat_map(|i| [i; 100]).collect();
    data.extend_from_slice(b"end");
    data
}

#[test]
fn a_burst_sent_in_one_call_comes_back_as_the_same_datagrams() {
    for endpoint in ["udp://127.0.0.1:0", "udp://[::1]:0"] {
        let mut server = Server::start(&[endpoint], &[]);
        let addr = server.udp();
        let peer = udp_peer(addr);
        send_segmented(&peer, addr, &burst(), 100);
        for i in 0..10u8 {
            let mut buf = [0u8; 1000];
            let n = peer.recv(&mut buf).expect("reply");
            assert_eq!(&buf[..n], &[i; 100][..], "{endpoint}: datagram {i}");
        }
        let mut buf = [0u8; 1000];
        let n = peer.recv(&mut buf).expect("last reply");
        assert_eq!(&buf[..n], b"end", "{endpoint}");
        server.signal(Signal::TERM);
        server.wait_exit(Duration::from_secs(10));
        assert!(
            server.log().contains("11 datagrams echoed"),
            "{endpoint}: {}",
            server.log()
        );
    }
}

#[test]
fn a_burst_taken_as_one_buffer_is_echoed_with_one_segmented_send() {
    let server = Server::start(&["udp://127.0.0.1:0"], &[]);
    let addr = server.udp();
    let peer = udp_peer(addr);
    // A receiver that accepts coalesced buffers gets the echo whole only if the server sent it
    // as one segmented send; datagrams sent one by one arrive one by one.
    setsockopt(&peer, sockopt::UdpGroSegment, &true).expect("UDP_GRO");
    let sent = burst();
    send_segmented(&peer, addr, &sent, 100);
    let (back, segment) = recv_noting_segments(&peer);
    assert_eq!(
        segment,
        Some(100),
        "the echo did not come as one segmented buffer"
    );
    assert!(back == sent, "the echoed burst differs");
}

#[test]
fn the_rate_limit_and_the_data_log_count_each_datagram_of_a_burst() {
    let mut server = Server::start(
        &["udp://127.0.0.1:0"],
        &["--udp-rate", "5", "--log-data", "--metrics", "127.0.0.1:0"],
    );
    let addr = server.udp();
    let peer = udp_peer(addr);
    let sent: Vec<u8> = (0..20u8).flat_map(|i| [b'a' + i; 4]).collect();
    send_segmented(&peer, addr, &sent, 4);
    peer.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut echoed = Vec::new();
    let mut buf = [0u8; 100];
    while let Ok(n) = peer.recv(&mut buf) {
        echoed.push(buf[..n].to_vec());
    }
    // The bucket holds one second's worth (5), plus what refills while the burst is handled.
    assert!(
        (5..=7).contains(&echoed.len()),
        "--udp-rate 5 echoed {} of 20: {echoed:?}",
        echoed.len()
    );
    for (i, reply) in echoed.iter().enumerate() {
        assert_eq!(reply, &[b'a' + i as u8; 4], "reply {i}");
    }
    // Each datagram of the burst is counted: echoed, or dropped by the rate limit.
    Metrics::of(&server).wait_values(&[
        (UDP_ECHOED, echoed.len() as u64),
        (&udp_dropped("rate_limited"), 20 - echoed.len() as u64),
    ]);
    server.signal(Signal::TERM);
    server.wait_exit(Duration::from_secs(10));
    let log = server.log();
    assert!(
        log.contains(&format!("{} datagrams echoed", echoed.len())),
        "{log}"
    );
    // Each datagram let through is logged on its own line.
    for i in 0..echoed.len() {
        let text = String::from_utf8(vec![b'a' + i as u8; 4]).expect("ascii");
        assert!(
            log.contains(&format!(": {text}\n")),
            "no line for {text}:\n{log}"
        );
    }
}

/// A plain echo server (one datagram per call) whose socket accepts coalesced buffers, counting
/// how many arrived holding more than one datagram. It splits them and echoes each one.
fn counting_echo_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    setsockopt(&socket, sockopt::UdpGroSegment, &true).expect("UDP_GRO");
    let addr = socket.local_addr().expect("addr");
    let coalesced = Arc::new(AtomicUsize::new(0));
    let count = coalesced.clone();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65_536];
        let mut cmsg = nix::cmsg_space!(i32);
        loop {
            let (len, segment, from) = {
                let mut iov = [IoSliceMut::new(&mut buf)];
                let Ok(msg) = recvmsg::<SockaddrStorage>(
                    socket.as_raw_fd(),
                    &mut iov,
                    Some(&mut cmsg),
                    MsgFlags::empty(),
                ) else {
                    continue;
                };
                let segment = msg.cmsgs().ok().and_then(|mut c| {
                    c.find_map(|c| match c {
                        ControlMessageOwned::UdpGroSegments(size) => Some(size as usize),
                        _ => None,
                    })
                });
                (msg.bytes, segment, msg.address)
            };
            let Some(from) = from else { continue };
            let segment = segment.unwrap_or(len).max(1);
            if len > segment {
                count.fetch_add(1, Ordering::Relaxed);
            }
            for piece in buf[..len].chunks(segment) {
                let _ =
                    nix::sys::socket::sendto(socket.as_raw_fd(), piece, &from, MsgFlags::empty());
            }
        }
    });
    (addr, coalesced)
}

#[test]
fn bench_sends_queued_datagrams_together_only_when_asked() {
    let (addr, coalesced) = counting_echo_server();
    let endpoint = format!("udp://{addr}");
    // A healthy 2-socket run, 16 deep, with or without the offload flag.
    let run = |extra: &[&str], offload: bool| {
        let mut args = vec![
            endpoint.as_str(),
            "-c",
            "2",
            "-s",
            "200",
            "--pipeline",
            "16",
            "-d",
            "300ms",
            "--warmup",
            "0s",
        ];
        args.extend_from_slice(extra);
        let (code, report, out) = bench_json(&args);
        assert_eq!(code, 0, "{}", stderr_of(&out));
        assert_eq!(report["ok"], true, "{report:#}");
        assert_eq!(report["udp_offload"], offload, "{report:#}");
        assert!(int(&report, "messages_received") > 2 * 16, "{report:#}");
    };
    run(&[], false);
    assert_eq!(
        coalesced.load(Ordering::Relaxed),
        0,
        "bench sent bursts in one call without --udp-offload"
    );

    run(&["--udp-offload"], true);
    assert!(
        coalesced.load(Ordering::Relaxed) > 0,
        "no burst of queued messages left in one send with --udp-offload"
    );
}

#[test]
fn bench_verifies_replies_that_arrive_together() {
    // sockecho serve echoes a burst with one segmented send, and bench takes it as one buffer:
    // every datagram in it must still be checked and counted.
    let server = Server::start(&["udp://127.0.0.1:0"], &["-q"]);
    let endpoint = format!("udp://{}", server.udp());
    for size in ["1", "64", "1400"] {
        let (code, report, out) = bench_json(&[
            &endpoint,
            "-c",
            "4",
            "-s",
            size,
            "--pipeline",
            "32",
            "--udp-offload",
            "-d",
            "300ms",
            "--warmup",
            "0s",
        ]);
        assert_eq!(code, 0, "-s {size}: {}", stderr_of(&out));
        assert_eq!(report["ok"], true, "-s {size}: {report:#}");
        assert_eq!(report["udp_offload"], true, "-s {size}");
        let received = int(&report, "messages_received");
        assert!(received > 4 * 32, "-s {size}: {report:#}");
        let bytes = size.parse::<u64>().expect("size");
        assert_eq!(
            int(&report, "bytes_received"),
            received * bytes,
            "-s {size}"
        );
    }
}
