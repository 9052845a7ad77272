//! [`EngineHandle`]: the accepting side's handle on one engine thread — it starts the thread,
//! hands connections over and passes the shutdown steps on.

#![deny(unsafe_code)]

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::common::Engine;
use super::epoll::EpollEngine;
use super::inbox::{Arrival, Inbox, ListenerArrival};
use super::uring::UringEngine;
use crate::Endpoint;
use crate::server::config::EngineKind;
use crate::server::shared::Shared;
use crate::sys::uring::AbortOnPanic;

/// The accepting side's handle on one engine thread.
pub(crate) struct EngineHandle {
    inbox: Arc<Inbox>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl EngineHandle {
    /// Starts a `kind` engine thread for worker `index`. Fails, leaving nothing running, if this
    /// kernel (or a sandbox) does not offer what the engine needs.
    pub(crate) fn start(
        kind: EngineKind,
        index: usize,
        shared: Arc<Shared>,
    ) -> io::Result<EngineHandle> {
        match kind {
            EngineKind::Uring => EngineHandle::start_engine::<UringEngine>(index, shared),
            EngineKind::Epoll => EngineHandle::start_engine::<EpollEngine>(index, shared),
        }
    }

    fn start_engine<E: Engine>(index: usize, shared: Arc<Shared>) -> io::Result<EngineHandle> {
        let inbox = Arc::new(Inbox::new()?);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread_inbox = inbox.clone();
        let name = E::NAME.trim_start_matches("io_");
        let thread = std::thread::Builder::new()
            .name(format!("{name}-{index}"))
            .spawn(move || {
                // Made on the thread that uses it: a ring is single-issuer.
                let mut engine = match E::new(thread_inbox, shared) {
                    Ok(engine) => {
                        let _ = ready_tx.send(Ok(()));
                        engine
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                // A panic would unwind through memory the kernel may still be using (io_uring),
                // or leave this worker's listeners unserved without a word (epoll), so it ends
                // the process instead (this guard is dropped before `engine`).
                let _abort_on_panic = AbortOnPanic;
                if let Err(e) = engine.run() {
                    tracing::error!(
                        "{} engine failed: {e}; closing its connections, its listeners go \
                         back to tokio",
                        E::NAME
                    );
                    engine.stop_after_failure();
                }
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(EngineHandle {
                inbox,
                thread: Mutex::new(Some(thread)),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(io::Error::other(format!(
                    "the {} engine thread ended at start",
                    E::NAME
                )))
            }
        }
    }

    /// Whether the engine still takes connections (it stops only if it fails).
    pub(crate) fn serving(&self) -> bool {
        !self.inbox.arrivals().stopped
    }

    /// Gives the engine a connection to serve. If the engine has just stopped, the connection
    /// is closed, with a warning.
    pub(crate) fn hand_over(&self, arrival: Arrival) {
        let mut arrivals = self.inbox.arrivals();
        if arrivals.stopped {
            drop(arrivals);
            tracing::warn!(
                "{}: closed unserved, the stream engine stopped",
                arrival.admitted.peer
            );
            return;
        }
        arrivals.queue.push(arrival);
        drop(arrivals);
        self.inbox.wake();
    }

    /// Has the engine accept on `listeners` itself, and waits until it has stopped accepting
    /// on them (after shutdown starts). Returns the listeners the engine gave back because it
    /// failed, to be served elsewhere; nothing once it stopped for shutdown.
    pub(crate) async fn accept_on(
        &self,
        listeners: Vec<(OwnedFd, Endpoint)>,
    ) -> Vec<(OwnedFd, Endpoint)> {
        let (done, stopped) = tokio::sync::oneshot::channel();
        {
            let mut arrivals = self.inbox.arrivals();
            if arrivals.stopped {
                return listeners;
            }
            arrivals.listeners.push(ListenerArrival { listeners, done });
        }
        self.inbox.wake();
        // A dropped sender means the engine thread is gone, and the listeners with it.
        stopped.await.unwrap_or_default()
    }

    /// Shutdown has started: echo what has arrived, then close each connection.
    pub(crate) fn drain(&self) {
        self.inbox.drain.store(true, Ordering::Release);
        self.inbox.wake();
    }

    /// The grace period is over: close every connection now.
    pub(crate) fn cut(&self) {
        self.inbox.cut.store(true, Ordering::Release);
        self.inbox.wake();
    }

    /// No more connections will come: the engine exits once its last one has ended.
    pub(crate) fn finish(&self) {
        self.inbox.finish.store(true, Ordering::Release);
        self.inbox.wake();
    }

    /// Waits for the engine thread to exit (after `finish` and its last connection).
    pub(crate) fn join(&self) {
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

impl Drop for EngineHandle {
    fn drop(&mut self) {
        // Dropped without `join` (the worker is unwinding): stop the engine anyway.
        let running = self.thread.get_mut().map_or(true, |t| t.is_some());
        if running {
            self.inbox.cut.store(true, Ordering::Release);
            self.inbox.finish.store(true, Ordering::Release);
            self.inbox.wake();
        }
    }
}
