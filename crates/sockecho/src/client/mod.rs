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

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

use crate::Endpoint;
use crate::net_error::{describe_connect_error, plain};

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

/// Connects to a stream endpoint (TCP or Unix), trying each address a host name resolves to in
/// turn. Returns the stream and the address it reached.
pub async fn connect_stream(endpoint: &Endpoint) -> Result<(BoxStream, Endpoint), ClientError> {
    match endpoint {
        Endpoint::Tcp(hp) => {
            let addrs = resolve(endpoint).await?;
            let mut last_err = None;
            for addr in addrs {
                match TcpStream::connect(addr).await {
                    Ok(stream) => {
                        // Interactive lines and benchmark messages go out at once.
                        stream.set_nodelay(true).ok();
                        return Ok((Box::new(stream), Endpoint::inet(endpoint.transport(), addr)));
                    }
                    Err(e) => {
                        tracing::debug!("connect to {addr} ({hp}) failed: {e}");
                        last_err = Some(e);
                    }
                }
            }
            Err(connect_failed(endpoint, last_err))
        }
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
