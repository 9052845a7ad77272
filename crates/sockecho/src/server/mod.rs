//! The echo server: bind endpoints, run until a shutdown future completes, return statistics.
//!
//! - [`bind`](Server::bind) opens every listener up front, so errors (address in use, bad
//!   path) surface before anything is served and the bound addresses are known (port 0 works).
//! - [`run`](Server::run) serves all listeners at once — stream ones in [`stream`], datagram
//!   ones in [`datagram`] — until `shutdown` completes, then drains: listeners close at once,
//!   connections echo what has already arrived and close, and whatever is still open after the
//!   grace period is cut.

pub mod access;
mod bind;
mod datagram;
pub mod echo;
pub mod peer_text;
mod stream;
#[allow(unsafe_code)]
mod uring;
mod workers;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::stats::{Counters, Stats};
use crate::tls::ServerTls;
use crate::{Endpoint, Transport};

pub use access::AccessPolicy;
pub use bind::{InheritedSocket, ServeError};
pub use echo::{CloseReason, EchoOptions, EchoOutcome, echo_stream};

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
    /// Log every received payload, trimmed and with control characters escaped (see
    /// [`peer_text`]).
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
    /// runtime that calls [`Server::run`] instead.
    pub threads: usize,
    /// How worker threads do stream I/O. TLS connections and serving without worker threads
    /// (`threads == 0`) always use the tokio (epoll) path; Unix datagram sockets are served on
    /// tokio and UDP sockets by a blocking loop each.
    pub io: IoBackend,
}

/// The I/O path for plain TCP and Unix stream connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IoBackend {
    /// io_uring where the kernel allows it, else epoll.
    #[default]
    Auto,
    /// io_uring; binding fails if it is not available.
    IoUring,
    /// epoll, through tokio.
    Epoll,
}

impl std::fmt::Display for IoBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IoBackend::Auto => "auto",
            IoBackend::IoUring => "io_uring",
            IoBackend::Epoll => "epoll",
        })
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_conns: crate::limits::default_max_conns(),
            idle_timeout: None,
            grace: Duration::from_secs(5),
            log_data: false,
            threads: 0,
            io: IoBackend::Auto,
            access: AccessPolicy::default(),
            tls: None,
            tls_handshake_timeout: Duration::from_secs(10),
            max_conns_per_ip: None,
            udp_rate: None,
            reflection_guard: true,
        }
    }
}

/// A bound server, ready to [`run`](Server::run).
#[derive(Debug)]
pub struct Server {
    listeners: Vec<bind::Listener>,
    /// Whether a listener takes plain (not TLS) TCP or Unix connections: the ones `config.io`
    /// is about.
    plain_streams: bool,
    config: ServerConfig,
    counters: Arc<Counters>,
}

/// What every serving loop of one server shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
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
    pub(crate) per_ip: Option<Arc<access::PerIpLimit>>,
    /// Per-source token buckets, when `udp_rate` is set.
    pub(crate) udp_rate: Option<access::RateLimiter>,
}

impl Server {
    /// Binds every endpoint. Fails on the first one that cannot be bound, naming it.
    pub async fn bind(endpoints: &[Endpoint], config: ServerConfig) -> Result<Server, ServeError> {
        Server::bind_and_adopt(endpoints, Vec::new(), config).await
    }

    /// Binds every endpoint and also serves sockets bound by someone else, such as the ones
    /// systemd passes with socket activation.
    pub async fn bind_and_adopt(
        endpoints: &[Endpoint],
        inherited: Vec<InheritedSocket>,
        config: ServerConfig,
    ) -> Result<Server, ServeError> {
        let mut listeners = Vec::new();
        for socket in inherited {
            listeners.push(bind::adopt(socket)?);
        }
        for endpoint in endpoints {
            listeners.extend(bind::bind(endpoint).await?);
        }
        let mut config = config;
        let tls_hosts: Vec<String> = endpoints
            .iter()
            .filter_map(|e| match e {
                Endpoint::Tls(hp) => Some(hp.host.to_string()),
                _ => None,
            })
            .collect();
        if !tls_hosts.is_empty() && config.tls.is_none() {
            config.tls = Some(self_signed(&tls_hosts)?);
        }
        let plain_streams = listeners.iter().any(|l| {
            matches!(l.socket, bind::Socket::Stream(_)) && l.endpoint.transport() != Transport::Tls
        });
        // Without worker threads everything is served on the caller's runtime, with epoll; and
        // without plain stream listeners there is nothing for io_uring to serve.
        config.io = if config.threads == 0 || !plain_streams {
            IoBackend::Epoll
        } else {
            resolve_io(config.io)?
        };
        Ok(Server {
            listeners,
            plain_streams,
            config,
            counters: Arc::default(),
        })
    }

    /// The endpoints actually bound, with real addresses and ports, one per socket.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.listeners.iter().map(|l| l.endpoint.clone()).collect()
    }

    /// The SHA-256 fingerprint of the certificate `tls://` endpoints present, if any.
    pub fn tls_fingerprint(&self) -> Option<String> {
        self.config.tls.as_ref().map(ServerTls::fingerprint)
    }

    /// The live counters, to watch the server while it runs.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// Serves until `shutdown` completes, drains, and returns the final counters. Unix socket
    /// files this server created are removed before it returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Stats {
        self.run_until(shutdown, std::future::pending()).await
    }

    /// Like [`run`](Server::run), and if `cut` completes while the server drains, the
    /// connections still open are cut at once instead of at the end of the grace period (an
    /// operator's second Ctrl-C or SIGTERM).
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()>,
        cut: impl Future<Output = ()>,
    ) -> Stats {
        let threads = self.config.threads;
        let shared = Arc::new(Shared {
            slots: Arc::new(Semaphore::new(self.config.max_conns.max(1))),
            per_ip: self.config.max_conns_per_ip.map(access::PerIpLimit::new),
            udp_rate: self.config.udp_rate.map(access::RateLimiter::new),
            config: self.config,
            counters: self.counters,
            drain: CancellationToken::new(),
            cut: CancellationToken::new(),
            tracker: TaskTracker::new(),
        });
        // If the caller drops this future midway, stop every loop and connection anyway, so
        // worker threads do not outlive it.
        let _stop_on_drop = StopOnDrop(shared.clone());
        // The socket-file guards live until every loop has stopped using the sockets.
        let mut guards = Vec::new();
        let mut sockets = Vec::new();
        for listener in self.listeners {
            tracing::info!("listening on {}", listener.endpoint);
            guards.push(listener.path_guard);
            sockets.push((listener.socket, listener.endpoint));
        }
        if self.plain_streams {
            tracing::info!("stream I/O: {}", shared.config.io);
        }
        let workers = if threads == 0 {
            Workers::Here(spawn_loops(sockets, &shared, None))
        } else {
            workers::start(threads, sockets, &shared)
        };

        shutdown.await;
        tracing::info!("shutting down: no new connections, draining open ones");
        shared.drain.cancel();
        let mut workers = workers;
        let grace = shared.config.grace;
        let drained = async {
            workers.loops_stopped().await;
            shared.tracker.close();
            tokio::time::timeout(grace, shared.tracker.wait())
                .await
                .is_ok()
        };
        let why_cut = tokio::select! {
            drained = drained => (!drained).then(|| format!("grace period of {grace:?} over")),
            () = cut => Some("asked to stop at once".to_owned()),
        };
        if let Some(why) = why_cut {
            let open = shared.counters.snapshot().connections_open();
            tracing::warn!("{why}: cutting {open} connection(s) that had not finished");
            shared.tracker.close();
            shared.cut.cancel();
            shared.tracker.wait().await;
        }
        workers.finished().await;
        drop(guards);
        shared.counters.snapshot()
    }
}

/// Settles `Auto` to what this kernel offers; `IoUring` fails if it is not there.
fn resolve_io(wanted: IoBackend) -> Result<IoBackend, ServeError> {
    if wanted == IoBackend::Epoll {
        return Ok(wanted);
    }
    match crate::ring::probe() {
        Ok(()) => Ok(IoBackend::IoUring),
        Err(e) if wanted == IoBackend::IoUring => Err(ServeError::IoUring(e)),
        Err(e) => {
            tracing::info!("io_uring is not available ({e}); stream I/O uses epoll");
            Ok(IoBackend::Epoll)
        }
    }
}

/// A certificate for this run, for `localhost`, the loopback addresses and the TLS endpoints'
/// own host names.
fn self_signed(hosts: &[String]) -> Result<ServerTls, ServeError> {
    let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
    for host in hosts {
        if host != "*" && !names.contains(host) {
            names.push(host.clone());
        }
    }
    let tls = ServerTls::self_signed(&names).map_err(ServeError::Tls)?;
    tracing::info!(
        "TLS: self-signed certificate for this run (names: {}); SHA-256 fingerprint {} \
         — clients can trust it with --pin-sha256",
        names.join(", "),
        tls.fingerprint()
    );
    Ok(tls)
}

struct StopOnDrop(Arc<Shared>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.drain.cancel();
        self.0.cut.cancel();
        self.0.tracker.close();
    }
}

/// Starts the serving loop of every socket on the current runtime.
fn spawn_loops(
    sockets: Vec<(bind::Socket, Endpoint)>,
    shared: &Arc<Shared>,
    engine: Option<Arc<uring::Engine>>,
) -> JoinSet<()> {
    let mut loops = JoinSet::new();
    let mut stream_listeners = Vec::new();
    for (socket, endpoint) in sockets {
        let shared = shared.clone();
        match socket {
            bind::Socket::Stream(l) => stream_listeners.push((l, endpoint)),
            bind::Socket::Udp(s) => {
                loops.spawn(datagram::serve_udp(s, endpoint, shared));
            }
            bind::Socket::UnixGram(s) => {
                loops.spawn(datagram::serve_unixgram(s, endpoint, shared));
            }
        };
    }
    loops.spawn(stream::serve(stream_listeners, shared.clone(), engine));
    loops
}

/// Where the serving loops run.
enum Workers {
    /// On the caller's runtime.
    Here(JoinSet<()>),
    /// On dedicated worker threads.
    Threads(workers::Pool),
}

impl Workers {
    /// Waits until every serving loop has returned, which they do once drain starts.
    async fn loops_stopped(&mut self) {
        match self {
            Workers::Here(loops) => while loops.join_next().await.is_some() {},
            Workers::Threads(pool) => pool.loops_stopped().await,
        }
    }

    /// Waits until the worker threads have exited, after their last connection ended.
    async fn finished(self) {
        if let Workers::Threads(pool) = self {
            pool.finished().await;
        }
    }
}
