//! Shutdown through the `run` future: drain (open connections get what already arrived, then
//! EOF, and `run` returns with them counted) and cut (connections still open when the grace
//! period ends are closed and counted as cut).

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UnixStream};

use crate::support::{Running, config, echo_once, expect_eof, pattern, temp_dir, within};

#[tokio::test]
async fn drain_echoes_pending_bytes_then_eof_and_counts_them() {
    let mut server = Running::start(&["tcp://127.0.0.1:0"], config(Duration::from_secs(5))).await;
    let mut stream = within("connect", TcpStream::connect(server.addr()))
        .await
        .expect("connect");
    echo_once(&mut stream, b"before shutdown").await;
    // Bytes sent, not yet read back, when shutdown starts: the drain must still echo them.
    let pending = pattern(100_000);
    within("write", stream.write_all(&pending))
        .await
        .expect("write");
    server.shut_down();
    let mut back = vec![0u8; pending.len()];
    within(
        "the pending echo",
        tokio::io::AsyncReadExt::read_exact(&mut stream, &mut back),
    )
    .await
    .expect("read the pending echo");
    assert!(
        back == pending,
        "the drained echo differs from what was sent"
    );
    expect_eof(&mut stream).await;
    drop(stream);
    let stats = server.stats().await;
    assert_eq!(stats.connections_accepted, 1, "{stats:?}");
    assert_eq!(stats.connections_closed, 1, "{stats:?}");
    assert_eq!(stats.connections_cut, 0, "{stats:?}");
    assert_eq!(
        stats.stream_bytes,
        (b"before shutdown".len() + pending.len()) as u64,
        "{stats:?}"
    );
}

#[tokio::test]
async fn drain_closes_an_idle_unix_connection_with_eof() {
    let dir = temp_dir();
    let endpoint = format!("unix:{}", dir.path().join("drain.sock").display());
    let mut server = Running::start(&[&endpoint], config(Duration::from_secs(5))).await;
    let mut stream = within("connect", UnixStream::connect(server.path()))
        .await
        .expect("connect");
    echo_once(&mut stream, b"idle after this").await;
    server.shut_down();
    expect_eof(&mut stream).await;
    drop(stream);
    let stats = server.stats().await;
    assert_eq!(stats.connections_closed, 1, "{stats:?}");
    assert_eq!(stats.connections_cut, 0, "{stats:?}");
    assert_eq!(
        stats.stream_bytes,
        b"idle after this".len() as u64,
        "{stats:?}"
    );
}

#[tokio::test]
async fn a_client_that_never_closes_is_cut_after_the_grace() {
    let grace = Duration::from_millis(300);
    let mut server = Running::start(&["tcp://127.0.0.1:0"], config(grace)).await;
    let mut stream = within("connect", TcpStream::connect(server.addr()))
        .await
        .expect("connect");
    echo_once(&mut stream, b"then silence").await;
    let began = Instant::now();
    server.shut_down();
    // The server half-closes once the connection is quiet, then waits for this side to close,
    // which it never does while the stream is held.
    expect_eof(&mut stream).await;
    let stats = server.stats().await;
    let took = began.elapsed();
    assert!(
        took >= grace,
        "run returned after {took:?}, before the {grace:?} grace"
    );
    assert_eq!(stats.connections_accepted, 1, "{stats:?}");
    assert_eq!(stats.connections_closed, 1, "{stats:?}");
    assert_eq!(stats.connections_cut, 1, "{stats:?}");
    assert_eq!(
        stats.stream_bytes,
        b"then silence".len() as u64,
        "{stats:?}"
    );
    drop(stream);
}
