//! Resource limits of stream connections: `--max-conns`, `--idle-timeout`, and bounded memory
//! for a client that sends but never reads.

use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use crate::support::{
    Server, WAIT, bin, echo_once, echo_streaming, pattern, tcp_connect, temp_dir, unix_connect,
};

#[test]
fn max_conns_holds_further_clients_in_the_backlog_until_a_slot_frees() {
    let server = Server::start(&["tcp://127.0.0.1:0"], &["--max-conns", "2"]);
    let addr = server.tcp();
    let mut first = tcp_connect(addr);
    let mut second = tcp_connect(addr);
    echo_once(&mut first, b"first");
    echo_once(&mut second, b"second");

    // The third connects at TCP level (the kernel's backlog) but is not served yet.
    let mut third = tcp_connect(addr);
    let third_peer = third.local_addr().expect("local addr");
    third.write_all(b"third").expect("write");
    third
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let early = third.read(&mut [0u8; 16]);
    assert!(
        matches!(&early, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "third client was served beyond --max-conns 2: {early:?}"
    );
    assert!(
        !server.log().contains(&format!("{third_peer} connected")),
        "{}",
        server.log()
    );
    // The two served clients still work meanwhile.
    echo_once(&mut second, b"still served");

    // A slot frees: the third is accepted and gets its echo.
    drop(first);
    third.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut back = [0u8; 5];
    third.read_exact(&mut back).expect("echo once a slot freed");
    assert_eq!(&back, b"third");
    server.wait_for(&format!("{third_peer} connected"));
}

#[test]
fn max_conns_counts_unix_and_tcp_together() {
    let dir = temp_dir();
    let path = dir.path().join("m.sock");
    let server = Server::start(
        &["tcp://127.0.0.1:0", &format!("unix:{}", path.display())],
        &["--max-conns", "1"],
    );
    let mut tcp = tcp_connect(server.tcp());
    echo_once(&mut tcp, b"tcp");
    let mut unix = unix_connect(&path);
    unix.write_all(b"unix").expect("write");
    unix.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    assert!(
        unix.read(&mut [0u8; 8]).is_err(),
        "unix client served while the one slot was taken"
    );
    drop(tcp);
    unix.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut back = [0u8; 4];
    unix.read_exact(&mut back)
        .expect("echo once the slot freed");
    assert_eq!(&back, b"unix");
}

#[test]
fn idle_timeout_closes_an_idle_connection() {
    let server = Server::start(&["tcp://127.0.0.1:0"], &["--idle-timeout", "1s"]);
    let mut stream = tcp_connect(server.tcp());
    let peer = stream.local_addr().expect("local addr");
    echo_once(&mut stream, b"ping");
    let last_traffic = Instant::now();
    let mut buf = [0u8; 8];
    let n = stream.read(&mut buf).expect("EOF from the server");
    let idle = last_traffic.elapsed();
    assert_eq!(n, 0, "expected EOF, got {:?}", &buf[..n]);
    assert!(
        idle >= Duration::from_millis(900),
        "closed after only {idle:?}"
    );
    assert!(idle < Duration::from_secs(5), "closed after {idle:?}");
    let log = server.wait_for(&format!("{peer} disconnected ("));
    assert!(log.contains("idle timeout"), "{log}");
}

#[test]
fn idle_timeout_spares_a_connection_with_traffic() {
    let server = Server::start(&["tcp://127.0.0.1:0"], &["--idle-timeout", "1s"]);
    let mut stream = tcp_connect(server.tcp());
    let started = Instant::now();
    // Traffic every 250 ms for 1.75 s: never idle for the full second.
    let mut i = 0;
    while started.elapsed() < Duration::from_millis(1750) {
        let req = format!("keepalive {i}");
        echo_once(&mut stream, req.as_bytes());
        i += 1;
        // Pacing the traffic is the point of this test, not waiting for readiness.
        std::thread::sleep(Duration::from_millis(250));
    }
    echo_once(&mut stream, b"still open");
}

#[test]
fn idle_timeout_takes_millisecond_durations() {
    let server = Server::start(&["tcp://127.0.0.1:0"], &["--idle-timeout", "250ms"]);
    let mut stream = tcp_connect(server.tcp());
    let started = Instant::now();
    assert_eq!(stream.read(&mut [0u8; 8]).expect("EOF"), 0);
    let idle = started.elapsed();
    assert!(
        idle >= Duration::from_millis(200) && idle < Duration::from_secs(3),
        "closed after {idle:?}"
    );
}

#[test]
fn idle_timeout_takes_seconds_and_minutes() {
    for value in ["30s", "5m"] {
        let server = Server::start(&["tcp://127.0.0.1:0"], &["--idle-timeout", value]);
        echo_once(&mut tcp_connect(server.tcp()), b"ok");
    }
}

/// Clients that write and never read: the server must stop reading from each once about a
/// quarter of a MiB of its echo is queued, instead of buffering the echo it cannot send. (Before
/// the io_uring path capped its receives, one multishot receive drained whatever the socket
/// held: about 3 MiB per such client.)
#[test]
fn clients_that_never_read_do_not_grow_server_memory() {
    const CLIENTS: usize = 8;
    const FLOOD: usize = 64 * 1024 * 1024;
    // One worker, so the warm-up and the floods share its buffers.
    let server = Server::start(&["tcp://127.0.0.1:0"], &["--threads", "1"]);
    let addr = server.tcp();
    // Warm up: the worker's buffers are touched once — the epoll path's read buffer, and the
    // io_uring path's 4 MiB receive pool, which an 8 MiB echo goes all the way round.
    echo_streaming(&tcp_connect(addr), &pattern(8 << 20, 5));
    let before = server.rss_kib();

    let chunk = pattern(1 << 20, 6);
    let flooders: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let chunk = chunk.clone();
            std::thread::spawn(move || {
                let mut stream = tcp_connect(addr);
                stream
                    .set_write_timeout(Some(Duration::from_millis(200)))
                    .expect("timeout");
                let deadline = Instant::now() + Duration::from_secs(10);
                let mut sent = 0usize;
                let mut stalls = 0;
                // The writer blocks once the socket buffers on both sides are full: two writes
                // in a row that time out mean the server has stopped reading.
                while sent < FLOOD && stalls < 2 && Instant::now() < deadline {
                    match stream.write(&chunk[sent % chunk.len()..]) {
                        Ok(n) => {
                            sent += n;
                            stalls = 0;
                        }
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                        {
                            stalls += 1;
                        }
                        Err(e) => panic!("write failed after {sent} bytes: {e}"),
                    }
                }
                (stream, sent)
            })
        })
        .collect();
    let flooded: Vec<_> = flooders
        .into_iter()
        .map(|t| t.join().expect("flooding client"))
        .collect();
    let after = server.rss_kib();
    let growth = after.saturating_sub(before);
    let sent: Vec<usize> = flooded.iter().map(|(_, sent)| *sent).collect();
    eprintln!("sent {sent:?} bytes; server RSS {before} KiB -> {after} KiB");
    // Each client may have about 320 KiB queued (256 KiB, and the rest of one 64 KiB receive
    // buffer); 1 MiB each leaves room for the allocator and the connections' own state.
    assert!(
        growth < (CLIENTS * 1024) as u64,
        "server memory grew by {growth} KiB while {CLIENTS} clients sent {sent:?} bytes without \
         reading"
    );
    assert!(
        sent.iter().all(|&n| n < FLOOD),
        "all {FLOOD} bytes of a client went through although nothing was read: {sent:?}"
    );

    // The stalled connections still work: each echo is the repeated chunk, in order.
    for (mut stream, _) in flooded {
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut back = vec![0u8; chunk.len()];
        stream.read_exact(&mut back).expect("read the echo");
        assert!(
            back == chunk,
            "echo of the flood starts with the first chunk"
        );
    }
}

/// Running out of file descriptors makes `accept` fail; the server backs off, keeps serving
/// the connections it has, and accepts the waiting clients once descriptors free up.
#[test]
fn running_out_of_file_descriptors_is_survived() {
    // A hard limit set before exec, so the server cannot raise it; --max-conns above it, so
    // the descriptors run out before the connection slots do.
    let mut cmd = std::process::Command::new("sh");
    cmd.args([
        "-c",
        "ulimit -n 64 && exec \"$0\" serve tcp://127.0.0.1:0 --max-conns 1000",
    ])
    .arg(bin())
    .env_remove("RUST_LOG");
    let server = Server::start_command(cmd, 1);
    let addr = server.tcp();

    // Connect until the server runs out of descriptors, telling the two apart by its log.
    let mut holders = Vec::new();
    let first_waiting = loop {
        assert!(
            holders.len() < 64,
            "64 connections served under a limit of 64 descriptors"
        );
        let mut client = tcp_connect(addr);
        let peer = client.local_addr().expect("local addr");
        let msg = format!("client {}", holders.len());
        client.write_all(msg.as_bytes()).expect("write");
        let log = server.wait_log("the client connected or accept failing", |log| {
            log.contains(&format!("{peer} connected")) || log.contains("backing off")
        });
        if !log.contains(&format!("{peer} connected")) {
            break (client, msg);
        }
        let mut back = vec![0u8; msg.len()];
        client.read_exact(&mut back).expect("echo within the limit");
        assert_eq!(back, msg.as_bytes());
        holders.push(client);
    };
    assert!(holders.len() >= 5, "only {} connections fit", holders.len());
    let mut waiting = vec![first_waiting];
    for i in 0..4 {
        let mut client = tcp_connect(addr);
        let msg = format!("waiting {i}");
        client.write_all(msg.as_bytes()).expect("write");
        waiting.push((client, msg));
    }
    // The connections already served still work while accept fails.
    echo_once(&mut holders[0], b"still served");

    drop(holders);
    for (i, (client, msg)) in waiting.iter_mut().enumerate() {
        let mut back = vec![0u8; msg.len()];
        client
            .read_exact(&mut back)
            .unwrap_or_else(|e| panic!("waiting client {i} never served: {e}\n{}", server.log()));
        assert_eq!(back, msg.as_bytes());
    }
}

/// Under a small open-file limit the default `--max-conns` keeps a reserve of half the limit,
/// not a fixed 64 that would leave one connection (or none), and the server warns, naming the
/// limit and how to raise it.
#[test]
fn a_small_open_file_limit_gives_a_usable_default_and_a_warning() {
    let mut cmd = std::process::Command::new("sh");
    // Few workers, so that startup fits in 64 descriptors on a machine with many cores.
    cmd.args([
        "-c",
        "ulimit -n 64 && exec \"$0\" serve tcp://127.0.0.1:0 --threads 2",
    ])
    .arg(crate::support::bin())
    .env_remove("RUST_LOG");
    let server = Server::start_command(cmd, 1);
    let log = server.log();
    assert!(
        log.contains("the open-file limit is 64 (ulimit -n), so at most 32 connections"),
        "{log}"
    );
    assert!(log.contains("LimitNOFILE="), "{log}");
    let mut clients: Vec<_> = (0..10).map(|_| tcp_connect(server.tcp())).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        client
            .set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
        echo_once(client, format!("client {i} of 10 at once").as_bytes());
    }
}
