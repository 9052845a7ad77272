//! The io_uring echo engine for plain TCP and Unix stream connections (`--io uring`).
//!
//! Each worker thread that can create a ring gets one engine thread. The worker's tokio loop
//! still accepts (with `--max-conns` permits, access rules and per-address limits), then hands
//! each plain connection over; the engine serves it to the end, with no tokio on the echo path:
//!
//! - **One system call per loop turn.** Every receive, send and poll of every connection is a
//!   request in one ring; `io_uring_enter` submits the turn's new requests and waits for the next
//!   completions at once. The ring is single-issuer with deferred task work, so the kernel does
//!   the receive work of many sockets in one go, when the engine asks for completions.
//! - **No buffer per connection.** Each connection keeps one multishot receive armed, which
//!   takes a buffer from a pool shared by the whole engine (a *provided buffer ring*) only when
//!   bytes arrive, and only as many bytes of it as arrived (the pool is consumed incrementally).
//!   The echo is sent straight from the pool; a buffer goes back once the kernel has filled it
//!   and every echo sent from it has completed, normally within the turn. Bytes that arrive
//!   while a send is under way wait in the pool too, and the next send gathers up to
//!   [`GATHER`] of those pieces into one write (a 1 MiB message arrives as 16 receives).
//! - **Backpressure.** Sends are non-blocking (`MSG_DONTWAIT`). Bytes the peer's socket cannot
//!   take yet are copied out of the pool into one piece of the connection's own memory, and the
//!   connection
//!   stops receiving (its receive is cancelled) until the queue is written, so a client that
//!   never reads cannot hold pool buffers or make the server buffer without bound. The cancel
//!   takes effect at the next loop turn, so a queue can overshoot its limit by what one turn
//!   receives (at most the pool's 4 MiB) — more than the epoll path's bound, but a bound.
//!
//! Shutdown follows the tokio path: on drain a connection is half-closed once it has been quiet
//! for [`DRAIN_SETTLE`] counted from the start of the shutdown, then whatever it sends is
//! discarded until its EOF (or the idle timeout); at the end of the grace period every
//! connection left is cut.
//!
//! This is the crate's only module with `unsafe` code: the kernel reads and writes memory that
//! the ring's requests point to, so the engine must keep that memory alive and untouched until
//! each request completes. Every block says why it holds.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use io_uring::{IoUring, cqueue, opcode, squeue, types};
use tokio_util::task::task_tracker::TaskTrackerToken;

use super::Shared;
use super::echo::{CloseReason, DRAIN_SETTLE, SCRATCH_SIZE};
use super::stream::{Conn, ConnLog};
use crate::ring::{
    AbortOnPanic, BUF_COUNT, BUF_GROUP, COMPLETION_ENTRIES, Pool, new_ring, push, register_pool,
    take_completions, transient,
};
use crate::stats::TransportCounters;

/// A connection whose queue of unsent echo grows past this stops receiving, as the tokio path
/// does with its pending buffer.
const QUEUE_LIMIT: usize = SCRATCH_SIZE;

/// What a completion is for, kept in the low byte of its `user_data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Op {
    Recv = 1,
    Send = 2,
    PollOut = 3,
    Cancel = 4,
    /// The eventfd read that wakes the engine for new connections and shutdown steps.
    Wake = 5,
    /// The periodic timer for idle timeouts and drain.
    Tick = 6,
}

impl Op {
    fn from_u8(op: u8) -> Option<Op> {
        Some(match op {
            1 => Op::Recv,
            2 => Op::Send,
            3 => Op::PollOut,
            4 => Op::Cancel,
            5 => Op::Wake,
            6 => Op::Tick,
            _ => return None,
        })
    }
}

/// `user_data` of a request: connection slot, the slot's generation (so a late completion for
/// a connection that has ended cannot be taken for its successor's), and the operation.
fn user_data(slot: u32, generation: u16, op: Op) -> u64 {
    (u64::from(slot) << 32) | (u64::from(generation) << 16) | op as u64
}

fn split_user_data(data: u64) -> (u32, u16, Option<Op>) {
    (
        (data >> 32) as u32,
        (data >> 16) as u16,
        Op::from_u8(data as u8),
    )
}

/// The slot number of requests that belong to the engine rather than a connection.
const ENGINE_SLOT: u32 = u32::MAX;

/// A connection handed from the accepting loop to the engine.
pub(crate) struct Handoff {
    pub(crate) fd: OwnedFd,
    pub(crate) conn: Conn,
    /// Keeps the server's shutdown waiting until this connection has ended.
    pub(crate) token: TaskTrackerToken,
}

/// What the accepting side and the engine thread share.
struct Inbox {
    handoffs: Mutex<Handoffs>,
    /// An eventfd: written to wake the engine, read by the engine's `Wake` request.
    wake: OwnedFd,
    drain: AtomicBool,
    cut: AtomicBool,
    /// No more handoffs will come: exit once the last connection has ended.
    finish: AtomicBool,
}

/// Connections waiting for the engine to take them.
#[derive(Default)]
struct Handoffs {
    queue: Vec<Handoff>,
    /// The engine failed and serves nothing more: connections are no longer queued.
    stopped: bool,
}

impl Inbox {
    fn handoffs(&self) -> std::sync::MutexGuard<'_, Handoffs> {
        self.handoffs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// After the engine failed: refuse further handoffs and close the ones queued, so their
    /// slots and the server's shutdown are not held up.
    fn stop(&self) {
        let stranded = {
            let mut handoffs = self.handoffs();
            handoffs.stopped = true;
            std::mem::take(&mut handoffs.queue)
        };
        for Handoff { conn, .. } in stranded {
            tracing::warn!(
                "{}: closed unserved, the io_uring engine stopped",
                conn.peer
            );
        }
    }

    fn wake(&self) {
        // A full counter (impossible in practice) still leaves the engine woken.
        let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
    }
}

/// The accepting side's handle on one engine thread.
pub(crate) struct Engine {
    inbox: Arc<Inbox>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Engine {
    /// Starts an engine thread for worker `index`. Fails, leaving nothing running, if this
    /// kernel (or a sandbox) does not offer what the engine needs: then the tokio path serves.
    pub(crate) fn start(index: usize, shared: Arc<Shared>) -> io::Result<Engine> {
        let wake = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )?;
        let inbox = Arc::new(Inbox {
            handoffs: Mutex::new(Handoffs::default()),
            wake,
            drain: AtomicBool::new(false),
            cut: AtomicBool::new(false),
            finish: AtomicBool::new(false),
        });
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread_inbox = inbox.clone();
        let thread = std::thread::Builder::new()
            .name(format!("sockecho-uring-{index}"))
            .spawn(move || {
                // The ring is made on the thread that uses it: it is single-issuer.
                let mut engine = match Ring::new(thread_inbox, shared) {
                    Ok(engine) => {
                        let _ = ready_tx.send(Ok(()));
                        engine
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                // A panic here would unwind through memory the kernel may still be using, so it
                // ends the process instead (this guard is dropped before `engine`).
                let _abort_on_panic = AbortOnPanic;
                if let Err(e) = engine.run() {
                    tracing::error!("io_uring engine failed: {e}; closing its connections");
                    engine.inbox.stop();
                    engine.abandon();
                }
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Engine {
                inbox,
                thread: Mutex::new(Some(thread)),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(io::Error::other(
                    "the io_uring engine thread ended at start",
                ))
            }
        }
    }

    /// Whether the engine still takes connections (it stops only if its ring fails).
    pub(crate) fn serving(&self) -> bool {
        !self.inbox.handoffs().stopped
    }

    /// Gives the engine a connection to serve. If the engine has just stopped, the connection
    /// is closed, with a warning.
    pub(crate) fn hand_over(&self, handoff: Handoff) {
        let mut handoffs = self.inbox.handoffs();
        if handoffs.stopped {
            drop(handoffs);
            tracing::warn!(
                "{}: closed unserved, the io_uring engine stopped",
                handoff.conn.peer
            );
            return;
        }
        handoffs.queue.push(handoff);
        drop(handoffs);
        self.inbox.wake();
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

impl Drop for Engine {
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

/// A run of echo bytes waiting to be sent, oldest first.
enum Chunk {
    /// Still in the pool buffer it was received into (the fast path): bytes `off..len`.
    Pooled { bid: u16, off: usize, len: usize },
    /// Copied into the connection's own memory because the peer could not take it at once.
    Owned { bytes: Vec<u8>, off: usize },
}

/// Chunks one send gathers at most.
const GATHER: usize = 16;

/// The memory a gathered send points the kernel at: one `iovec` per chunk, and the header.
struct Gather {
    iov: [libc::iovec; GATHER],
    msg: libc::msghdr,
}

impl Gather {
    fn new() -> Box<Gather> {
        Box::new(Gather {
            iov: [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; GATHER],
            // SAFETY: `msghdr` is plain data; all zeros is an empty header.
            msg: unsafe { std::mem::zeroed() },
        })
    }
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Echoing.
    Echo,
    /// Draining for shutdown: our write side is shut; discard what comes until the peer's EOF.
    HalfClosed,
    /// Ending: waiting for its outstanding requests to complete before the socket is closed.
    Closing,
}

/// One connection served by the engine.
struct Live {
    fd: OwnedFd,
    conn: Conn,
    log: ConnLog,
    _token: TaskTrackerToken,
    phase: Phase,
    /// Why it ended, once `phase` is `Closing`.
    outcome: Option<io::Result<CloseReason>>,
    /// Echo bytes not yet sent, oldest first. An in-flight send sends the first one, or gathers
    /// the first [`GATHER`].
    queue: VecDeque<Chunk>,
    queued: usize,
    last_activity: Instant,
    /// Requests in the ring that will still produce a completion for this connection. The
    /// socket and the queue's memory live until this is zero.
    outstanding: u32,
    /// A multishot receive is armed.
    receiving: bool,
    /// A cancel of the receive has been asked for (backpressure) and not yet completed.
    recv_cancelling: bool,
    /// A send of the queue's front chunk (or, gathered, of its first chunks) is in flight.
    sending: bool,
    /// The gather list of a send of several chunks at once, made the first time one is needed
    /// and kept: the kernel reads it while the send is in flight, so it must not move.
    gather: Option<Box<Gather>>,
    /// Bytes the send in flight asked to send.
    send_len: usize,
    /// The socket was full: waiting for it to be writable before sending again.
    waiting_writable: bool,
    /// The peer sent EOF.
    peer_eof: bool,
    /// A cancel of everything outstanding has been asked for (closing).
    cancel_all_sent: bool,
}

/// One slot of the connection table.
struct Slot {
    generation: u16,
    live: Option<Live>,
}

/// The engine proper: owned by its thread.
struct Ring {
    // Field order is drop order: the io_uring goes first, ending every request, before the
    // memory the requests point into (pool, eventfd buffer, timer).
    ring: IoUring,
    pool: Pool,
    inbox: Arc<Inbox>,
    shared: Arc<Shared>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
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
}

impl Ring {
    fn new(inbox: Arc<Inbox>, shared: Arc<Shared>) -> io::Result<Ring> {
        let pool = Pool::new(BUF_COUNT)?;
        let ring = new_ring()?;
        register_pool(&ring, &pool)?;
        let period = tick_period(shared.config.idle_timeout);
        let mut engine = Ring {
            ring,
            pool,
            inbox,
            shared,
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
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
        };
        engine.arm_wake();
        engine.ring.submit()?;
        Ok(engine)
    }

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
        let needed =
            self.live > 0 && (self.draining.is_some() || self.shared.config.idle_timeout.is_some());
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

    /// The loop: submit, wait, handle completions, until the accepting side is done and the
    /// last connection has ended.
    fn run(&mut self) -> io::Result<()> {
        let mut completions: Vec<(u64, i32, u32)> = Vec::with_capacity(COMPLETION_ENTRIES as usize);
        loop {
            self.pool.publish();
            if self.inbox.finish.load(Ordering::Acquire) && self.live == 0 {
                self.take_handoffs();
                if self.live == 0 {
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
        let live = self
            .slots
            .get_mut(slot as usize)
            .filter(|entry| entry.generation == generation)
            .and_then(|entry| entry.live.as_mut());
        let Some(live) = live else {
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
                    live.receiving = false;
                    live.recv_cancelling = false;
                    live.outstanding -= 1;
                }
                self.on_received(slot, result, received);
            }
            Op::Send => {
                live.sending = false;
                live.outstanding -= 1;
                self.on_sent(slot, result);
            }
            Op::PollOut => {
                live.waiting_writable = false;
                live.outstanding -= 1;
                // Whatever the poll says (writable, error, hang-up), the next send tells.
            }
            Op::Cancel => {
                live.outstanding -= 1;
            }
            Op::Wake | Op::Tick => {}
        }
        self.advance(slot);
    }

    fn live(&mut self, slot: u32) -> Option<&mut Live> {
        self.slots.get_mut(slot as usize)?.live.as_mut()
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
            let Some(live) = self.slots[slot as usize].live.as_mut() else {
                pool.give_back_if_unused(bid);
                return;
            };
            live.last_activity = self.now;
            if live.phase != Phase::Echo {
                // Half-closed for shutdown (discarded) or closing (nobody to echo to).
                pool.give_back_if_unused(bid);
                return;
            }
            let n = range.len() as u64;
            live.log.bytes += n;
            // Counted as it arrives, so metrics move while the connection is open.
            live.log.counted += n;
            TransportCounters::add(
                &self
                    .shared
                    .counters
                    .transport(live.conn.transport)
                    .stream_bytes,
                n,
            );
            live.queued += range.len();
            if self.shared.config.log_data {
                let data = pool.bytes(bid, range.clone());
                tracing::info!(target: crate::DATA_LOG, "{}: {}", live.conn.peer, super::peer_text::escaped(data));
            }
            if !live.waiting_writable {
                // The fast path: sent straight from the pool. Bytes that arrive while a send is
                // under way queue up in the pool too, and go out together in the next send.
                pool.hold(bid);
                live.queue.push_back(Chunk::Pooled {
                    bid,
                    off: range.start,
                    len: range.end,
                });
            } else {
                // The peer is not reading (the receive is being cancelled): keep the bytes in
                // the connection's own memory, so the pool is not held by a slow peer. No send
                // is in flight while waiting for writability, so no send reads the chunk that
                // is appended to.
                let data = pool.bytes(bid, range);
                let appendable = match live.queue.back_mut() {
                    Some(Chunk::Owned { bytes, .. }) if !live.sending => Some(bytes),
                    _ => None,
                };
                match appendable {
                    Some(bytes) => bytes.extend_from_slice(data),
                    None => live.queue.push_back(Chunk::Owned {
                        bytes: data.to_vec(),
                        off: 0,
                    }),
                }
                pool.give_back_if_unused(bid);
            }
            return;
        }
        let Some(live) = self.live(slot) else { return };
        match result {
            0 => {
                live.peer_eof = true;
                if live.phase == Phase::HalfClosed {
                    live.phase = Phase::Closing;
                    live.outcome = Some(Ok(CloseReason::Drained));
                }
            }
            1.. => {} // a receive always comes with its buffer
            _ => {
                let errno = -result;
                if errno == rustix::io::Errno::NOBUFS.raw_os_error()
                    || errno == rustix::io::Errno::CANCELED.raw_os_error()
                {
                    // The pool was empty for a moment (buffers come back within the turn; the
                    // receive is armed again), or our own cancel for backpressure or closing.
                } else if live.phase == Phase::HalfClosed {
                    // The peer went away instead of closing cleanly: the drain is done.
                    live.phase = Phase::Closing;
                    live.outcome = Some(Ok(CloseReason::Drained));
                } else {
                    fail(live, errno);
                }
            }
        }
    }

    fn on_sent(&mut self, slot: u32, result: i32) {
        let now = self.now;
        let pool = &mut self.pool;
        let entry = &mut self.slots[slot as usize];
        let generation = entry.generation;
        let Some(live) = entry.live.as_mut() else {
            return;
        };
        if live.phase != Phase::Echo {
            // Closing (cut, idle timeout, error): what is left of the echo is not sent, and no
            // wait for writability may follow the cancel that was already asked for.
            return;
        }
        let sent = if result >= 0 {
            result as usize
        } else if -result == rustix::io::Errno::AGAIN.raw_os_error() {
            0
        } else {
            // A real error, such as a reset.
            fail(live, -result);
            return;
        };
        if sent > 0 {
            live.last_activity = now;
        }
        live.queued -= sent;
        // The send covered the queue's first chunks in order: drop those it finished.
        let mut left = sent;
        while let Some(front) = live.queue.front_mut() {
            let (off, len) = match front {
                Chunk::Pooled { off, len, .. } => (off, *len),
                Chunk::Owned { bytes, off } => (off, bytes.len()),
            };
            let take = left.min(len - *off);
            *off += take;
            left -= take;
            if *off < len {
                break;
            }
            if let Some(Chunk::Pooled { bid, .. }) = live.queue.pop_front() {
                pool.release(bid);
            }
        }
        if live.queue.is_empty() || sent == live.send_len {
            // All of it went: the next send, if anything is queued, follows at once.
            return;
        }
        // The peer's socket is full. Move everything queued out of the pool into one piece of
        // the connection's own memory, wait until the socket is writable, and stop receiving
        // meanwhile. (No send is in flight: this was it.)
        let mut rest = Vec::with_capacity(live.queued);
        for chunk in live.queue.drain(..) {
            match chunk {
                Chunk::Pooled { bid, off, len } => {
                    rest.extend_from_slice(pool.bytes(bid, off..len));
                    pool.release(bid);
                }
                Chunk::Owned { bytes, off } => rest.extend_from_slice(&bytes[off..]),
            }
        }
        live.queue.push_back(Chunk::Owned {
            bytes: rest,
            off: 0,
        });
        live.waiting_writable = true;
        live.outstanding += 1;
        let entry = opcode::PollAdd::new(types::Fd(live.fd.as_raw_fd()), libc::POLLOUT as u32)
            .build()
            .user_data(user_data(slot, generation, Op::PollOut));
        // SAFETY: a poll points to no memory.
        unsafe { push(&mut self.ring, &entry) };
    }

    /// Decides a connection's next requests from its state; ends it when it is done.
    fn advance(&mut self, slot: u32) {
        let entry = &mut self.slots[slot as usize];
        let generation = entry.generation;
        let Some(live) = entry.live.as_mut() else {
            return;
        };
        let request = match next_request(live, &self.pool) {
            Next::Nothing => return,
            Next::End => return self.end(slot),
            Next::Request(request, op) => request.user_data(user_data(slot, generation, op)),
            Next::CancelRecv => opcode::AsyncCancel::new(user_data(slot, generation, Op::Recv))
                .build()
                .user_data(user_data(slot, generation, Op::Cancel)),
        };
        // SAFETY: `next_request` only makes requests whose memory outlives them (see there).
        unsafe { push(&mut self.ring, &request) };
    }

    /// Takes the handed-over connections, and acts on drain and cut.
    fn on_wake(&mut self) {
        self.take_handoffs();
        if self.inbox.drain.load(Ordering::Acquire) && self.draining.is_none() {
            self.draining = Some(Instant::now());
            self.arm_tick();
        }
        if self.inbox.cut.load(Ordering::Acquire) && !self.cut {
            self.cut = true;
            for slot in 0..self.slots.len() as u32 {
                if let Some(live) = self.live(slot)
                    && live.phase != Phase::Closing
                {
                    live.phase = Phase::Closing;
                    live.outcome = Some(Ok(CloseReason::Cut));
                    self.advance(slot);
                }
            }
        }
    }

    fn take_handoffs(&mut self) {
        let handoffs = std::mem::take(&mut self.inbox.handoffs().queue);
        for Handoff { fd, conn, token } in handoffs {
            let slot = self.free.pop().unwrap_or_else(|| {
                self.slots.push(Slot {
                    generation: 0,
                    live: None,
                });
                (self.slots.len() - 1) as u32
            });
            let log = ConnLog::opened(&conn, &self.shared);
            let mut live = Live {
                fd,
                conn,
                log,
                _token: token,
                phase: Phase::Echo,
                outcome: None,
                queue: VecDeque::new(),
                queued: 0,
                last_activity: Instant::now(),
                outstanding: 0,
                receiving: false,
                recv_cancelling: false,
                sending: false,
                waiting_writable: false,
                gather: None,
                send_len: 0,
                peer_eof: false,
                cancel_all_sent: false,
            };
            if self.cut {
                live.phase = Phase::Closing;
                live.outcome = Some(Ok(CloseReason::Cut));
            }
            self.slots[slot as usize].live = Some(live);
            self.live += 1;
            self.advance(slot);
        }
        self.arm_tick();
    }

    /// Idle timeouts, and the drain's half-close once a connection has been quiet.
    fn on_tick(&mut self) {
        let now = self.now;
        let idle = self.shared.config.idle_timeout;
        let draining = self.draining;
        for slot in 0..self.slots.len() as u32 {
            let Some(live) = self.live(slot) else {
                continue;
            };
            let quiet = now.saturating_duration_since(live.last_activity);
            if live.phase == Phase::Closing {
                continue;
            }
            if idle.is_some_and(|idle| quiet >= idle) {
                // Also while half-closed for shutdown, as on the epoll path.
                live.phase = Phase::Closing;
                live.outcome = Some(Ok(CloseReason::IdleTimeout));
            } else if let Some(drain_started) = draining
                && live.phase == Phase::Echo
                && live.queue.is_empty()
                && now.saturating_duration_since(live.last_activity.max(drain_started))
                    >= DRAIN_SETTLE
            {
                // Quiet for the settle time since the shutdown began: whatever the peer sent
                // before it has arrived and gone back.
                let _ = rustix::net::shutdown(&live.fd, rustix::net::Shutdown::Write);
                live.phase = Phase::HalfClosed;
            } else {
                continue;
            }
            self.advance(slot);
        }
        self.arm_tick();
    }

    /// Closes a connection whose requests have all completed, and logs its end.
    fn end(&mut self, slot: u32) {
        let entry = &mut self.slots[slot as usize];
        let Some(live) = entry.live.take() else {
            return;
        };
        entry.generation = entry.generation.wrapping_add(1);
        self.free.push(slot);
        self.live -= 1;
        let Live {
            fd,
            conn,
            log,
            outcome,
            queue,
            ..
        } = live;
        for chunk in queue {
            if let Chunk::Pooled { bid, .. } = chunk {
                self.pool.release(bid);
            }
        }
        drop(fd);
        log.closed(
            &conn,
            &self.shared,
            outcome.unwrap_or(Ok(CloseReason::PeerClosed)),
        );
        drop(conn);
    }

    /// After a ring failure: ends every connection where it stands, so shutdown can finish.
    /// Requests may still be in the kernel, so the memory they could point at (queued echo
    /// bytes, the pool, the wake-up buffer and the timer) is leaked rather than freed.
    fn abandon(&mut self) {
        for slot in 0..self.slots.len() {
            if let Some(live) = self.slots[slot].live.take() {
                let Live {
                    fd,
                    conn,
                    log,
                    queue,
                    gather,
                    ..
                } = live;
                std::mem::forget(queue);
                std::mem::forget(gather);
                drop(fd);
                log.closed(
                    &conn,
                    &self.shared,
                    Err(io::Error::other("io_uring engine failed")),
                );
            }
        }
        self.live = 0;
        self.pool.leak();
        std::mem::forget(std::mem::replace(&mut self.wake_buf, Box::new([0; 8])));
        std::mem::forget(std::mem::replace(
            &mut self.tick,
            Box::new(types::Timespec::new()),
        ));
    }
}

/// What a connection needs next.
enum Next {
    Nothing,
    /// All its requests have completed after it was closed: free it.
    End,
    Request(squeue::Entry, Op),
    /// Stop receiving: cancel the armed receive (its `user_data` names it).
    CancelRecv,
}

/// Picks the next request for a connection and records it as outstanding. A connection has at
/// most one receive, one send (or wait for writability) and one cancel in the ring at a time.
///
/// The requests it makes point only at memory that outlives them: a send reads the queue's
/// first chunks (one, or up to [`GATHER`] through the connection's boxed gather list), which
/// are neither given back to the pool (if pooled) nor appended to or dropped (if owned) while
/// `sending` is set — new chunks only join the back of the queue, and owned ones grow only
/// while no send is in flight — and the gather list is rewritten only by the next send; a
/// receive writes only into pool buffers the kernel picks itself.
fn next_request(live: &mut Live, pool: &Pool) -> Next {
    let fd = types::Fd(live.fd.as_raw_fd());
    if live.phase == Phase::Closing {
        if live.outstanding == 0 {
            return Next::End;
        }
        if live.cancel_all_sent {
            return Next::Nothing;
        }
        live.cancel_all_sent = true;
        live.outstanding += 1;
        let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::fd(fd).all()).build();
        return Next::Request(cancel, Op::Cancel);
    }
    if live.phase == Phase::Echo {
        if !live.sending && !live.waiting_writable && !live.queue.is_empty() {
            live.sending = true;
            live.outstanding += 1;
            let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
            if live.queue.len() == 1 {
                let (bytes, len) = chunk_bytes(&live.queue[0], pool);
                live.send_len = len;
                let send = opcode::Send::new(fd, bytes, len as u32)
                    .flags(flags)
                    .build();
                return Next::Request(send, Op::Send);
            }
            // Several chunks: one send gathers them, so a burst of receives goes out as one
            // large write, as the bytes sit, without copying them together first.
            let gather = live.gather.get_or_insert_with(Gather::new);
            let mut total = 0;
            let mut n = 0;
            for chunk in live.queue.iter().take(GATHER) {
                let (bytes, len) = chunk_bytes(chunk, pool);
                gather.iov[n] = libc::iovec {
                    iov_base: bytes.cast_mut().cast(),
                    iov_len: len,
                };
                total += len;
                n += 1;
            }
            gather.msg.msg_iov = gather.iov.as_mut_ptr();
            gather.msg.msg_iovlen = n as _;
            live.send_len = total;
            let send = opcode::SendMsg::new(fd, &gather.msg)
                .flags(flags as u32)
                .build();
            return Next::Request(send, Op::Send);
        }
        if live.queue.is_empty() && live.peer_eof {
            // Everything came back: close our side too, then the socket.
            let _ = rustix::net::shutdown(&live.fd, rustix::net::Shutdown::Write);
            live.phase = Phase::Closing;
            live.outcome = Some(Ok(CloseReason::PeerClosed));
            return next_request(live, pool);
        }
        let stalled = live.waiting_writable || live.queued > QUEUE_LIMIT;
        if stalled {
            if live.receiving && !live.recv_cancelling {
                live.recv_cancelling = true;
                live.outstanding += 1;
                return Next::CancelRecv;
            }
            return Next::Nothing;
        }
        if !live.queue.is_empty() {
            return Next::Nothing;
        }
    }
    // Echoing with nothing queued, or half-closed: keep a receive armed until EOF.
    if !live.receiving && !live.peer_eof {
        live.receiving = true;
        live.outstanding += 1;
        return Next::Request(opcode::RecvMulti::new(fd, BUF_GROUP).build(), Op::Recv);
    }
    Next::Nothing
}

/// Where a queued chunk's unsent bytes are, and how many there are.
fn chunk_bytes(chunk: &Chunk, pool: &Pool) -> (*const u8, usize) {
    match chunk {
        // SAFETY: `off <= len <= BUF_SIZE`: inside buffer `bid`.
        Chunk::Pooled { bid, off, len } => (
            unsafe { pool.buffer(*bid).add(*off) }.cast_const(),
            len - off,
        ),
        Chunk::Owned { bytes, off } => (bytes[*off..].as_ptr(), bytes.len() - off),
    }
}

/// Ends the echo of a connection on an I/O error.
fn fail(live: &mut Live, errno: i32) {
    live.phase = Phase::Closing;
    live.outcome = Some(Err(io::Error::from_raw_os_error(errno)));
}

/// How often the timer looks at idle and draining connections: a tenth of the idle timeout,
/// within 5 ms..100 ms (the drain's settle time is 100 ms).
fn tick_period(idle_timeout: Option<Duration>) -> Duration {
    let period = idle_timeout.map_or(DRAIN_SETTLE / 4, |idle| idle / 10);
    period.clamp(Duration::from_millis(5), DRAIN_SETTLE / 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_round_trips() {
        let data = user_data(123_456, 65_535, Op::PollOut);
        assert_eq!(split_user_data(data), (123_456, 65_535, Some(Op::PollOut)));
        assert_eq!(
            split_user_data(user_data(ENGINE_SLOT, 0, Op::Wake)),
            (ENGINE_SLOT, 0, Some(Op::Wake))
        );
        assert_eq!(split_user_data(0).2, None);
    }
}
