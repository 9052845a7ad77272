//! [`UringEngine`]: the ring loop of one engine thread. It owns the ring, the receive pool and
//! the connection table; each turn it submits the new requests, waits for completions, and
//! feeds each one to its connection's [`ConnState`], turning the [`Action`]s that come back
//! into requests.

use std::io;
use std::os::fd::{AsRawFd, IntoRawFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use io_uring::{IoUring, cqueue, opcode, types};

use super::accept::{Accepting, Turn};
use super::conn::{Chunk, Spare, UringConn};
use super::ops::{ENGINE_SLOT, Op, split_user_data, user_data};
use super::state::{Action, ConnState, Keep, Sent, Tick};
use crate::server::conn::ConnLog;
use crate::server::engine::common::{Engine, Table, tick_period};
use crate::server::engine::inbox::{Arrival, Inbox};
use crate::server::shared::Shared;
use crate::stats::TransportCounters;
use crate::sys::uring::{
    BUF_COUNT, COMPLETION_ENTRIES, Pool, new_ring, push, register_pool, take_completions, transient,
};

/// Ended connections' spares kept for the next ones at most: enough for a burst of churn, and
/// nothing while connections stay open (an idle connection's slot holds none).
const SPARES_KEPT: usize = 1024;

/// The engine proper: owned by its thread.
pub(crate) struct UringEngine {
    // Field order is drop order: the io_uring goes first, ending every request, before the
    // memory the requests point into (pool, eventfd buffer, timer).
    ring: IoUring,
    pool: Pool,
    inbox: Arc<Inbox>,
    shared: Arc<Shared>,
    /// The connections, by slot (a request's `user_data` names its connection's slot and
    /// generation).
    conns: Table<UringConn>,
    /// What ended connections left for new ones (see [`Spare`]).
    spares: Vec<Spare>,
    /// Filled by the `Wake` request; boxed so its address stays put.
    wake_buf: Box<[u8; 8]>,
    wake_armed: bool,
    /// The timer's period; boxed so its address stays put while the request is queued.
    tick: Box<types::Timespec>,
    tick_armed: bool,
    /// When shutdown started, if it has.
    draining: Option<Instant>,
    cut: bool,
    now: Instant,
    /// The listeners the engine accepts on itself.
    accepting: Accepting,
}

impl UringEngine {
    fn arm_wake(&mut self) {
        let entry = opcode::Read::new(
            types::Fd(self.inbox.wake.as_raw_fd()),
            self.wake_buf.as_mut_ptr(),
            8,
        )
        .build()
        .user_data(user_data(ENGINE_SLOT, 0, Op::Wake));
        // SAFETY: `wake_buf` is boxed in `self` and only written by this request.
        unsafe { push(&mut self.ring, &entry) };
        self.wake_armed = true;
    }

    fn arm_tick(&mut self) {
        if self.tick_armed {
            return;
        }
        let needed = (self.conns.len() > 0
            && (self.draining.is_some() || self.shared.config.idle_timeout.is_some()))
            || self.accepting.paused();
        if !needed {
            return;
        }
        let entry = opcode::Timeout::new(&*self.tick)
            .build()
            .user_data(user_data(ENGINE_SLOT, 0, Op::Tick));
        // SAFETY: the timespec is boxed in `self` and never changed.
        unsafe { push(&mut self.ring, &entry) };
        self.tick_armed = true;
    }

    /// Before the engine exits, with no connection left: cancels its own requests (the wake-up
    /// read and the timer) and waits for them to end, so that nothing in the kernel still points
    /// at `wake_buf` or `tick` when they are freed.
    fn quiesce(&mut self) -> io::Result<()> {
        for (armed, op) in [(self.wake_armed, Op::Wake), (self.tick_armed, Op::Tick)] {
            if armed {
                let cancel = opcode::AsyncCancel::new(user_data(ENGINE_SLOT, 0, op))
                    .build()
                    .user_data(user_data(ENGINE_SLOT, 0, Op::Cancel));
                // SAFETY: a cancel points to no memory.
                unsafe { push(&mut self.ring, &cancel) };
            }
        }
        while self.wake_armed || self.tick_armed {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INTR.raw_os_error()) => {}
                Err(e) => return Err(e),
            }
            for completion in self.ring.completion() {
                match split_user_data(completion.user_data()) {
                    (ENGINE_SLOT, _, Some(Op::Wake)) => self.wake_armed = false,
                    (ENGINE_SLOT, _, Some(Op::Tick)) => self.tick_armed = false,
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Handles one completion.
    fn complete(&mut self, data: u64, result: i32, flags: u32) {
        let (slot, generation, op) = split_user_data(data);
        let Some(op) = op else { return };
        if op == Op::Accept {
            let (accepting, turn) = self.accepting_turn();
            accepting.completed(turn, slot, result, cqueue::more(flags));
            self.serve_admitted();
            return;
        }
        if slot == ENGINE_SLOT {
            match op {
                Op::Wake => {
                    self.wake_armed = false;
                    self.arm_wake();
                    self.on_wake();
                }
                Op::Tick => {
                    self.tick_armed = false;
                    self.on_tick();
                }
                _ => {}
            }
            return;
        }
        // Every receive into the pool is recorded in completion order, whoever it was for: with
        // incremental consumption, where a buffer's next bytes start depends on it.
        let received = match (op, cqueue::buffer_select(flags)) {
            (Op::Recv, Some(bid)) if result > 0 => {
                let range = self
                    .pool
                    .received(bid, result as usize, cqueue::buffer_more(flags));
                Some((bid, range))
            }
            _ => None,
        };
        let Some(conn) = self.conns.get_current(slot, generation) else {
            // Not expected: a connection ends only when all its requests have completed.
            if let Some((bid, _)) = received {
                self.pool.give_back_if_unused(bid);
            }
            return;
        };
        let more = cqueue::more(flags);
        match op {
            Op::Recv => {
                if !more {
                    conn.state.recv_ended();
                }
                self.on_received(slot, result, received);
            }
            Op::Send => {
                conn.state.send_completed();
                self.on_sent(slot, result);
            }
            Op::PollOut => conn.state.writable(),
            Op::Cancel => conn.state.cancel_completed(),
            Op::Wake | Op::Tick | Op::Accept | Op::Close => {}
        }
        self.advance(slot);
    }

    fn conn(&mut self, slot: u32) -> Option<&mut UringConn> {
        self.conns.get_mut(slot).map(|(conn, _)| conn)
    }

    /// A receive completion: `received` is the buffer and byte range it filled, if any.
    fn on_received(
        &mut self,
        slot: u32,
        result: i32,
        received: Option<(u16, std::ops::Range<usize>)>,
    ) {
        if let Some((bid, range)) = received {
            let pool = &mut self.pool;
            let Some((conn, _)) = self.conns.get_mut(slot) else {
                pool.give_back_if_unused(bid);
                return;
            };
            let keep = conn.state.received(range.len(), self.now);
            if keep == Keep::Discard {
                pool.give_back_if_unused(bid);
                return;
            }
            let n = range.len() as u64;
            conn.log.bytes += n;
            // Counted as it arrives, so metrics move while the connection is open.
            conn.log.counted += n;
            TransportCounters::add(
                &self
                    .shared
                    .counters
                    .transport(conn.admitted.transport)
                    .stream_bytes,
                n,
            );
            if self.shared.config.log_data {
                let data = pool.bytes(bid, range.clone());
                tracing::info!(target: crate::DATA_LOG, "{}: {}", conn.admitted.peer, crate::server::peer_text::escaped(data));
            }
            if keep == Keep::Pooled {
                conn.queue_pooled(pool, bid, range);
            } else {
                conn.queue_copied(pool, bid, range);
            }
            return;
        }
        let Some(conn) = self.conn(slot) else { return };
        match result {
            0 => conn.state.peer_closed(),
            1.. => {} // a receive always comes with its buffer
            _ => conn.state.recv_failed(-result),
        }
    }

    fn on_sent(&mut self, slot: u32, result: i32) {
        let now = self.now;
        let pool = &mut self.pool;
        let Some((conn, generation)) = self.conns.get_mut(slot) else {
            return;
        };
        let (sent, stalled) = match conn.state.sent(result, conn.send_len as usize, now) {
            Sent::Closing => return,
            Sent::Done(sent) => (sent, false),
            Sent::Stalled(sent) => (sent, true),
        };
        conn.drop_sent(sent, pool);
        if !stalled {
            return;
        }
        // The peer's socket is full: keep the rest out of the pool and wait until the socket
        // is writable. (No send is in flight: this was it.)
        conn.move_out_of_pool(pool);
        let entry = opcode::PollAdd::new(types::Fd(conn.fd.as_raw_fd()), libc::POLLOUT as u32)
            .build()
            .user_data(user_data(slot, generation, Op::PollOut));
        // SAFETY: a poll points to no memory.
        unsafe { push(&mut self.ring, &entry) };
    }

    /// Asks a connection's state for its next requests and queues them; ends it when it is done.
    fn advance(&mut self, slot: u32) {
        let Some((conn, generation)) = self.conns.get_mut(slot) else {
            return;
        };
        debug_assert_eq!(conn.queue.is_empty(), conn.state.queued() == 0);
        let (request, op) = match conn.state.next() {
            Action::Nothing => return,
            Action::End => return self.end(slot),
            Action::ArmRecv => (conn.recv_request(), Op::Recv),
            Action::Send => (conn.send_request(&self.pool), Op::Send),
            // The armed receive's `user_data` names it.
            Action::CancelRecv => (
                opcode::AsyncCancel::new(user_data(slot, generation, Op::Recv)).build(),
                Op::Cancel,
            ),
            Action::CancelAll => (conn.cancel_all_request(), Op::Cancel),
        };
        let request = request.user_data(user_data(slot, generation, op));
        // SAFETY: a connection's requests point only at memory that outlives them: see
        // `UringConn::send_request`; the others point at none, or at pool buffers the kernel
        // picks itself.
        unsafe { push(&mut self.ring, &request) };
    }

    /// Takes the handed-over connections and listeners, and acts on drain and cut.
    fn on_wake(&mut self) {
        self.take_arrivals();
        if self.inbox.drain.load(Ordering::Acquire) && self.draining.is_none() {
            self.draining = Some(Instant::now());
            let (accepting, turn) = self.accepting_turn();
            accepting.stop(turn);
            self.serve_admitted();
        }
        if self.inbox.cut.load(Ordering::Acquire) && !self.cut {
            self.cut = true;
            for slot in 0..self.conns.slots() {
                if let Some(conn) = self.conn(slot)
                    && conn.state.cut()
                {
                    self.advance(slot);
                }
            }
        }
    }

    fn take_arrivals(&mut self) {
        let (arrivals, listeners) = self.inbox.take();
        for arrival in arrivals {
            self.insert(arrival);
        }
        for arrival in listeners {
            let (accepting, turn) = self.accepting_turn();
            accepting.take_listeners(turn, arrival);
        }
        self.arm_tick();
    }

    /// Accepting, with what it needs of the engine for one step (disjoint borrows of `self`).
    fn accepting_turn(&mut self) -> (&mut Accepting, Turn<'_>) {
        let turn = Turn {
            ring: &mut self.ring,
            shared: &self.shared,
            now: self.now,
        };
        (&mut self.accepting, turn)
    }

    /// Serves the connections accepting has admitted, then arms the timer if accepting is
    /// paused.
    fn serve_admitted(&mut self) {
        while let Some(arrival) = self.accepting.next_admitted() {
            self.insert(arrival);
        }
        self.arm_tick();
    }

    /// Serves connections waiting for permits if permits came back, and arms the accepts that
    /// were paused.
    fn resume_accepts(&mut self) {
        let (accepting, turn) = self.accepting_turn();
        accepting.resume(turn);
        self.serve_admitted();
    }

    /// Starts serving an admitted connection.
    fn insert(&mut self, arrival: Arrival) {
        let Arrival {
            fd,
            admitted,
            token,
        } = arrival;
        let log = ConnLog::opened(&admitted, &self.shared);
        let mut state = ConnState::new(self.now);
        if self.cut {
            state.cut();
        }
        let spare = self.spares.pop().unwrap_or_default();
        let slot = self
            .conns
            .insert(UringConn::new(fd, admitted, log, token, state, spare));
        self.advance(slot);
        self.arm_tick();
    }

    /// Idle timeouts, and the drain's half-close once a connection has been quiet.
    fn on_tick(&mut self) {
        let now = self.now;
        let idle = self.shared.config.idle_timeout;
        let draining = self.draining;
        for slot in 0..self.conns.slots() {
            let Some(conn) = self.conn(slot) else {
                continue;
            };
            match conn.state.tick(now, idle, draining) {
                Tick::Nothing => continue,
                Tick::Close => {}
                Tick::HalfClose => {
                    let _ = rustix::net::shutdown(&conn.fd, rustix::net::Shutdown::Write);
                }
            }
            self.advance(slot);
        }
        if self.accepting.paused() {
            self.resume_accepts();
        }
        self.arm_tick();
    }

    /// Closes a connection whose requests have all completed, and logs its end.
    fn end(&mut self, slot: u32) {
        let Some(conn) = self.conns.remove(slot) else {
            return;
        };
        let UringConn {
            fd,
            admitted,
            log,
            state,
            mut queue,
            gather,
            ..
        } = conn;
        for chunk in queue.drain(..) {
            if let Chunk::Pooled { bid, .. } = chunk {
                self.pool.release(bid);
            }
        }
        if self.spares.len() < SPARES_KEPT {
            self.spares.push(Spare { queue, gather });
        }
        // Closed as a request of the next turn rather than with a system call of its own.
        let close = opcode::Close::new(types::Fd(fd.into_raw_fd()))
            .build()
            .user_data(user_data(ENGINE_SLOT, 0, Op::Close));
        // SAFETY: a close points to no memory; the descriptor is the engine's alone (taken out
        // of its `OwnedFd` above) and no request on it is left in the kernel.
        unsafe { push(&mut self.ring, &close) };
        log.closed(&admitted, &self.shared, state.into_outcome());
        // Gives its `--max-conns` permit back: a paused accept may go on.
        drop(admitted);
        if self.accepting.paused() {
            self.resume_accepts();
        }
    }

    /// Ends every connection where it stands. Requests may still be in the kernel, so the
    /// memory they could point at (queued echo bytes, the pool, the wake-up buffer and the
    /// timer) is leaked rather than freed.
    fn abandon(&mut self) {
        for slot in 0..self.conns.slots() {
            if let Some(conn) = self.conns.remove(slot) {
                let UringConn {
                    fd,
                    admitted,
                    log,
                    queue,
                    gather,
                    ..
                } = conn;
                std::mem::forget(queue);
                std::mem::forget(gather);
                drop(fd);
                log.closed(
                    &admitted,
                    &self.shared,
                    Err(io::Error::other("io_uring engine failed")),
                );
            }
        }
        self.pool.leak();
        std::mem::forget(std::mem::replace(&mut self.wake_buf, Box::new([0; 8])));
        std::mem::forget(std::mem::replace(
            &mut self.tick,
            Box::new(types::Timespec::new()),
        ));
    }
}

impl Engine for UringEngine {
    const NAME: &'static str = "io_uring";

    fn new(inbox: Arc<Inbox>, shared: Arc<Shared>) -> io::Result<UringEngine> {
        let pool = Pool::new(BUF_COUNT)?;
        let ring = new_ring()?;
        register_pool(&ring, &pool)?;
        let period = tick_period(shared.config.idle_timeout);
        let mut engine = UringEngine {
            ring,
            pool,
            inbox,
            shared,
            conns: Table::default(),
            spares: Vec::new(),
            wake_buf: Box::new([0; 8]),
            wake_armed: false,
            tick: Box::new(
                types::Timespec::new()
                    .sec(period.as_secs())
                    .nsec(period.subsec_nanos()),
            ),
            tick_armed: false,
            draining: None,
            cut: false,
            now: Instant::now(),
            accepting: Accepting::default(),
        };
        engine.arm_wake();
        engine.ring.submit()?;
        Ok(engine)
    }

    /// The loop: submit, wait, handle completions, until the accepting side is done and the
    /// last connection has ended.
    fn run(&mut self) -> io::Result<()> {
        let mut completions: Vec<(u64, i32, u32)> = Vec::with_capacity(COMPLETION_ENTRIES as usize);
        loop {
            self.pool.publish();
            if self.inbox.finish.load(Ordering::Acquire) && self.conns.len() == 0 {
                self.take_arrivals();
                if self.conns.len() == 0 {
                    return self.quiesce();
                }
            }
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if transient(&e) => {}
                Err(e) => return Err(e),
            }
            self.now = Instant::now();
            take_completions(&mut self.ring, &mut completions);
            for &(data, result, flags) in &completions {
                self.complete(data, result, flags);
            }
        }
    }

    /// After a ring failure: refuses further connections, and ends every connection where it
    /// stands, so shutdown can finish.
    fn stop_after_failure(&mut self) {
        self.inbox.stop();
        // The listeners go back to the tokio loop, to be served there.
        self.accepting.give_back();
        self.abandon();
    }
}
