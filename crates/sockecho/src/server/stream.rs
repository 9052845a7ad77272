//! Stream listeners (TCP, Unix): the accept loop and the life of one connection.
//!
//! A permit from the shared semaphore is taken *before* `accept`, so at most `max_conns`
//! connections are served and further clients wait in the kernel's backlog. Accept errors are
//! logged and survived, never returned: running out of file descriptors backs off and retries.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::Shared;
use super::bind::StreamListener;
use super::echo::{EchoIo, EchoOptions, echo_io};
use crate::CONN_LOG;
use crate::Endpoint;
use crate::net_error::is_resource_exhaustion;
use crate::stats::Counters;

/// First pause after an accept error; doubles while errors continue.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Numbers Unix-domain connections for logs, since their peers usually have no address.
static UNIX_CONN_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) async fn serve(listener: StreamListener, endpoint: Endpoint, shared: Arc<Shared>) {
    let mut backoff = BACKOFF_MIN;
    // Whether the current run of accept errors has been logged: once per burst, not per call.
    let mut burst_logged = false;
    loop {
        let permit = tokio::select! {
            biased;
            () = shared.drain.cancelled() => break,
            permit = shared.slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // the semaphore is never closed; stop if it somehow is
            },
        };
        let accepted = tokio::select! {
            biased;
            () = shared.drain.cancelled() => break,
            accepted = accept(&listener) => accepted,
        };
        match accepted {
            Ok(conn) => {
                backoff = BACKOFF_MIN;
                burst_logged = false;
                Counters::add(&shared.counters.connections_accepted, 1);
                let shared2 = shared.clone();
                match conn {
                    Accepted::Tcp(s, peer) => {
                        shared.tracker.spawn(connection(s, peer, permit, shared2));
                    }
                    Accepted::Unix(s, peer) => {
                        shared.tracker.spawn(connection(s, peer, permit, shared2));
                    }
                }
            }
            Err(e) => {
                Counters::add(&shared.counters.accept_errors, 1);
                drop(permit);
                if is_resource_exhaustion(&e) {
                    if !burst_logged {
                        tracing::warn!(
                            "accept on {endpoint} failed: {e}; backing off until resources free up"
                        );
                        burst_logged = true;
                    }
                    tokio::select! {
                        () = shared.drain.cancelled() => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                } else {
                    // Per-connection failures (e.g. the client reset before accept): go on.
                    tracing::debug!("accept on {endpoint} failed: {e}");
                }
            }
        }
    }
    tracing::debug!("stopped accepting on {endpoint}");
}

enum Accepted {
    Tcp(tokio::net::TcpStream, String),
    Unix(tokio::net::UnixStream, String),
}

async fn accept(listener: &StreamListener) -> std::io::Result<Accepted> {
    match listener {
        StreamListener::Tcp(l) => {
            let (stream, peer) = l.accept().await?;
            // Echoes are small and interactive: send each one at once.
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!("TCP_NODELAY on {peer}: {e}");
            }
            Ok(Accepted::Tcp(stream, peer.to_string()))
        }
        StreamListener::Unix(l) => {
            let (stream, _) = l.accept().await?;
            let id = UNIX_CONN_ID.fetch_add(1, Ordering::Relaxed);
            let peer = match stream.peer_cred().ok().and_then(|c| c.pid()) {
                Some(pid) => format!("unix#{id} (pid {pid})"),
                None => format!("unix#{id}"),
            };
            Ok(Accepted::Unix(stream, peer))
        }
    }
}

/// Serves one connection until it ends or the grace period cuts it, then logs the summary.
async fn connection<S>(
    mut stream: S,
    peer: String,
    permit: OwnedSemaphorePermit,
    shared: Arc<Shared>,
) where
    S: EchoIo,
{
    let _permit = permit;
    let started = Instant::now();
    tracing::info!(target: CONN_LOG, "{peer} connected");
    let options = EchoOptions {
        idle_timeout: shared.config.idle_timeout,
        log_data_as: shared.config.log_data.then(|| peer.clone()),
    };
    let counters = &shared.counters;
    let outcome = tokio::select! {
        outcome = echo_io(&mut stream, &options, &shared.drain) => Some(outcome),
        () = shared.cut.cancelled() => None,
    };
    let elapsed = started.elapsed();
    Counters::add(&counters.connections_closed, 1);
    match outcome {
        Some(outcome) => {
            Counters::add(&counters.stream_bytes, outcome.bytes);
            match outcome.result {
                Ok(reason) => tracing::info!(
                    target: CONN_LOG,
                    "{peer} disconnected ({} bytes echoed in {elapsed:.3?}, {})",
                    outcome.bytes,
                    reason.as_str()
                ),
                Err(e) => {
                    Counters::add(&counters.connection_errors, 1);
                    tracing::info!(
                        target: CONN_LOG,
                        "{peer} disconnected ({} bytes echoed in {elapsed:.3?}, error: {e})",
                        outcome.bytes
                    );
                }
            }
        }
        None => {
            Counters::add(&counters.connections_cut, 1);
            tracing::info!(
                "{peer} disconnected (cut at the end of the grace period after {elapsed:.3?})"
            );
        }
    }
}
