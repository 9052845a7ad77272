//! `echo_stream` on its own, over in-memory and socket pairs: no listener, no server.

use sockecho::server::{CloseReason, EchoOptions, echo_stream};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;

use crate::support::{echo_once, expect_eof, pattern, within};

#[tokio::test]
async fn echoes_over_a_duplex_until_the_peer_closes() {
    let (mut client, mut server_end) = tokio::io::duplex(4096);
    let drain = CancellationToken::new();
    let echo =
        tokio::spawn(
            async move { echo_stream(&mut server_end, &EchoOptions::default(), &drain).await },
        );
    // Larger than the duplex buffer, so the echo must keep up with both directions.
    let data = pattern(300_000);
    echo_once(&mut client, &data).await;
    within("shutdown", client.shutdown())
        .await
        .expect("shutdown");
    expect_eof(&mut client).await;
    let outcome = within("the echo to end", echo).await.expect("echo task");
    assert_eq!(outcome.bytes, data.len() as u64);
    assert_eq!(
        outcome.result.expect("no I/O error"),
        CloseReason::PeerClosed
    );
}

#[tokio::test]
async fn drain_ends_an_echo_over_a_socket_pair() {
    let (mut client, mut server_end) = UnixStream::pair().expect("socket pair");
    let drain = CancellationToken::new();
    let echo = tokio::spawn({
        let drain = drain.clone();
        async move { echo_stream(&mut server_end, &EchoOptions::default(), &drain).await }
    });
    echo_once(&mut client, b"one message").await;
    drain.cancel();
    // Quiet connection: the echo half-closes, then ends once this side closes too.
    expect_eof(&mut client).await;
    drop(client);
    let outcome = within("the echo to end", echo).await.expect("echo task");
    assert_eq!(outcome.bytes, b"one message".len() as u64);
    assert_eq!(outcome.result.expect("no I/O error"), CloseReason::Drained);
}
