//! `--max-conns-per-ip` and `--udp-rate`: the limits apply per source address, the excess is
//! turned away at once and counted, and other sources are unaffected.

use std::io::{ErrorKind, Read, Write};

use crate::support::{
    Metrics, Server, TCP_CONNECTIONS, UDP_ECHOED, assert_closed_unserved, echo_once, ip,
    poll_until, queued_datagrams, series_value, tcp_connect_from, tcp_rejected, udp_dropped,
    udp_from,
};

#[test]
fn max_conns_per_ip_closes_the_excess_and_frees_the_slot_on_close() {
    let server = Server::start(
        &["tcp://127.0.0.1:0"],
        &["--max-conns-per-ip", "2", "--metrics", "127.0.0.1:0"],
    );
    let metrics = Metrics::of(&server);
    let addr = server.tcp();
    let local = ip("127.0.0.1");

    let mut first = tcp_connect_from(local, addr);
    let mut second = tcp_connect_from(local, addr);
    echo_once(&mut first, b"first");
    echo_once(&mut second, b"second");
    assert_closed_unserved(
        &mut tcp_connect_from(local, addr),
        "a third connection from 127.0.0.1 under --max-conns-per-ip 2",
    );
    metrics.wait_values(&[(&tcp_rejected("per_ip_limit"), 1), (TCP_CONNECTIONS, 2)]);

    // Another address has its own allowance, and the two served ones still work.
    let mut other = tcp_connect_from(ip("127.0.0.2"), addr);
    echo_once(&mut other, b"from 127.0.0.2");
    echo_once(&mut first, b"first again");
    echo_once(&mut second, b"second again");

    // Closing one frees its slot once the server has seen the close: retry until then.
    drop(first);
    let mut attempts = 0;
    poll_until("the closed connection's slot to be given back", || {
        attempts += 1;
        let mut next = tcp_connect_from(local, addr);
        let _ = next.write_all(b"third");
        let mut back = [0u8; 5];
        match next.read_exact(&mut back) {
            Ok(()) => {
                assert_eq!(&back, b"third");
                Ok(())
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
                ) =>
            {
                Err(server.log())
            }
            Err(e) => panic!("attempt {attempts}: neither served nor refused: {e}"),
        }
    });
    // Every failed attempt was counted as over the limit, and nothing else.
    metrics.wait_values(&[
        (&tcp_rejected("per_ip_limit"), attempts),
        (&tcp_rejected("denied"), 0),
        (TCP_CONNECTIONS, 4),
    ]);
}

/// Sends `count` numbered datagrams from `socket` as fast as it can.
fn send_burst(socket: &std::net::UdpSocket, server: std::net::SocketAddr, count: usize) {
    for i in 0..count {
        socket
            .send_to(format!("datagram {i:02}").as_bytes(), server)
            .expect("send");
    }
}

#[test]
fn udp_rate_allows_a_burst_of_one_seconds_worth_per_source() {
    let server = Server::start(
        &["udp://127.0.0.1:0"],
        &["--udp-rate", "5", "--metrics", "127.0.0.1:0"],
    );
    let metrics = Metrics::of(&server);
    let udp = server.udp();

    let first = udp_from(ip("127.0.0.1"));
    send_burst(&first, udp, 20);
    // The echo is sent before it is counted, so once every datagram is accounted for the
    // replies are all queued on the client's socket.
    let text = wait_accounted(&metrics, 20);
    let echoed = queued_datagrams(&first);
    let limited = series_value(&text, &udp_dropped("rate_limited")).unwrap_or(0);
    assert!(
        (5..=7).contains(&echoed.len()),
        "--udp-rate 5 echoed {} of 20 datagrams sent at once",
        echoed.len()
    );
    assert_eq!(limited as usize, 20 - echoed.len(), "{text}");
    // Worker threads share the socket, so which of the burst get the tokens is not fixed;
    // each reply must be one of the datagrams sent, unchanged, and none twice.
    let sent: Vec<Vec<u8>> = (0..20)
        .map(|i| format!("datagram {i:02}").into_bytes())
        .collect();
    let mut distinct = echoed.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        echoed.len(),
        "a datagram echoed twice: {echoed:?}"
    );
    assert!(echoed.iter().all(|r| sent.contains(r)), "{echoed:?}");

    // Another source address has its own bucket.
    let second = udp_from(ip("127.0.0.2"));
    send_burst(&second, udp, 10);
    let text = wait_accounted(&metrics, 30);
    let second_echoed = queued_datagrams(&second);
    assert!(
        (5..=7).contains(&second_echoed.len()),
        "a second source got {} of 10 datagrams echoed:\n{text}",
        second_echoed.len()
    );
    assert_eq!(
        series_value(&text, UDP_ECHOED),
        Some((echoed.len() + second_echoed.len()) as u64)
    );
}

/// Waits until the server has echoed or rate-limited `total` datagrams, and returns the scrape.
fn wait_accounted(metrics: &Metrics, total: u64) -> String {
    poll_until(&format!("{total} datagrams accounted for"), || {
        let text = metrics.scrape();
        let count = |series: &str| series_value(&text, series).unwrap_or(0);
        if count(UDP_ECHOED) + count(&udp_dropped("rate_limited")) >= total {
            Ok(text)
        } else {
            Err(text)
        }
    })
}
