//! Clients: connect to an endpoint and talk to an echo server.
//!
//! - [`interactive`]: the tutorial's prompt loop (`> ` in, `SERVER> ` out).
//! - [`pipe`]: a pipe tool like `nc`, copying input to the socket and the socket to output.
//! - [`datagram`]: one datagram per line, each reply awaited with a timeout.
//!
//! All of them take their input and output as parameters, so tests drive them without a
//! terminal or a process. The stream ones talk over a [`BoxStream`](crate::connect::BoxStream)
//! opened by [`crate::connect`], which also opens the datagram client's socket.

pub mod datagram;
pub mod interactive;
pub mod pipe;

use std::io;

use crate::Endpoint;
use crate::connect::ConnectError;
use crate::net_error::plain;

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
}

impl From<ConnectError> for ClientError {
    fn from(e: ConnectError) -> Self {
        ClientError::Connect {
            endpoint: e.endpoint,
            problem: e.problem,
        }
    }
}
