//! TLS on a client connection: the settings ([`ConnectOptions`]), one client configuration that
//! every connection of a session shares ([`TlsClient`]), and the handshake under its timeout with
//! the one-line errors every tool prints.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::error::ConnectError;
use super::framing::Framing;
use super::last_session::LastSession;
use super::tcp::{connect_first, connect_tcp, send_proxy_header};
use crate::net_error::describe_connect_error;
use crate::proxy_protocol::SendProxy;
use crate::tls::{
    ClientTlsOptions, TlsError, client_connector, describe_handshake_error, server_name,
};
use crate::{Endpoint, Host};

/// How to connect to stream endpoints.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Which server certificates a `tls://` endpoint accepts.
    pub tls: ClientTlsOptions,
    /// How long a TLS handshake may take.
    pub tls_handshake_timeout: Duration,
    /// A PROXY protocol header to send first on TCP and TLS connections (before the TLS
    /// handshake), as a load balancer would.
    pub send_proxy: Option<SendProxy>,
    /// How the byte stream of a `ws://` or `wss://` connection is cut into messages.
    pub ws_framing: Framing,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            tls: ClientTlsOptions::default(),
            tls_handshake_timeout: Duration::from_secs(10),
            send_proxy: None,
            ws_framing: Framing::Writes,
        }
    }
}

/// How every connection of a session sets up TLS. Cheap to clone: the configuration is shared.
#[derive(Clone)]
pub struct TlsClient {
    /// The trust decision (system roots, CA file, pin or none). Built once per session, because
    /// loading the system roots reads many files.
    connector: TlsConnector,
    /// Sent in SNI and checked against the certificate: the endpoint's host as the user wrote
    /// it, not the address it resolved to.
    name: ServerName<'static>,
    /// How long one handshake may take.
    handshake_timeout: Duration,
    /// The PROXY header each connection sends before its handshake, if asked.
    send_proxy: Option<SendProxy>,
}

impl TlsClient {
    /// The client for connections to `host`, trusting what `options` say. Built before any
    /// network traffic, so a bad `--ca` file is reported first.
    pub fn new(host: &Host, options: &ConnectOptions) -> Result<TlsClient, TlsError> {
        Ok(TlsClient {
            connector: client_connector(&options.tls)?,
            name: server_name(&host.to_string())?,
            handshake_timeout: options.tls_handshake_timeout,
            send_proxy: options.send_proxy,
        })
    }

    /// The same client as one that comes back (`true`): it remembers the session of its last
    /// connection, in a store of its own, and resumes it on the next (an abbreviated handshake,
    /// if the server allows it) — what a crowd of returning clients costs a server. Or as a
    /// crowd of new clients (`false`): a full handshake every time.
    pub fn with_resumption(&self, resume: bool) -> TlsClient {
        let mut config = ClientConfig::clone(self.connector.config());
        config.resumption = if resume {
            Resumption::store(Arc::new(LastSession::default()))
        } else {
            Resumption::disabled()
        };
        TlsClient {
            connector: TlsConnector::from(Arc::new(config)),
            ..self.clone()
        }
    }

    /// Connects to `addr` (from `source` if given) and completes the handshake. The error is
    /// one line saying what failed.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        source: Option<IpAddr>,
    ) -> Result<TlsStream<TcpStream>, String> {
        let mut tcp = connect_tcp(addr, source)
            .await
            .map_err(|e| describe_connect_error(&e))?;
        send_proxy_header(&mut tcp, self.send_proxy.as_ref()).await?;
        self.handshake(tcp).await
    }

    /// Connects to the first of `addrs` (what `endpoint` resolved to) that accepts, and
    /// completes the handshake there. A failed handshake is the server's answer, so the other
    /// addresses are not tried after it.
    pub async fn connect_first(
        &self,
        endpoint: &Endpoint,
        addrs: Vec<SocketAddr>,
    ) -> Result<(TlsStream<TcpStream>, SocketAddr), ConnectError> {
        let (mut tcp, addr) = connect_first(endpoint, addrs).await?;
        send_proxy_header(&mut tcp, self.send_proxy.as_ref())
            .await
            .map_err(|problem| ConnectError::new(endpoint, problem))?;
        let tls = self
            .handshake(tcp)
            .await
            .map_err(|problem| ConnectError::new(endpoint, problem))?;
        Ok((tls, addr))
    }

    /// Completes the handshake on a connected socket, within the handshake timeout.
    pub async fn handshake(&self, tcp: TcpStream) -> Result<TlsStream<TcpStream>, String> {
        let handshake = self.connector.connect(self.name.clone(), tcp);
        match tokio::time::timeout(self.handshake_timeout, handshake).await {
            Ok(Ok(stream)) => {
                ack_at_once(stream.get_ref().0);
                Ok(stream)
            }
            Ok(Err(e)) => Err(format!(
                "TLS handshake failed: {}",
                describe_handshake_error(&e)
            )),
            Err(_) => Err(format!(
                "TLS handshake timed out after {:?} — does the server speak TLS?",
                self.handshake_timeout
            )),
        }
    }
}

/// After the handshake, acknowledges what the server sends at once instead of after the
/// delayed-ACK timer (~40 ms on Linux). A TLS 1.3 server writes its session tickets as soon as
/// the handshake ends; if it leaves Nagle's algorithm on (socat and ncat do) its next small
/// write — the first echo — waits until those tickets are acknowledged, and the client, which
/// has nothing to send meanwhile, delays that acknowledgement. The first `ping` over TLS then
/// took ~42 ms against socat or ncat instead of ~0.3. (The kernel may go back to delayed ACKs
/// later in the connection; by then no ticket is outstanding.)
fn ack_at_once(tcp: &TcpStream) {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::net::sockopt::set_tcp_quickack(tcp, true) {
        tracing::debug!("TCP_QUICKACK: {e}");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = tcp;
}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClient")
            .field("name", &self.name)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::net::Ipv4Addr;

    use rustls::HandshakeKind;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::tls::ServerTls;

    /// Generous for loopback; a test that needs it is broken, not slow.
    async fn within<F: Future>(what: &str, fut: F) -> F::Output {
        match tokio::time::timeout(Duration::from_secs(10), fut).await {
            Ok(out) => out,
            Err(_) => panic!("timed out: {what}"),
        }
    }

    /// A TLS server configured as `sockecho serve`'s that echoes one byte per connection, for
    /// as many connections as come.
    async fn one_byte_echo() -> SocketAddr {
        let tls = ServerTls::self_signed(&["127.0.0.1".to_owned()]).expect("a certificate");
        let listener = within("bind", TcpListener::bind("127.0.0.1:0"))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("bound address");
        let acceptor = tls.acceptor();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut byte = [0u8; 1];
                    if tls.read_exact(&mut byte).await.is_ok() {
                        let _ = tls.write_all(&byte).await;
                    }
                });
            }
        });
        addr
    }

    /// Connects, exchanges a byte (the server's session tickets come in ahead of the reply,
    /// as they would for a client that reads anything) and says how the handshake went.
    async fn visit(client: &TlsClient, addr: SocketAddr) -> HandshakeKind {
        let mut tls = within("connect", client.connect(addr, None))
            .await
            .expect("a handshake with the test server");
        let kind = tls.get_ref().1.handshake_kind();
        within("write", tls.write_all(b"x")).await.expect("write");
        let mut byte = [0u8; 1];
        within("read", tls.read_exact(&mut byte))
            .await
            .expect("the echo");
        assert_eq!(&byte, b"x");
        kind.expect("a finished handshake has a kind")
    }

    fn insecure_client() -> TlsClient {
        let options = ConnectOptions {
            tls: ClientTlsOptions {
                insecure: true,
                ..ClientTlsOptions::default()
            },
            ..ConnectOptions::default()
        };
        TlsClient::new(&Host::Ip(Ipv4Addr::LOCALHOST.into()), &options).expect("a client")
    }

    #[tokio::test]
    async fn a_resuming_client_resumes_its_own_sessions_and_no_other_clients() {
        let addr = one_byte_echo().await;
        let base = insecure_client();
        let (one, two) = (base.with_resumption(true), base.with_resumption(true));
        assert_eq!(visit(&one, addr).await, HandshakeKind::Full);
        assert_eq!(visit(&one, addr).await, HandshakeKind::Resumed);
        assert_eq!(visit(&one, addr).await, HandshakeKind::Resumed);
        // `one`'s tickets are its own: `two` starts with nothing to resume.
        assert_eq!(visit(&two, addr).await, HandshakeKind::Full);
        assert_eq!(visit(&two, addr).await, HandshakeKind::Resumed);

        let fresh = base.with_resumption(false);
        for _ in 0..3 {
            assert_eq!(visit(&fresh, addr).await, HandshakeKind::Full);
        }
    }

    /// The server's sessions outlive a crowd: a client comes back after 200 others have each
    /// made a handshake and taken their tickets (400 sessions, which rustls' default cache of
    /// 256 would have forgotten the first of).
    #[tokio::test]
    async fn the_server_resumes_a_client_that_returns_after_hundreds_of_others() {
        let addr = one_byte_echo().await;
        let base = insecure_client();
        let returning = base.with_resumption(true);
        assert_eq!(visit(&returning, addr).await, HandshakeKind::Full);
        for _ in 0..200 {
            let other = base.with_resumption(true);
            assert_eq!(visit(&other, addr).await, HandshakeKind::Full);
        }
        assert_eq!(visit(&returning, addr).await, HandshakeKind::Resumed);
    }
}
