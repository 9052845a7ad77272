//! The churn loop for plain TCP and Unix connections on io_uring, where the kernel allows it
//! (elsewhere [`epoll`](super::epoll) runs the same slots). A cycle costs two system calls of
//! its own, `socket` and `close`; the connect, the sends and the receives are requests handed
//! to the kernel with the turn's one `io_uring_enter`.
//!
//! - A slot's connect is an `IORING_OP_CONNECT` on a fresh socket, toward the one peer address
//!   the loop keeps for all of them.
//! - The ring and its receive pool are set up, and each turn submits and waits, as in the stream
//!   loop (`bench::uring`, whose helpers both use).
//! - Once open, the slot keeps one single-shot receive armed, drawing on the ring's shared pool
//!   (`crate::sys::uring`), and sends as the stream loop does (`bench::uring`). A single-shot receive,
//!   not a multishot one: when the last reply is in, nothing is left in the kernel, so the
//!   socket closes and the next connect goes out in the same turn, with no cancel to wait for.
//! - A slot whose exchange is over, or whose connect timed out, has what it still has in the
//!   kernel cancelled; its socket closes when every request has completed.
//!
//! Memory the kernel may touch (the pool, each slot's send slot, the peer address) stays put
//! until every request has completed; if the ring fails, or cancelled requests do not complete
//! within [`REAP_LIMIT`], it is leaked rather than freed under the kernel. Every `unsafe` block
//! says why it holds.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use io_uring::{IoUring, cqueue, opcode, squeue, types};

use super::{Dialer, Starts, close, count_failure, wait_nanos, was_established};
use crate::bench::plan::{ConnPlan, ThreadCtx};
use crate::bench::stream::StreamConn;
use crate::bench::timing::SendTimes;
use crate::bench::uring::{REAP_LIMIT, SendSlot, cancel_all, ring_with_pool, send_request, turn};
use crate::sys::uring::{
    AbortOnPanic, BUF_GROUP, BUF_SIZE, COMPLETION_ENTRIES, Pool, push, take_completions,
};

/// What a completion is for, in the low byte of its `user_data`; the slot's index is above it.
const RECV: u64 = 1;
const SEND: u64 = 2;
const CANCEL: u64 = 3;
const CONNECT: u64 = 4;

fn user_data(i: usize, op: u64) -> u64 {
    ((i as u64) << 8) | op
}

/// Where a slot stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No connection: waiting for a start (open loop), a retry, or the end of the run.
    Idle,
    /// Connect under way; it is cancelled if not done by `deadline`.
    Connecting { deadline: u64 },
    /// Open and exchanging messages.
    Open,
    /// Over (done, broken, timed out or given up): its socket closes once nothing of it is
    /// left in the kernel.
    Closing,
}

/// One slot of the loop.
struct Slot<'a> {
    conn: StreamConn<'a>,
    fd: Option<OwnedFd>,
    send: Box<SendSlot>,
    phase: Phase,
    /// When the current attempt began (open loop: when it was due).
    began: u64,
    connecting: bool,
    receiving: bool,
    sending: bool,
    /// The connect was cancelled for taking too long.
    timed_out: bool,
    /// Closing: the exchange was completed, so the close is the orderly one the run asks for.
    done: bool,
}

impl Slot<'_> {
    /// Requests still in the kernel.
    fn outstanding(&self) -> bool {
        self.connecting || self.receiving || self.sending
    }
}

/// The ring, the pool and the loop's state beside its slots.
pub(crate) struct Churner<'c> {
    // Field order: the ring, which holds the pool's registration, drops first.
    ring: IoUring,
    pool: Pool,
    ctx: &'c ThreadCtx,
    dialer: &'c Dialer,
    starts: Option<&'c Starts>,
    connect_timeout: u64,
    rst: bool,
    timeouts: SendTimes,
    idle: Vec<usize>,
    retry: Vec<usize>,
    draining: bool,
}

impl<'c> Churner<'c> {
    /// A ring with its receive pool, or why this kernel (or sandbox) does not allow one.
    pub fn new(
        ctx: &'c ThreadCtx,
        dialer: &'c Dialer,
        starts: Option<&'c Starts>,
        connect_timeout: u64,
    ) -> io::Result<Churner<'c>> {
        let (ring, pool) = ring_with_pool()?;
        Ok(Churner {
            ring,
            pool,
            ctx,
            dialer,
            starts,
            connect_timeout,
            rst: ctx.churn.is_some_and(|c| c.rst),
            timeouts: SendTimes::default(),
            idle: Vec::new(),
            retry: Vec::new(),
            draining: false,
        })
    }

    /// Runs the thread's churn slots from the start of the run to its end, then adds their
    /// counts to the thread's totals.
    pub fn run(mut self, plans: Vec<ConnPlan>) {
        let ctx = self.ctx;
        let mut slots: Vec<Slot<'_>> = plans
            .into_iter()
            .map(|plan| Slot {
                conn: StreamConn::new(ctx, plan),
                fd: None,
                send: SendSlot::new(),
                phase: Phase::Idle,
                began: 0,
                connecting: false,
                receiving: false,
                sending: false,
                timed_out: false,
                done: false,
            })
            .collect();
        // Made after `slots`, so dropped before them: a panic aborts while the send slots
        // requests may still read are alive.
        let _abort_on_panic = AbortOnPanic;
        let outcome = self
            .drive(&mut slots)
            .and_then(|()| self.reap_all(&mut slots));
        // The ring failed, with requests maybe still in the kernel: the memory they point to
        // is leaked below rather than freed.
        let leak = outcome.is_err();
        if let Err(e) = &outcome {
            tracing::error!("the load thread's io_uring churn loop failed: {e}");
            for slot in slots.iter_mut().filter(|s| s.phase == Phase::Open) {
                slot.conn.broken(e);
            }
        }
        for slot in slots {
            let Slot { conn, send, fd, .. } = slot;
            conn.finish();
            if leak {
                std::mem::forget(send);
                std::mem::forget(fd);
            }
        }
        if leak {
            self.pool.leak();
            // The peer address requests may read lives in the dialer, which the caller keeps;
            // the thread ends soon after, and the ring's descriptor with it.
        }
    }

    fn drive(&mut self, slots: &mut [Slot<'_>]) -> io::Result<()> {
        let clock = self.ctx.clock;
        self.ctx.sleep_until_start();
        let mut now = clock.now();
        if self.starts.is_some() {
            self.idle = (0..slots.len()).rev().collect();
            self.start_due(slots, now);
        } else {
            for i in 0..slots.len() {
                self.dial(slots, i, now, now);
            }
        }
        let mut completions: Vec<(u64, i32, u32)> = Vec::with_capacity(COMPLETION_ENTRIES as usize);
        loop {
            let deadline = self.ctx.phase_deadline(self.draining);
            let left = if self.retry.is_empty() {
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
            turn(&mut self.ring, &mut self.pool, Duration::from_nanos(left))?;
            now = clock.now();
            take_completions(&mut self.ring, &mut completions);
            for &(data, result, flags) in &completions {
                let i = (data >> 8) as usize;
                match data & 0xff {
                    CONNECT => self.connected(slots, i, result, now),
                    RECV => self.received(slots, i, result, flags, now),
                    SEND => self.sent(slots, i, result, now),
                    _ => {}
                }
                self.close_if_quiet(slots, i, now);
            }

            for i in std::mem::take(&mut self.retry) {
                if slots[i].phase == Phase::Idle {
                    self.next(slots, i, now);
                }
            }
            while let Some((at, i)) = self.timeouts.pop_due(now) {
                if slots[i].phase == (Phase::Connecting { deadline: at }) {
                    slots[i].timed_out = true;
                    self.end(slots, i);
                }
            }
            self.start_due(slots, now);

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
    fn dial(&mut self, slots: &mut [Slot<'_>], i: usize, began: u64, now: u64) {
        let slot = &mut slots[i];
        slot.began = began;
        slot.timed_out = false;
        slot.done = false;
        let fd = match self.dialer.socket() {
            Ok(fd) => fd,
            Err(e) => {
                let measured = self.ctx.schedule().is_measured(began);
                count_failure(&mut slot.conn.flow.totals, &e, measured);
                slot.phase = Phase::Idle;
                if self.starts.is_some() {
                    self.idle.push(i);
                } else {
                    self.retry.push(i);
                }
                return;
            }
        };
        let addr = self.dialer.sockaddr();
        let connect = opcode::Connect::new(
            types::Fd(fd.as_raw_fd()),
            addr.as_ptr().cast::<libc::sockaddr>(),
            addr.len(),
        )
        .build()
        .user_data(user_data(i, CONNECT));
        // SAFETY: the request reads the peer address, which the dialer holds, unmoved, for
        // the whole loop and past every request's completion (`reap_all`).
        unsafe { push(&mut self.ring, &connect) };
        let deadline = now + self.connect_timeout;
        slot.fd = Some(fd);
        slot.connecting = true;
        slot.phase = Phase::Connecting { deadline };
        self.timeouts.push(deadline, i);
    }

    /// Slot `i`'s connect completed with `result`.
    fn connected(&mut self, slots: &mut [Slot<'_>], i: usize, result: i32, now: u64) {
        let slot = &mut slots[i];
        slot.connecting = false;
        if result == 0 && slot.phase != Phase::Closing {
            slot.phase = Phase::Open;
            slot.conn.restart(slot.began, now);
            self.arm_receive(slots, i);
            self.send(slots, i);
            return;
        }
        let e = if slot.timed_out || result == 0 {
            io::Error::new(io::ErrorKind::TimedOut, "connect timed out")
        } else {
            io::Error::from_raw_os_error(-result)
        };
        if was_established(&e) {
            // The server accepted the connection and reset it at once: opened, and broken.
            slot.conn.restart(slot.began, now);
            slot.conn.broken(&e);
        } else {
            let measured = self.ctx.schedule().is_measured(slot.began);
            count_failure(&mut slot.conn.flow.totals, &e, measured);
        }
        slot.phase = Phase::Closing;
    }

    /// A receive completion for slot `i`.
    fn received(&mut self, slots: &mut [Slot<'_>], i: usize, result: i32, flags: u32, now: u64) {
        let slot = &mut slots[i];
        slot.receiving = false;
        // Every receive into the pool is recorded, whoever it was for: with incremental
        // consumption, where a buffer's next bytes start depends on it.
        if let (1.., Some(bid)) = (result, cqueue::buffer_select(flags)) {
            let len = result as usize;
            let range = self.pool.received(bid, len, cqueue::buffer_more(flags));
            if slot.phase == Phase::Open {
                let answered = slot.conn.consume(self.pool.bytes(bid, range), now);
                self.ctx.live.add(answered, len as u64);
            }
            self.pool.give_back_if_unused(bid);
        }
        if slot.phase != Phase::Open {
            return;
        }
        match result {
            1.. => {}
            _ if -result == rustix::io::Errno::NOBUFS.raw_os_error() => {
                // The pool was empty for a moment; buffers come back within the turn.
            }
            0 if slot.conn.exchanged(now) => {}
            0 => return self.break_off(slots, i, &io::ErrorKind::UnexpectedEof.into()),
            _ => return self.break_off(slots, i, &io::Error::from_raw_os_error(-result)),
        }
        self.send(slots, i);
        self.finish_if_done(slots, i, now);
        if slots[i].phase == Phase::Open {
            self.arm_receive(slots, i);
        }
    }

    /// A send completion for slot `i`.
    fn sent(&mut self, slots: &mut [Slot<'_>], i: usize, result: i32, now: u64) {
        let slot = &mut slots[i];
        slot.sending = false;
        if slot.phase != Phase::Open {
            return;
        }
        match usize::try_from(result) {
            Ok(0) => self.break_off(slots, i, &io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                slot.conn.advance(n);
                self.send(slots, i);
                self.finish_if_done(slots, i, now);
            }
            Err(_) => self.break_off(slots, i, &io::Error::from_raw_os_error(-result)),
        }
    }

    fn arm_receive(&mut self, slots: &mut [Slot<'_>], i: usize) {
        let slot = &mut slots[i];
        let Some(fd) = &slot.fd else {
            return;
        };
        if slot.receiving {
            return;
        }
        let recv = opcode::Recv::new(
            types::Fd(fd.as_raw_fd()),
            std::ptr::null_mut(),
            BUF_SIZE as u32,
        )
        .buf_group(BUF_GROUP)
        .build()
        .flags(squeue::Flags::BUFFER_SELECT)
        .user_data(user_data(i, RECV));
        // SAFETY: the receive writes only into pool buffers, which the pool keeps until every
        // request has completed (`reap_all`), or leaks.
        unsafe { push(&mut self.ring, &recv) };
        slot.receiving = true;
    }

    /// Sends what slot `i` has queued, unless a send is already in flight.
    fn send(&mut self, slots: &mut [Slot<'_>], i: usize) {
        let slot = &mut slots[i];
        let (Phase::Open, false, Some(fd)) = (slot.phase, slot.sending, &slot.fd) else {
            return;
        };
        let fd = fd.as_raw_fd();
        let Some(send) = send_request(&mut slot.send, &slot.conn, fd, user_data(i, SEND)) else {
            return;
        };
        // SAFETY: see `send_request`; the slot's send slot is boxed and not touched again
        // until this send completes (`sending`), and is dropped only after every request has
        // completed (`reap_all`), or leaked.
        unsafe { push(&mut self.ring, &send) };
        slot.sending = true;
    }

    /// Ends slot `i`'s connection once its exchange is done: everything sent, every reply in.
    fn finish_if_done(&mut self, slots: &mut [Slot<'_>], i: usize, now: u64) {
        let slot = &slots[i];
        if slot.phase == Phase::Open && !slot.sending && slot.conn.exchanged(now) {
            slots[i].done = true;
            self.end(slots, i);
        }
    }

    fn break_off(&mut self, slots: &mut [Slot<'_>], i: usize, e: &io::Error) {
        slots[i].conn.broken(e);
        self.end(slots, i);
    }

    /// Ends slot `i`'s connection (or attempt): cancels what it has in the kernel. The socket
    /// closes once all of it has completed ([`close_if_quiet`](Self::close_if_quiet)).
    fn end(&mut self, slots: &mut [Slot<'_>], i: usize) {
        let slot = &mut slots[i];
        slot.phase = Phase::Closing;
        if let (true, Some(fd)) = (slot.outstanding(), &slot.fd) {
            cancel_all(&mut self.ring, fd.as_raw_fd(), user_data(i, CANCEL));
        }
    }

    /// Closes slot `i`'s socket if its connection is over and nothing of it is left in the
    /// kernel, and moves the slot on.
    fn close_if_quiet(&mut self, slots: &mut [Slot<'_>], i: usize, now: u64) {
        let slot = &mut slots[i];
        if slot.phase != Phase::Closing || slot.outstanding() {
            return;
        }
        if let Some(fd) = slot.fd.take() {
            // A failed or broken connection closes plainly; a finished one as the run asks.
            close(fd, self.rst && slot.done);
        }
        slot.phase = Phase::Idle;
        self.next(slots, i, now);
    }

    /// Slot `i` is free: in closed loop it connects again at once (until the measured period
    /// ends); in open loop it waits for the next scheduled start.
    fn next(&mut self, slots: &mut [Slot<'_>], i: usize, now: u64) {
        if self.starts.is_some() {
            self.idle.push(i);
            self.start_due(slots, now);
        } else if !self.draining && now < self.ctx.schedule().end {
            self.dial(slots, i, now, now);
        }
    }

    /// Open loop: starts every connection whose time has come, as far as slots are free.
    fn start_due(&mut self, slots: &mut [Slot<'_>], now: u64) {
        let Some(starts) = self.starts else {
            return;
        };
        let end = self.ctx.schedule().end;
        while let Some(&i) = self.idle.last() {
            let Some(due) = starts.take_due(now, end) else {
                break;
            };
            self.idle.pop();
            self.dial(slots, i, due, now);
        }
    }

    /// The final wait is over: replies still out are lost, connects still under way failed.
    fn give_up(&mut self, slots: &mut [Slot<'_>]) {
        for i in 0..slots.len() {
            match slots[i].phase {
                Phase::Idle | Phase::Closing => {}
                Phase::Connecting { .. } => {
                    slots[i].timed_out = true;
                    self.end(slots, i);
                }
                Phase::Open => {
                    slots[i].conn.flow.give_up();
                    self.end(slots, i);
                }
            }
        }
    }

    /// After the run: waits until no slot has a request left in the kernel, counting connects
    /// that were cancelled, so that the pool and the send slots can be freed. Requests still
    /// there after [`REAP_LIMIT`] make it an error, and the caller leaks the memory instead.
    fn reap_all(&mut self, slots: &mut [Slot<'_>]) -> io::Result<()> {
        let began = Instant::now();
        let now = self.ctx.clock.now();
        // No new connection from here on.
        self.draining = true;
        self.idle.clear();
        while slots.iter().any(Slot::outstanding) {
            let Some(left) = REAP_LIMIT.checked_sub(began.elapsed()) else {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "requests still in the kernel after cancelling them",
                ));
            };
            turn(&mut self.ring, &mut self.pool, left)?;
            let mut completions = Vec::new();
            take_completions(&mut self.ring, &mut completions);
            for (data, result, flags) in completions {
                let i = (data >> 8) as usize;
                match data & 0xff {
                    CONNECT => self.connected(slots, i, result, now),
                    RECV => self.received(slots, i, result, flags, now),
                    SEND => slots[i].sending = false,
                    _ => {}
                }
                let slot = &mut slots[i];
                if slot.phase == Phase::Open {
                    // Connected in the very last moment: nothing more is exchanged.
                    slot.conn.flow.give_up();
                    self.end(slots, i);
                }
            }
        }
        for slot in slots.iter_mut() {
            if let Some(fd) = slot.fd.take() {
                close(fd, false);
            }
            slot.phase = Phase::Idle;
        }
        Ok(())
    }
}
