//! What the server is told to do: [`ServerConfig`], filled by the CLI from its flags, with the
//! choice of stream I/O path ([`IoMode`]) among it.

use std::time::Duration;

use super::access::AccessPolicy;
use crate::io::IoMode;
use crate::tls::ServerTls;

/// How the server behaves; the CLI fills it from its flags.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Stream connections served at once, over all listeners. Further clients wait in the
    /// listen backlog until a slot frees.
    pub max_conns: usize,
    /// Close stream connections idle this long.
    pub idle_timeout: Option<Duration>,
    /// After shutdown starts, how long open connections get before they are cut.
    pub grace: Duration,
    /// Log every received payload (lossy UTF-8, trimmed).
    pub log_data: bool,
    /// Who may connect or send datagrams (`--allow`, `--deny`).
    pub access: AccessPolicy,
    /// Most stream connections from one peer address at once (TCP).
    pub max_conns_per_ip: Option<usize>,
    /// Most datagrams per second from one source address, in bursts of up to one second's
    /// worth; the excess is dropped.
    pub udp_rate: Option<f64>,
    /// Drop datagrams from well-known service ports and from broadcast or multicast sources,
    /// so two echo services cannot be made to bounce datagrams between them forever.
    pub reflection_guard: bool,
    /// Certificate and key for `tls://` endpoints. `None` with a TLS endpoint makes a
    /// self-signed certificate for this run and logs its SHA-256 fingerprint.
    pub tls: Option<ServerTls>,
    /// How long a client may take to complete the TLS handshake before it is dropped, so
    /// half-open TLS clients cannot hold connection slots.
    pub tls_handshake_timeout: Duration,
    /// Worker threads, each with its own single-threaded runtime serving every listener
    /// (share-nothing: a connection stays on the worker that accepted it). 0 serves on the
    /// runtime that calls [`Server::run`](super::Server::run) instead.
    pub threads: usize,
    /// How worker threads do stream I/O. TLS connections and serving without worker threads
    /// (`threads == 0`) always use the tokio (epoll) path; Unix datagram sockets are served on
    /// tokio and UDP sockets by a blocking loop each.
    pub io: IoMode,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_conns: crate::sys::rlimit::default_max_conns(),
            idle_timeout: None,
            grace: Duration::from_secs(5),
            log_data: false,
            threads: 0,
            io: IoMode::Auto,
            access: AccessPolicy::default(),
            tls: None,
            tls_handshake_timeout: Duration::from_secs(10),
            max_conns_per_ip: None,
            udp_rate: None,
            reflection_guard: true,
        }
    }
}
