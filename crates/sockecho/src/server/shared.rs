//! [`Shared`]: what every serving loop and connection of one running server shares — its
//! configuration, counters, shutdown signals and limits.

use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::access::PerIpLimit;
use super::config::{EngineKind, ServerConfig};
use super::fault::plan::StreamFaults;
use super::log_budget::LogBudget;
use super::rate_limit::RateLimiter;
use crate::stats::Counters;

/// What every serving loop of one server shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    /// The engine each worker thread starts for plain streams, if any (else tokio serves them).
    pub(crate) engine: Option<EngineKind>,
    pub(crate) counters: Arc<Counters>,
    /// Cancelled when shutdown starts: stop accepting, echo what has arrived, close.
    pub(crate) drain: CancellationToken,
    /// Cancelled when the grace period ends: close whatever is still open.
    pub(crate) cut: CancellationToken,
    /// Tracks connection tasks so shutdown can wait for them.
    pub(crate) tracker: TaskTracker,
    /// Permits for `max_conns`, taken before `accept` so excess clients wait in the backlog.
    pub(crate) slots: Arc<Semaphore>,
    /// Open connections per peer address, when `max_conns_per_ip` is set.
    pub(crate) per_ip: Option<Arc<PerIpLimit>>,
    /// Per-source token buckets, when `udp_rate` is set.
    pub(crate) udp_rate: Option<RateLimiter>,
    /// The stream faults to deal each new connection, when there are any.
    pub(crate) stream_faults: Option<StreamFaults>,
    /// Which failed TLS handshakes are logged one by one; the rest are summed up.
    pub(crate) tls_failure_log: LogBudget,
}
