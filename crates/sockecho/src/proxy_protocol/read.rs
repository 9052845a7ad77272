//! Taking a header off a TCP connection, and noticing one sent by a peer that may not send it.
//!
//! Bytes are peeked first and only the header's own bytes are read, so nothing the client sent
//! after the header is taken out of the socket: the echo (on tokio or io_uring) or the TLS
//! handshake finds it there as if no header had been sent. When the header is still incomplete
//! every byte seen so far is part of it and is read, so the next peek waits for new data instead
//! of spinning on the old.

use tokio::net::TcpStream;

use super::header::{HeaderError, MAX_V2_LEN, ProxyHeader};
use super::parse::{frame_len, parse, starts_with_signature};

/// Reads the PROXY header that must start `stream`, leaving the data after it unread. Not
/// bounded in time: the caller puts it under a timeout.
pub async fn read_header(stream: &TcpStream) -> Result<ProxyHeader, HeaderError> {
    let mut buf = vec![0; MAX_V2_LEN];
    // Bytes of the header read (consumed) so far, at the start of `buf`.
    let mut have = 0;
    loop {
        let seen = have + stream.peek(&mut buf[have..]).await?;
        if seen == have {
            return Err(HeaderError::Closed);
        }
        let end = match frame_len(&buf[..seen])? {
            Some(total) => total.min(seen),
            None => seen,
        };
        if end <= have {
            // frame_len never places the end inside bytes already taken as header.
            return Err(HeaderError::Malformed("inconsistent framing"));
        }
        match stream.try_read(&mut buf[have..end]) {
            Ok(0) => return Err(HeaderError::Closed),
            Ok(n) => have += n,
            // Readiness was lost between peek and read: peek again.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e.into()),
        }
        if let Some((header, _)) = parse(&buf[..have])? {
            return Ok(header);
        }
    }
}

/// Waits for the first bytes of `stream` and tells whether they are a PROXY signature, without
/// consuming them. `Ok(false)` at end of stream.
pub async fn sends_header(stream: &TcpStream) -> std::io::Result<bool> {
    let mut first = [0; 12];
    let n = stream.peek(&mut first).await?;
    Ok(starts_with_signature(&first[..n]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    #[tokio::test]
    async fn header_in_pieces_then_data_stays_in_the_socket() {
        let (mut client, mut server) = pair().await;
        let whole = b"PROXY TCP4 192.0.2.1 198.51.100.2 40000 443\r\nafter";
        let reader = tokio::spawn(async move {
            let header = read_header(&server).await.unwrap();
            let mut rest = [0; 5];
            server.read_exact(&mut rest).await.unwrap();
            (header, rest)
        });
        for piece in [&whole[..3], &whole[3..20], &whole[20..]] {
            client.write_all(piece).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (header, rest) = tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(header.source(), Some("192.0.2.1:40000".parse().unwrap()));
        assert_eq!(&rest, b"after");
    }

    #[tokio::test]
    async fn closed_early_and_sniffing() {
        let (mut client, server) = pair().await;
        client.write_all(b"PROXY TCP4 1.2.").await.unwrap();
        drop(client);
        let err = tokio::time::timeout(Duration::from_secs(5), read_header(&server))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(err.reason(), "closed");

        let (mut client, server) = pair().await;
        client.write_all(b"\r\n\r\n\0\r\nQUIT\n\x21").await.unwrap();
        assert!(sends_header(&server).await.unwrap());
        let (mut client, server) = pair().await;
        client.write_all(b"hello").await.unwrap();
        assert!(!sends_header(&server).await.unwrap());
    }
}
