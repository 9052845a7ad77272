//! What the accepting side and the engine thread share: the connections and listeners handed
//! over and not yet taken, the shutdown steps asked for, and the eventfd that wakes the engine
//! for any of them.

#![deny(unsafe_code)]

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::AtomicBool;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::oneshot;
use tokio_util::task::task_tracker::TaskTrackerToken;

use crate::Endpoint;
use crate::server::conn::Admitted;

/// A connection for the engine to serve: handed over by the worker's accept loop, or accepted
/// and admitted by the engine itself.
pub(crate) struct Arrival {
    pub(crate) fd: OwnedFd,
    pub(crate) admitted: Admitted,
    /// Keeps the server's shutdown waiting until this connection has ended.
    pub(crate) token: TaskTrackerToken,
}

/// Listening sockets handed to the engine to accept on itself.
pub(crate) struct ListenerArrival {
    pub(crate) listeners: Vec<(OwnedFd, Endpoint)>,
    /// Told once the engine has stopped accepting on them: with nothing after a shutdown,
    /// with the listeners themselves if the engine failed and they must be served elsewhere.
    pub(crate) done: oneshot::Sender<Vec<(OwnedFd, Endpoint)>>,
}

/// What the accepting side and the engine thread share.
pub(super) struct Inbox {
    arrivals: Mutex<Arrivals>,
    /// An eventfd: written to wake the engine, read by the engine's `Wake` request.
    pub(super) wake: OwnedFd,
    pub(super) drain: AtomicBool,
    pub(super) cut: AtomicBool,
    /// No more arrivals will come: exit once the last connection has ended.
    pub(super) finish: AtomicBool,
}

/// Connections waiting for the engine to take them.
#[derive(Default)]
pub(super) struct Arrivals {
    pub(super) queue: Vec<Arrival>,
    pub(super) listeners: Vec<ListenerArrival>,
    /// The engine failed and serves nothing more: connections are no longer queued.
    pub(super) stopped: bool,
}

impl Inbox {
    pub(super) fn new() -> io::Result<Inbox> {
        let wake = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )?;
        Ok(Inbox {
            arrivals: Mutex::new(Arrivals::default()),
            wake,
            drain: AtomicBool::new(false),
            cut: AtomicBool::new(false),
            finish: AtomicBool::new(false),
        })
    }

    pub(super) fn arrivals(&self) -> MutexGuard<'_, Arrivals> {
        self.arrivals.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes every connection and listener handed over and not yet taken.
    pub(super) fn take(&self) -> (Vec<Arrival>, Vec<ListenerArrival>) {
        let mut arrivals = self.arrivals();
        (
            std::mem::take(&mut arrivals.queue),
            std::mem::take(&mut arrivals.listeners),
        )
    }

    /// After the engine failed: refuse further arrivals and close the ones queued, so their
    /// slots and the server's shutdown are not held up.
    pub(super) fn stop(&self) {
        let (stranded, listeners) = {
            let mut arrivals = self.arrivals();
            arrivals.stopped = true;
            (
                std::mem::take(&mut arrivals.queue),
                std::mem::take(&mut arrivals.listeners),
            )
        };
        for ListenerArrival { listeners, done } in listeners {
            let _ = done.send(listeners);
        }
        for Arrival { admitted, .. } in stranded {
            tracing::warn!(
                "{}: closed unserved, the stream engine stopped",
                admitted.peer
            );
        }
    }

    pub(super) fn wake(&self) {
        // A full counter (impossible in practice) still leaves the engine woken.
        let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
    }
}
