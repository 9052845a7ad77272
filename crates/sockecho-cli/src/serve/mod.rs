//! `sockecho serve`: bind (or adopt systemd's sockets), serve until SIGINT/SIGTERM/SIGHUP,
//! drain, exit 0 (or 128 + N when a second signal N cut the drain short). The flags' meaning is
//! in `options`, systemd's part in `systemd`, the stop signals in `stop`.

mod options;
mod stop;
mod systemd;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use sockecho::server::{ServeError, Server};

use crate::cli::serve::{ENDPOINTS_VAR, ServeOpts};
use crate::logging;
use crate::metrics::{self, Health};
use crate::usage::UsageError;

pub fn main(opts: ServeOpts) -> anyhow::Result<ExitCode> {
    logging::init_with_format(&opts.verbosity, opts.log_format);
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
    let inherited = systemd::inherited_sockets()?;
    let from_env = std::env::var(ENDPOINTS_VAR).ok();
    let endpoints = options::endpoints(&opts, from_env.as_deref(), inherited.len())?;
    let hostname = options::hostname();
    let identity = options::identity(&opts, &hostname);
    let config = options::config(&opts, identity.clone())?;
    // Signal handlers go in before binding, so a signal that arrives as soon as the
    // "listening" line is out is handled, not fatal.
    let (signal, cut, cut_by) = stop::Stop::install()?.split();
    let server = Server::bind_and_adopt(&endpoints, inherited, config)
        .await
        .map_err(|e| match e {
            // The socket passed in is the caller's mistake, like a bad flag: exit 2.
            ServeError::Inherited { .. } => anyhow::Error::new(UsageError(e.to_string())),
            e => e.into(),
        })?;
    let health = Arc::new(Health::default());
    if let Some(addr) = &opts.metrics {
        let about = metrics::About {
            identity,
            hostname,
            version: env!("CARGO_PKG_VERSION"),
            listeners: server.endpoints().iter().map(ToString::to_string).collect(),
        };
        let limits = options::metrics_limits(&opts);
        let metrics = metrics::bind(addr, server.counters(), health.clone(), about, limits).await?;
        tokio::spawn(metrics);
    }
    health.set_ready();
    systemd::notify(&[sd_notify::NotifyState::Ready]);
    let shutdown = {
        let health = health.clone();
        async move {
            signal.await;
            health.set_draining();
            systemd::notify(&[sd_notify::NotifyState::Stopping]);
        }
    };
    let stats = server.run_until(shutdown, cut).await;
    tracing::info!(
        "stopped: {} connections ({} cut before they finished), {} bytes echoed, {} datagrams \
         echoed",
        stats.connections_accepted,
        stats.connections_cut,
        stats.stream_bytes,
        stats.datagrams
    );
    Ok(cut_by.exit_code())
}
