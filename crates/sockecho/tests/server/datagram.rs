//! Datagram echo through a bound server: each UDP datagram comes back whole, to its sender,
//! and is counted.

use std::time::Duration;

use tokio::net::UdpSocket;

use crate::support::{Running, config, pattern, within};

#[tokio::test]
async fn udp_echoes_each_datagram_whole_to_its_sender() {
    let mut server = Running::start(&["udp://127.0.0.1:0"], config(Duration::from_secs(5))).await;
    let addr = server.addr();
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let sizes = [1usize, 512, 1472, 9000, 65_507];
    let mut buf = vec![0u8; 70_000];
    for size in sizes {
        let data = pattern(size);
        within("send", socket.send_to(&data, addr))
            .await
            .expect("send");
        let (n, from) = within("the echo", socket.recv_from(&mut buf))
            .await
            .expect("receive");
        assert_eq!(from, addr, "the reply came from elsewhere");
        assert_eq!(n, size, "a {size}-byte datagram came back as {n} bytes");
        assert!(buf[..n] == data[..], "the {size}-byte echo differs");
    }
    server.shut_down();
    let stats = server.stats().await;
    assert_eq!(stats.datagrams, sizes.len() as u64, "{stats:?}");
    assert_eq!(
        stats.datagram_bytes,
        sizes.iter().sum::<usize>() as u64,
        "{stats:?}"
    );
    assert_eq!(stats.datagrams_dropped, 0, "{stats:?}");
}
