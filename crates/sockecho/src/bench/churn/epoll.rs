//! The churn loop for plain TCP and Unix connections: one epoll set per load thread, in which
//! every slot's socket is connected (non-blocking `connect`, then its turn to be writable),
//! loaded, closed and replaced, with no thread, task or timer per connection.
//!
//! The loop's wait ends at the earliest of: the end of the current phase, the next connect
//! timeout (a min-heap of them), and in open loop the next scheduled connection start while a
//! slot is free. A slot's bookkeeping (its [`StreamConn`], window included) lives as long as
//! the run and starts afresh for each connection, so a cycle allocates nothing.

use std::io;

use rustix::buffer::spare_capacity;
use rustix::event::{Timespec, epoll};

use super::{Dialed, Dialer, Starts, close, connect_outcome, count_failure, wait_nanos};
use crate::bench::plan::{ConnPlan, ThreadCtx};
use crate::bench::reactor::Plain;
use crate::bench::stream::StreamConn;
use crate::bench::timing::SendTimes;

/// Events taken per `epoll_wait`.
const EVENTS: usize = 256;

/// Where a slot stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No connection: waiting for a start (open loop), a retry, or the end of the run.
    Idle,
    /// Connect under way; it fails if not done by `deadline`.
    Connecting { deadline: u64 },
    /// Open and exchanging messages.
    Open,
}

/// One slot of the loop.
struct Slot<'a> {
    conn: StreamConn<'a>,
    /// The socket, while connecting or open.
    wire: Option<Plain>,
    phase: Phase,
    /// When the current attempt began (open loop: when it was due).
    began: u64,
    /// Every queued message is written.
    all_out: bool,
    /// epoll reported the peer's end (RDHUP, HUP or ERR). Edge-triggered, it says so once,
    /// and possibly in the same event as the last bytes before it.
    hung_up: bool,
}

/// The loop's state beside its slots.
struct Churner<'c> {
    ctx: &'c ThreadCtx,
    dialer: &'c Dialer,
    /// Open loop: the thread's connection starts. `None`: a slot reconnects at once.
    starts: Option<&'c Starts>,
    connect_timeout: u64,
    rst: bool,
    /// Connect deadlines, earliest first; stale entries are told by the slot's own deadline.
    timeouts: SendTimes,
    /// Open loop: free slots, waiting for a start.
    idle: Vec<usize>,
    /// Closed loop: slots whose attempt failed at once, dialled again next turn (not at once,
    /// so a refusing server does not keep the loop from waiting on the others).
    retry: Vec<usize>,
    /// The measured period is over: no new connection starts.
    draining: bool,
}

/// Runs a thread's churn slots from the start of the run to its end, then adds their counts
/// to the thread's totals.
pub(crate) fn run(
    ctx: &ThreadCtx,
    plans: Vec<ConnPlan>,
    dialer: &Dialer,
    starts: Option<&Starts>,
    connect_timeout: u64,
) {
    let mut slots: Vec<Slot<'_>> = plans
        .into_iter()
        .map(|plan| Slot {
            conn: StreamConn::new(ctx, plan),
            wire: None,
            phase: Phase::Idle,
            began: 0,
            all_out: true,
            hung_up: false,
        })
        .collect();
    let mut churner = Churner {
        ctx,
        dialer,
        starts,
        connect_timeout,
        rst: ctx.churn.is_some_and(|c| c.rst),
        timeouts: SendTimes::default(),
        idle: Vec::new(),
        retry: Vec::new(),
        draining: false,
    };
    if let Err(e) = churner.drive(&mut slots) {
        tracing::error!("the load thread's churn loop failed: {e}");
        for slot in &mut slots {
            if slot.phase == Phase::Open {
                slot.conn.broken(&e);
            }
        }
    }
    for slot in slots {
        slot.conn.finish();
    }
}

impl Churner<'_> {
    fn drive(&mut self, slots: &mut [Slot<'_>]) -> io::Result<()> {
        let clock = self.ctx.clock;
        let ep = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        self.ctx.sleep_until_start();
        let mut now = clock.now();
        if self.starts.is_some() {
            self.idle = (0..slots.len()).rev().collect();
            self.start_due(&ep, slots, now)?;
        } else {
            for i in 0..slots.len() {
                self.dial(&ep, slots, i, now, now)?;
            }
        }

        let mut again: Vec<usize> = Vec::new();
        let mut turn: Vec<usize> = Vec::new();
        let mut events = Vec::with_capacity(EVENTS);
        loop {
            let deadline = self.ctx.phase_deadline(self.draining);
            let left = if again.is_empty() && self.retry.is_empty() {
                let slot_idle = !self.idle.is_empty();
                wait_nanos(
                    deadline,
                    &self.timeouts,
                    self.starts,
                    slot_idle,
                    clock.now(),
                )
            } else {
                0
            };
            let wait = Timespec {
                tv_sec: (left / 1_000_000_000) as i64,
                tv_nsec: (left % 1_000_000_000) as i64,
            };
            events.clear();
            match epoll::wait(&ep, spare_capacity(&mut events), Some(&wait)) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
            now = clock.now();

            std::mem::swap(&mut again, &mut turn);
            again.clear();
            for event in &events {
                let i = event.data.u64() as usize;
                let flags = event.flags;
                match slots[i].phase {
                    Phase::Idle => {}
                    Phase::Connecting { .. } => {
                        if flags.intersects(
                            epoll::EventFlags::OUT
                                | epoll::EventFlags::ERR
                                | epoll::EventFlags::HUP,
                        ) {
                            self.connected(&ep, slots, i, now)?;
                        }
                    }
                    Phase::Open => {
                        slots[i].hung_up |= flags.intersects(
                            epoll::EventFlags::RDHUP
                                | epoll::EventFlags::HUP
                                | epoll::EventFlags::ERR,
                        );
                        let readable = flags.intersects(
                            epoll::EventFlags::IN
                                | epoll::EventFlags::RDHUP
                                | epoll::EventFlags::HUP
                                | epoll::EventFlags::ERR,
                        );
                        if !slots[i].all_out && flags.contains(epoll::EventFlags::OUT) {
                            self.flush(&ep, slots, i, now)?;
                        }
                        // A slot also carried over from last turn is read below, once.
                        if readable && !turn.contains(&i) {
                            self.read(&ep, slots, i, now, &mut again)?;
                        }
                    }
                }
            }
            // Slots that stopped reading at the cap last turn: their bytes bring no new edge.
            for &i in &turn {
                self.read(&ep, slots, i, now, &mut again)?;
            }
            turn.clear();

            for i in std::mem::take(&mut self.retry) {
                if slots[i].phase == Phase::Idle {
                    self.next(&ep, slots, i, now)?;
                }
            }
            while let Some((at, i)) = self.timeouts.pop_due(now) {
                if slots[i].phase == (Phase::Connecting { deadline: at }) {
                    let e = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
                    self.failed(slots, i, &e);
                    self.next(&ep, slots, i, now)?;
                }
            }
            self.start_due(&ep, slots, now)?;

            if now >= deadline {
                if self.draining {
                    self.give_up(slots);
                    return Ok(());
                }
                self.draining = true;
            }
            if self.draining && slots.iter().all(|s| s.phase == Phase::Idle) {
                return Ok(());
            }
        }
    }

    /// Begins a connection in slot `i`, whose attempt began (or was due) at `began`.
    fn dial(
        &mut self,
        ep: &impl rustix::fd::AsFd,
        slots: &mut [Slot<'_>],
        i: usize,
        began: u64,
        now: u64,
    ) -> io::Result<()> {
        let slot = &mut slots[i];
        slot.began = began;
        slot.hung_up = false;
        match self.dialer.dial() {
            Dialed::Pending(fd) => {
                let flags = epoll::EventFlags::IN
                    | epoll::EventFlags::OUT
                    | epoll::EventFlags::RDHUP
                    | epoll::EventFlags::ET;
                epoll::add(ep, &fd, epoll::EventData::new_u64(i as u64), flags)?;
                let deadline = now + self.connect_timeout;
                slot.wire = Some(Plain::new(fd));
                slot.phase = Phase::Connecting { deadline };
                self.timeouts.push(deadline, i);
            }
            Dialed::Failed(e) => {
                slot.phase = Phase::Connecting { deadline: now };
                self.failed(slots, i, &e);
                if self.starts.is_some() {
                    self.idle.push(i);
                } else {
                    self.retry.push(i);
                }
            }
        }
        Ok(())
    }

    /// Slot `i`'s socket turned writable (or failed) while connecting.
    fn connected(
        &mut self,
        ep: &impl rustix::fd::AsFd,
        slots: &mut [Slot<'_>],
        i: usize,
        now: u64,
    ) -> io::Result<()> {
        let slot = &mut slots[i];
        let Some(wire) = &slot.wire else {
            return Ok(());
        };
        match connect_outcome(wire.fd()) {
            Ok(()) => {
                slot.phase = Phase::Open;
                slot.conn.restart(slot.began, now);
                slot.all_out = false;
                self.flush(ep, slots, i, now)
            }
            Err(e) if super::was_established(&e) => {
                // The handshake completed and the server reset the connection before this
                // turn saw it open: it was opened, and broke.
                slot.phase = Phase::Open;
                slot.conn.restart(slot.began, now);
                self.broken(ep, slots, i, &e, now)
            }
            Err(e) => {
                self.failed(slots, i, &e);
                self.next(ep, slots, i, now)
            }
        }
    }

    /// Counts slot `i`'s attempt as failed and drops its socket.
    fn failed(&mut self, slots: &mut [Slot<'_>], i: usize, e: &io::Error) {
        let slot = &mut slots[i];
        let measured = self.ctx.schedule().is_measured(slot.began);
        count_failure(&mut slot.conn.flow.totals, e, measured);
        slot.wire = None;
        slot.phase = Phase::Idle;
    }

    /// Writes what slot `i` has queued, then closes it if it is done.
    fn flush(
        &mut self,
        ep: &impl rustix::fd::AsFd,
        slots: &mut [Slot<'_>],
        i: usize,
        now: u64,
    ) -> io::Result<()> {
        let slot = &mut slots[i];
        let Some(wire) = slot.wire.as_mut() else {
            return Ok(());
        };
        match slot.conn.flush(wire) {
            Ok(all_out) => {
                slot.all_out = all_out;
                self.settle(ep, slots, i, now)
            }
            Err(e) => self.broken(ep, slots, i, &e, now),
        }
    }

    /// Reads what has arrived on slot `i` and writes what the replies made room for.
    fn read(
        &mut self,
        ep: &impl rustix::fd::AsFd,
        slots: &mut [Slot<'_>],
        i: usize,
        now: u64,
        again: &mut Vec<usize>,
    ) -> io::Result<()> {
        let slot = &mut slots[i];
        let (Phase::Open, Some(wire)) = (slot.phase, slot.wire.as_mut()) else {
            return Ok(());
        };
        let mut result = slot.conn.read(wire);
        // As in the stream loop (`reactor`): a short read stops at the end of the bytes
        // queued, before a FIN queued behind them, and no further edge will come for that end.
        // Once epoll has reported it, one more read meets it now, or a connection the server
        // closed before its exchange was done would wait out the run. One that is done may
        // meet that end unread.
        if slot.hung_up
            && matches!(result, Ok(ref reads) if !reads.more)
            && !slot.conn.exchanged(now)
        {
            result = slot.conn.read(wire);
        }
        match result {
            Ok(reads) => {
                if reads.more {
                    again.push(i);
                }
                self.flush(ep, slots, i, reads.at.unwrap_or(now))
            }
            Err(e) => self.broken(ep, slots, i, &e, now),
        }
    }

    /// The server closed or reset slot `i`'s connection before its exchange was done.
    fn broken(
        &mut self,
        ep: &impl rustix::fd::AsFd,
        slots: &mut [Slot<'_>],
        i: usize,
        e: &io::Error,
        now: u64,
    ) -> io::Result<()> {
        let slot = &mut slots[i];
        slot.conn.broken(e);
        slot.wire = None;
        slot.phase = Phase::Idle;
        self.next(ep, slots, i, now)
    }

    /// Closes slot `i`'s connection if its exchange is done, and opens the next.
    fn settle(
        &mut self,
        ep: &impl rustix::fd::AsFd,
        slots: &mut [Slot<'_>],
        i: usize,
        now: u64,
    ) -> io::Result<()> {
        let slot = &mut slots[i];
        if slot.phase != Phase::Open || !slot.all_out || !slot.conn.exchanged(now) {
            return Ok(());
        }
        if let Some(wire) = slot.wire.take() {
            close(wire.into_fd(), self.rst);
        }
        slot.phase = Phase::Idle;
        self.next(ep, slots, i, now)
    }

    /// Slot `i` is free: in closed loop it connects again at once (until the measured period
    /// ends); in open loop it waits for the next scheduled start.
    fn next(
        &mut self,
        ep: &impl rustix::fd::AsFd,
        slots: &mut [Slot<'_>],
        i: usize,
        now: u64,
    ) -> io::Result<()> {
        if self.starts.is_some() {
            self.idle.push(i);
            return self.start_due(ep, slots, now);
        }
        if !self.draining && now < self.ctx.schedule().end {
            self.dial(ep, slots, i, now, now)?;
        }
        Ok(())
    }

    /// Open loop: starts every connection whose time has come, as far as slots are free.
    fn start_due(
        &mut self,
        ep: &impl rustix::fd::AsFd,
        slots: &mut [Slot<'_>],
        now: u64,
    ) -> io::Result<()> {
        let Some(starts) = self.starts else {
            return Ok(());
        };
        let end = self.ctx.schedule().end;
        while let Some(&i) = self.idle.last() {
            let Some(due) = starts.take_due(now, end) else {
                break;
            };
            self.idle.pop();
            self.dial(ep, slots, i, due, now)?;
        }
        Ok(())
    }

    /// The final wait is over: replies still out are lost, connects still under way failed.
    fn give_up(&mut self, slots: &mut [Slot<'_>]) {
        for i in 0..slots.len() {
            match slots[i].phase {
                Phase::Idle => {}
                Phase::Connecting { .. } => {
                    let e = io::Error::new(io::ErrorKind::TimedOut, "the run ended first");
                    self.failed(slots, i, &e);
                }
                Phase::Open => {
                    let slot = &mut slots[i];
                    slot.conn.flow.give_up();
                    slot.wire = None;
                    slot.phase = Phase::Idle;
                }
            }
        }
    }
}
