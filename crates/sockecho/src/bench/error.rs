//! Why a run could not be made: [`BenchError`], for the settings, the endpoint, TLS and the load
//! threads.

use std::io;

use crate::Endpoint;
use crate::tls::TlsError;

/// Why a run could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The settings contradict each other or the system's limits.
    #[error("invalid bench settings: {0}")]
    Invalid(String),
    /// The server did not answer, or no connection could be opened.
    #[error("cannot reach {endpoint}: {problem}")]
    Unreachable { endpoint: Endpoint, problem: String },
    /// The TLS settings cannot be used (a CA file that cannot be read, a malformed pin, a host
    /// that cannot be a TLS server name).
    #[error("cannot set up TLS for {endpoint}")]
    Tls {
        endpoint: Endpoint,
        #[source]
        source: TlsError,
    },
    /// A load thread could not be started.
    #[error("cannot start a load thread: {0}")]
    Thread(#[source] io::Error),
    /// A load thread died without reporting (a bug).
    #[error("a load thread stopped without reporting its results")]
    WorkerLost,
    /// [`Progress::stop`](super::Progress::stop) came before the measured period began: nothing was measured.
    #[error("stopped before the measured period began; nothing to report")]
    Interrupted,
    /// `--io uring` was asked for, and this kernel or sandbox does not allow it.
    #[error(
        "io_uring is not available here (it needs Linux 6.12 or later, not blocked by a sandbox): {0}"
    )]
    IoUring(#[source] io::Error),
}
