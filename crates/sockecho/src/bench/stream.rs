//! Stream connections (TCP, TLS, WebSocket, Unix): send messages, read the echoed byte stream back, and
//! verify each reply as its bytes arrive, in closed or open loop.
//!
//! The hot path allocates nothing and registers no timer per message. Outgoing messages are
//! never built in a buffer: a write gathers each message's 16-byte header from the stack and its
//! filler straight from the shared pattern, up to 32 messages per system call. Incoming bytes land
//! in the thread's scratch buffer and are compared in place, so a connection holds no buffer of
//! its own whatever the message size. The clock is read once per read or write batch.
//!
//! A connection is a state machine ([`StreamConn`]) that writes what is queued, reads what has
//! arrived, and settles replies. Three loops drive it. Plain TCP and Unix connections run in
//! the load thread's own loop, with no task or waker per connection: the io_uring loop
//! (`uring`), which hands the state machine the bytes each receive completion brought and
//! sends what it has queued, or where io_uring is not available the epoll loop (`reactor`),
//! which reaches the socket through [`Wire`]. TLS connections, whose records rustls buffers on
//! the way, and WebSocket ones, whose frames tungstenite builds, each run as a tokio task
//! ([`run`]) that waits through [`AsyncWire`].

use std::io::{self, IoSlice};
use std::rc::Rc;

use super::flow::{End, Flow, interest};
use super::plan::{ConnPlan, ThreadCtx};
use super::recorder::Fault;
use super::timing::{Pacer, fire};
use super::window::Match;
use super::wire::{AsyncWire, Wire};
use crate::payload::{HEADER_LEN, Pattern, header, parse_header};

/// The unwritten part of message `seq` (header `h`), from byte `skip` on, as up to two slices:
/// what is left of the header, then the filler straight from the shared pattern.
pub(crate) fn message_slices<'a>(
    pattern: &'a Pattern,
    h: &'a [u8; HEADER_LEN],
    seq: u64,
    skip: usize,
) -> ([IoSlice<'a>; 2], usize) {
    let size = pattern.size();
    let hl = pattern.header_len();
    let mut iov = [IoSlice::new(&[]); 2];
    let mut n = 0;
    if skip < hl {
        iov[n] = IoSlice::new(&h[skip..hl]);
        n += 1;
    }
    if size > HEADER_LEN {
        let from = skip.max(HEADER_LEN);
        iov[n] = IoSlice::new(pattern.filler(seq, from, size - from));
        n += 1;
    }
    (iov, n)
}

/// Messages gathered into one write.
pub(crate) const WRITE_BATCH: usize = 32;

/// Reads per wake-up before other connections get a turn.
const READS_PER_WAKE: usize = 8;

/// Which message the reply being read answers, decided once its header is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReplyTo {
    /// Header not complete yet.
    Undecided,
    /// A reply to this pending message.
    Pending(u64),
    /// A second reply to this message.
    Duplicate(u64),
    /// Bytes when nothing is in flight.
    Stray,
}

/// The reply being read.
#[derive(Debug)]
struct Incoming {
    /// Bytes of it received.
    pos: usize,
    header: [u8; HEADER_LEN],
    reply_to: ReplyTo,
    /// Some byte differs from what was sent.
    corrupt: bool,
}

impl Incoming {
    fn new() -> Incoming {
        Incoming {
            pos: 0,
            header: [0; HEADER_LEN],
            reply_to: ReplyTo::Undecided,
            corrupt: false,
        }
    }
}

/// What one [`StreamConn::read`] did.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reads {
    /// Clock time of the last read that returned data, if any, so the caller need not read
    /// the clock again.
    pub at: Option<u64>,
    /// The read stopped at [`READS_PER_WAKE`] with bytes possibly still waiting, rather than
    /// at an empty socket. Only the load threads' own loops (Linux) look.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub more: bool,
}

/// One stream connection's state.
pub(crate) struct StreamConn<'a> {
    pub flow: Flow<'a>,
    /// First message not completely written; messages from it to `window.next_seq()` are queued.
    next_write: u64,
    /// Bytes of `next_write` already written.
    write_offset: usize,
    incoming: Incoming,
}

/// Drives one connection as a tokio task until the run ends or the connection breaks, then
/// adds its counts to the thread's totals.
pub(crate) async fn run(ctx: Rc<ThreadCtx>, mut socket: impl AsyncWire, plan: ConnPlan) {
    let mut conn = StreamConn::new(&ctx, plan);
    if let End::Broken(e) = conn.drive(&mut socket).await {
        conn.broken(&e);
    }
    conn.finish();
}

impl<'a> StreamConn<'a> {
    pub fn new(ctx: &'a ThreadCtx, plan: ConnPlan) -> StreamConn<'a> {
        StreamConn {
            flow: Flow::new(ctx, plan),
            next_write: 0,
            write_offset: 0,
            incoming: Incoming::new(),
        }
    }

    /// Churn: a new connection of this slot is open at `now` (its attempt began at `began`);
    /// whether it counts in the measured period. See [`Flow::restart`].
    pub fn restart(&mut self, began: u64, now: u64) -> bool {
        self.next_write = 0;
        self.write_offset = 0;
        self.incoming = Incoming::new();
        self.flow.restart(began, now)
    }

    /// Churn: whether the connection has exchanged what it was to (see [`Flow::exchanged`]).
    pub fn exchanged(&self, now: u64) -> bool {
        self.flow.exchanged(self.unwritten().is_none(), now)
    }

    /// Adds the connection's counts to its thread's totals.
    pub fn finish(mut self) {
        self.flow.commit();
    }

    async fn drive(&mut self, socket: &mut impl AsyncWire) -> End {
        let clock = self.flow.ctx.clock;
        let (mut pacer, mut now) = match self.flow.begin().await {
            Ok(begun) => begun,
            Err(e) => return End::Broken(e),
        };
        let phase = self.flow.phase_timer();
        tokio::pin!(phase);
        let mut end = self.flow.ctx.end.clone();
        loop {
            // Open loop goes on sending what fell due before the end for a short catch-up
            // after it (`ThreadCtx::catch_up_end`), not through the whole final wait.
            self.flow.send_due(now, pacer.as_mut());
            let all_written = match self.flush(socket) {
                Ok(done) => done,
                Err(e) => return End::Broken(e),
            };
            if self.flow.finished(all_written) {
                return End::Finished;
            }
            let armed = pacer.as_ref().is_some_and(Pacer::is_armed);
            let mut read_at = None;
            tokio::select! {
                biased;
                ready = socket.ready(interest(all_written)) => match ready {
                    Ok(ready) if ready.is_readable() || ready.is_read_closed() => {
                        match self.read(socket) {
                            Ok(reads) => read_at = reads.at,
                            Err(e) => return End::Broken(e),
                        }
                    }
                    Ok(_) => {}
                    Err(e) => return End::Broken(e),
                },
                fired = fire(&mut pacer), if armed => {
                    if let Err(e) = fired {
                        return End::Broken(e);
                    }
                }
                () = &mut phase => {
                    if self.flow.phase_ended(phase.as_mut()) {
                        return End::Finished;
                    }
                }
                Ok(()) = end.changed() => self.flow.end_moved(phase.as_mut()),
            }
            now = read_at.unwrap_or_else(|| clock.now());
            self.flow.drain_if_over(now, phase.as_mut());
        }
    }

    /// Writes queued messages until done or the socket is full. `Ok(true)` when all are out.
    pub fn flush(&mut self, socket: &mut impl Wire) -> io::Result<bool> {
        let pattern = &self.flow.ctx.pattern;
        let id = self.flow.plan.id;
        loop {
            let queued = self.flow.window.next_seq() - self.next_write;
            if queued == 0 {
                return Ok(true);
            }
            let first = self.next_write;
            let written = if queued == 1 {
                // The common case in closed loop: one message, no batch arrays to fill.
                let h = header(first, id);
                let (iov, n) = message_slices(pattern, &h, first, self.write_offset);
                socket.write_vectored(&iov[..n])
            } else {
                let count = (queued as usize).min(WRITE_BATCH);
                let mut headers = [[0u8; HEADER_LEN]; WRITE_BATCH];
                for (j, h) in headers.iter_mut().take(count).enumerate() {
                    *h = header(first + j as u64, id);
                }
                let mut iov = [IoSlice::new(&[]); 2 * WRITE_BATCH];
                let mut n_iov = 0;
                for (j, h) in headers.iter().take(count).enumerate() {
                    let skip = if j == 0 { self.write_offset } else { 0 };
                    let (slices, n) = message_slices(pattern, h, first + j as u64, skip);
                    iov[n_iov..n_iov + n].copy_from_slice(&slices[..n]);
                    n_iov += n;
                }
                socket.write_vectored(&iov[..n_iov])
            };
            match written {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
    }

    /// The queued messages not completely written yet: the first one's sequence number, how
    /// many (at most [`WRITE_BATCH`]), and how many bytes of the first are already written.
    /// `None` when everything queued is out.
    pub fn unwritten(&self) -> Option<(u64, usize, usize)> {
        let queued = self.flow.window.next_seq() - self.next_write;
        (queued > 0).then(|| {
            (
                self.next_write,
                (queued as usize).min(WRITE_BATCH),
                self.write_offset,
            )
        })
    }

    /// Moves the write position on by `n` bytes written.
    pub fn advance(&mut self, mut n: usize) {
        let size = self.flow.ctx.pattern.size();
        while n > 0 {
            let left = size - self.write_offset;
            if n >= left {
                n -= left;
                self.next_write += 1;
                self.write_offset = 0;
            } else {
                self.write_offset += n;
                n = 0;
            }
        }
    }

    /// Reads and checks whatever has arrived, up to [`READS_PER_WAKE`] reads.
    pub fn read(&mut self, socket: &mut impl Wire) -> io::Result<Reads> {
        let ctx = self.flow.ctx;
        let mut last = None;
        for _ in 0..READS_PER_WAKE {
            let mut scratch = ctx.scratch.borrow_mut();
            let n = match socket.read(&mut scratch) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(Reads {
                        at: last,
                        more: false,
                    });
                }
                Err(e) => return Err(e),
            };
            let now = ctx.clock.now();
            last = Some(now);
            let answered = self.consume(&scratch[..n], now);
            ctx.live.add(answered, n as u64);
            // A churn connection that is done reads no further: the server may close right
            // after its last reply, and that end is not a failure.
            if n < scratch.len() || self.exchanged(now) {
                // A short read emptied the socket.
                return Ok(Reads {
                    at: last,
                    more: false,
                });
            }
        }
        Ok(Reads {
            at: last,
            more: true,
        })
    }

    /// Checks received bytes against the messages in flight; returns replies completed.
    pub fn consume(&mut self, mut data: &[u8], now: u64) -> u64 {
        let pattern = &self.flow.ctx.pattern;
        let size = pattern.size();
        let hl = pattern.header_len();
        let mut completed = 0;
        while !data.is_empty() {
            let pos = self.incoming.pos;
            if pos < hl {
                let take = (hl - pos).min(data.len());
                self.incoming.header[pos..pos + take].copy_from_slice(&data[..take]);
                self.incoming.pos += take;
                data = &data[take..];
                if self.incoming.pos == hl {
                    self.decide_reply_to();
                }
            } else {
                let take = (size - pos).min(data.len());
                if let ReplyTo::Pending(seq) | ReplyTo::Duplicate(seq) = self.incoming.reply_to
                    && !pattern.matches(seq, self.flow.plan.id, pos, &data[..take])
                {
                    self.incoming.corrupt = true;
                }
                self.incoming.pos += take;
                data = &data[take..];
            }
            if self.incoming.pos == size {
                self.complete(now);
                completed += 1;
            }
        }
        completed
    }

    /// Identifies the reply whose header has just arrived.
    fn decide_reply_to(&mut self) {
        let pattern = &self.flow.ctx.pattern;
        let hl = pattern.header_len();
        let id = self.flow.plan.id;
        let Some(expected) = self.flow.window.oldest_pending() else {
            self.incoming.reply_to = ReplyTo::Stray;
            return;
        };
        let inc = &mut self.incoming;
        if hl < HEADER_LEN {
            // Too short to name itself: it must be the next reply in order.
            inc.corrupt = !pattern.matches(expected, id, 0, &inc.header[..hl]);
            inc.reply_to = ReplyTo::Pending(expected);
            return;
        }
        inc.reply_to = match parse_header(&inc.header) {
            Some(h)
                if h.conn == id && (h.seq == expected || self.flow.window.is_pending(h.seq)) =>
            {
                ReplyTo::Pending(h.seq)
            }
            Some(h) if h.conn == id && self.flow.window.was_sent(h.seq) => {
                ReplyTo::Duplicate(h.seq)
            }
            _ => {
                // A damaged header, or another connection's message: the stream still holds
                // one reply per message, so this stands in the place of the expected one.
                inc.corrupt = true;
                ReplyTo::Pending(expected)
            }
        };
    }

    /// Settles a reply whose last byte has arrived at `now`.
    fn complete(&mut self, now: u64) {
        let Incoming {
            reply_to, corrupt, ..
        } = std::mem::replace(&mut self.incoming, Incoming::new());
        let in_measured = self.flow.ctx.schedule().is_measured(now);
        let mut freed = false;
        match reply_to {
            ReplyTo::Pending(seq) if !corrupt => {
                if let Match::InFlight { sent, reordered } = self.flow.window.answer(seq) {
                    self.flow.answered(sent, reordered, now);
                    freed = true;
                }
            }
            ReplyTo::Pending(seq) => {
                if let Some(sent) = self.flow.window.fail(seq) {
                    self.flow.fault(Fault::Mismatched, sent.measured);
                    freed = true;
                }
            }
            ReplyTo::Duplicate(seq) if !corrupt => match self.flow.window.answer(seq) {
                Match::Duplicate { measured } => self.flow.fault(Fault::Duplicated, measured),
                _ => self.flow.totals.errors.late += 1,
            },
            ReplyTo::Duplicate(_) | ReplyTo::Stray | ReplyTo::Undecided => {
                self.flow.fault(Fault::Mismatched, in_measured);
            }
        }
        if freed
            && self.flow.plan.pacing.is_none()
            && self.flow.may_send(now)
            && self.flow.window.has_room(self.flow.ctx.pipeline)
        {
            self.flow.push(now, now);
        }
    }

    /// The server closed or reset the connection (`e` says how): a reply cut off mid-way is
    /// truncated, and the other messages in flight are lost.
    pub fn broken(&mut self, e: &io::Error) {
        tracing::debug!("bench connection {} broke: {e}", self.flow.plan.id);
        let now = self.flow.ctx.clock.now();
        if self.incoming.pos > 0 {
            match self.incoming.reply_to {
                ReplyTo::Pending(seq) => {
                    if let Some(sent) = self.flow.window.fail(seq) {
                        self.flow.fault(Fault::Truncated, sent.measured);
                    }
                }
                _ => {
                    let measured = match self.flow.window.oldest_pending() {
                        Some(seq) => self.flow.window.fail(seq).is_some_and(|s| s.measured),
                        None => self.flow.ctx.schedule().is_measured(now),
                    };
                    self.flow.fault(Fault::Truncated, measured);
                }
            }
        }
        self.flow.disconnected();
    }
}
