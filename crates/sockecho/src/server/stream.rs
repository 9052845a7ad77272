//! Stream listeners (TCP, Unix): the accept loop, and the life of one connection on the tokio
//! path (TLS always; plain connections unless an io_uring engine takes them over).
//!
//! A permit from the shared semaphore is taken *before* `accept`, so at most `max_conns`
//! connections are served and further clients wait in the kernel's backlog. Accept errors are
//! logged and survived, never returned: running out of file descriptors backs off and retries.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;

use super::access::PerIpSlot;
use super::bind::StreamListener;
use super::conn::{Admitted, ConnLog};
use super::echo::{EchoIo, EchoOptions, EchoOutcome, Generic, echo_io};
use super::proxied::{self, Via};
use super::shared::Shared;
use super::uring::{Arrival, EngineHandle};
use crate::CONN_LOG;
use crate::Endpoint;
use crate::Transport;
use crate::net_error::is_resource_exhaustion;
use crate::stats::TransportCounters;
use crate::tls::ServerTls;

/// First pause after an accept error; doubles while errors continue.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Numbers Unix-domain connections for logs, since their peers usually have no address.
static UNIX_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// Accepts on every stream listener of this worker from one loop, so a `--max-conns` permit
/// held while waiting serves whichever listener a client comes to (a loop per listener would
/// each hold a permit, and an idle listener could keep a busy one from accepting).
///
/// With an io_uring `engine`, plain TCP and Unix connections are handed to it; TLS ones are
/// always served here.
pub(crate) async fn serve(
    listeners: Vec<(StreamListener, Endpoint)>,
    shared: Arc<Shared>,
    engine: Option<Arc<EngineHandle>>,
) {
    if listeners.is_empty() {
        return;
    }
    let mut backoff = BACKOFF_MIN;
    // Whether the current run of accept errors has been logged: once per burst, not per call.
    let mut burst_logged = false;
    // Set once shutdown starts: the clients whose handshake the kernel completed before it are
    // still taken from the backlog (closing the listener would reset them, losing what they
    // sent), then accepting stops.
    let mut flushing = false;
    // The listener polled first next time, so that a busy one cannot starve the others.
    let mut first = 0;
    loop {
        let accepted = if flushing {
            let Ok(permit) = shared.slots.clone().try_acquire_owned() else {
                break;
            };
            // Poll once: a connection already queued is taken, empty backlogs end the loop.
            let accepted = tokio::select! {
                biased;
                accepted = accept_any(&listeners, &mut first) => accepted,
                () = std::future::ready(()) => break,
            };
            (permit, accepted)
        } else {
            let permit = tokio::select! {
                biased;
                () = shared.drain.cancelled() => {
                    start_flushing(&mut flushing).await;
                    continue;
                }
                permit = shared.slots.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break, // the semaphore is never closed; stop if it somehow is
                },
            };
            tokio::select! {
                biased;
                () = shared.drain.cancelled() => {
                    start_flushing(&mut flushing).await;
                    continue;
                }
                accepted = accept_any(&listeners, &mut first) => (permit, accepted),
            }
        };
        let (permit, (index, accepted)) = accepted;
        let endpoint = &listeners[index].1;
        let transport = endpoint.transport();
        let counters = shared.counters.transport(transport);
        let accepted = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                TransportCounters::add(&counters.accept_errors, 1);
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
                continue;
            }
        };
        if burst_logged {
            tracing::info!("accepting again");
        }
        backoff = BACKOFF_MIN;
        burst_logged = false;
        let accepted = match accepted {
            // The header comes first, on a task of its own: the accept loop does not wait for it.
            Accepted::Inet(stream, peer) if shared.config.proxy_protocol.is_some() => {
                shared.tracker.spawn(proxied_connection(
                    stream,
                    peer,
                    transport,
                    permit,
                    shared.clone(),
                    engine.clone(),
                ));
                continue;
            }
            other => other,
        };
        let (peer, ip_slot) = match &accepted {
            Accepted::Inet(_, peer) => {
                // Dropping a refused stream closes it at once.
                let Some(slot) = admit(&shared, counters, *peer) else {
                    continue;
                };
                (peer.to_string(), slot)
            }
            Accepted::Unix(_, peer) => (peer.clone(), None),
        };
        let conn = Admitted::new(peer, transport, permit, ip_slot);
        dispatch(accepted, conn, &shared, engine.as_ref());
    }
    for (_, endpoint) in &listeners {
        tracing::debug!("stopped accepting on {endpoint}");
    }
}

/// Serves an admitted connection: on the io_uring `engine` if there is one (plain streams), else
/// on a task of this worker.
fn dispatch(
    accepted: Accepted,
    conn: Admitted,
    shared: &Arc<Shared>,
    engine: Option<&Arc<EngineHandle>>,
) {
    let transport = conn.transport;
    let task_shared = shared.clone();
    let engine = engine.filter(|engine| engine.serving());
    if let Some(engine) = engine
        && transport != Transport::Tls
    {
        hand_over(engine, accepted.into_fd(), conn, shared);
        return;
    }
    match accepted {
        Accepted::Inet(stream, _) if transport == Transport::Tls => shared
            .tracker
            .spawn(tls_connection(stream, conn, task_shared)),
        Accepted::Inet(stream, _) => shared.tracker.spawn(connection(stream, conn, task_shared)),
        Accepted::Unix(stream, _) => shared.tracker.spawn(connection(stream, conn, task_shared)),
    };
}

/// A TCP or TLS connection to a `--proxy-protocol` server: the PROXY header question first
/// (before any TLS handshake), then admission and the echo as the client the header names.
async fn proxied_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    transport: Transport,
    permit: OwnedSemaphorePermit,
    shared: Arc<Shared>,
    engine: Option<Arc<EngineHandle>>,
) {
    let Some(options) = &shared.config.proxy_protocol else {
        return; // only spawned when the option is set
    };
    let received = tokio::select! {
        received = proxied::receive(&stream, peer, transport, options, &shared) => received,
        // Nothing has been echoed yet, so there is nothing to finish.
        () = shared.drain.cancelled() => return,
    };
    let Some(via) = received else {
        return;
    };
    let client = via.as_ref().map_or(peer, Via::client);
    let counters = shared.counters.transport(transport);
    let Some(ip_slot) = admit(&shared, counters, client) else {
        return;
    };
    let conn = Admitted::new(client.to_string(), transport, permit, ip_slot).via(via);
    dispatch(Accepted::Inet(stream, peer), conn, &shared, engine.as_ref());
}

/// Passes a connection to the io_uring engine, which serves it from then on.
fn hand_over(engine: &EngineHandle, fd: std::io::Result<OwnedFd>, conn: Admitted, shared: &Shared) {
    match fd {
        Ok(fd) => engine.hand_over(Arrival {
            fd,
            admitted: conn,
            token: shared.tracker.token(),
        }),
        // Only if the runtime could not let go of the socket; the client sees it closed.
        Err(e) => tracing::warn!("{}: cannot pass the connection to io_uring: {e}", conn.peer),
    }
}

/// Waits for a connection on any of `listeners`, starting the scan at `first` and moving it
/// past the listener that answered. Returns that listener's index with the result.
async fn accept_any(
    listeners: &[(StreamListener, Endpoint)],
    first: &mut usize,
) -> (usize, std::io::Result<Accepted>) {
    let (index, result) = std::future::poll_fn(|cx| {
        for k in 0..listeners.len() {
            let index = (*first + k) % listeners.len();
            if let Poll::Ready(result) = poll_accept(&listeners[index].0, cx) {
                return Poll::Ready((index, result));
            }
        }
        Poll::Pending
    })
    .await;
    *first = (index + 1) % listeners.len();
    (index, result)
}

async fn start_flushing(flushing: &mut bool) {
    // Let the runtime poll the OS once, so connections queued just before the shutdown are
    // known to be there.
    tokio::task::yield_now().await;
    *flushing = true;
}

/// Applies `--allow`/`--deny` and `--max-conns-per-ip` to a new TCP peer. `None` refuses it;
/// `Some(slot)` admits it, holding its per-address slot if there is a limit.
fn admit(
    shared: &Shared,
    counters: &TransportCounters,
    peer: SocketAddr,
) -> Option<Option<PerIpSlot>> {
    if !shared.config.access.permits(peer.ip()) {
        TransportCounters::add(&counters.connections_denied, 1);
        tracing::debug!(target: CONN_LOG, "{peer} refused: not allowed by --allow/--deny");
        return None;
    }
    let Some(limit) = &shared.per_ip else {
        return Some(None);
    };
    match limit.acquire(peer.ip()) {
        Some(slot) => Some(Some(slot)),
        None => {
            TransportCounters::add(&counters.connections_over_ip_limit, 1);
            tracing::debug!(target: CONN_LOG, "{peer} refused: --max-conns-per-ip reached");
            None
        }
    }
}

enum Accepted {
    /// TCP, with or without TLS to come (the listener's transport says which).
    Inet(tokio::net::TcpStream, SocketAddr),
    Unix(tokio::net::UnixStream, String),
}

impl Accepted {
    /// The plain socket, taken out of the runtime (for the io_uring engine).
    fn into_fd(self) -> std::io::Result<OwnedFd> {
        match self {
            Accepted::Inet(stream, _) => stream.into_std().map(OwnedFd::from),
            Accepted::Unix(stream, _) => stream.into_std().map(OwnedFd::from),
        }
    }
}

fn poll_accept(listener: &StreamListener, cx: &mut Context<'_>) -> Poll<std::io::Result<Accepted>> {
    match listener {
        StreamListener::Tcp(l) | StreamListener::Tls(l) => {
            l.poll_accept(cx).map_ok(|(stream, peer)| {
                // Echoes are small and interactive: send each one at once.
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!("TCP_NODELAY on {peer}: {e}");
                }
                // IPv4 clients of a dual-stack socket show as ::ffff:a.b.c.d; name them plainly.
                Accepted::Inet(
                    stream,
                    SocketAddr::new(peer.ip().to_canonical(), peer.port()),
                )
            })
        }
        StreamListener::Unix(l) => l.poll_accept(cx).map_ok(|(stream, _)| {
            let id = UNIX_CONN_ID.fetch_add(1, Ordering::Relaxed);
            let peer = match stream.peer_cred().ok().and_then(|c| c.pid()) {
                Some(pid) => format!("unix#{id} (pid {pid})"),
                None => format!("unix#{id}"),
            };
            Accepted::Unix(stream, peer)
        }),
    }
}

/// Completes the TLS handshake within the handshake timeout, then serves the connection. A
/// failed or stalled handshake is counted and logged as a warning (within the log budget),
/// never more.
async fn tls_connection(stream: tokio::net::TcpStream, conn: Admitted, shared: Arc<Shared>) {
    let counters = shared.counters.transport(conn.transport);
    let Some(acceptor) = shared.config.tls.as_ref().map(ServerTls::acceptor) else {
        // Bind makes a certificate whenever there is a TLS endpoint.
        tracing::error!("{}: no TLS certificate configured", conn.peer);
        return;
    };
    let timeout = shared.config.tls_handshake_timeout;
    let handshake = tokio::select! {
        result = tokio::time::timeout(timeout, acceptor.accept(stream)) => result,
        () = shared.drain.cancelled() => return,
    };
    let failure = match handshake {
        Ok(Ok(tls)) => {
            return connection(Generic(tls), conn, shared.clone()).await;
        }
        Ok(Err(e)) => crate::tls::describe_handshake_error(&e),
        Err(_) => format!("no handshake within {timeout:?}; closed"),
    };
    TransportCounters::add(&counters.tls_handshake_failures, 1);
    // A flood of failures is summed up by the server instead (see `log_budget`).
    if !shared.tls_failure_log.admit(std::time::Instant::now()) {
        return;
    }
    tracing::warn!(
        target: CONN_LOG,
        peer = conn.peer,
        transport = %conn.transport,
        event = "tls_handshake_failed",
        "{}: TLS handshake failed: {failure}",
        conn.peer
    );
}

/// Serves one connection until it ends or the grace period cuts it, then logs the summary.
async fn connection<S: EchoIo>(mut stream: S, conn: Admitted, shared: Arc<Shared>) {
    let mut log = ConnLog::opened(&conn, &shared);
    let options = EchoOptions {
        idle_timeout: shared.config.idle_timeout,
        log_data_as: shared.config.log_data.then(|| conn.peer.clone()),
    };
    let EchoOutcome { bytes, result } =
        echo_io(&mut stream, &options, &shared.drain, Some(&shared.cut)).await;
    log.bytes = bytes;
    log.closed(&conn, &shared, result);
    drop(conn);
}
