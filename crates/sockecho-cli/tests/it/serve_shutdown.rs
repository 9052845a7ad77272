//! Graceful shutdown on SIGTERM and SIGINT: stop accepting at once, finish the echo of what
//! already arrived, half-close, wait for clients until `--grace`, remove socket files, exit 0.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::support::{Server, WAIT, echo_once, pattern, tcp_connect, temp_dir, unix_connect};
use rustix::process::Signal;

fn read_to_eof<R: Read>(stream: &mut R) -> Vec<u8> {
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).expect("read until EOF");
    rest
}

#[test]
fn sigterm_finishes_open_echoes_then_exits_zero_once_clients_close() {
    let dir = temp_dir();
    let path = dir.path().join("s.sock");
    let mut server = Server::start(
        &["tcp://127.0.0.1:0", &format!("unix:{}", path.display())],
        &[],
    );
    let addr = server.tcp();
    let mut tcp = tcp_connect(addr);
    let mut unix = unix_connect(&path);
    echo_once(&mut tcp, b"one");
    echo_once(&mut unix, b"uno");
    // Sent but not yet read back when the signal comes.
    tcp.write_all(b"two").expect("write");
    unix.write_all(b"dos").expect("write");

    server.signal(Signal::TERM);
    server.wait_for("received SIGTERM");
    assert_eq!(
        read_to_eof(&mut tcp),
        b"two",
        "tcp: rest of the echo, then EOF"
    );
    assert_eq!(
        read_to_eof(&mut unix),
        b"dos",
        "unix: rest of the echo, then EOF"
    );

    // The server waits for its clients to close their side.
    assert!(
        server.try_wait_exit(Duration::from_millis(300)).is_none(),
        "exited before its clients closed:\n{}",
        server.log()
    );
    drop(tcp);
    drop(unix);
    // Well within the default 5 s grace: the server does not wait for the deadline.
    let status = server.wait_exit(Duration::from_secs(2));
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(!path.exists(), "socket file {} left behind", path.display());
    let log = server.log();
    assert!(log.contains("stopped: 2 connections (0 cut"), "{log}");
    assert!(!log.contains("grace period"), "{log}");
}

#[test]
fn a_client_idle_before_the_signal_still_gets_the_settle_time_to_send() {
    let server = Server::start(&["tcp://127.0.0.1:0"], &[]);
    let mut tcp = tcp_connect(server.tcp());
    echo_once(&mut tcp, b"early");
    // Quiet for longer than the drain's settle time (100 ms) before the shutdown begins.
    std::thread::sleep(Duration::from_millis(400));
    server.signal(Signal::TERM);
    server.wait_for("shutting down");
    // Within the settle time counted from the shutdown, not from the last echo.
    std::thread::sleep(Duration::from_millis(40));
    tcp.write_all(b"late").expect("write");
    assert_eq!(
        read_to_eof(&mut tcp),
        b"late",
        "bytes sent just after the signal come back before EOF"
    );
}

#[test]
fn sigint_removes_every_socket_file_and_exits_zero() {
    let dir = temp_dir();
    let stream_path = dir.path().join("s.sock");
    let dgram_path = dir.path().join("g.sock");
    let mut server = Server::start(
        &[
            &format!("unix:{}", stream_path.display()),
            &format!("unixgram:{}", dgram_path.display()),
            "udp://127.0.0.1:0",
        ],
        &[],
    );
    assert!(stream_path.exists() && dgram_path.exists());
    echo_once(&mut unix_connect(&stream_path), b"before the signal");
    server.signal(Signal::INT);
    let status = server.wait_exit(WAIT);
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(server.log().contains("received SIGINT"), "{}", server.log());
    assert!(!stream_path.exists(), "unix socket file left behind");
    assert!(!dgram_path.exists(), "unixgram socket file left behind");
}

#[test]
fn an_idle_server_exits_at_once_on_sigterm() {
    let mut server = Server::start(&["tcp://127.0.0.1:0", "udp://127.0.0.1:0"], &[]);
    let signalled = Instant::now();
    server.signal(Signal::TERM);
    let status = server.wait_exit(WAIT);
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(
        signalled.elapsed() < Duration::from_secs(2),
        "took {:?}",
        signalled.elapsed()
    );
}

#[test]
fn a_client_that_never_reads_is_cut_at_the_grace_deadline() {
    let mut server = Server::start(&["tcp://127.0.0.1:0"], &["--grace", "300ms"]);
    let mut flooder = tcp_connect(server.tcp());
    flooder
        .set_write_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let chunk = vec![7u8; 64 * 1024];
    let deadline = Instant::now() + WAIT;
    // Until the server has stopped reading from it: its echo cannot be written.
    while flooder.write(&chunk).is_ok() {
        assert!(Instant::now() < deadline, "the flood never stalled");
    }
    let signalled = Instant::now();
    server.signal(Signal::TERM);
    let status = server.wait_exit(WAIT);
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(
        signalled.elapsed() < Duration::from_secs(3),
        "took {:?} to cut a stalled client",
        signalled.elapsed()
    );
    let log = server.log();
    assert!(log.contains("cutting 1 connection"), "{log}");
    drop(flooder);
}

#[test]
fn a_client_that_never_closes_is_cut_at_the_grace_deadline() {
    let mut server = Server::start(&["tcp://127.0.0.1:0"], &["--grace", "500ms"]);
    let mut stubborn = tcp_connect(server.tcp());
    echo_once(&mut stubborn, b"I stay");
    let signalled = Instant::now();
    server.signal(Signal::TERM);
    // It gets its half-close like everyone else, but keeps its own side open.
    assert_eq!(read_to_eof(&mut stubborn), b"");
    let status = server.wait_exit(WAIT);
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(
        took >= Duration::from_millis(450),
        "cut after only {took:?}"
    );
    assert!(took < Duration::from_secs(3), "cut after {took:?}");
    let log = server.log();
    let warning = log
        .lines()
        .find(|l| l.contains("grace period of 500ms over"))
        .unwrap_or_else(|| panic!("no grace warning:\n{log}"));
    assert!(warning.contains(" 1 connection"), "{warning}");
    assert!(log.contains("(1 cut before they finished)"), "{log}");
    drop(stubborn);
}

#[test]
fn a_connection_cut_at_the_deadline_is_logged_with_its_byte_count() {
    let mut server = Server::start(&["tcp://127.0.0.1:0"], &["--grace", "300ms"]);
    let mut stubborn = tcp_connect(server.tcp());
    let peer = stubborn.local_addr().expect("local addr");
    echo_once(&mut stubborn, b"twelve bytes");
    server.signal(Signal::TERM);
    assert_eq!(read_to_eof(&mut stubborn), b"");
    assert_eq!(server.wait_exit(WAIT).code(), Some(0), "{}", server.log());
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains(&format!("{peer} disconnected")))
        .unwrap_or_else(|| panic!("no disconnected line for {peer}:\n{log}"));
    assert!(line.contains("cut"), "{line}");
    assert!(
        line.contains("12 bytes echoed"),
        "the cut connection's line lost its byte count: {line}"
    );
    let summary = log
        .lines()
        .find(|l| l.contains("stopped:"))
        .unwrap_or_else(|| panic!("no final summary:\n{log}"));
    assert!(
        summary.contains("12 bytes echoed"),
        "the final summary lost the cut connection's bytes: {summary}"
    );
    drop(stubborn);
}

#[test]
fn new_connections_are_refused_while_draining() {
    let dir = temp_dir();
    let path = dir.path().join("d.sock");
    let mut server = Server::start(
        &["tcp://127.0.0.1:0", &format!("unix:{}", path.display())],
        &[],
    );
    let addr = server.tcp();
    // An open connection keeps the server draining (not exited) while we knock.
    let mut held = tcp_connect(addr);
    echo_once(&mut held, b"hold");
    server.signal(Signal::TERM);
    server.wait_for("shutting down");
    assert_eq!(read_to_eof(&mut held), b"", "EOF: draining has begun");
    assert!(server.running(), "server exited while a client was open");

    // The listeners close as drain begins; allow the moment that takes, but no longer.
    let deadline = Instant::now() + Duration::from_secs(2);
    let (tcp_knock, unix_knock) = loop {
        let tcp_knock = std::net::TcpStream::connect_timeout(&addr, WAIT);
        let unix_knock = UnixStream::connect(&path);
        let tcp_refused = matches!(&tcp_knock, Err(e) if e.kind() == ErrorKind::ConnectionRefused);
        let unix_refused = matches!(&unix_knock,
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionRefused | ErrorKind::NotFound));
        if (tcp_refused && unix_refused) || Instant::now() > deadline {
            break (tcp_knock, unix_knock);
        }
        // No event announces a closed listener: poll briefly, bounded by the deadline.
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(
        tcp_knock.is_err() && unix_knock.is_err(),
        "new connections still accepted 2 s after SIGTERM: tcp {tcp_knock:?}, unix {unix_knock:?}"
    );
    assert!(server.running(), "server exited while a client was open");

    drop(held);
    assert_eq!(server.wait_exit(WAIT).code(), Some(0), "{}", server.log());
}

#[test]
fn a_client_still_sending_at_shutdown_gets_what_arrived_before_the_signal() {
    let mut server = Server::start(&["tcp://127.0.0.1:0"], &[]);
    let mut stream = tcp_connect(server.tcp());
    let before = pattern(200_000, 11);
    stream.write_all(&before).expect("write");
    server.signal(Signal::TERM);
    server.wait_for("shutting down");
    let back = read_to_eof(&mut stream);
    assert!(
        back == before,
        "got {} of the {} bytes sent before the signal",
        back.len(),
        before.len()
    );
    drop(stream);
    assert_eq!(server.wait_exit(WAIT).code(), Some(0), "{}", server.log());
}

/// Unix clients that have written far more than they have read when the signal comes still
/// get every byte they wrote back before EOF. On a Unix socket a completed write is already in
/// the server's receive queue, so all of it "arrived before the signal". Several clients at
/// once, because the buffers drain in a different order each time.
#[test]
fn unix_clients_behind_on_reading_get_their_whole_echo_after_sigterm() {
    const CLIENTS: u64 = 8;
    let dir = temp_dir();
    let path = dir.path().join("b.sock");
    let mut server = Server::start(&[&format!("unix:{}", path.display())], &[]);
    let (flooded_tx, flooded) = std::sync::mpsc::channel();
    let (go_tx, go) = std::sync::mpsc::channel::<()>();
    let go = std::sync::Arc::new(std::sync::Mutex::new(go));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let flooded_tx = flooded_tx.clone();
            let go = go.clone();
            let path = path.clone();
            std::thread::spawn(move || {
                let mut stream = unix_connect(&path);
                let sent = flood_until_blocked(&mut stream, i);
                flooded_tx.send(()).expect("report");
                // Everyone reads only once the signal has been sent.
                let _ = go.lock().expect("lock").recv();
                let back = read_to_eof(&mut stream);
                let chunk = pattern(FLOOD_CHUNK, i);
                let intact =
                    back.iter()
                        .copied()
                        .eq(chunk.iter().copied().cycle().take(back.len()));
                (sent, back.len(), intact)
            })
        })
        .collect();
    for _ in 0..CLIENTS {
        flooded
            .recv_timeout(WAIT)
            .expect("a client never filled its buffers");
    }
    server.signal(Signal::TERM);
    server.wait_for("shutting down");
    drop(go_tx);
    let results: Vec<_> = clients
        .into_iter()
        .map(|c| c.join().expect("client thread"))
        .collect();
    for (i, (sent, received, intact)) in results.iter().enumerate() {
        assert!(intact, "client {i}: echo differs from what was sent");
        assert_eq!(
            received, sent,
            "client {i}: bytes echoed back of those written before the signal ({results:?})"
        );
    }
    assert_eq!(server.wait_exit(WAIT).code(), Some(0), "{}", server.log());
}

const FLOOD_CHUNK: usize = 256 * 1024;

/// Writes the seed's pattern over and over until a write blocks for 200 ms, i.e. the buffers
/// on both sides are full; returns the bytes written.
fn flood_until_blocked(stream: &mut UnixStream, seed: u64) -> usize {
    stream
        .set_write_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let chunk = pattern(FLOOD_CHUNK, seed);
    let mut sent = 0usize;
    loop {
        match stream.write(&chunk[sent % chunk.len()..]) {
            Ok(n) => sent += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return sent;
            }
            Err(e) => panic!("write failed after {sent} bytes: {e}"),
        }
        assert!(sent < 256 * 1024 * 1024, "the server never pushed back");
    }
}

/// A stream client that has sent its echo but never reads it or closes, so the drain must wait
/// for it until `--grace` ends.
fn stuck_client(server: &Server) -> std::net::TcpStream {
    let mut client = tcp_connect(server.tcp());
    echo_once(&mut client, b"hold on");
    client
}

/// SIGHUP has nothing to reload: it stops the server gracefully like SIGTERM, draining open
/// connections and removing its socket files, instead of killing it on the spot.
#[test]
fn sighup_drains_and_removes_socket_files_like_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("h.sock");
    let mut server = Server::start(
        &["tcp://127.0.0.1:0", &format!("unix:{}", path.display())],
        &[],
    );
    let mut unix = unix_connect(&path);
    echo_once(&mut unix, b"before");
    unix.write_all(b"in flight").expect("write");
    server.signal(Signal::HUP);
    assert_eq!(
        read_to_eof(&mut unix),
        b"in flight",
        "the rest of the echo, then EOF"
    );
    drop(unix);
    let status = server.wait_exit(WAIT);
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(server.log().contains("received SIGHUP"), "{}", server.log());
    assert!(!path.exists(), "socket file {} left behind", path.display());
}

/// A second signal during the drain cuts what is still open at once, instead of waiting for
/// `--grace`, and the exit code (128 + the signal's number) tells it from a clean drain.
#[test]
fn a_second_signal_cuts_the_drain_short_with_exit_128_plus_its_number() {
    for (first, second, code) in [
        (Signal::TERM, Signal::TERM, 143),
        (Signal::INT, Signal::INT, 130),
        (Signal::TERM, Signal::INT, 130),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.sock");
        let mut server = Server::start(
            &["tcp://127.0.0.1:0", &format!("unix:{}", path.display())],
            &["--grace", "60s"],
        );
        let client = stuck_client(&server);
        server.signal(first);
        server.wait_for("shutting down");
        assert!(
            server.try_wait_exit(Duration::from_millis(200)).is_none(),
            "exited before the grace period although a client is open:\n{}",
            server.log()
        );
        let cut_at = Instant::now();
        server.signal(second);
        let status = server.wait_exit(WAIT);
        assert!(
            cut_at.elapsed() < Duration::from_secs(3),
            "took {:?} to stop after the second signal",
            cut_at.elapsed()
        );
        assert_eq!(status.code(), Some(code), "{}", server.log());
        let log = server.log();
        assert!(log.contains("cutting 1 connection"), "{log}");
        assert!(!path.exists(), "socket file {} left behind", path.display());
        drop(client);
    }
}

/// Shutdown while clients connect, echo and close in a loop, as the tutorial's client does:
/// each connection is served whole (all its bytes back, then EOF) or not at all (refused, or
/// reset before any byte came back) — never cut in the middle — and the server's count of
/// connections is the clients' count of whole echoes.
#[test]
fn drain_while_clients_churn_serves_each_connection_whole_or_not_at_all() {
    use std::net::Shutdown;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let mut server = Server::start(&["tcp://127.0.0.1:0"], &[]);
    let addr = server.tcp();
    let signalled = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4u64)
        .map(|client| {
            let signalled = signalled.clone();
            std::thread::spawn(move || {
                let (mut whole, mut unserved) = (0u64, 0u64);
                // Bounded: ends once the listener refuses after the signal, or after 10 s.
                let deadline = Instant::now() + Duration::from_secs(10);
                for round in 0u64.. {
                    assert!(Instant::now() < deadline, "clients still served 10 s on");
                    // Paced, so a run leaves a few thousand ports in TIME_WAIT, not tens of
                    // thousands (repeated runs would run out of ports to connect from).
                    std::thread::sleep(Duration::from_millis(1));
                    let mut stream = match std::net::TcpStream::connect_timeout(&addr, WAIT) {
                        Ok(stream) => stream,
                        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                            assert!(
                                signalled.load(Ordering::SeqCst),
                                "refused before the signal"
                            );
                            break;
                        }
                        // The listener closed while this handshake was under way: reset, not
                        // served (seen under the load of the parallel test run).
                        Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                            assert!(signalled.load(Ordering::SeqCst), "reset before the signal");
                            unserved += 1;
                            continue;
                        }
                        Err(e) => panic!("connect: {e}"),
                    };
                    stream.set_read_timeout(Some(WAIT)).expect("timeout");
                    let sent = pattern(64, client * 1_000_000 + round);
                    let wrote = stream
                        .write_all(&sent)
                        .and_then(|()| stream.shutdown(Shutdown::Write));
                    let mut back = Vec::new();
                    let read = stream.read_to_end(&mut back);
                    match (wrote, read) {
                        (Ok(()), Ok(_)) if back == sent => whole += 1,
                        (_, Err(e))
                            if back.is_empty() && e.kind() == ErrorKind::ConnectionReset =>
                        {
                            unserved += 1
                        }
                        (Err(e), _) if back.is_empty() && signalled.load(Ordering::SeqCst) => {
                            assert!(
                                matches!(
                                    e.kind(),
                                    ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
                                ),
                                "write: {e}"
                            );
                            unserved += 1;
                        }
                        (wrote, read) => panic!(
                            "connection cut in the middle: write {wrote:?}, read {read:?}, {} of \
                             64 bytes back",
                            back.len()
                        ),
                    }
                }
                (whole, unserved)
            })
        })
        .collect();
    // Let the churn get going, then shut down under it.
    std::thread::sleep(Duration::from_millis(300));
    signalled.store(true, std::sync::atomic::Ordering::SeqCst);
    server.signal(Signal::TERM);
    let status = server.wait_exit(Duration::from_secs(10));
    let (mut whole, mut unserved) = (0, 0);
    for client in clients {
        let (w, u) = client.join().expect("client thread");
        whole += w;
        unserved += u;
    }
    let log = server.log();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(
        whole >= 20,
        "only {whole} whole echoes before the signal:\n{log}"
    );
    let served = log
        .lines()
        .find_map(|line| line.split("stopped: ").nth(1))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no `stopped: N connections` line:\n{log}"));
    assert_eq!(
        served, whole,
        "the server served {served} connections, the clients got {whole} whole echoes \
         ({unserved} unserved)"
    );
}
