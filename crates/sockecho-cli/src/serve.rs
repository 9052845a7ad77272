//! `sockecho serve`: bind, serve until SIGINT/SIGTERM, drain, exit 0.

use std::process::ExitCode;

use anyhow::Context;
use sockecho::server::{AccessPolicy, Server, ServerConfig};
use sockecho::{Endpoint, Host, HostPort};

use crate::cli::ServeOpts;

/// The tutorial's port.
pub const DEFAULT_PORT: u16 = 54000;

pub fn main(opts: ServeOpts) -> anyhow::Result<ExitCode> {
    crate::logging::init(&opts.verbosity);
    sockecho::limits::raise_fd_limit();
    // The main thread only waits for signals; the server's worker threads do the serving.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(opts))
}

async fn serve(opts: ServeOpts) -> anyhow::Result<ExitCode> {
    let endpoints = if opts.endpoints.is_empty() {
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
        ..ServerConfig::default()
    };
    if let Some(n) = opts.max_conns {
        config.max_conns = n as usize;
    }
    // Signal handlers go in before binding, so a signal that arrives as soon as the
    // "listening" line is out is handled, not fatal.
    let shutdown = shutdown_signal()?;
    let server = Server::bind(&endpoints, config).await?;
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
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).context("cannot install a SIGINT handler")?;
    let mut term = signal(SignalKind::terminate()).context("cannot install a SIGTERM handler")?;
    Ok(async move {
        let name = tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        };
        tracing::info!("received {name}");
    })
}
