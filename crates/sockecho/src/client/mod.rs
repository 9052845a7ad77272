//! Clients: connect to an endpoint and talk to an echo server.
//!
//! - [`interactive`]: the tutorial's prompt loop (`> ` in, `SERVER> ` out).
//! - [`pipe`]: a pipe tool like `nc`, copying input to the socket and the socket to output.
//! - [`datagram`]: one datagram per line, each reply awaited with a timeout.
//!
//! All of them take their input and output as parameters, so tests drive them without a
//! terminal or a process.

pub mod datagram;
pub mod interactive;
pub mod pipe;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

use crate::net_error::{describe_connect_error, plain};
use crate::proxy_protocol::SendProxy;
use crate::tls::ClientTlsOptions;
use crate::{Endpoint, Transport};

/// A connected byte stream of any transport.
pub trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ByteStream for T {}

/// A connected stream socket, boxed so every transport looks the same to the client code.
pub type BoxStream = Box<dyn ByteStream>;

/// Why a client failed. Each message names the endpoint.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The endpoint could not be reached.
    #[error("cannot connect to {endpoint}: {problem}")]
    Connect { endpoint: Endpoint, problem: String },
    /// The connection broke or the server closed it early.
    #[error("connection to {endpoint} lost: {problem}")]
    Lost { endpoint: Endpoint, problem: String },
    /// Reading the input or writing the output failed.
    #[error("{context}: {problem}")]
    Local {
        context: &'static str,
        problem: String,
    },
}

impl ClientError {
    pub(crate) fn lost(endpoint: &Endpoint, err: &io::Error) -> Self {
        let problem = match err.kind() {
            io::ErrorKind::UnexpectedEof => "the server closed the connection".into(),
            io::ErrorKind::ConnectionReset => "the server reset the connection".into(),
            io::ErrorKind::BrokenPipe => "the server closed the connection".into(),
            _ => plain(err),
        };
        ClientError::Lost {
            endpoint: endpoint.clone(),
            problem,
        }
    }

    pub(crate) fn local(context: &'static str, err: &io::Error) -> Self {
        ClientError::Local {
            context,
            problem: plain(err),
        }
    }

    fn connect(endpoint: &Endpoint, problem: impl Into<String>) -> Self {
        ClientError::Connect {
            endpoint: endpoint.clone(),
            problem: problem.into(),
        }
    }
}

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
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            tls: ClientTlsOptions::default(),
            tls_handshake_timeout: Duration::from_secs(10),
            send_proxy: None,
        }
    }
}

/// Connects to a stream endpoint (TCP, TLS or Unix) with default options.
pub async fn connect_stream(endpoint: &Endpoint) -> Result<(BoxStream, Endpoint), ClientError> {
    connect_stream_with(endpoint, &ConnectOptions::default()).await
}

/// Connects to a stream endpoint (TCP, TLS or Unix), trying each address a host name resolves
/// to in turn. Returns the stream and the address it reached.
pub async fn connect_stream_with(
    endpoint: &Endpoint,
    options: &ConnectOptions,
) -> Result<(BoxStream, Endpoint), ClientError> {
    match endpoint {
        Endpoint::Tcp(_) => {
            let (mut stream, addr) = connect_tcp(endpoint).await?;
            send_proxy(endpoint, options, &mut stream).await?;
            Ok((Box::new(stream), Endpoint::inet(Transport::Tcp, addr)))
        }
        Endpoint::Tls(hp) => {
            // Set up trust first: a bad --ca file is reported before any network traffic.
            let connector = crate::tls::client_connector(&options.tls)
                .map_err(|e| ClientError::connect(endpoint, e.to_string()))?;
            let name = crate::tls::server_name(&hp.host.to_string())
                .map_err(|e| ClientError::connect(endpoint, e.to_string()))?;
            let (mut stream, addr) = connect_tcp(endpoint).await?;
            send_proxy(endpoint, options, &mut stream).await?;
            let handshake = tokio::time::timeout(
                options.tls_handshake_timeout,
                connector.connect(name, stream),
            )
            .await;
            match handshake {
                Ok(Ok(tls)) => Ok((Box::new(tls), Endpoint::inet(Transport::Tls, addr))),
                Ok(Err(e)) => Err(ClientError::connect(
                    endpoint,
                    format!(
                        "TLS handshake failed: {}",
                        crate::tls::describe_handshake_error(&e)
                    ),
                )),
                Err(_) => Err(ClientError::connect(
                    endpoint,
                    format!(
                        "TLS handshake timed out after {:?} — does the server speak TLS?",
                        options.tls_handshake_timeout
                    ),
                )),
            }
        }
        Endpoint::Unix(_) if options.send_proxy.is_some() => Err(ClientError::connect(
            endpoint,
            "a PROXY header (--send-proxy) goes on tcp:// and tls:// connections only",
        )),
        Endpoint::Unix(path) => match UnixStream::connect(path).await {
            Ok(stream) => Ok((Box::new(stream), endpoint.clone())),
            Err(e) => Err(connect_failed(endpoint, Some(e))),
        },
        Endpoint::Udp(_) | Endpoint::UnixGram(_) => Err(ClientError::connect(
            endpoint,
            "a datagram endpoint has no connection; use the datagram client",
        )),
    }
}

/// Writes the PROXY header `options` ask for, if any, on a new TCP connection.
async fn send_proxy(
    endpoint: &Endpoint,
    options: &ConnectOptions,
    stream: &mut TcpStream,
) -> Result<(), ClientError> {
    let Some(proxy) = &options.send_proxy else {
        return Ok(());
    };
    proxy.send(stream).await.map_err(|e| {
        ClientError::connect(
            endpoint,
            format!("cannot send the PROXY header: {}", plain(&e)),
        )
    })
}

/// TCP to the first address of `endpoint` that accepts.
async fn connect_tcp(endpoint: &Endpoint) -> Result<(TcpStream, SocketAddr), ClientError> {
    let addrs = resolve(endpoint).await?;
    let mut last_err = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                // Interactive lines and benchmark messages go out at once.
                stream.set_nodelay(true).ok();
                return Ok((stream, addr));
            }
            Err(e) => {
                tracing::debug!("connect to {addr} for {endpoint} failed: {e}");
                last_err = Some(e);
            }
        }
    }
    Err(connect_failed(endpoint, last_err))
}

/// Resolves an Internet endpoint, turning failure into a client error.
pub async fn resolve(endpoint: &Endpoint) -> Result<Vec<SocketAddr>, ClientError> {
    let Some(hp) = endpoint.host_port() else {
        return Err(ClientError::connect(endpoint, "not an Internet endpoint"));
    };
    if hp.host == crate::Host::Any {
        return Err(ClientError::connect(
            endpoint,
            "no host given; name the server, e.g. localhost:PORT",
        ));
    }
    hp.resolve().await.map_err(|e| {
        ClientError::connect(
            endpoint,
            format!("cannot resolve host {}: {}", hp.host, plain(&e)),
        )
    })
}

fn connect_failed(endpoint: &Endpoint, err: Option<io::Error>) -> ClientError {
    let problem = match &err {
        Some(e) => describe_connect_error(e),
        None => "no address to connect to".into(),
    };
    ClientError::connect(endpoint, problem)
}
