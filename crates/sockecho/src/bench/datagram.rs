//! Datagram sockets (UDP, Unix datagram): one message per datagram, each reply matched to its
//! message by the sequence number it carries, in closed or open loop.
//!
//! A reply that does not come within the timeout counts as lost and frees its pipeline slot, so a
//! lossy server slows the run down but never hangs it. The loss timer is one per socket and is
//! re-armed only when it fires (for the oldest message then in flight), not per message.

use std::io;
use std::rc::Rc;

use tokio::io::Interest;

use super::connect::DatagramSocket;
use super::payload::{HEADER_LEN, parse_header, seq_prefix};
use super::recorder::{Fault, Totals};
use super::timing::{Pacer, fire};
use super::window::{Match, Window};
use super::worker::{ConnPlan, ThreadCtx, give_up_unsent};

/// Datagrams read per wake-up before other sockets get a turn.
const RECVS_PER_WAKE: usize = 64;

/// How the socket's run ended.
enum End {
    Finished,
    Broken(io::Error),
}

struct Conn<'a> {
    ctx: &'a ThreadCtx,
    plan: ConnPlan,
    window: Window,
    /// First queued message not yet sent; those from it to `window.next_seq()` wait for room
    /// in the socket buffer.
    next_send: u64,
    totals: Totals,
    draining: bool,
}

/// Drives one datagram socket until the run ends, then adds its counts to the thread's totals.
pub(crate) async fn run(ctx: Rc<ThreadCtx>, socket: DatagramSocket, plan: ConnPlan) {
    let mut conn = Conn {
        ctx: &ctx,
        plan,
        window: Window::new(ctx.pipeline),
        next_send: 0,
        totals: Totals::default(),
        draining: false,
    };
    if let End::Broken(e) = conn.drive(&socket).await {
        if e.raw_os_error() == Some(rustix::io::Errno::MSGSIZE.raw_os_error()) {
            tracing::warn!(
                "{}-byte datagrams are too large for this socket: {e}",
                ctx.pattern.size()
            );
        } else {
            tracing::debug!("bench socket {} failed: {e}", conn.plan.id);
        }
        let totals = &mut conn.totals;
        conn.window.lose_all(|m| totals.fault(Fault::Lost, m));
        conn.totals.errors.disconnected += 1;
    }
    ctx.recorder.totals.borrow_mut().add(&conn.totals);
}

impl Conn<'_> {
    async fn drive(&mut self, socket: &DatagramSocket) -> End {
        let ctx = self.ctx;
        let clock = ctx.clock;
        let schedule = ctx.schedule;
        tokio::time::sleep_until(clock.tokio_instant(schedule.start)).await;
        let mut pacer = match self.plan.pacing {
            Some(_) => match Pacer::new(clock) {
                Ok(p) => Some(p),
                Err(e) => return End::Broken(e),
            },
            None => None,
        };
        let phase = tokio::time::sleep_until(clock.tokio_instant(schedule.end));
        tokio::pin!(phase);
        let loss = tokio::time::sleep_until(clock.tokio_instant(schedule.end));
        tokio::pin!(loss);
        let mut loss_armed = false;

        let mut now = clock.now();
        if self.plan.pacing.is_none() {
            for _ in 0..ctx.pipeline {
                self.push(now, now);
            }
        }
        loop {
            // Open loop goes on sending what fell due before the end, even in the final wait.
            if self.plan.pacing.is_some() {
                self.send_due(now, pacer.as_mut());
            }
            let all_sent = match self.flush(socket) {
                Ok(done) => done,
                Err(e) => return End::Broken(e),
            };
            if self.draining && all_sent && self.window.pending() == 0 && self.nothing_due() {
                return End::Finished;
            }
            if !loss_armed && let Some(oldest) = self.window.oldest_wire_at() {
                loss.as_mut()
                    .reset(clock.tokio_instant(oldest + ctx.timeout_ns));
                loss_armed = true;
            }
            let interest = if all_sent {
                Interest::READABLE
            } else {
                Interest::READABLE | Interest::WRITABLE
            };
            let armed = pacer.as_ref().is_some_and(Pacer::is_armed);
            tokio::select! {
                biased;
                ready = socket.ready(interest) => match ready {
                    Ok(ready) if ready.is_readable() => {
                        if let Err(e) = self.receive(socket) {
                            return End::Broken(e);
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
                () = &mut loss, if loss_armed => {
                    loss_armed = false;
                    let now = clock.now();
                    self.expire(now);
                }
                () = &mut phase => {
                    if self.draining {
                        self.give_up();
                        return End::Finished;
                    }
                    self.draining = true;
                    phase.as_mut().reset(clock.tokio_instant(schedule.end + ctx.timeout_ns));
                }
            }
            now = clock.now();
            if !self.draining && now >= schedule.end {
                self.draining = true;
                phase
                    .as_mut()
                    .reset(clock.tokio_instant(schedule.end + ctx.timeout_ns));
            }
        }
    }

    /// Whether no scheduled message is still waiting to go out (always, in closed loop).
    fn nothing_due(&self) -> bool {
        self.plan
            .pacing
            .is_none_or(|p| p.due(self.window.next_seq()) >= self.ctx.schedule.end)
    }

    /// Ends the final wait: messages in flight, and scheduled ones never sent, are lost.
    fn give_up(&mut self) {
        let totals = &mut self.totals;
        self.window.lose_all(|m| totals.fault(Fault::Lost, m));
        give_up_unsent(
            self.plan.pacing,
            self.window.next_seq(),
            &self.ctx.schedule,
            self.ctx.pattern.size(),
            &mut self.totals,
        );
    }

    fn push(&mut self, sent_at: u64, wire_at: u64) {
        let schedule = &self.ctx.schedule;
        let measured = sent_at >= schedule.warm_end && sent_at < schedule.end;
        self.window.push(sent_at, wire_at, measured);
        if measured {
            self.totals.messages_sent += 1;
            self.totals.bytes_sent += self.ctx.pattern.size() as u64;
        }
    }

    /// Closed loop: a resolved message makes room for the next one.
    fn refill(&mut self, now: u64) {
        if self.plan.pacing.is_some() || self.draining || now >= self.ctx.schedule.end {
            return;
        }
        while self.window.has_room(self.ctx.pipeline) {
            self.push(now, now);
        }
    }

    fn send_due(&mut self, now: u64, pacer: Option<&mut Pacer>) {
        let Some(pacing) = self.plan.pacing else {
            return;
        };
        while self.window.has_room(self.ctx.pipeline) {
            let due = pacing.due(self.window.next_seq());
            if due >= self.ctx.schedule.end {
                return;
            }
            if due > now {
                if let Some(p) = pacer
                    && let Err(e) = p.arm(due)
                {
                    tracing::warn!("cannot set the send timer: {e}");
                }
                return;
            }
            self.push(due, now);
        }
    }

    /// Sends queued messages until done or the socket is full. `Ok(true)` when all are out.
    fn flush(&mut self, socket: &DatagramSocket) -> io::Result<bool> {
        let pattern = &self.ctx.pattern;
        let size = pattern.size();
        while self.next_send < self.window.next_seq() {
            let mut buf = self.ctx.send_buf.borrow_mut();
            pattern.write(self.next_send, self.plan.id, &mut buf[..size]);
            match socket.try_send(&buf[..size]) {
                Ok(_) => self.next_send += 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    // An ICMP "port unreachable" for an earlier datagram; this one may still
                    // arrive if the server comes back, and times out otherwise.
                    self.totals.errors.refused += 1;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Reads and checks the replies that have arrived.
    fn receive(&mut self, socket: &DatagramSocket) -> io::Result<()> {
        let ctx = self.ctx;
        let size = ctx.pattern.size();
        let mut replies = 0;
        let mut bytes = 0;
        for _ in 0..RECVS_PER_WAKE {
            let mut scratch = ctx.scratch.borrow_mut();
            // One byte more than a message, so a longer reply shows as longer.
            let buf = &mut scratch[..size + 1];
            match socket.try_recv(buf) {
                Ok(n) => {
                    let now = ctx.clock.now();
                    self.check(&buf[..n], now);
                    replies += 1;
                    bytes += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    self.totals.errors.refused += 1;
                }
                Err(e) => return Err(e),
            }
        }
        ctx.live.add(replies, bytes);
        Ok(())
    }

    /// Settles one reply received at `now`.
    fn check(&mut self, reply: &[u8], now: u64) {
        let pattern = &self.ctx.pattern;
        let size = pattern.size();
        let id = self.plan.id;
        let in_measured = self.ctx.schedule.is_measured(now);
        if reply.is_empty() {
            self.totals.fault(Fault::Truncated, in_measured);
            return;
        }
        let candidate = if size >= HEADER_LEN && reply.len() >= HEADER_LEN {
            let mut h = [0u8; HEADER_LEN];
            h.copy_from_slice(&reply[..HEADER_LEN]);
            parse_header(&h).filter(|h| h.conn == id).map(|h| h.seq)
        } else {
            let (low, bits) = seq_prefix(&reply[..reply.len().min(pattern.header_len())]);
            self.window.unwrap_seq(low, bits)
        };
        let Some(seq) = candidate else {
            self.totals.fault(Fault::Mismatched, in_measured);
            return;
        };
        let compared = reply.len().min(size);
        let fault = if reply.len() > size || !pattern.matches(seq, id, 0, &reply[..compared]) {
            Some(Fault::Mismatched)
        } else if reply.len() < size {
            Some(Fault::Truncated)
        } else {
            None
        };
        if let Some(fault) = fault {
            match self.window.fail(seq) {
                Some(sent) => {
                    self.totals.fault(fault, sent.measured);
                    self.refill(now);
                }
                None => self.totals.fault(fault, in_measured),
            }
            return;
        }
        match self.window.answer(seq) {
            Match::InFlight { sent, reordered } => {
                if reordered {
                    self.totals.fault(Fault::Reordered, sent.measured);
                }
                if sent.measured {
                    self.totals.messages_received += 1;
                    self.totals.bytes_received += size as u64;
                    self.ctx
                        .recorder
                        .latency
                        .borrow_mut()
                        .saturating_record(now.saturating_sub(sent.sent_at));
                }
                self.refill(now);
            }
            Match::Duplicate { measured } => self.totals.fault(Fault::Duplicated, measured),
            Match::Late => self.totals.errors.late += 1,
            Match::Unknown => self.totals.fault(Fault::Mismatched, in_measured),
        }
    }

    /// Counts as lost every message whose reply is overdue at `now`.
    fn expire(&mut self, now: u64) {
        let cutoff = now.saturating_sub(self.ctx.timeout_ns);
        let totals = &mut self.totals;
        self.window.expire(cutoff, |m| totals.fault(Fault::Lost, m));
        self.refill(now);
    }
}
