//! `sockecho serve`: bind (or adopt systemd's sockets), serve until SIGINT/SIGTERM, drain,
//! exit 0.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use sockecho::server::{
    AccessPolicy, InheritedSocket, IoBackend, ProxyProtocol, Server, ServerConfig,
};
use sockecho::{Endpoint, Host, HostPort};

use crate::cli::{IoChoice, ServeOpts};
use crate::metrics::Health;

/// The tutorial's port.
pub const DEFAULT_PORT: u16 = 54000;

pub fn main(opts: ServeOpts) -> anyhow::Result<ExitCode> {
    crate::logging::init_with_format(&opts.verbosity, opts.log_format);
    sockecho::limits::raise_fd_limit();
    // The main thread only waits for signals and serves metrics; the server's worker threads
    // do the echoing.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(opts))
}

async fn serve(opts: ServeOpts) -> anyhow::Result<ExitCode> {
    let inherited = inherited_sockets()?;
    let endpoints = if opts.endpoints.is_empty() && inherited.is_empty() {
        vec![Endpoint::Tcp(HostPort {
            host: Host::Any,
            port: DEFAULT_PORT,
        })]
    } else {
        opts.endpoints
    };
    let mut config = ServerConfig {
        idle_timeout: opts.idle_timeout,
        grace: opts.grace,
        log_data: opts.log_data,
        threads: match opts.threads {
            Some(n) => n.into(),
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        },
        access: AccessPolicy {
            allow: opts.allow,
            deny: opts.deny,
        },
        max_conns_per_ip: opts.max_conns_per_ip.map(|n| n as usize),
        udp_rate: opts.udp_rate,
        reflection_guard: !opts.no_reflection_guard,
        io: match opts.io {
            IoChoice::Auto => IoBackend::Auto,
            IoChoice::Uring => IoBackend::IoUring,
            IoChoice::Epoll => IoBackend::Epoll,
        },
        ..ServerConfig::default()
    };
    if let Some(n) = opts.max_conns {
        config.max_conns = n as usize;
    }
    config.tls_handshake_timeout = opts.tls_handshake_timeout;
    if opts.proxy_protocol {
        let mut proxy = ProxyProtocol {
            header_timeout: opts.proxy_header_timeout,
            ..ProxyProtocol::default()
        };
        if !opts.proxy_from.is_empty() {
            proxy.trusted = opts.proxy_from;
        }
        config.proxy_protocol = Some(proxy);
    }
    if let (Some(cert), Some(key)) = (&opts.cert, &opts.key) {
        config.tls = Some(sockecho::tls::ServerTls::from_pem_files(cert, key)?);
    }
    // Signal handlers go in before binding, so a signal that arrives as soon as the
    // "listening" line is out is handled, not fatal.
    let signal = shutdown_signal()?;
    let server = Server::bind_and_adopt(&endpoints, inherited, config).await?;
    let health = Arc::new(Health::default());
    if let Some(addr) = &opts.metrics {
        let metrics = crate::metrics::bind(addr, server.counters(), health.clone()).await?;
        tokio::spawn(metrics);
    }
    health.set_ready();
    notify_systemd(&[sd_notify::NotifyState::Ready]);
    let shutdown = {
        let health = health.clone();
        async move {
            signal.await;
            health.set_draining();
            notify_systemd(&[sd_notify::NotifyState::Stopping]);
        }
    };
    let stats = server.run(shutdown).await;
    tracing::info!(
        "stopped: {} connections ({} cut at the deadline), {} bytes echoed, {} datagrams echoed",
        stats.connections_accepted,
        stats.connections_cut,
        stats.stream_bytes,
        stats.datagrams
    );
    Ok(ExitCode::SUCCESS)
}

/// Completes on the first SIGINT or SIGTERM and logs which one came.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    let mut signals = crate::cli::Interrupts::new()?;
    Ok(async move {
        let name = signals.next().await;
        tracing::info!("received {name}");
    })
}

/// The sockets systemd passes with socket activation (`LISTEN_FDS`, `LISTEN_PID`), each
/// recognised as a TCP or Unix stream listener or a UDP or Unix datagram socket.
fn inherited_sockets() -> anyhow::Result<Vec<InheritedSocket>> {
    let mut fds = listenfd::ListenFd::from_env();
    let mut sockets = Vec::new();
    for index in 0..fds.len() {
        let socket = if let Ok(Some(l)) = fds.take_tcp_listener(index) {
            InheritedSocket::Tcp(l)
        } else if let Ok(Some(s)) = fds.take_udp_socket(index) {
            InheritedSocket::Udp(s)
        } else if let Ok(Some(l)) = fds.take_unix_listener(index) {
            InheritedSocket::Unix(l)
        } else if let Ok(Some(s)) = fds.take_unix_datagram(index) {
            InheritedSocket::UnixGram(s)
        } else {
            anyhow::bail!(
                "inherited file descriptor {} (LISTEN_FDS) is not a TCP, UDP or Unix socket",
                3 + index
            );
        };
        sockets.push(socket);
    }
    if !sockets.is_empty() {
        tracing::info!(
            "socket activation: serving {} inherited socket(s)",
            sockets.len()
        );
    }
    Ok(sockets)
}

/// Tells systemd about a state change when it asked to be told (`NOTIFY_SOCKET`).
fn notify_systemd(state: &[sd_notify::NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!("cannot notify systemd: {e}");
    }
}
