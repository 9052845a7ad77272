//! Accepting on the epoll engine: the plain listeners it was given, each in its epoll set
//! while it may accept, and what it applies to each new connection — the same as the tokio
//! accept loop, in the same order and with the same counters and log lines: a `--max-conns`
//! permit first (with none left the listener leaves the set, and clients wait in the backlog
//! until a permit comes back — checked when a connection of this engine ends and at every
//! timer tick, since other workers' connections hold permits too), then `--allow`/`--deny` and
//! `--max-conns-per-ip`, the accept error classes with their backoff, and on shutdown one last
//! non-blocking sweep of the backlog before the listeners are closed.

use std::io;
use std::os::fd::OwnedFd;
use std::time::Instant;

use rustix::event::epoll;
use rustix::io::Errno;
use rustix::net::SocketFlags;
use tokio::sync::oneshot;

use crate::server::admission::{AcceptErrors, AfterFailure, admit_accepted};
use crate::server::conn::Admitted;
use crate::server::engine::inbox::{Arrival, ListenerArrival};
use crate::server::shared::Shared;
use crate::{Endpoint, Transport};

/// Connections one readiness event of a listener accepts at most, so that a flood of new
/// connections does not hold up the echo of the open ones (the listener stays ready, so the
/// next turn accepts the rest).
pub(super) const ACCEPT_BATCH: usize = 64;

/// The epoll key of listener `index`; connection keys never have this bit.
pub(super) const LISTENER_KEY: u64 = 1 << 62;

/// One listener the engine accepts on.
struct Listener {
    fd: OwnedFd,
    endpoint: Endpoint,
    transport: Transport,
    /// In the epoll set.
    registered: bool,
    /// Accept errors since the last success, and the backoff they have led to.
    errors: AcceptErrors,
    /// Not back in the set before this, after errors that call for backing off.
    retry_at: Option<Instant>,
    /// Broken for good: no more accepting on it.
    broken: bool,
}

/// The listeners of one engine and what it owes the side that handed them over.
#[derive(Default)]
pub(super) struct Accepting {
    listeners: Vec<Listener>,
    /// Told when accepting has ended.
    done: Option<oneshot::Sender<Vec<(OwnedFd, Endpoint)>>>,
    /// Shutdown has started: the backlog has been swept and the listeners closed.
    ended: bool,
}

impl Accepting {
    /// Whether some listener is out of the set for now — for want of a permit, or backing off
    /// — and so needs the timer's ticks to look again.
    pub(super) fn paused(&self) -> bool {
        !self.ended && self.listeners.iter().any(|l| !l.broken && !l.registered)
    }

    /// Takes over listeners handed to the engine, and starts accepting on them.
    pub(super) fn take_listeners(
        &mut self,
        ep: &OwnedFd,
        shared: &Shared,
        now: Instant,
        arrival: ListenerArrival,
    ) {
        let ListenerArrival { listeners, done } = arrival;
        if self.done.is_some() || self.ended {
            // One hand-over per engine; a late one is given straight back.
            let _ = done.send(if self.ended { Vec::new() } else { listeners });
            return;
        }
        self.done = Some(done);
        self.listeners
            .extend(listeners.into_iter().map(|(fd, endpoint)| Listener {
                fd,
                transport: endpoint.transport(),
                endpoint,
                registered: false,
                errors: AcceptErrors::default(),
                retry_at: None,
                broken: false,
            }));
        self.resume(ep, shared, now);
    }

    /// Puts back in the set every listener that may accept again: not backing off, a permit
    /// free, and not shutting down. Called when a connection ends and at every tick.
    pub(super) fn resume(&mut self, ep: &OwnedFd, shared: &Shared, now: Instant) {
        if self.ended || shared.slots.available_permits() == 0 {
            return;
        }
        for index in 0..self.listeners.len() {
            let listener = &mut self.listeners[index];
            if listener.registered
                || listener.broken
                || listener.retry_at.is_some_and(|at| now < at)
            {
                continue;
            }
            listener.retry_at = None;
            // Level-triggered: it stays ready while its backlog holds anyone. Exclusive: a new
            // connection wakes one worker's engine, not every one.
            let added = epoll::add(
                ep,
                &listener.fd,
                epoll::EventData::new_u64(LISTENER_KEY | index as u64),
                epoll::EventFlags::IN | epoll::EventFlags::EXCLUSIVE,
            );
            match added {
                Ok(()) => listener.registered = true,
                Err(e) => {
                    tracing::error!("cannot watch {} for connections: {e}", listener.endpoint);
                    listener.broken = true;
                }
            }
        }
    }

    /// Takes listener `index` out of the set (paused, broken, or shutting down).
    fn pause(&mut self, ep: &OwnedFd, index: usize) {
        let listener = &mut self.listeners[index];
        if std::mem::take(&mut listener.registered) {
            // It fails only if the listener is not in the set, which it is.
            let _ = epoll::delete(ep, &listener.fd);
        }
    }

    /// Listener `index` is ready: accepts what its backlog holds, up to [`ACCEPT_BATCH`] and
    /// as far as permits allow, and adds what it admits to `admitted`.
    pub(super) fn accept(
        &mut self,
        ep: &OwnedFd,
        shared: &Shared,
        now: Instant,
        index: usize,
        admitted: &mut Vec<Arrival>,
    ) {
        if index >= self.listeners.len() || self.ended {
            return;
        }
        for _ in 0..ACCEPT_BATCH {
            if !self.listeners[index].registered {
                return;
            }
            let Ok(permit) = shared.slots.clone().try_acquire_owned() else {
                // Out of permits: the clients wait in the backlog until one comes back.
                self.pause(ep, index);
                return;
            };
            let listener = &mut self.listeners[index];
            match accept(&listener.fd) {
                Ok(fd) => {
                    listener.errors.succeeded();
                    if let Some(conn) = admit(shared, listener.transport, fd, permit) {
                        admitted.push(conn);
                    }
                }
                Err(Errno::AGAIN) => return,
                Err(e) => {
                    drop(permit);
                    let counters = shared.counters.transport(listener.transport);
                    let err = io::Error::from(e);
                    match listener.errors.failed(&err, &listener.endpoint, counters) {
                        AfterFailure::Retry => {}
                        AfterFailure::GiveUp => {
                            listener.broken = true;
                            self.pause(ep, index);
                            return;
                        }
                        AfterFailure::BackOff(pause) => {
                            listener.retry_at = Some(now + pause);
                            self.pause(ep, index);
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Shutdown has started: stop accepting, but first take what the kernel already queued —
    /// one non-blocking sweep of each backlog (those clients' handshakes completed before the
    /// shutdown; closing the listener would reset them, losing what they sent) — as far as
    /// permits allow. Then the listeners are closed and the accepting side is told.
    pub(super) fn stop(&mut self, ep: &OwnedFd, shared: &Shared, admitted: &mut Vec<Arrival>) {
        if self.ended {
            return;
        }
        self.ended = true;
        'listeners: for index in 0..self.listeners.len() {
            self.pause(ep, index);
            let listener = &mut self.listeners[index];
            if listener.broken {
                continue;
            }
            loop {
                let Ok(permit) = shared.slots.clone().try_acquire_owned() else {
                    break 'listeners;
                };
                // Empty (EAGAIN), or failing: either way the sweep of this one is over.
                let Ok(fd) = accept(&listener.fd) else {
                    break;
                };
                if let Some(conn) = admit(shared, listener.transport, fd, permit) {
                    admitted.push(conn);
                }
            }
        }
        for listener in &self.listeners {
            tracing::debug!("stopped accepting on {}", listener.endpoint);
        }
        self.listeners.clear();
        if let Some(done) = self.done.take() {
            let _ = done.send(Vec::new());
        }
    }

    /// After the engine failed: the listeners still usable go back, to be served by tokio.
    /// (Once shutdown has started, `stop` has closed them and told the accepting side already.)
    pub(super) fn give_back(&mut self) {
        let listeners = std::mem::take(&mut self.listeners);
        if let Some(done) = self.done.take() {
            let back = listeners
                .into_iter()
                .filter(|l| !l.broken)
                .map(|l| (l.fd, l.endpoint))
                .collect();
            let _ = done.send(back);
        }
    }
}

/// One `accept4`: the connection non-blocking and close-on-exec from the start.
fn accept(listener: &OwnedFd) -> Result<OwnedFd, Errno> {
    loop {
        match rustix::net::accept_with(listener, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC) {
            Err(Errno::INTR) => {}
            other => return other,
        }
    }
}

/// Applies the access rules and the per-address limit to a new connection; `None` refused it
/// (dropping `fd` closed it).
fn admit(
    shared: &Shared,
    transport: Transport,
    fd: OwnedFd,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Option<Arrival> {
    let (peer, ip_slot) = admit_accepted(shared, transport, &fd)?;
    Some(Arrival {
        fd,
        admitted: Admitted::new(peer, transport, permit, ip_slot),
        token: shared.tracker.token(),
    })
}
