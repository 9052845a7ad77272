//! Where the serving loops run ([`Workers`]): on the caller's runtime, or on worker threads for
//! share-nothing serving on several cores; and which loops serve a set of sockets
//! ([`spawn_loops`]).
//!
//! Each worker runs its own single-threaded runtime and serves every stream listener through its
//! own duplicate of the listening descriptor; each datagram socket is served by one worker.
//! Each worker also starts an engine thread for its plain stream connections (io_uring or
//! epoll, see `engine`).
//! Whichever worker the kernel wakes first accepts a
//! connection (or receives a datagram), and a connection then stays on that worker for life, so
//! the hot path touches no lock or queue shared between threads. A busy worker answers its
//! wake-ups later, so idle workers naturally take the new connections.
//!
//! SO_REUSEPORT groups would spread connections by hash instead, but they let any other process
//! of the same user bind the same port silently; a shared descriptor keeps "address in use"
//! errors honest.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::bind::{Socket, StdSocket};
use super::config::EngineKind;
use super::engine::EngineHandle;
use super::shared::Shared;
use super::{datagram, stream};
use crate::Endpoint;

/// Running worker threads.
pub(crate) struct WorkerThreads {
    /// One message per worker whose serving loops have all returned.
    loops_stopped: mpsc::Receiver<()>,
    /// Workers that have not reported `loops_stopped` yet.
    running: usize,
    /// Completes when each worker thread is about to exit.
    finished: Vec<oneshot::Receiver<()>>,
}

impl WorkerThreads {
    pub(crate) async fn loops_stopped(&mut self) {
        while self.running > 0 && self.loops_stopped.recv().await.is_some() {
            self.running -= 1;
        }
    }

    pub(crate) async fn finished(self) {
        for done in self.finished {
            // An error means the worker ended without saying so; it has ended all the same.
            let _ = done.await;
        }
    }
}

/// Starts `threads` workers serving `sockets`. With no threads asked for, or if no worker
/// thread can be started, serves them on the current runtime instead.
pub(crate) fn start(
    threads: usize,
    sockets: Vec<(Socket, Endpoint)>,
    shared: &Arc<Shared>,
) -> Workers {
    if threads == 0 {
        return Workers::Here(spawn_loops(sockets, shared, None));
    }
    let mut detached = Vec::new();
    for (socket, endpoint) in sockets {
        match socket.into_std() {
            Ok(socket) => detached.push((socket, endpoint)),
            Err(e) => tracing::error!("cannot hand {endpoint} over to the worker threads: {e}"),
        }
    }
    let detached = Arc::new(detached);
    let (stopped_tx, loops_stopped) = mpsc::channel(threads.max(1));
    let mut finished = Vec::new();
    for index in 0..threads {
        let (done_tx, done_rx) = oneshot::channel();
        let (detached, shared, stopped_tx) = (detached.clone(), shared.clone(), stopped_tx.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("worker-{index}"))
            .spawn(move || {
                worker(detached, (index, threads), shared, stopped_tx);
                let _ = done_tx.send(());
            });
        match spawned {
            Ok(_) => finished.push(done_rx),
            Err(e) => tracing::error!("cannot start worker thread {index}: {e}"),
        }
    }
    if finished.is_empty() {
        tracing::warn!("no worker thread could be started; serving on the main thread");
        return Workers::Here(spawn_loops(register(&detached, 0, 1), shared, None));
    }
    Workers::Threads(WorkerThreads {
        loops_stopped,
        running: finished.len(),
        finished,
    })
}

/// The body of one worker thread.
fn worker(
    sockets: Arc<Vec<(StdSocket, Endpoint)>>,
    (index, threads): (usize, usize),
    shared: Arc<Shared>,
    loops_stopped: mpsc::Sender<()>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("cannot start a worker runtime: {e}");
            let _ = loops_stopped.try_send(());
            return;
        }
    };
    let engine = start_engine(index, &shared);
    runtime.block_on(async {
        if let Some(engine) = &engine {
            // Pass the shutdown steps on to the engine thread.
            let (engine, shared) = (engine.clone(), shared.clone());
            tokio::spawn(async move {
                shared.drain.cancelled().await;
                engine.drain();
                shared.cut.cancelled().await;
                engine.cut();
            });
        }
        let mut loops = spawn_loops(register(&sockets, index, threads), &shared, engine.clone());
        // Keep only this worker's duplicates, owned by its loops: once every loop has stopped,
        // no descriptor of the listening sockets is left open, and new clients are refused.
        drop(sockets);
        while loops.join_next().await.is_some() {}
        if let Some(engine) = &engine {
            engine.finish();
        }
        let _ = loops_stopped.send(()).await;
        // Serve this worker's connections until every connection of the server has ended
        // (the tracker is closed once all workers stopped accepting).
        shared.tracker.wait().await;
    });
    if let Some(engine) = engine {
        engine.join();
    }
}

/// Starts this worker's engine for plain streams, if the server uses one. If the io_uring engine
/// cannot start here, this worker runs the epoll engine; if that cannot start either, tokio
/// serves.
fn start_engine(index: usize, shared: &Arc<Shared>) -> Option<Arc<EngineHandle>> {
    let kind = shared.engine?;
    let started = EngineHandle::start(kind, index, shared.clone()).or_else(|e| {
        if kind != EngineKind::Uring {
            return Err(e);
        }
        tracing::warn!("worker {index}: cannot start io_uring ({e}); using epoll");
        EngineHandle::start(EngineKind::Epoll, index, shared.clone())
    });
    match started {
        Ok(engine) => Some(Arc::new(engine)),
        Err(e) => {
            tracing::warn!("worker {index}: cannot start the epoll engine ({e}); serving on tokio");
            None
        }
    }
}

/// Duplicates into the current runtime every socket worker `index` of `threads` serves: every
/// stream listener, and its share of the datagram sockets. A datagram socket is served by one
/// worker only, so the replies to one peer leave in the order its datagrams came (two workers
/// reading one queue could swap them).
fn register(
    sockets: &[(StdSocket, Endpoint)],
    index: usize,
    threads: usize,
) -> Vec<(Socket, Endpoint)> {
    let mut datagram_sockets = 0;
    sockets
        .iter()
        .filter(|(socket, _)| {
            if !matches!(socket, StdSocket::Udp(_) | StdSocket::UnixGram(_)) {
                return true;
            }
            datagram_sockets += 1;
            (datagram_sockets - 1) % threads.max(1) == index
        })
        .filter_map(|(socket, endpoint)| match socket.clone_into_runtime() {
            Ok(socket) => Some((socket, endpoint.clone())),
            Err(e) => {
                tracing::error!("cannot serve {endpoint} on this worker: {e}");
                None
            }
        })
        .collect()
}

/// Starts the serving loop of every socket on the current runtime.
pub(crate) fn spawn_loops(
    sockets: Vec<(Socket, Endpoint)>,
    shared: &Arc<Shared>,
    engine: Option<Arc<EngineHandle>>,
) -> JoinSet<()> {
    let mut loops = JoinSet::new();
    let mut stream_listeners = Vec::new();
    for (socket, endpoint) in sockets {
        let shared = shared.clone();
        match socket {
            Socket::Stream(l) => stream_listeners.push((l, endpoint)),
            Socket::Udp(s) => {
                loops.spawn(datagram::serve_udp(s, endpoint, shared));
            }
            Socket::UnixGram(s) => {
                loops.spawn(datagram::serve_unixgram(s, endpoint, shared));
            }
        };
    }
    loops.spawn(stream::serve(stream_listeners, shared.clone(), engine));
    loops
}

/// Where the serving loops run.
pub(crate) enum Workers {
    /// On the caller's runtime.
    Here(JoinSet<()>),
    /// On dedicated worker threads.
    Threads(WorkerThreads),
}

impl Workers {
    /// Waits until every serving loop has returned, which they do once drain starts.
    pub(crate) async fn loops_stopped(&mut self) {
        match self {
            Workers::Here(loops) => while loops.join_next().await.is_some() {},
            Workers::Threads(pool) => pool.loops_stopped().await,
        }
    }

    /// Waits until the worker threads have exited, after their last connection ended.
    pub(crate) async fn finished(self) {
        if let Workers::Threads(pool) = self {
            pool.finished().await;
        }
    }
}
