//! The load thread's own event loop for plain TCP and Unix stream connections: one epoll set,
//! one `epoll_wait` per turn, and each ready connection's [`StreamConn`] stepped in place — no
//! task, waker or timer per connection.
//!
//! Why not a tokio task per connection, as TLS uses: at 50 connections × 64 B against a fast
//! server, tokio's scheduling, readiness bookkeeping and per-task state made `bench` spend
//! about 10 % more CPU per echo than the server it measured. This loop does what a minimal C
//! load generator does and no more:
//!
//! - Every socket is registered once, edge-triggered, for reading, writing and the peer's close,
//!   so a round trip costs one `recv` and one `sendmsg`; `epoll_ctl` is never called again.
//! - A connection that read [`READS_PER_WAKE`](super::stream) full buffers in a row gets its
//!   next turn without waiting, so a bulk stream cannot starve the others, and no edge is lost.
//! - Open loop: one `timerfd` for the thread, set to the earliest send time of any connection
//!   (a min-heap holds each connection's next one), so sends keep microsecond precision.
//! - The run's phases (measured period, final wait for replies) end for every connection at
//!   once; `epoll_wait`'s timeout is the next phase end.

use std::io::{self, IoSlice};
use std::os::fd::OwnedFd;

use rustix::buffer::spare_capacity;
use rustix::event::{Timespec, epoll};

use super::plan::{ConnPlan, STOP_POLL, ThreadCtx};
use super::stream::StreamConn;
use super::timing::{SendTimes, Timer};
use super::wire::{Wire, send_once};

/// Epoll data of the pacing timer; connections use their index.
const TIMER: u64 = u64::MAX;
/// Events taken per `epoll_wait`.
const EVENTS: usize = 256;

/// A connected, non-blocking plain stream socket.
#[derive(Debug)]
pub(crate) struct Plain(OwnedFd);

impl Plain {
    pub fn new(fd: OwnedFd) -> Plain {
        Plain(fd)
    }

    pub fn fd(&self) -> &OwnedFd {
        &self.0
    }

    pub fn into_fd(self) -> OwnedFd {
        self.0
    }
}

impl Wire for Plain {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (n, _) = rustix::net::recv(&self.0, buf, rustix::net::RecvFlags::empty())?;
        Ok(n)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        send_once(&self.0, bufs)
    }
}

/// One connection of the loop.
struct Entry<'a> {
    conn: StreamConn<'a>,
    /// `None` once the connection has finished or broken (its socket is closed then).
    wire: Option<Plain>,
    /// Every queued message is written.
    all_out: bool,
    /// Open loop: the send time this connection waits for in the heap, if any.
    scheduled: Option<u64>,
    /// [`settle`](Entry::settle) has counted it closed.
    counted_closed: bool,
    /// epoll reported the peer's end (RDHUP, HUP or ERR). Edge-triggered, it says so once,
    /// and possibly in the same event as the last bytes before it.
    hung_up: bool,
}

impl Entry<'_> {
    /// Writes what is queued; a failed write breaks the connection.
    fn flush(&mut self) {
        let Some(wire) = self.wire.as_mut() else {
            return;
        };
        match self.conn.flush(wire) {
            Ok(all_out) => self.all_out = all_out,
            Err(e) => self.break_off(&e),
        }
    }

    /// Reads what has arrived, then writes what the replies made room for. `true` if the read
    /// stopped with bytes possibly left, so the connection needs another turn.
    fn read(&mut self, now: u64) -> bool {
        let Some(wire) = self.wire.as_mut() else {
            return false;
        };
        let mut result = self.conn.read(wire);
        // A short read stops at the end of the bytes queued, before a FIN queued behind them.
        // When the peer has hung up, no further edge will come for that end, so one more read
        // must meet it now, or a connection the server closed would wait out the run. One
        // that is done (a churn connection's last reply is in) may meet that end unread.
        if self.hung_up
            && matches!(result, Ok(ref reads) if !reads.more)
            && !self.conn.flow.finished(self.all_out)
            && !self.conn.exchanged(now)
        {
            result = self.conn.read(wire);
        }
        match result {
            Ok(reads) => {
                self.flush();
                reads.more && self.wire.is_some()
            }
            Err(e) => {
                self.break_off(&e);
                false
            }
        }
    }

    fn break_off(&mut self, e: &io::Error) {
        self.conn.broken(e);
        self.wire = None;
    }

    /// Closes the connection if it has nothing left to do. `true` the first time it finds
    /// the connection closed (by this or by a failure), so the caller counts each close once.
    fn settle(&mut self) -> bool {
        if self.wire.is_some() && self.conn.flow.finished(self.all_out) {
            self.wire = None;
        }
        if self.wire.is_none() && !self.counted_closed {
            self.counted_closed = true;
            return true;
        }
        false
    }

    /// Open loop: queues what has fallen due by `now` and writes it; returns the next send
    /// time to wait for, if it is not already in the heap.
    fn pace(&mut self, now: u64) -> Option<u64> {
        if self.wire.is_none() || self.conn.flow.plan.pacing.is_none() {
            return None;
        }
        let next = self.conn.flow.queue_due(now);
        self.flush();
        if next == self.scheduled {
            return None;
        }
        self.scheduled = next;
        next
    }
}

/// Runs the thread's plain stream connections from the start of the run to its end, then adds
/// their counts to the thread's totals. If the loop cannot be set up (no epoll or timer), every
/// connection counts as disconnected and the error is logged.
pub(crate) fn run(ctx: &ThreadCtx, sockets: Vec<(ConnPlan, OwnedFd)>) {
    let mut entries: Vec<Entry<'_>> = sockets
        .into_iter()
        .map(|(plan, fd)| Entry {
            conn: StreamConn::new(ctx, plan),
            wire: Some(Plain::new(fd)),
            all_out: true,
            scheduled: None,
            counted_closed: false,
            hung_up: false,
        })
        .collect();
    if let Err(e) = drive(ctx, &mut entries) {
        tracing::error!("the load thread's event loop failed: {e}");
        for entry in &mut entries {
            if entry.wire.is_some() {
                entry.break_off(&e);
            }
        }
    }
    for entry in entries {
        entry.conn.finish();
    }
}

fn drive(ctx: &ThreadCtx, entries: &mut [Entry<'_>]) -> io::Result<()> {
    let clock = ctx.clock;
    let ep = epoll::create(epoll::CreateFlags::CLOEXEC)?;
    let paced = entries.iter().any(|e| e.conn.flow.plan.pacing.is_some());
    let mut timer = if paced {
        Some(Timer::new(clock)?)
    } else {
        None
    };
    if let Some(timer) = &timer {
        epoll::add(
            &ep,
            timer,
            epoll::EventData::new_u64(TIMER),
            epoll::EventFlags::IN,
        )?;
    }
    let flags = epoll::EventFlags::IN
        | epoll::EventFlags::OUT
        | epoll::EventFlags::RDHUP
        | epoll::EventFlags::ET;
    for (i, entry) in entries.iter().enumerate() {
        if let Some(wire) = &entry.wire {
            epoll::add(&ep, &wire.0, epoll::EventData::new_u64(i as u64), flags)?;
        }
    }

    ctx.sleep_until_start();
    let mut now = clock.now();
    let mut due = SendTimes::default();
    for (i, entry) in entries.iter_mut().enumerate() {
        entry.conn.flow.start(now);
        entry.flush();
        if let Some(at) = entry.pace(now) {
            due.push(at, i);
        }
    }

    let mut open = entries.len();
    for entry in entries.iter_mut() {
        open -= usize::from(entry.settle());
    }
    let mut draining = false;
    let mut again: Vec<usize> = Vec::new();
    let mut turn: Vec<usize> = Vec::new();
    let mut events = Vec::with_capacity(EVENTS);
    while open > 0 {
        if let (Some(timer), Some(at)) = (timer.as_mut(), due.next()) {
            timer.arm(at)?;
        }
        // A stop (Ctrl-C) moves the end earlier; it is noticed within a turn, or within
        // STOP_POLL when the loop has nothing to do.
        let deadline = ctx.phase_deadline(draining);
        let wait = if again.is_empty() {
            let left = deadline
                .saturating_sub(clock.now())
                .min(STOP_POLL.as_nanos() as u64);
            Timespec {
                tv_sec: (left / 1_000_000_000) as i64,
                tv_nsec: (left % 1_000_000_000) as i64,
            }
        } else {
            Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            }
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
            let i = event.data.u64();
            if i == TIMER {
                if let Some(timer) = timer.as_mut() {
                    timer.take_expiry()?;
                }
                continue;
            }
            let i = i as usize;
            let flags = event.flags;
            let readable = flags.intersects(
                epoll::EventFlags::IN
                    | epoll::EventFlags::RDHUP
                    | epoll::EventFlags::HUP
                    | epoll::EventFlags::ERR,
            );
            let entry = &mut entries[i];
            entry.hung_up |= flags.intersects(
                epoll::EventFlags::RDHUP | epoll::EventFlags::HUP | epoll::EventFlags::ERR,
            );
            if !entry.all_out && flags.contains(epoll::EventFlags::OUT) {
                entry.flush();
            }
            // A connection also carried over from last turn is read below, once.
            if readable && !turn.contains(&i) {
                step(entries, i, now, &mut due, &mut again, &mut open);
            } else {
                open -= usize::from(entries[i].settle());
            }
        }
        // Connections that stopped reading at the cap last turn: their bytes produce no new
        // edge, so they are read again here.
        for &i in &turn {
            step(entries, i, now, &mut due, &mut again, &mut open);
        }
        turn.clear();

        // Open loop: the sends whose time has come.
        while let Some((at, i)) = due.pop_due(now) {
            let entry = &mut entries[i];
            if entry.scheduled == Some(at) {
                entry.scheduled = None;
                if let Some(next) = entry.pace(now) {
                    due.push(next, i);
                }
                open -= usize::from(entry.settle());
            }
        }

        if now >= deadline {
            let over = draining;
            draining = true;
            for entry in entries.iter_mut().filter(|e| e.wire.is_some()) {
                if entry.conn.flow.phase_over() {
                    entry.wire = None;
                }
            }
            if over {
                break;
            }
            for entry in entries.iter_mut() {
                open -= usize::from(entry.settle());
            }
        }
    }
    Ok(())
}

/// Reads connection `i`, writes what the replies made room for (in open loop, what has fallen
/// due), and closes it if it is done or broken.
fn step(
    entries: &mut [Entry<'_>],
    i: usize,
    now: u64,
    due: &mut SendTimes,
    again: &mut Vec<usize>,
    open: &mut usize,
) {
    let entry = &mut entries[i];
    if entry.read(now) {
        again.push(i);
    }
    if let Some(at) = entry.pace(now) {
        due.push(at, i);
    }
    *open -= usize::from(entry.settle());
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::sync::Arc;

    use super::*;
    use crate::bench::plan::Schedule;
    use crate::bench::recorder::ThreadRecorder;
    use crate::bench::timing::Clock;
    use crate::payload::Pattern;

    const SIZE: usize = 64 * 1024;
    const PIPELINE: usize = 16;
    /// The measured period of the runs below, in milliseconds.
    const RUN_MS: u64 = 1_000;

    fn ctx(clock: Clock, run_ms: u64) -> ThreadCtx {
        let start = clock.now() + 20_000_000;
        ThreadCtx {
            clock,
            pattern: Pattern::new(SIZE),
            schedule: Cell::new(Schedule {
                start,
                warm_end: start,
                end: start + run_ms * 1_000_000,
            }),
            end: tokio::sync::watch::channel(u64::MAX).1,
            pipeline: PIPELINE,
            // The peer answers the last messages only once it wakes after the end; a
            // generous wait keeps a late wake-up from counting them lost.
            timeout_ns: 10_000_000_000,
            udp_offload: false,
            recorder: ThreadRecorder::default(),
            live: Arc::default(),
            scratch: RefCell::new(vec![0; SIZE + 1]),
            send_buf: RefCell::new(vec![0; SIZE]),
            churn: None,
            send_timer: Default::default(),
        }
    }

    /// The replies to a whole pipeline are queued before the run starts, so the epoll loop's
    /// first wake-up finds 1 MiB waiting: more than one turn's reads take (8 × 64 KiB). The
    /// peer then stays silent until the measured period is over, so no new edge comes: only
    /// reading the connection again on the next turn gets the rest of the replies in time to
    /// send a second pipeline of messages before the end. The period is long enough (a
    /// second) that a loop starting late on a busy machine still sends within it.
    #[test]
    fn a_connection_with_more_than_one_turn_of_bytes_is_read_again() {
        replies_waiting_at_the_start(run);
    }

    /// The io_uring loop in the same scenario: the megabyte of replies spans many of the
    /// pool's buffers, each consumed in several receives.
    #[test]
    fn the_io_uring_loop_reads_a_megabyte_waiting_at_the_start() {
        if let Err(e) = crate::sys::uring::probe() {
            eprintln!("io_uring is not available here ({e}); nothing to test");
            return;
        }
        replies_waiting_at_the_start(|ctx, sockets| {
            crate::bench::uring::Loop::new().unwrap().run(ctx, sockets);
        });
    }

    /// The peer's one reply and its FIN are both queued before the loop's first wake-up, so
    /// epoll reports them in one edge: the short read that takes the reply must not be the
    /// last, or the end is never seen and the connection waits out the run.
    #[test]
    fn a_fin_behind_the_last_reply_ends_the_connection() {
        let (bench_end, mut peer) = UnixStream::pair().unwrap();
        bench_end.set_nonblocking(true).unwrap();
        for side in [
            rustix::fd::AsFd::as_fd(&peer),
            rustix::fd::AsFd::as_fd(&bench_end),
        ] {
            rustix::net::sockopt::set_socket_send_buffer_size(side, 4 << 20).unwrap();
        }
        peer.write_all(&Pattern::new(SIZE).message(0, 7)).unwrap();
        peer.shutdown(std::net::Shutdown::Write).unwrap();

        let ctx = ctx(Clock::new(), RUN_MS);
        let plan = ConnPlan {
            id: 7,
            pacing: None,
        };
        run(&ctx, vec![(plan, OwnedFd::from(bench_end))]);
        drop(peer);
        let totals = *ctx.recorder.totals.borrow();
        assert_eq!(totals.errors.disconnected, 1, "{totals:?}");
        // The reply made room for one more message; the pipeline then in flight is lost.
        assert_eq!(totals.messages_sent, PIPELINE as u64 + 1, "{totals:?}");
        assert_eq!(totals.messages_received, 1, "{totals:?}");
        assert_eq!(totals.errors.lost, PIPELINE as u64, "{totals:?}");
        assert_eq!(totals.errors.mismatched, 0, "{totals:?}");
    }

    fn replies_waiting_at_the_start(run: impl FnOnce(&ThreadCtx, Vec<(ConnPlan, OwnedFd)>)) {
        let (bench_end, mut peer) = UnixStream::pair().unwrap();
        bench_end.set_nonblocking(true).unwrap();
        let pattern = Pattern::new(SIZE);
        let mut replies = Vec::with_capacity(SIZE * PIPELINE);
        for seq in 0..PIPELINE as u64 {
            replies.extend_from_slice(&pattern.message(seq, 7));
        }
        // Room for everything either side sends, so neither write waits for the other.
        for side in [
            rustix::fd::AsFd::as_fd(&peer),
            rustix::fd::AsFd::as_fd(&bench_end),
        ] {
            rustix::net::sockopt::set_socket_send_buffer_size(side, 4 << 20).unwrap();
        }
        peer.write_all(&replies).unwrap();

        // After the run's end, the peer swallows the first pipeline of messages (answered
        // above) and echoes the rest until the bench side closes. Reading any earlier would
        // free send room and so hand the loop a fresh edge.
        let clock = Clock::new();
        let ctx = ctx(clock, RUN_MS);
        let end = clock.instant(ctx.schedule().end);
        let echo = std::thread::spawn(move || {
            std::thread::sleep(end.saturating_duration_since(std::time::Instant::now()));
            let mut buf = vec![0u8; SIZE * PIPELINE];
            peer.read_exact(&mut buf).unwrap();
            let mut echoed = 0u64;
            loop {
                match peer.read(&mut buf) {
                    Ok(0) | Err(_) => return echoed,
                    Ok(n) => {
                        if peer.write_all(&buf[..n]).is_err() {
                            return echoed;
                        }
                        echoed += n as u64;
                    }
                }
            }
        });

        let plan = ConnPlan {
            id: 7,
            pacing: None,
        };
        run(&ctx, vec![(plan, OwnedFd::from(bench_end))]);
        let echoed = echo.join().unwrap();
        let totals = *ctx.recorder.totals.borrow();
        assert_eq!(totals.errors.mismatched, 0, "{totals:?}");
        assert_eq!(totals.errors.lost, 0, "{totals:?}");
        assert_eq!(totals.errors.disconnected, 0, "{totals:?}");
        // All 16 replies were read before the end, so each made room for one more message.
        assert_eq!(totals.messages_sent, 2 * PIPELINE as u64, "{totals:?}");
        assert_eq!(totals.messages_received, totals.messages_sent);
        assert_eq!(echoed, (PIPELINE * SIZE) as u64);
    }
}
