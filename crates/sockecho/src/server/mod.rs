//! The echo server: bind endpoints, run until a shutdown future completes, return statistics.
//!
//! - [`bind`](Server::bind) opens every listener up front, so errors (address in use, bad
//!   path) surface before anything is served and the bound addresses are known (port 0 works).
//! - [`run`](Server::run) serves all listeners at once — stream ones in `stream`, datagram
//!   ones in `datagram` — until `shutdown` completes, then drains: listeners close at once,
//!   connections echo what has already arrived and close, and whatever is still open after the
//!   grace period is cut.
//!
//! The files form layers, each using only files below it (the crate's `layering` test checks
//! this):
//!
//! - this file, the public face ([`Server`], [`ServerConfig`]);
//! - `workers`: worker threads, and the loops each one runs;
//! - `stream` (the accept loop, and a connection's life on tokio) over `websocket` (the
//!   upgrade and message echo of `ws://` and `wss://`, on tokio) and `engine` (the io_uring and
//!   epoll engines that serve plain streams off tokio), all over `conn` (an admitted connection's identity and accounting), over
//!   `proxied` (a PROXY protocol header taken before admission); `bind`
//!   (listening sockets) over `datagram` (the UDP and unixgram echo);
//! - at the bottom `shared` (what every loop shares), `config`, [`echo`], [`access`] and
//!   [`peer_text`] (peer-controlled text made safe for logs);
//! - [`fault`], faults injected on demand, beside them: its stream echo sits over `conn`, and
//!   `stream`, `datagram` and `shared` use its pieces.

pub mod access;
mod admission;
mod bind;
mod config;
mod conn;
mod datagram;
pub mod echo;
#[allow(unsafe_code)]
mod engine;
pub mod fault;
mod log_budget;
pub mod peer_text;
mod proxied;
mod rate_limit;
mod shared;
mod stream;
mod websocket;
mod workers;

use std::future::Future;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::io::IoMode;
use crate::stats::{Counters, Stats};
use crate::tls::ServerTls;
use crate::{Endpoint, Transport};
use config::EngineKind;
use shared::Shared;

pub use access::AccessPolicy;
pub use bind::{InheritedSocket, ServeError};
pub use config::{DEFAULT_WS_MAX_MESSAGE, ProxyProtocol, ServerConfig};
pub use echo::{CloseReason, EchoOptions, EchoOutcome, echo_stream};

/// A bound server, ready to [`run`](Server::run).
#[derive(Debug)]
pub struct Server {
    listeners: Vec<bind::Listener>,
    /// Whether a listener takes plain (not TLS) TCP or Unix connections: the ones `config.io`
    /// is about.
    plain_streams: bool,
    /// The engine that serves them off tokio, on each worker thread, if any does.
    engine: Option<EngineKind>,
    config: ServerConfig,
    counters: Arc<Counters>,
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
                Endpoint::Wss(target) => Some(target.addr.host.to_string()),
                _ => None,
            })
            .collect();
        if !tls_hosts.is_empty() && config.tls.is_none() {
            config.tls = Some(self_signed(&tls_hosts)?);
        }
        let plain_streams = listeners.iter().any(|l| {
            matches!(l.socket, bind::Socket::Stream(_))
                && matches!(l.endpoint.transport(), Transport::Tcp | Transport::Unix)
        });
        // Without worker threads everything is served on the caller's runtime, with epoll;
        // without plain stream listeners there is nothing for io_uring to serve; and stream
        // faults are served by their own echo on tokio.
        let stream_faults = config
            .faults
            .as_ref()
            .is_some_and(|f| f.has_stream_faults());
        config.io = if config.threads == 0 || !plain_streams || stream_faults {
            IoMode::Epoll
        } else {
            config.io.resolve().map_err(ServeError::IoUring)?
        };
        // Plain streams are served by an engine of their own on each worker thread, except
        // without worker threads (everything on the caller's runtime) and with stream faults
        // (their own echo, on tokio), and off Linux (tokio's reactor).
        let engine =
            (cfg!(target_os = "linux") && plain_streams && config.threads > 0 && !stream_faults)
                .then_some(match config.io {
                    IoMode::Uring => EngineKind::Uring,
                    IoMode::Auto | IoMode::Epoll => EngineKind::Epoll,
                });
        Ok(Server {
            listeners,
            plain_streams,
            engine,
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
            udp_rate: self.config.udp_rate.map(rate_limit::RateLimiter::new),
            tls_failure_log: log_budget::LogBudget::new(std::time::Instant::now()),
            stream_faults: self
                .config
                .faults
                .as_ref()
                .and_then(fault::plan::StreamFaults::new),
            engine: self.engine,
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
            match &shared.config.identity {
                Some(identity) => tracing::info!(
                    identity = identity.as_str(),
                    "{identity}: listening on {}",
                    listener.endpoint
                ),
                None => tracing::info!("listening on {}", listener.endpoint),
            }
            guards.push(listener.path_guard);
            sockets.push((listener.socket, listener.endpoint));
        }
        if self.plain_streams {
            match shared.engine {
                Some(_) => tracing::info!("stream I/O: {}", shared.config.io),
                None => tracing::info!("stream I/O: {} (tokio)", shared.config.io),
            }
            #[cfg(target_os = "linux")]
            if shared.config.io == crate::io::IoMode::Uring
                && crate::sys::uring::receive_kind() == crate::sys::uring::ReceiveKind::Single
            {
                tracing::info!(
                    "io_uring: this kernel cannot cap a multishot receive (Linux 6.17 can), so \
                     each connection receives one 64 KiB buffer at a time"
                );
            }
        }
        if let Some(proxy) = &shared.config.proxy_protocol {
            let trusted: Vec<String> = proxy.trusted.iter().map(ToString::to_string).collect();
            tracing::info!(
                "PROXY protocol on TCP and TLS: headers required from {}, refused from others",
                trusted.join(", ")
            );
        }
        if let Some(plan) = &shared.config.faults {
            let list: Vec<String> = plan.faults().iter().map(ToString::to_string).collect();
            tracing::info!(
                "injecting faults: {} (seed {}; the same seed repeats the same choices){}",
                list.join(", "),
                plan.seed(),
                if plan.has_stream_faults() {
                    "; stream connections are served on epoll, where faults are applied"
                } else {
                    ""
                }
            );
        }
        let workers = workers::start(threads, sockets, &shared);

        tokio::select! {
            () = shutdown => {}
            () = summarize_tls_failures_periodically(&shared) => {}
        }
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
        summarize_tls_failures(&shared);
        drop(guards);
        shared.counters.snapshot()
    }
}

/// Sums up, every [`log_budget::INTERVAL`], the failed TLS handshakes that were not logged one
/// by one. Never returns; without TLS it just waits.
async fn summarize_tls_failures_periodically(shared: &Shared) {
    if shared.config.tls.is_none() {
        return std::future::pending().await;
    }
    let mut ticks = tokio::time::interval(log_budget::INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        summarize_tls_failures(shared);
    }
}

/// Logs how many failed TLS handshakes were held back from the log since the last summary.
fn summarize_tls_failures(shared: &Shared) {
    let held_back = shared.tls_failure_log.take_held_back();
    if held_back > 0 {
        tracing::warn!(
            target: crate::CONN_LOG,
            event = "tls_handshake_failures_summarized",
            count = held_back,
            "{held_back} more TLS handshake failures in the last {}s (the first {} of every {}s \
             are logged one by one; sockecho_tls_handshake_failures_total counts them all)",
            log_budget::INTERVAL.as_secs(),
            log_budget::WARNINGS_PER_INTERVAL,
            log_budget::INTERVAL.as_secs(),
        );
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
