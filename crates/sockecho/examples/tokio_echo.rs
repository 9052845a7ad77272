//! The idiomatic tokio echo server, as a comparison point for `sockecho serve`: one task per
//! connection, each copying what it reads back with `read` + `write_all` through a 4 KiB buffer.
//! `bench/compare.py` runs it next to sockecho and a C epoll server; it is deliberately plain.
//!
//! ```text
//! cargo run --release -p sockecho --example tokio_echo -- 127.0.0.1:0
//! ```
//!
//! Prints `listening on tcp://ADDR` on stderr once bound (with the real port for port 0).

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = TcpListener::bind(&addr).await?;
    eprintln!("listening on tcp://{}", listener.local_addr()?);

    loop {
        // An accept error (such as running out of file descriptors) ends the server, as in
        // tokio's own echo example: this is the plain version, not a hardened one.
        let (mut socket, _) = listener.accept().await?;
        // As in the C yardstick: without it, an echo split over two writes waits for the
        // client's delayed ACK (Nagle), and the comparison would measure that instead. It can
        // only fail if the peer has already gone, which the read below will notice.
        let _ = socket.set_nodelay(true);
        tokio::spawn(async move {
            let mut buf = vec![0; 4096];
            loop {
                let n = match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if socket.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        });
    }
}
