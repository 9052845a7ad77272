//! Datagram sockets (UDP, Unix datagram): one message per datagram, each reply matched to its
//! message by the sequence number it carries, in closed or open loop.
//!
//! A reply that does not come within the timeout counts as lost and frees its pipeline slot, so a
//! lossy server slows the run down but never hangs it. The loss timer is one per socket and is
//! re-armed only when it fires (for the oldest message then in flight), not per message.

use std::io;
use std::rc::Rc;

use super::flow::{End, Flow, interest};
use super::plan::{ConnPlan, ThreadCtx};
use super::recorder::Fault;
use super::timing::{Pacer, fire};
use super::window::Match;
use crate::connect::DatagramSocket;
use crate::payload::{HEADER_LEN, parse_header, seq_prefix};
#[cfg(target_os = "linux")]
use crate::sys::udp::segment_note_space;

/// Off Linux a socket never takes coalesced replies, so there is no note to make room for.
#[cfg(not(target_os = "linux"))]
fn segment_note_space() -> Vec<u8> {
    Vec::new()
}

/// Receives per wake-up before other sockets get a turn.
const RECVS_PER_WAKE: usize = 64;

/// Most datagrams sent in one segmented send (`UDP_MAX_SEGMENTS` was 64 when UDP GSO came in,
/// Linux 4.18; newer kernels allow more).
const GSO_SEGMENTS: usize = 64;
/// Most bytes in one segmented send: what one IPv4 datagram could carry.
pub(crate) const GSO_BYTES: usize = 65_507;

/// One datagram socket's state: the message flow and how its bytes move.
struct DatagramConn<'a> {
    flow: Flow<'a>,
    /// First queued message not yet sent; those from it to `window.next_seq()` wait for room
    /// in the socket buffer.
    next_send: u64,
    /// Most messages per send: more than one when queued messages may leave in one segmented
    /// send (UDP GSO).
    burst: usize,
    /// With `--udp-offload`: scratch space for the kernel's note of how a received buffer
    /// divides into datagrams. `None` takes one datagram per receive, without that note.
    cmsg: Option<Vec<u8>>,
}

/// Drives one datagram socket until the run ends, then adds its counts to the thread's totals.
pub(crate) async fn run(ctx: Rc<ThreadCtx>, socket: DatagramSocket, plan: ConnPlan) {
    let size = ctx.pattern.size();
    let offload = ctx.udp_offload && socket.enable_udp_offload();
    let mut conn = DatagramConn {
        flow: Flow::new(&ctx, plan).for_datagrams(),
        next_send: 0,
        burst: if offload {
            (GSO_BYTES / size.max(1)).clamp(1, GSO_SEGMENTS)
        } else {
            1
        },
        cmsg: offload.then(segment_note_space),
    };
    if let End::Broken(e) = conn.drive(&socket).await {
        if e.raw_os_error() == Some(rustix::io::Errno::MSGSIZE.raw_os_error()) {
            tracing::warn!(
                "{}-byte datagrams are too large for this socket: {e}",
                ctx.pattern.size()
            );
        } else {
            tracing::debug!("bench socket {} failed: {e}", conn.flow.plan.id);
        }
        conn.flow.disconnected();
    }
    conn.flow.commit();
}

impl DatagramConn<'_> {
    async fn drive(&mut self, socket: &DatagramSocket) -> End {
        let clock = self.flow.ctx.clock;
        let timeout_ns = self.flow.ctx.timeout_ns;
        let (mut pacer, mut now) = match self.flow.begin().await {
            Ok(begun) => begun,
            Err(e) => return End::Broken(e),
        };
        let phase = self.flow.phase_timer();
        tokio::pin!(phase);
        // Polled only once armed, so its first deadline never matters.
        let loss = tokio::time::sleep_until(clock.tokio_instant(self.flow.ctx.schedule().end));
        tokio::pin!(loss);
        let mut loss_armed = false;
        let mut end = self.flow.ctx.end.clone();
        loop {
            // Open loop goes on sending what fell due before the end for a short catch-up
            // after it (`ThreadCtx::catch_up_end`), not through the whole final wait.
            self.flow.send_due(now, pacer.as_mut());
            let all_sent = match self.flush(socket) {
                Ok(done) => done,
                Err(e) => return End::Broken(e),
            };
            if self.flow.finished(all_sent) {
                return End::Finished;
            }
            if !loss_armed && let Some(oldest) = self.flow.window.oldest_wire_at() {
                loss.as_mut()
                    .reset(clock.tokio_instant(oldest.saturating_add(timeout_ns)));
                loss_armed = true;
            }
            let armed = pacer.as_ref().is_some_and(Pacer::is_armed);
            tokio::select! {
                biased;
                ready = socket.ready(interest(all_sent)) => match ready {
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
                    if self.flow.phase_ended(phase.as_mut()) {
                        return End::Finished;
                    }
                }
                Ok(()) = end.changed() => self.flow.end_moved(phase.as_mut()),
            }
            now = clock.now();
            self.flow.drain_if_over(now, phase.as_mut());
        }
    }

    /// Closed loop: a resolved message makes room for the next one.
    fn refill(&mut self, now: u64) {
        if self.flow.plan.pacing.is_some()
            || self.flow.draining
            || now >= self.flow.ctx.schedule().end
        {
            return;
        }
        while self.flow.window.has_room(self.flow.ctx.pipeline) {
            self.flow.push(now, now);
        }
    }

    /// Sends queued messages until done or the socket is full, several per system call where
    /// the socket allows. `Ok(true)` when all are out.
    fn flush(&mut self, socket: &DatagramSocket) -> io::Result<bool> {
        let pattern = &self.flow.ctx.pattern;
        let size = pattern.size();
        while self.next_send < self.flow.window.next_seq() {
            let queued = self.flow.window.next_seq() - self.next_send;
            let count = usize::try_from(queued)
                .unwrap_or(usize::MAX)
                .min(self.burst);
            let mut buf = self.flow.ctx.send_buf.borrow_mut();
            for (i, out) in buf[..count * size]
                .chunks_exact_mut(size.max(1))
                .enumerate()
            {
                pattern.write(self.next_send + i as u64, self.flow.plan.id, out);
            }
            let sent = if count > 1 {
                // `burst` > 1 only for sizes that fit a u16.
                socket.try_send_segmented(&buf[..count * size], size as u16)
            } else {
                socket.try_send(&buf[..size])
            };
            match sent {
                Ok(_) => self.next_send += count as u64,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if count > 1 && refuses_segments(&e) => {
                    // The route's device cannot segment (EIO), or the kernel refuses the burst
                    // (EINVAL): send one datagram per call from now on.
                    tracing::debug!("segmented send failed ({e}); sending datagrams one by one");
                    self.burst = 1;
                    self.flow.totals.offload_refused += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    // An ICMP "port unreachable" for an earlier datagram; this one may still
                    // arrive if the server comes back, and times out otherwise.
                    self.flow.refused();
                }
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Reads and checks the replies that have arrived.
    fn receive(&mut self, socket: &DatagramSocket) -> io::Result<()> {
        let ctx = self.flow.ctx;
        let mut replies = 0;
        let mut bytes = 0;
        for _ in 0..RECVS_PER_WAKE {
            let mut scratch = ctx.scratch.borrow_mut();
            // At least one byte more than a message, so a longer reply shows as longer.
            let buf = &mut scratch[..];
            let received = match self.cmsg.as_mut() {
                Some(cmsg) => socket.try_recv_segmented(buf, cmsg),
                None => socket.try_recv(buf).map(|n| (n, n)),
            };
            match received {
                Ok((n, segment)) => {
                    let now = ctx.clock.now();
                    if n == 0 {
                        self.check(&[], now);
                        replies += 1;
                    }
                    for reply in buf[..n].chunks(segment.max(1)) {
                        self.check(reply, now);
                        replies += 1;
                    }
                    bytes += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    self.flow.refused();
                }
                Err(e) => return Err(e),
            }
        }
        ctx.live.add(replies, bytes);
        Ok(())
    }

    /// Settles one reply received at `now`.
    fn check(&mut self, reply: &[u8], now: u64) {
        let pattern = &self.flow.ctx.pattern;
        let size = pattern.size();
        let id = self.flow.plan.id;
        let in_measured = self.flow.ctx.schedule().is_measured(now);
        if reply.is_empty() {
            self.flow.fault(Fault::Truncated, in_measured);
            return;
        }
        let candidate = if size >= HEADER_LEN && reply.len() >= HEADER_LEN {
            let mut h = [0u8; HEADER_LEN];
            h.copy_from_slice(&reply[..HEADER_LEN]);
            parse_header(&h).filter(|h| h.conn == id).map(|h| h.seq)
        } else {
            let (low, bits) = seq_prefix(&reply[..reply.len().min(pattern.header_len())]);
            self.flow.window.unwrap_seq(low, bits)
        };
        let Some(seq) = candidate else {
            self.flow.fault(Fault::Mismatched, in_measured);
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
            match self.flow.window.fail(seq) {
                Some(sent) => {
                    self.flow.fault(fault, sent.measured);
                    self.refill(now);
                }
                None => self.flow.fault(fault, in_measured),
            }
            return;
        }
        match self.flow.window.answer(seq) {
            Match::InFlight { sent, reordered } => {
                self.flow.answered(sent, reordered, now);
                self.refill(now);
            }
            Match::Duplicate { measured } => self.flow.fault(Fault::Duplicated, measured),
            Match::Late => self.flow.totals.errors.late += 1,
            Match::Unknown => self.flow.fault(Fault::Mismatched, in_measured),
        }
    }

    /// Counts as lost every message whose reply is overdue at `now`.
    fn expire(&mut self, now: u64) {
        let cutoff = now.saturating_sub(self.flow.ctx.timeout_ns);
        self.flow.expire(cutoff);
        self.refill(now);
    }
}

/// Errors with which the kernel refuses a segmented send as such, rather than any send.
fn refuses_segments(e: &io::Error) -> bool {
    use rustix::io::Errno;
    matches!(
        e.raw_os_error().map(Errno::from_raw_os_error),
        Some(Errno::IO | Errno::INVAL | Errno::OPNOTSUPP)
    )
}
