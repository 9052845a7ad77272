//! Stream echo through a bound server: every byte back, in order, over TCP and Unix sockets, for
//! messages from one byte to 1 MiB, and the bytes counted in the statistics.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

use crate::support::{Running, config, echo_once, pattern, temp_dir, within};

/// From one byte to well past one read buffer and the socket buffers.
const SIZES: [usize; 4] = [1, 1500, 64 * 1024 + 7, 1 << 20];

/// Echoes every size in [`SIZES`] over `stream`, one after another on the one connection, then
/// closes it, shuts the server down and checks the connection and its bytes were counted.
async fn assert_echoes_every_size<S>(mut server: Running, mut stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    for size in SIZES {
        echo_once(&mut stream, &pattern(size)).await;
    }
    drop(stream);
    server.shut_down();
    let stats = server.stats().await;
    assert_eq!(stats.connections_accepted, 1, "{stats:?}");
    assert_eq!(stats.connections_closed, 1, "{stats:?}");
    assert_eq!(stats.connections_cut, 0, "{stats:?}");
    assert_eq!(
        stats.stream_bytes,
        SIZES.iter().sum::<usize>() as u64,
        "{stats:?}"
    );
}

#[tokio::test]
async fn tcp_echoes_every_size_byte_exact() {
    let server = Running::start(&["tcp://127.0.0.1:0"], config(Duration::from_secs(5))).await;
    let stream = within("connect", TcpStream::connect(server.addr()))
        .await
        .expect("connect");
    assert_echoes_every_size(server, stream).await;
}

#[tokio::test]
async fn unix_echoes_every_size_byte_exact() {
    let dir = temp_dir();
    let endpoint = format!("unix:{}", dir.path().join("echo.sock").display());
    let server = Running::start(&[&endpoint], config(Duration::from_secs(5))).await;
    let path = server.path();
    let stream = within("connect", UnixStream::connect(&path))
        .await
        .expect("connect");
    assert_echoes_every_size(server, stream).await;
    assert!(!path.exists(), "the socket file outlived the server");
}

#[tokio::test]
async fn concurrent_tcp_connections_each_get_their_own_bytes() {
    let mut server = Running::start(&["tcp://127.0.0.1:0"], config(Duration::from_secs(5))).await;
    let addr = server.addr();
    let clients: Vec<_> = (0..4u8)
        .map(|n| {
            tokio::spawn(async move {
                let mut stream = within("connect", TcpStream::connect(addr))
                    .await
                    .expect("connect");
                // Different data per client, so crossed streams would show.
                let mut data = pattern(200_000);
                data.rotate_left(usize::from(n) * 1000);
                echo_once(&mut stream, &data).await;
            })
        })
        .collect();
    for client in clients {
        within("a client", client).await.expect("client task");
    }
    server.shut_down();
    let stats = server.stats().await;
    assert_eq!(stats.connections_accepted, 4, "{stats:?}");
    assert_eq!(stats.stream_bytes, 4 * 200_000, "{stats:?}");
}
