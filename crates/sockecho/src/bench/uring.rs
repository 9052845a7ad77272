//! The load thread's io_uring loop for plain TCP and Unix stream connections, used where the
//! kernel allows it (Linux 6.12, as for the server's engine); elsewhere the epoll loop
//! (`reactor`) runs the same connections.
//!
//! Why a second loop: a load generator has to cost less per echo than the server it measures,
//! or it measures itself. With epoll, a round trip costs the load generator exactly what it
//! costs a minimal server — one `recv`, one `send`, a share of `epoll_wait` — so the two come
//! out even. Here a whole turn is one `io_uring_enter`:
//!
//! - Each connection keeps one multishot receive armed, drawing on the ring's shared receive
//!   pool (`crate::sys::uring`), which the kernel consumes incrementally: the bytes of many replies
//!   share one buffer, are checked where they landed, and the buffer goes back as soon as the
//!   kernel is done with it.
//! - Sends are requests too, submitted with the turn's wait. Each connection has at most one
//!   send in flight, gathering up to [`WRITE_BATCH`] queued messages from its own header slots
//!   and the shared filler pattern; it is sent whole (`MSG_WAITALL`), and whatever a short send
//!   leaves goes in the next one.
//! - The turn's wait ends at the next open-loop send time or the end of the current phase,
//!   whichever comes first (a high-resolution kernel timeout, counted from the end of the
//!   turn's work).
//!
//! Memory the kernel may touch (the pool, each connection's send slot) stays put until every
//! request has completed: a connection that ends has its requests cancelled, and the loop
//! reaps them all before it returns. If the ring fails, or cancelled requests do not complete
//! within [`REAP_LIMIT`], that memory is leaked rather than freed under the kernel. Every
//! `unsafe` block says why it holds.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use io_uring::{IoUring, cqueue, opcode, squeue, types};

use super::plan::{ConnPlan, STOP_POLL, ThreadCtx};
use super::stream::{StreamConn, WRITE_BATCH, message_slices};
use super::timing::SendTimes;
use crate::payload::{HEADER_LEN, header};
use crate::sys::uring::{
    AbortOnPanic, BUF_GROUP, COMPLETION_ENTRIES, Pool, new_ring, push, register_pool,
    take_completions, transient,
};

/// How long the end of a run waits for cancelled requests to complete (this loop's and the
/// churn loop's).
pub(super) const REAP_LIMIT: Duration = Duration::from_secs(5);

/// Receive buffers of a load loop's pool (64 KiB each). Fewer than the server engine's: the
/// loops check and free every reply in the turn it arrives, so the pool only needs to hold one
/// turn's arrivals, and a smaller pool stays in the CPU's caches.
const POOL_BUFFERS: u16 = 16;

/// A load loop's ring and its receive pool, registered with it: the setup this loop and the
/// churn loop (`churn::uring`) share. The caller keeps the pool until the ring is dropped.
pub(super) fn ring_with_pool() -> io::Result<(IoUring, Pool)> {
    let pool = Pool::new(POOL_BUFFERS)?;
    let ring = new_ring()?;
    register_pool(&ring, &pool)?;
    Ok((ring, pool))
}

/// One turn of a load loop: makes the buffers given back available to the kernel, submits
/// the requests queued and waits up to `left` for a completion. Running out of time, or an
/// error that only means "again", is a turn like another.
pub(super) fn turn(ring: &mut IoUring, pool: &mut Pool, left: Duration) -> io::Result<()> {
    pool.publish();
    let timeout = types::Timespec::from(left);
    let args = types::SubmitArgs::new().timespec(&timeout);
    match ring.submitter().submit_with_args(1, &args) {
        Ok(_) => Ok(()),
        Err(e) if timed_out(&e) || transient(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Cancels every request still in the kernel on socket `fd`.
pub(super) fn cancel_all(ring: &mut IoUring, fd: RawFd, user_data: u64) {
    let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(fd)).all())
        .build()
        .user_data(user_data);
    // SAFETY: a cancel points to no memory.
    unsafe { push(ring, &cancel) };
}

/// What a completion is for, in the low byte of its `user_data`; the connection's index is
/// above it.
const RECV: u64 = 1;
const SEND: u64 = 2;
const CANCEL: u64 = 3;

fn user_data(i: usize, op: u64) -> u64 {
    ((i as u64) << 8) | op
}

/// A connection's outgoing request: the message headers and the gather list it points to,
/// boxed so that their address holds while the kernel reads them.
pub(super) struct SendSlot {
    headers: [[u8; HEADER_LEN]; WRITE_BATCH],
    iov: [libc::iovec; 2 * WRITE_BATCH],
    msg: libc::msghdr,
}

impl SendSlot {
    pub(super) fn new() -> Box<SendSlot> {
        Box::new(SendSlot {
            headers: [[0; HEADER_LEN]; WRITE_BATCH],
            iov: [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; 2 * WRITE_BATCH],
            // SAFETY: `msghdr` is plain data; all zeros is an empty header.
            msg: unsafe { std::mem::zeroed() },
        })
    }
}

/// Fills `slot` with what `conn` has queued (up to [`WRITE_BATCH`] messages, the first one
/// from where the last send left it) and returns the request that sends it whole on `fd`,
/// tagged `user_data`; `None` when nothing is queued.
///
/// The request reads the headers and gather list in `slot` and the filler in the connection's
/// pattern: the caller must keep `slot` unmoved and untouched, and the pattern alive, until
/// the request completes.
pub(super) fn send_request(
    slot: &mut SendSlot,
    conn: &StreamConn<'_>,
    fd: RawFd,
    user_data: u64,
) -> Option<squeue::Entry> {
    let (first, count, offset) = conn.unwritten()?;
    let pattern = &conn.flow.ctx.pattern;
    let id = conn.flow.plan.id;
    let mut n_iov = 0;
    for j in 0..count {
        let seq = first + j as u64;
        slot.headers[j] = header(seq, id);
        let skip = if j == 0 { offset } else { 0 };
        let (slices, n) = message_slices(pattern, &slot.headers[j], seq, skip);
        for s in &slices[..n] {
            slot.iov[n_iov] = libc::iovec {
                iov_base: s.as_ptr().cast_mut().cast(),
                iov_len: s.len(),
            };
            n_iov += 1;
        }
    }
    slot.msg.msg_iov = slot.iov.as_mut_ptr();
    slot.msg.msg_iovlen = n_iov as _;
    Some(
        opcode::SendMsg::new(types::Fd(fd), &slot.msg)
            .flags((libc::MSG_NOSIGNAL | libc::MSG_WAITALL) as u32)
            .build()
            .user_data(user_data),
    )
}

/// One connection of the loop.
struct Entry<'a> {
    conn: StreamConn<'a>,
    fd: OwnedFd,
    slot: Box<SendSlot>,
    /// A multishot receive is armed.
    receiving: bool,
    /// A send is in flight.
    sending: bool,
    /// Finished or broken: its replies no longer count, nothing more is sent, and its
    /// requests are being cancelled.
    ended: bool,
    /// Open loop: the send time this connection waits for in the heap, if any.
    scheduled: Option<u64>,
}

impl Entry<'_> {
    /// Requests still in the kernel.
    fn outstanding(&self) -> bool {
        self.receiving || self.sending
    }
}

/// The ring and pool one load thread's connections share.
pub(crate) struct Loop {
    // Field order: the ring, which holds the pool's registration, drops first.
    ring: IoUring,
    pool: Pool,
    /// Connections not ended yet.
    live: usize,
}

impl Loop {
    /// A ring with its receive pool, or why this kernel (or sandbox) does not allow one.
    pub fn new() -> io::Result<Loop> {
        let (ring, pool) = ring_with_pool()?;
        Ok(Loop {
            ring,
            pool,
            live: 0,
        })
    }

    /// Runs the thread's plain stream connections from the start of the run to its end, then
    /// adds their counts to the thread's totals.
    pub fn run(mut self, ctx: &ThreadCtx, sockets: Vec<(ConnPlan, OwnedFd)>) {
        let mut entries: Vec<Entry<'_>> = sockets
            .into_iter()
            .map(|(plan, fd)| Entry {
                conn: StreamConn::new(ctx, plan),
                fd,
                slot: SendSlot::new(),
                receiving: false,
                sending: false,
                ended: false,
                scheduled: None,
            })
            .collect();
        // Made after `entries`, so dropped before them: a panic aborts while the send slots
        // requests may still read are alive.
        let _abort_on_panic = AbortOnPanic;
        self.live = entries.len();
        let outcome = self
            .drive(ctx, &mut entries)
            .and_then(|()| self.reap_all(&mut entries));
        // The ring failed, with requests maybe still in the kernel: the memory they point to
        // is leaked below rather than freed.
        let leak = outcome.is_err();
        if let Err(e) = &outcome {
            tracing::error!("the load thread's io_uring loop failed: {e}");
            for entry in entries.iter_mut().filter(|e| !e.ended) {
                entry.ended = true;
                entry.conn.broken(e);
            }
        }
        for entry in entries {
            let Entry { conn, slot, .. } = entry;
            conn.finish();
            if leak {
                std::mem::forget(slot);
            }
        }
        if leak {
            self.pool.leak();
        }
    }

    fn drive(&mut self, ctx: &ThreadCtx, entries: &mut [Entry<'_>]) -> io::Result<()> {
        let clock = ctx.clock;
        ctx.sleep_until_start();
        let mut now = clock.now();
        let mut due = SendTimes::default();
        for (i, entry) in entries.iter_mut().enumerate() {
            entry.conn.flow.start(now);
            self.arm_receive(i, entry);
            self.send(i, entry);
            if let Some(at) = self.pace(i, entry, now) {
                due.push(at, i);
            }
        }

        let mut draining = false;
        let mut completions: Vec<(u64, i32, u32)> = Vec::with_capacity(COMPLETION_ENTRIES as usize);
        while self.live > 0 {
            // A stop (Ctrl-C) moves the end earlier; it is noticed within a turn, or within
            // STOP_POLL when the loop has nothing to do.
            let deadline = ctx.phase_deadline(draining);
            let wake = due.next().map_or(deadline, |at| at.min(deadline));
            // From the clock as it is now, after this turn's work, so the wake-up is not late
            // by that work.
            let left = wake
                .saturating_sub(clock.now())
                .min(STOP_POLL.as_nanos() as u64);
            turn(&mut self.ring, &mut self.pool, Duration::from_nanos(left))?;
            now = clock.now();
            take_completions(&mut self.ring, &mut completions);
            for &(data, result, flags) in &completions {
                let i = (data >> 8) as usize;
                match data & 0xff {
                    RECV => self.received(ctx, i, &mut entries[i], result, flags, now),
                    SEND => self.sent(i, &mut entries[i], result),
                    _ => {}
                }
                if let Some(at) = self.pace(i, &mut entries[i], now) {
                    due.push(at, i);
                }
                self.settle(i, &mut entries[i]);
            }

            // Open loop: the sends whose time has come.
            while let Some((at, i)) = due.pop_due(now) {
                let entry = &mut entries[i];
                if entry.scheduled == Some(at) {
                    entry.scheduled = None;
                    if let Some(next) = self.pace(i, entry, now) {
                        due.push(next, i);
                    }
                    self.settle(i, entry);
                }
            }

            if now >= deadline {
                let over = draining;
                draining = true;
                for (i, entry) in entries.iter_mut().enumerate() {
                    if entry.ended {
                        continue;
                    }
                    if entry.conn.flow.phase_over() {
                        self.end(i, entry);
                    } else {
                        self.settle(i, entry);
                    }
                }
                if over {
                    break;
                }
            }
        }
        Ok(())
    }

    /// A receive completion for connection `i`.
    fn received(
        &mut self,
        ctx: &ThreadCtx,
        i: usize,
        entry: &mut Entry<'_>,
        result: i32,
        flags: u32,
        now: u64,
    ) {
        entry.receiving = cqueue::more(flags);
        // Every receive into the pool is recorded, whoever it was for: with incremental
        // consumption, where a buffer's next bytes start depends on it.
        if let (1.., Some(bid)) = (result, cqueue::buffer_select(flags)) {
            let len = result as usize;
            let range = self.pool.received(bid, len, cqueue::buffer_more(flags));
            if !entry.ended {
                let answered = entry.conn.consume(self.pool.bytes(bid, range), now);
                ctx.live.add(answered, len as u64);
                self.send(i, entry);
            }
            self.pool.give_back_if_unused(bid);
        }
        if entry.ended {
            return;
        }
        match result {
            0 => self.break_off(i, entry, &io::ErrorKind::UnexpectedEof.into()),
            1.. => {}
            _ if -result == rustix::io::Errno::NOBUFS.raw_os_error() => {
                // The pool was empty for a moment; buffers come back within the turn.
            }
            _ => self.break_off(i, entry, &io::Error::from_raw_os_error(-result)),
        }
        if !entry.ended && !entry.receiving {
            self.arm_receive(i, entry);
        }
    }

    /// A send completion for connection `i`.
    fn sent(&mut self, i: usize, entry: &mut Entry<'_>, result: i32) {
        entry.sending = false;
        if entry.ended {
            return;
        }
        match usize::try_from(result) {
            Ok(0) => self.break_off(i, entry, &io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                entry.conn.advance(n);
                self.send(i, entry);
            }
            Err(_) => self.break_off(i, entry, &io::Error::from_raw_os_error(-result)),
        }
    }

    fn arm_receive(&mut self, i: usize, entry: &mut Entry<'_>) {
        let fd = types::Fd(entry.fd.as_raw_fd());
        let recv = opcode::RecvMulti::new(fd, BUF_GROUP)
            .build()
            .user_data(user_data(i, RECV));
        // SAFETY: the receive writes only into pool buffers, which the pool keeps until every
        // request has completed (`reap_all`), or leaks.
        unsafe { push(&mut self.ring, &recv) };
        entry.receiving = true;
    }

    /// Sends what connection `i` has queued, unless a send is already in flight.
    fn send(&mut self, i: usize, entry: &mut Entry<'_>) {
        if entry.sending || entry.ended {
            return;
        }
        let fd = entry.fd.as_raw_fd();
        let Some(send) = send_request(&mut entry.slot, &entry.conn, fd, user_data(i, SEND)) else {
            return;
        };
        // SAFETY: see `send_request`; the slot is not touched again until this send completes
        // (`sending`), and is dropped only after every request has completed (`reap_all`), or
        // leaked. (If the ring failed, the pattern is freed after the ring's descriptor is
        // closed, which ends its requests.)
        unsafe { push(&mut self.ring, &send) };
        entry.sending = true;
    }

    /// Open loop: queues what has fallen due by `now` and sends it; returns the next send
    /// time to wait for, if it is not already in the heap.
    fn pace(&mut self, i: usize, entry: &mut Entry<'_>, now: u64) -> Option<u64> {
        if entry.ended || entry.conn.flow.plan.pacing.is_none() {
            return None;
        }
        let next = entry.conn.flow.queue_due(now);
        self.send(i, entry);
        if next == entry.scheduled {
            return None;
        }
        entry.scheduled = next;
        next
    }

    /// Ends connection `i` if it has nothing left to do.
    fn settle(&mut self, i: usize, entry: &mut Entry<'_>) {
        let all_out = !entry.sending && entry.conn.unwritten().is_none();
        if !entry.ended && entry.conn.flow.finished(all_out) {
            self.end(i, entry);
        }
    }

    fn break_off(&mut self, i: usize, entry: &mut Entry<'_>, e: &io::Error) {
        entry.conn.broken(e);
        self.end(i, entry);
    }

    /// Stops connection `i`: cancels its requests. Its socket closes when the loop is done,
    /// after they have completed.
    fn end(&mut self, i: usize, entry: &mut Entry<'_>) {
        entry.ended = true;
        self.live -= 1;
        if entry.outstanding() {
            cancel_all(&mut self.ring, entry.fd.as_raw_fd(), user_data(i, CANCEL));
        }
    }

    /// After the run: ends every connection and waits until none has a request left in the
    /// kernel, so that the pool and the send slots can be freed. Requests still there after
    /// [`REAP_LIMIT`] (a cancel that did not take, which should not happen) make it an error,
    /// and the caller leaks the memory instead.
    fn reap_all(&mut self, entries: &mut [Entry<'_>]) -> io::Result<()> {
        for (i, entry) in entries.iter_mut().enumerate() {
            if !entry.ended {
                self.end(i, entry);
            }
        }
        let began = Instant::now();
        while entries.iter().any(Entry::outstanding) {
            let Some(left) = REAP_LIMIT.checked_sub(began.elapsed()) else {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "requests still in the kernel after cancelling them",
                ));
            };
            turn(&mut self.ring, &mut self.pool, left)?;
            for completion in self.ring.completion() {
                let data = completion.user_data();
                let entry = &mut entries[(data >> 8) as usize];
                match data & 0xff {
                    RECV => {
                        let (result, flags) = (completion.result(), completion.flags());
                        entry.receiving = cqueue::more(flags);
                        if let (1.., Some(bid)) = (result, cqueue::buffer_select(flags)) {
                            self.pool
                                .received(bid, result as usize, cqueue::buffer_more(flags));
                            self.pool.give_back_if_unused(bid);
                        }
                    }
                    SEND => entry.sending = false,
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// The turn's wait ended at its timeout, not with a completion.
pub(super) fn timed_out(e: &io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::TIME.raw_os_error())
}
