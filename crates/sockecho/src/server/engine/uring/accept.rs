//! Accepting on the ring: the engine keeps one multishot accept armed on each plain listener
//! it was given, so a new connection arrives as a completion on the thread that serves it and
//! its first receive goes out in the same turn — no tokio wake-up, no hand-over between
//! threads, no `TCP_NODELAY` call (the listener's is inherited).
//!
//! It applies what the tokio accept loop applies, in the same order and with the same counters
//! and log lines: a `--max-conns` permit (a connection that arrives when none is left waits,
//! unserved, and accepting pauses until a permit comes back — checked when a connection of this
//! engine ends and at every timer tick, since other workers' connections hold permits too),
//! `--allow`/`--deny`, `--max-conns-per-ip`, the accept error classes with their backoff, and
//! on shutdown one last non-blocking sweep of the backlog before the listeners are closed.
//!
//! A peer's address is looked up (one `getpeername`) only when admission or the connection log
//! needs it.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Instant;

use io_uring::{IoUring, opcode, types};
use tokio::sync::{OwnedSemaphorePermit, oneshot};

use super::ops::{ENGINE_SLOT, Op, user_data};
use crate::server::admission::{AcceptErrors, AfterFailure, admit_accepted};
use crate::server::conn::Admitted;
use crate::server::engine::inbox::{Arrival, ListenerArrival};
use crate::server::shared::Shared;
use crate::sys::uring::push;
use crate::{Endpoint, Transport};

/// One listener the engine accepts on.
pub(super) struct RingListener {
    fd: OwnedFd,
    endpoint: Endpoint,
    transport: Transport,
    /// A multishot accept is in the kernel (until its last completion, without `F_MORE`).
    armed: bool,
    /// Its cancel has been asked for.
    cancelling: bool,
    /// Accepted while no `--max-conns` permit was left: served, oldest first, as permits come
    /// back. At most what arrived before the pause took effect.
    waiting: VecDeque<OwnedFd>,
    /// Accept errors since the last success, and the backoff they have led to.
    errors: AcceptErrors,
    /// Not armed again before this, after errors that call for backing off.
    retry_at: Option<Instant>,
    /// Broken for good: no more accepting on it.
    broken: bool,
}

/// What accepting needs of the engine for one step: its ring, the server's shared state, and
/// the time of the turn.
pub(super) struct Turn<'a> {
    pub(super) ring: &'a mut IoUring,
    pub(super) shared: &'a Shared,
    pub(super) now: Instant,
}

/// The listeners of one engine and what it owes the side that handed them over.
#[derive(Default)]
pub(super) struct Accepting {
    listeners: Vec<RingListener>,
    /// Connections admitted and not yet taken by the engine (see [`Accepting::next_admitted`]).
    admitted: Vec<Arrival>,
    /// Told when accepting has ended.
    done: Option<oneshot::Sender<Vec<(OwnedFd, Endpoint)>>>,
    /// Shutdown has started: the backlog has been swept, and no accept is armed again.
    ended: bool,
}

impl Accepting {
    /// Whether some listener is paused — waiting for a permit, or backing off — and so needs
    /// the timer's ticks to look again (permits come back from other workers' connections too,
    /// which this engine does not see end).
    pub(super) fn paused(&self) -> bool {
        !self.ended && self.listeners.iter().any(|l| !l.broken && !l.armed)
    }

    /// Whether an accept request is still in the kernel.
    pub(super) fn armed(&self) -> bool {
        self.listeners.iter().any(|l| l.armed)
    }

    /// The listeners still open, to be served elsewhere after the engine failed; and who is
    /// to be told.
    pub(super) fn give_back(&mut self) {
        let listeners = std::mem::take(&mut self.listeners);
        if let Some(done) = self.done.take() {
            let back = if self.ended {
                Vec::new()
            } else {
                listeners
                    .into_iter()
                    .filter(|l| !l.broken)
                    .map(|l| (l.fd, l.endpoint))
                    .collect()
            };
            let _ = done.send(back);
        }
    }
}

impl Accepting {
    /// Takes the connections admitted since the last call, to be served.
    pub(super) fn next_admitted(&mut self) -> Option<Arrival> {
        self.admitted.pop()
    }

    /// Takes over listeners handed to the engine, and starts accepting on them.
    pub(super) fn take_listeners(&mut self, turn: Turn<'_>, arrival: ListenerArrival) {
        let ListenerArrival { listeners, done } = arrival;
        if self.done.is_some() || self.ended {
            // One hand-over per engine; a late one is given straight back.
            let _ = done.send(if self.ended { Vec::new() } else { listeners });
            return;
        }
        self.done = Some(done);
        self.listeners
            .extend(listeners.into_iter().map(|(fd, endpoint)| RingListener {
                fd,
                transport: endpoint.transport(),
                endpoint,
                armed: false,
                cancelling: false,
                waiting: VecDeque::new(),
                errors: AcceptErrors::default(),
                retry_at: None,
                broken: false,
            }));
        self.arm(turn);
    }

    /// Arms an accept on every listener that should have one: not already armed, no
    /// connection waiting for a permit, not backing off, a permit free, and not shutting down.
    pub(super) fn arm(&mut self, turn: Turn<'_>) {
        if self.ended {
            return;
        }
        let permits = turn.shared.slots.available_permits() > 0;
        for (index, listener) in self.listeners.iter_mut().enumerate() {
            if listener.armed || listener.broken || !listener.waiting.is_empty() {
                continue;
            }
            if listener.retry_at.is_some_and(|at| turn.now < at) || !permits {
                continue;
            }
            listener.retry_at = None;
            let entry = opcode::AcceptMulti::new(types::Fd(listener.fd.as_raw_fd()))
                .flags(libc::SOCK_CLOEXEC)
                .build()
                .user_data(user_data(index as u32, 0, Op::Accept));
            listener.armed = true;
            listener.cancelling = false;
            // SAFETY: an accept without an address buffer points to no memory.
            unsafe { push(turn.ring, &entry) };
        }
    }

    /// Asks the kernel to end the multishot accept on listener `index`.
    fn cancel(&mut self, ring: &mut IoUring, index: usize) {
        let listener = &mut self.listeners[index];
        if !listener.armed || listener.cancelling {
            return;
        }
        listener.cancelling = true;
        let cancel = opcode::AsyncCancel::new(user_data(index as u32, 0, Op::Accept))
            .build()
            .user_data(user_data(ENGINE_SLOT, 0, Op::Cancel));
        // SAFETY: a cancel points to no memory.
        unsafe { push(ring, &cancel) };
    }

    /// An accept completion for listener `index`.
    pub(super) fn completed(&mut self, turn: Turn<'_>, index: u32, result: i32, more: bool) {
        let index = index as usize;
        let Some(listener) = self.listeners.get_mut(index) else {
            return;
        };
        if !more {
            listener.armed = false;
            listener.cancelling = false;
        }
        if result >= 0 {
            // SAFETY: a successful accept completion carries a descriptor the kernel has just
            // installed for this process, which nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(result) };
            self.on_accepted(&mut *turn.ring, turn.shared, index, fd);
        } else if -result != libc::ECANCELED {
            let err = io::Error::from_raw_os_error(-result);
            self.failed(&mut *turn.ring, turn.shared, turn.now, index, err);
        }
        if self.ended {
            self.end_when_quiet();
        } else if !more {
            self.arm(turn);
        }
    }

    /// A new connection on listener `index`: served if a permit is free, else kept waiting.
    fn on_accepted(&mut self, ring: &mut IoUring, shared: &Shared, index: usize, fd: OwnedFd) {
        let listener = &mut self.listeners[index];
        listener.errors.succeeded();
        if !listener.waiting.is_empty() {
            listener.waiting.push_back(fd);
            return;
        }
        match shared.slots.clone().try_acquire_owned() {
            Ok(permit) => self.admit_new(shared, index, fd, permit),
            Err(_) => {
                // Out of permits: this one waits, and so does accepting, as the tokio loop's
                // clients wait in the backlog.
                self.listeners[index].waiting.push_back(fd);
                self.cancel(ring, index);
            }
        }
    }

    /// Serves the connections waiting for permits as far as permits allow, then arms the
    /// accepts that can be armed. Called when a connection ends and at every tick.
    pub(super) fn resume(&mut self, turn: Turn<'_>) {
        for index in 0..self.listeners.len() {
            while !self.listeners[index].waiting.is_empty() {
                let Ok(permit) = turn.shared.slots.clone().try_acquire_owned() else {
                    return;
                };
                let Some(fd) = self.listeners[index].waiting.pop_front() else {
                    break;
                };
                self.admit_new(turn.shared, index, fd, permit);
            }
        }
        self.arm(turn);
    }

    /// Applies the access rules and the per-address limit, then starts serving.
    fn admit_new(
        &mut self,
        shared: &Shared,
        index: usize,
        fd: OwnedFd,
        permit: OwnedSemaphorePermit,
    ) {
        let transport = self.listeners[index].transport;
        // Refused (or already failed): dropping it closes it at once.
        let Some((peer, ip_slot)) = admit_accepted(shared, transport, &fd) else {
            return;
        };
        self.admitted.push(Arrival {
            fd,
            admitted: Admitted::new(peer, transport, permit, ip_slot),
            token: shared.tracker.token(),
        });
    }

    /// An accept error on listener `index`: the same classes, counters, logs and backoff as
    /// the tokio accept loop's.
    fn failed(
        &mut self,
        ring: &mut IoUring,
        shared: &Shared,
        now: Instant,
        index: usize,
        err: io::Error,
    ) {
        let listener = &mut self.listeners[index];
        let counters = shared.counters.transport(listener.transport);
        match listener.errors.failed(&err, &listener.endpoint, counters) {
            AfterFailure::GiveUp => listener.broken = true,
            // A multishot accept that is still armed goes on by itself.
            AfterFailure::Retry => return,
            AfterFailure::BackOff(pause) => listener.retry_at = Some(now + pause),
        }
        self.cancel(ring, index);
    }

    /// Shutdown has started: stop accepting, but first take what the kernel already queued —
    /// the connections waiting for permits, then one non-blocking sweep of each backlog (those
    /// clients' handshakes completed before the shutdown; closing the listener would reset
    /// them, losing what they sent) — as far as permits allow.
    pub(super) fn stop(&mut self, turn: Turn<'_>) {
        if self.ended {
            return;
        }
        self.ended = true;
        for index in 0..self.listeners.len() {
            self.cancel(turn.ring, index);
        }
        'listeners: for index in 0..self.listeners.len() {
            loop {
                let Ok(permit) = turn.shared.slots.clone().try_acquire_owned() else {
                    break 'listeners;
                };
                let listener = &mut self.listeners[index];
                let fd = match listener.waiting.pop_front() {
                    Some(fd) => fd,
                    None if listener.broken => break,
                    None => match rustix::net::accept_with(
                        &listener.fd,
                        rustix::net::SocketFlags::CLOEXEC,
                    ) {
                        Ok(fd) => fd,
                        // Empty (EAGAIN), or failing: either way the sweep of this one is over.
                        Err(_) => break,
                    },
                };
                self.admit_new(turn.shared, index, fd, permit);
            }
        }
        self.end_when_quiet();
    }

    /// Once no accept request is left in the kernel after shutdown started: closes the
    /// listeners (and any connection still waiting for a permit), and tells the accepting side.
    fn end_when_quiet(&mut self) {
        if !self.ended || self.armed() {
            return;
        }
        for listener in &self.listeners {
            tracing::debug!("stopped accepting on {}", listener.endpoint);
        }
        self.give_back();
    }
}
