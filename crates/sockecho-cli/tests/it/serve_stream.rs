//! Stream echo (TCP, Unix): every byte back in order, binary-exact, at any size, for many
//! connections at once, and half-close handled.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::Duration;

use crate::support::{
    Server, assert_all_byte_values, echo_once, pattern, tcp_connect, temp_dir, unix_connect,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIG: usize = 16 * 1024 * 1024;

/// Writes `data` on one thread while reading the echo on this one, so neither side's buffers
/// can deadlock the transfer; returns what came back before EOF.
fn echo_concurrently<S>(mut reader: S, mut writer: S, data: Vec<u8>) -> Vec<u8>
where
    S: Read + Write + Send + 'static,
    S: ShutdownWrite,
{
    let len = data.len();
    let sender = std::thread::spawn(move || {
        writer.write_all(&data).expect("write");
        writer.shutdown_write();
    });
    let mut back = Vec::with_capacity(len);
    reader.read_to_end(&mut back).expect("read the echo");
    sender.join().expect("writer thread");
    back
}

trait ShutdownWrite {
    fn shutdown_write(&self);
}

impl ShutdownWrite for std::net::TcpStream {
    fn shutdown_write(&self) {
        self.shutdown(Shutdown::Write).expect("half-close");
    }
}

impl ShutdownWrite for std::os::unix::net::UnixStream {
    fn shutdown_write(&self) {
        self.shutdown(Shutdown::Write).expect("half-close");
    }
}

#[test]
fn tcp_echoes_16_mib_of_binary_data_exactly() {
    let server = Server::start(&["tcp://127.0.0.1:0"], &[]);
    let stream = tcp_connect(server.tcp());
    let data = pattern(BIG, 1);
    assert_all_byte_values(&data);
    let back = echo_concurrently(stream.try_clone().expect("clone"), stream, data.clone());
    assert_eq!(back.len(), data.len(), "echo length");
    assert!(back == data, "echo differs from what was sent");
    server.wait_for(&format!("disconnected ({BIG} bytes echoed"));
}

#[test]
fn unix_echoes_16_mib_of_binary_data_exactly() {
    let dir = temp_dir();
    let path = dir.path().join("s.sock");
    let server = Server::start(&[&format!("unix:{}", path.display())], &[]);
    assert_eq!(server.find("unix").path(), path);
    let stream = unix_connect(&path);
    let data = pattern(BIG, 2);
    let back = echo_concurrently(stream.try_clone().expect("clone"), stream, data.clone());
    assert_eq!(back.len(), data.len(), "echo length");
    assert!(back == data, "echo differs from what was sent");
}

#[test]
fn tcp_over_ipv6_echoes() {
    let server = Server::start(&["tcp://[::1]:0"], &[]);
    let addr = server.tcp();
    assert!(addr.ip().is_loopback() && addr.is_ipv6(), "{addr}");
    let mut stream = tcp_connect(addr);
    let peer = stream.local_addr().expect("local addr");
    server.wait_for(&format!("[::1]:{} connected", peer.port()));
    echo_once(&mut stream, b"over IPv6\n");
    echo_once(&mut stream, &pattern(100_000, 3));
}

#[test]
fn echo_keeps_order_across_many_small_writes() {
    let server = Server::start(&["tcp://127.0.0.1:0"], &[]);
    let mut stream = tcp_connect(server.tcp());
    let mut expected = Vec::new();
    for i in 0..2000u32 {
        let msg = format!("{i},");
        stream.write_all(msg.as_bytes()).expect("write");
        expected.extend_from_slice(msg.as_bytes());
    }
    let mut back = vec![0u8; expected.len()];
    stream.read_exact(&mut back).expect("read the echo");
    assert_eq!(
        String::from_utf8_lossy(&back),
        String::from_utf8_lossy(&expected)
    );
}

#[test]
fn tcp_half_close_gets_everything_back_then_eof() {
    let server = Server::start(&["tcp://127.0.0.1:0"], &[]);
    let mut stream = tcp_connect(server.tcp());
    let data = pattern(300_000, 4);
    stream.write_all(&data).expect("write");
    stream.shutdown(Shutdown::Write).expect("half-close");
    let mut back = Vec::new();
    stream.read_to_end(&mut back).expect("read until EOF");
    assert!(
        back == data,
        "got {} of {} bytes back",
        back.len(),
        data.len()
    );
    let peer = stream.local_addr().expect("local addr");
    server.wait_for(&format!("{peer} disconnected ({} bytes echoed", data.len()));
}

#[test]
fn unix_half_close_gets_everything_back_then_eof() {
    let dir = temp_dir();
    let path = dir.path().join("h.sock");
    let _server = Server::start(&[&format!("unix:{}", path.display())], &[]);
    let mut stream = unix_connect(&path);
    stream.write_all(b"last words").expect("write");
    stream.shutdown(Shutdown::Write).expect("half-close");
    let mut back = Vec::new();
    stream.read_to_end(&mut back).expect("read until EOF");
    assert_eq!(back, b"last words");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_tcp_clients_each_get_their_own_bytes() {
    const CLIENTS: usize = 1000;
    let server = Server::start(&["tcp://127.0.0.1:0"], &[]);
    let addr = server.tcp();
    // Every client holds its connection open until all are connected, so all 1000 are served
    // at the same time.
    let all_connected = std::sync::Arc::new(tokio::sync::Barrier::new(CLIENTS));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..CLIENTS {
        let all_connected = all_connected.clone();
        tasks.spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await?;
            all_connected.wait().await;
            let mut data = format!("client {i} says hello|").into_bytes();
            data.extend(pattern(2000 + i, i as u64));
            stream.write_all(&data).await?;
            let mut back = vec![0u8; data.len()];
            stream.read_exact(&mut back).await?;
            stream.shutdown().await?;
            let rest = stream.read(&mut [0u8; 1]).await?;
            Ok::<_, std::io::Error>((i, back == data, rest))
        });
    }
    let results = tokio::time::timeout(Duration::from_secs(30), async {
        let mut results = Vec::new();
        while let Some(r) = tasks.join_next().await {
            results.push(r.expect("client task").expect("client i/o"));
        }
        results
    })
    .await
    .expect("1000 clients did not finish in time");
    assert_eq!(results.len(), CLIENTS);
    for (i, same, rest) in results {
        assert!(same, "client {i} got someone else's bytes back");
        assert_eq!(rest, 0, "client {i} expected EOF after its echo");
    }
    let log = server.wait_log("1000 disconnected lines", |log| {
        log.matches(" disconnected (").count() == CLIENTS
    });
    assert_eq!(
        log.matches(" connected\n").count(),
        CLIENTS,
        "connected lines"
    );
}

#[test]
fn a_client_that_resets_does_not_disturb_the_others() {
    let server = Server::start(&["tcp://127.0.0.1:0"], &[]);
    let addr = server.tcp();
    let mut bystander = tcp_connect(addr);
    echo_once(&mut bystander, b"before");
    let mut rude = tcp_connect(addr);
    let rude_peer = rude.local_addr().expect("local addr");
    rude.write_all(&pattern(100_000, 12)).expect("write");
    // Closing with the echo unread in the receive buffer makes the kernel send a reset.
    let mut first = [0u8; 1];
    rude.read_exact(&mut first).expect("some echo arrived");
    drop(rude);
    server.wait_for(&format!("{rude_peer} disconnected ("));
    echo_once(&mut bystander, b"after");
    echo_once(&mut tcp_connect(addr), b"a newcomer");
}

#[test]
fn a_single_worker_thread_serves_several_connections_at_once() {
    let server = Server::start(&["tcp://127.0.0.1:0"], &["--threads", "1"]);
    let mut streams: Vec<_> = (0..20).map(|_| tcp_connect(server.tcp())).collect();
    // Interleaved: every connection stays open while the others are served.
    for round in 0..3 {
        for (i, stream) in streams.iter_mut().enumerate() {
            echo_once(stream, format!("round {round} conn {i}").as_bytes());
        }
    }
}
