//! A minimal TLS echo server, the reference `bench/compare.py` measures `sockecho serve tls://`
//! against in its TLS churn cases: tokio-rustls on one thread (a current-thread runtime), a
//! task per connection that does the handshake and then copies what it reads back through a
//! 4 KiB buffer, closing with `close_notify` when the client is done. No per-connection process
//! or thread, no timeouts, no limits: deliberately plain, like `tokio_echo`.
//!
//! Its TLS is sockecho's: rustls' defaults on the `ring` provider (TLS 1.3 and 1.2, an ECDSA
//! P-256 certificate made with rcgen at start-up for `localhost` and `127.0.0.1`) but for
//! TLS 1.3 resumption, from stateless session tickets (rustls' ring `Ticketer`) rather than
//! rustls' 256-entry session cache, so that resumed handshakes cost both servers the same work.
//!
//! ```text
//! cargo run --release -p sockecho --example tls_echo -- 127.0.0.1:0
//! ```
//!
//! Prints `listening on tls://ADDR` on stderr once bound (with the real port for port 0).

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let acceptor = TlsAcceptor::from(Arc::new(self_signed_config()?));
    let listener = TcpListener::bind(&addr).await?;
    eprintln!("listening on tls://{}", listener.local_addr()?);

    loop {
        // As in tokio_echo: an accept error ends the server; this is the plain version.
        let (socket, _) = listener.accept().await?;
        // As in the C yardstick and tokio_echo: no figure should measure Nagle's algorithm. It
        // can only fail if the peer has already gone, which the handshake will notice.
        let _ = socket.set_nodelay(true);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            // A failed handshake (a client that gave up, a scanner) only ends its connection.
            let Ok(mut tls) = acceptor.accept(socket).await else {
                return;
            };
            let mut buf = vec![0; 4096];
            loop {
                let n = match tls.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(_) => return,
                };
                if tls.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
            // The client closed first; answer its close_notify with ours. It may already be
            // gone, which is no error of the server's.
            let _ = tls.shutdown().await;
        });
    }
}

/// rustls' default server configuration with a self-signed certificate made for this run,
/// resuming TLS 1.3 sessions from stateless tickets as `sockecho serve` does.
fn self_signed_config() -> Result<ServerConfig, BoxError> {
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let generated = rcgen::generate_simple_self_signed(names)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        generated.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![generated.cert.der().clone()], key)?;
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    Ok(config)
}
