//! Stream listeners (TCP, TLS, WebSocket, Unix): the accept loop, and the life of one
//! connection on the tokio path (TLS and WebSocket always; plain connections only where no
//! engine of their own takes them over: without worker threads, with stream faults, off Linux).
//!
//! A permit from the shared semaphore is taken *before* `accept`, so at most `max_conns`
//! connections are served and further clients wait in the kernel's backlog. Accept errors are
//! logged and survived, never returned, and never retried in a tight loop: running out of file
//! descriptors backs off and retries, a failed connection is skipped (backing off too if such
//! failures keep coming), and a listener that is broken for good (e.g. no longer listening)
//! stops accepting with an error line while the others go on.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::OwnedSemaphorePermit;

use super::admission::{AcceptErrors, AfterFailure, admit, unix_peer_name};
use super::bind::StreamListener;
use super::conn::{Admitted, ConnLog, PeerName};
use super::echo::{EchoIo, EchoOptions, EchoOutcome, Generic, echo_io};
use super::engine::{Arrival, EngineHandle};
use super::fault::plan::{Admission, ConnFaults};
use super::fault::stream::{Resettable, linger_zero};
use super::proxied::{self, Via};
use super::shared::Shared;
use super::websocket;
use crate::CONN_LOG;
use crate::Endpoint;
use crate::Transport;
use crate::stats::TransportCounters;
use crate::tls::ServerTls;

/// Serves every stream listener of this worker until shutdown, and returns once none is
/// accepting any more.
///
/// With an `engine` (io_uring or epoll), plain TCP and Unix listeners are accepted on by the engine itself
/// (unless a PROXY header or stream faults need the tokio path first), so that a new connection
/// costs no thread hand-over; if the engine fails, it gives them back and they are served here.
/// The other listeners (TLS, WebSocket) share one tokio accept loop.
pub(crate) async fn serve(
    listeners: Vec<(StreamListener, Endpoint)>,
    shared: Arc<Shared>,
    engine: Option<Arc<EngineHandle>>,
) {
    let accepting_engine = engine
        .as_ref()
        .filter(|engine| engine.serving() && engine_accepts(&shared));
    let (on_engine, here): (Vec<_>, Vec<_>) = listeners
        .into_iter()
        .partition(|(_, endpoint)| accepting_engine.is_some() && accepted_on_engine(endpoint));
    let on_engine: Vec<_> = on_engine
        .into_iter()
        .filter_map(|(listener, endpoint)| match listener.into_fd() {
            Ok(fd) => Some((fd, endpoint)),
            Err(e) => {
                tracing::error!("cannot hand {endpoint} over to the stream engine: {e}");
                None
            }
        })
        .collect();
    let engine_accepting = async {
        let Some(engine) = accepting_engine.filter(|_| !on_engine.is_empty()) else {
            return;
        };
        let given_back = engine.accept_on(on_engine).await;
        let listeners: Vec<_> = given_back
            .into_iter()
            .filter_map(
                |(fd, endpoint)| match StreamListener::from_fd(fd, &endpoint) {
                    Ok(listener) => Some((listener, endpoint)),
                    Err(e) => {
                        tracing::error!("cannot accept on {endpoint} again: {e}");
                        None
                    }
                },
            )
            .collect();
        accept_loop(listeners, shared.clone(), None).await;
    };
    tokio::join!(
        accept_loop(here, shared.clone(), engine.clone()),
        engine_accepting
    );
}

/// Whether this server's plain connections may be accepted by the engine: not when each needs
/// the tokio path's work first (a PROXY header to read, faults to deal).
fn engine_accepts(shared: &Shared) -> bool {
    shared.config.proxy_protocol.is_none() && shared.stream_faults.is_none()
}

fn accepted_on_engine(endpoint: &Endpoint) -> bool {
    matches!(endpoint, Endpoint::Tcp(_) | Endpoint::Unix(_))
}

/// Accepts on every listener in `listeners` from one loop, so a `--max-conns` permit held while
/// waiting serves whichever listener a client comes to (a loop per listener would each hold a
/// permit, and an idle listener could keep a busy one from accepting).
///
/// With an `engine`, plain TCP and Unix connections are handed to it; TLS ones are
/// always served here.
async fn accept_loop(
    listeners: Vec<(StreamListener, Endpoint)>,
    shared: Arc<Shared>,
    engine: Option<Arc<EngineHandle>>,
) {
    if listeners.is_empty() {
        return;
    }
    let mut listeners = listeners;
    #[cfg(target_os = "linux")]
    for (listener, _) in &listeners {
        listener.set_nodelay_for_accepted();
    }
    let mut errors = AcceptErrors::default();
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
                drop(permit);
                match errors.failed(&e, endpoint, counters) {
                    AfterFailure::GiveUp => {
                        listeners.swap_remove(index);
                        if listeners.is_empty() {
                            break;
                        }
                        first %= listeners.len();
                    }
                    AfterFailure::Retry => {}
                    AfterFailure::BackOff(pause) => tokio::select! {
                        () = shared.drain.cancelled() => break,
                        () = tokio::time::sleep(pause) => {}
                    },
                }
                continue;
            }
        };
        errors.succeeded();
        let accepted = match accepted {
            // The header comes first, on a task of its own: the accept loop does not wait for it.
            Accepted::Inet(stream, peer) if shared.config.proxy_protocol.is_some() => {
                shared.tracker.spawn(proxied_connection(
                    stream,
                    peer,
                    endpoint.clone(),
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
                (PeerName::Inet(*peer), slot)
            }
            Accepted::Unix(_, peer) => (peer.clone(), None),
        };
        let conn = Admitted::new(peer, transport, permit, ip_slot);
        dispatch(accepted, conn, endpoint, &shared, engine.as_ref());
    }
    for (_, endpoint) in &listeners {
        tracing::debug!("stopped accepting on {endpoint}");
    }
}

/// Resets a new connection at once (the `refuse` fault): the client sees its connection
/// reset before any byte comes back.
fn refuse(accepted: Accepted, peer: &PeerName, shared: &Shared) {
    if let Accepted::Inet(stream, _) = &accepted {
        linger_zero(stream);
    }
    drop(accepted);
    shared
        .counters
        .faults()
        .add(super::fault::FaultKind::Refuse, 1);
    tracing::debug!(target: CONN_LOG, "{peer} refused: injected fault");
}

/// Serves an admitted connection of the listener at `endpoint`: on the `engine` if
/// there is one (plain streams), else on a task of this worker.
fn dispatch(
    accepted: Accepted,
    conn: Admitted,
    endpoint: &Endpoint,
    shared: &Arc<Shared>,
    engine: Option<&Arc<EngineHandle>>,
) {
    // One `Option` per connection when no fault is configured.
    let faults = match shared.stream_faults.as_ref().map(|f| f.admit()) {
        None => None,
        Some(Admission::Serve(faults)) => Some(faults),
        Some(Admission::Refuse) => {
            refuse(accepted, &conn.peer, shared);
            return;
        }
    };
    let transport = conn.transport;
    let task_shared = shared.clone();
    let engine = engine.filter(|engine| engine.serving());
    if let Some(engine) = engine
        && matches!(transport, Transport::Tcp | Transport::Unix)
    {
        hand_over(engine, accepted.into_fd(), conn, shared);
        return;
    }
    let then = match endpoint {
        // Stream faults act on bytes, not messages: WebSocket connections are served without
        // them (only `refuse`, above, applies).
        Endpoint::Ws(target) | Endpoint::Wss(target) => Then::WebSocket(target.path.clone()),
        _ => Then::Echo(faults),
    };
    match accepted {
        Accepted::Inet(stream, _) if transport.is_tls() => {
            shared
                .tracker
                .spawn(tls_connection(stream, conn, task_shared, then))
        }
        Accepted::Inet(stream, _) => match then {
            Then::Echo(faults) => {
                shared
                    .tracker
                    .spawn(connection(stream, conn, task_shared, faults))
            }
            Then::WebSocket(path) => shared.tracker.spawn(async move {
                websocket::connection(stream, conn, task_shared, &path).await;
            }),
        },
        Accepted::Unix(stream, _) => {
            shared
                .tracker
                .spawn(connection(stream, conn, task_shared, faults_of(then)))
        }
    };
}

/// A TCP or TLS connection to a `--proxy-protocol` server: the PROXY header question first
/// (before any TLS handshake), then admission and the echo as the client the header names.
async fn proxied_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    endpoint: Endpoint,
    permit: OwnedSemaphorePermit,
    shared: Arc<Shared>,
    engine: Option<Arc<EngineHandle>>,
) {
    let Some(options) = &shared.config.proxy_protocol else {
        return; // only spawned when the option is set
    };
    let transport = endpoint.transport();
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
    let conn = Admitted::new(PeerName::Inet(client), transport, permit, ip_slot).via(via);
    dispatch(
        Accepted::Inet(stream, peer),
        conn,
        &endpoint,
        &shared,
        engine.as_ref(),
    );
}

/// Passes a connection to the engine, which serves it from then on.
fn hand_over(engine: &EngineHandle, fd: std::io::Result<OwnedFd>, conn: Admitted, shared: &Shared) {
    match fd {
        Ok(fd) => engine.hand_over(Arrival {
            fd,
            admitted: conn,
            token: shared.tracker.token(),
        }),
        // Only if the runtime could not let go of the socket; the client sees it closed.
        Err(e) => tracing::warn!(
            "{}: cannot pass the connection to the stream engine: {e}",
            conn.peer
        ),
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

enum Accepted {
    /// TCP, with or without TLS to come (the listener's transport says which).
    Inet(tokio::net::TcpStream, SocketAddr),
    Unix(tokio::net::UnixStream, PeerName),
}

impl Accepted {
    /// The plain socket, taken out of the runtime (for the engine).
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
                // Echoes are small and interactive: send each one at once. (On Linux the
                // connection has it from its listener already.)
                #[cfg(not(target_os = "linux"))]
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
            let peer = unix_peer_name(stream.peer_cred().ok().and_then(|c| c.pid()));
            Accepted::Unix(stream, peer)
        }),
    }
}

/// What a connection carries once it is set up.
enum Then {
    /// A byte stream to echo, with the faults drawn for it if any.
    Echo(Option<Box<ConnFaults>>),
    /// WebSocket messages, after an upgrade on this path.
    WebSocket(String),
}

fn faults_of(then: Then) -> Option<Box<ConnFaults>> {
    match then {
        Then::Echo(faults) => faults,
        Then::WebSocket(_) => None,
    }
}

/// Completes the TLS handshake within the handshake timeout, then serves the connection. A
/// failed or stalled handshake is counted and logged as a warning (within the log budget),
/// never more.
async fn tls_connection(
    stream: tokio::net::TcpStream,
    conn: Admitted,
    shared: Arc<Shared>,
    then: Then,
) {
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
            return match then {
                Then::Echo(faults) => connection(Generic(tls), conn, shared.clone(), faults).await,
                Then::WebSocket(path) => {
                    websocket::connection(tls, conn, shared.clone(), &path).await;
                }
            };
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
        peer = %conn.peer,
        transport = %conn.transport,
        event = "tls_handshake_failed",
        "{}: TLS handshake failed: {failure}",
        conn.peer
    );
}

/// Serves one connection until it ends or the grace period cuts it, then logs the summary.
async fn connection<S: EchoIo + Resettable>(
    mut stream: S,
    conn: Admitted,
    shared: Arc<Shared>,
    faults: Option<Box<ConnFaults>>,
) {
    if let Some(faults) = faults {
        return super::fault::stream::connection(stream, conn, shared, faults).await;
    }
    let mut log = ConnLog::opened(&conn, &shared);
    let options = EchoOptions {
        idle_timeout: shared.config.idle_timeout,
        log_data_as: shared.config.log_data.then(|| conn.peer.to_string()),
    };
    let live = &shared.counters.transport(conn.transport).stream_bytes;
    let EchoOutcome { bytes, result } = echo_io(
        &mut stream,
        &options,
        &shared.drain,
        Some(&shared.cut),
        Some(live),
    )
    .await;
    log.bytes = bytes;
    log.counted = bytes;
    log.closed(&conn, &shared, result);
    drop(conn);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::io::IoMode;
    use crate::server::{InheritedSocket, Server, ServerConfig};

    /// A listening socket shut down under the server answers every `accept` with EINVAL at
    /// once. The accept loop must give that listener up after the first error instead of
    /// retrying in a tight loop, and the server must still stop promptly.
    /// Here on the tokio accept loop (no worker threads: no engine).
    #[tokio::test]
    async fn a_listener_that_stops_listening_is_given_up_not_spun_on() {
        a_broken_listener_is_given_up(IoMode::Epoll, 0).await;
    }

    /// The same on the epoll engine, which accepts on its own epoll set.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_listener_that_stops_listening_is_given_up_by_the_epoll_engine_too() {
        a_broken_listener_is_given_up(IoMode::Epoll, 1).await;
    }

    /// The same on the io_uring engine, which accepts on the ring itself (where the kernel
    /// has no io_uring the server falls back to epoll, and this repeats the test above).
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_listener_that_stops_listening_is_given_up_on_the_ring_too() {
        a_broken_listener_is_given_up(IoMode::Uring, 1).await;
    }

    async fn a_broken_listener_is_given_up(io: IoMode, threads: usize) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let handle = listener.try_clone().expect("dup");
        let config = ServerConfig {
            threads,
            io,
            ..ServerConfig::default()
        };
        let server = Server::bind_and_adopt(&[], vec![InheritedSocket::Tcp(listener)], config)
            .await
            .expect("adopt a listening socket");
        let counters = server.counters();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let run = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        rustix::net::shutdown(&handle, rustix::net::Shutdown::Read).expect("shutdown");
        let errors = || counters.transport(Transport::Tcp).snapshot().accept_errors;
        tokio::time::timeout(Duration::from_secs(5), async {
            while errors() == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the worker never saw the listener fail");
        // Time for thousands of retries, had the loop kept retrying.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            errors(),
            1,
            "accept errors on a listener that cannot accept"
        );
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(5), run)
            .await
            .expect("the server did not stop within 5 s")
            .expect("run panicked");
    }
}
