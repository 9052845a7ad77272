//! The message flow of one connection, whatever carries it: which messages are in flight, which
//! of them count toward the report, when they are due in open loop, and the end of the run (the
//! measured period, then a final wait for replies). The stream and datagram loops each embed a
//! [`Flow`] and add only their own way of moving bytes.

use std::io;
use std::pin::Pin;

use tokio::io::Interest;
use tokio::time::Sleep;

use super::plan::{ConnPlan, ThreadCtx, give_up_unsent};
use super::recorder::{Fault, Totals};
use super::timing::Pacer;
use super::window::{Sent, Window};

/// How a connection's run ended.
pub(super) enum End {
    /// The run is over.
    Finished,
    /// The server closed or reset it, or it failed.
    Broken(io::Error),
}

/// One connection's messages and counts.
pub(super) struct Flow<'a> {
    pub ctx: &'a ThreadCtx,
    pub plan: ConnPlan,
    pub window: Window,
    /// This connection's counts, added to the thread's when it ends, so the hot path touches
    /// no shared state.
    pub totals: Totals,
    /// No new messages: the measured period is over.
    pub draining: bool,
    /// Replies out of order are a failure (byte streams), not merely counted (datagrams).
    reorder_fails: bool,
    /// Churn: the term of the connection now open in this slot.
    pub term: Option<Term>,
}

/// One churn connection's term: when it began, whether it counts, and when it stops sending.
#[derive(Debug, Clone, Copy)]
pub(super) struct Term {
    /// When its attempt began (open loop: was scheduled to begin); connect and first-echo
    /// times count from here.
    pub began: u64,
    /// Its attempt began in the measured period, so its messages count, whenever they go.
    pub measured: bool,
    /// No new message from here on (the lifetime's end).
    pub stop_at: u64,
    /// No reply has come yet.
    pub awaiting_first: bool,
}

impl<'a> Flow<'a> {
    pub fn new(ctx: &'a ThreadCtx, plan: ConnPlan) -> Flow<'a> {
        Flow {
            ctx,
            plan,
            window: Window::new(ctx.pipeline),
            totals: Totals::default(),
            draining: false,
            term: None,
            reorder_fails: true,
        }
    }

    /// A flow of datagrams, which may arrive out of order without failing the run.
    pub fn for_datagrams(mut self) -> Flow<'a> {
        self.reorder_fails = false;
        self
    }

    /// Counts a verification fault. One of the measured period that fails the run also
    /// counts in the interval it is noticed in.
    pub fn fault(&mut self, fault: Fault, measured: bool) {
        self.totals.fault(fault, measured);
        if measured && (fault != Fault::Reordered || self.reorder_fails) {
            self.ctx.recorder.errors_at(self.ctx.clock.now(), 1);
        }
    }

    /// A datagram was refused by the server's host (ICMP port unreachable).
    pub fn refused(&mut self) {
        self.totals.errors.refused += 1;
        self.ctx.recorder.errors_at(self.ctx.clock.now(), 1);
    }

    /// Gives up on the messages in flight that went out at or before `cutoff`.
    pub fn expire(&mut self, cutoff: u64) {
        let totals = &mut self.totals;
        let mut measured = 0;
        self.window.expire(cutoff, |m| {
            measured += u64::from(m);
            totals.fault(Fault::Lost, m);
        });
        self.lost_in_interval(measured);
    }

    /// Counts `n` measured messages lost now in the current interval.
    fn lost_in_interval(&self, n: u64) {
        if n > 0 {
            self.ctx.recorder.errors_at(self.ctx.clock.now(), n);
        }
    }

    /// Churn: a new connection of this slot is open at `now`; its attempt began at `began`.
    /// The message bookkeeping starts afresh (the window is reused, not reallocated), the
    /// counts go on adding up, and the first messages are queued. Returns whether the
    /// connection counts among the measured period's (`connections_opened`), so that what else
    /// is counted per connection follows the same decision.
    pub fn restart(&mut self, began: u64, now: u64) -> bool {
        let churn = self.ctx.churn.unwrap_or(super::plan::ChurnPlan {
            messages: u64::MAX,
            lifetime_ns: u64::MAX,
            rst: false,
        });
        let measured = self.ctx.schedule().is_measured(began);
        if measured {
            self.totals.connections_opened += 1;
            self.ctx
                .recorder
                .connect
                .borrow_mut()
                .saturating_record(now.saturating_sub(began));
        }
        self.window.reset();
        self.term = Some(Term {
            began,
            measured,
            stop_at: now.saturating_add(churn.lifetime_ns),
            awaiting_first: true,
        });
        while self.window.has_room(self.ctx.pipeline) && self.may_send(now) {
            self.push(now, now);
        }
        measured
    }

    /// Whether a new message may be queued at `now` (closed loop): before the end of the
    /// measured period, or for a churn connection, until it has sent its messages or reached
    /// the end of its lifetime (one without a message count also stops at the end of the
    /// measured period, so that the run ends).
    #[inline]
    pub fn may_send(&self, now: u64) -> bool {
        let end = self.ctx.schedule().end;
        match (self.term, self.ctx.churn) {
            (Some(term), Some(churn)) => {
                self.window.next_seq() < churn.messages
                    && now < term.stop_at
                    && (churn.messages != u64::MAX || now < end)
            }
            _ => !self.draining && now < end,
        }
    }

    /// Churn: whether the connection has exchanged what it was to and can close: nothing
    /// more to send, everything queued written (`all_out`), and every reply in.
    #[inline]
    pub fn exchanged(&self, all_out: bool, now: u64) -> bool {
        self.term.is_some() && all_out && self.window.pending() == 0 && !self.may_send(now)
    }

    /// Waits for the start of the run, then queues the first messages (see
    /// [`start`](Flow::start)). Returns the open loop's pacer and the time the run began.
    pub async fn begin(&mut self) -> io::Result<(Option<Pacer>, u64)> {
        let clock = self.ctx.clock;
        tokio::time::sleep_until(clock.tokio_instant(self.ctx.schedule().start)).await;
        let pacer = match self.plan.pacing {
            Some(_) => Some(self.ctx.pacer()?),
            None => None,
        };
        let now = clock.now();
        self.start(now);
        Ok((pacer, now))
    }

    /// Queues the first messages at `now`, the start of the run: a full pipeline in closed
    /// loop, none in open loop (they go out as they fall due).
    pub fn start(&mut self, now: u64) {
        if self.plan.pacing.is_none() {
            for _ in 0..self.ctx.pipeline {
                self.push(now, now);
            }
        }
    }

    /// When the current phase ends (see [`ThreadCtx::deadline`]).
    pub fn deadline(&self) -> u64 {
        self.ctx.deadline(self.draining)
    }

    /// The timer for the end of the run: first the end of the measured period, then, once
    /// [`drain`](Flow::drain) resets it, the end of the final wait for replies. One timer for
    /// both, so the loop registers no timer per phase.
    pub fn phase_timer(&self) -> Sleep {
        tokio::time::sleep_until(self.ctx.clock.tokio_instant(self.ctx.schedule().end))
    }

    /// Whether the connection has nothing left to do: draining, every queued message out
    /// (`all_out`), every reply in or given up, and nothing more to send (see
    /// [`nothing_due`](Flow::nothing_due)).
    #[inline]
    pub fn finished(&self, all_out: bool) -> bool {
        self.draining && all_out && self.window.pending() == 0 && self.nothing_due()
    }

    /// Whether no scheduled message is still waiting to go out (always, in closed loop): none
    /// is due before the end of the measured period, or the catch-up after it is over.
    #[inline]
    pub fn nothing_due(&self) -> bool {
        self.plan.pacing.is_none_or(|p| {
            p.due(self.window.next_seq()) >= self.ctx.schedule().end
                || self.ctx.clock.now() >= self.ctx.catch_up_end()
        })
    }

    /// Counts, once the connection is done, the messages due in the measured period that never
    /// went out (see [`give_up_unsent`]), and adds the connection's counts to its thread's.
    pub fn commit(&mut self) {
        if self.draining {
            give_up_unsent(
                self.plan.pacing,
                self.window.next_seq(),
                &self.ctx.schedule(),
                &mut self.totals,
            );
        }
        self.ctx.recorder.totals.borrow_mut().add(&self.totals);
    }

    /// The coordinator moved the end earlier (the run was stopped): moves `phase` to match, so
    /// a connection waiting for nothing in particular notices at once.
    pub fn end_moved(&mut self, phase: Pin<&mut Sleep>) {
        self.ctx.follow_end();
        phase.reset(self.ctx.clock.tokio_instant(self.deadline()));
    }

    /// Stops new messages and moves `phase` to the end of the final wait.
    pub fn drain(&mut self, phase: Pin<&mut Sleep>) {
        self.draining = true;
        phase.reset(self.ctx.clock.tokio_instant(self.deadline()));
    }

    /// Starts draining if the measured period is over at `now`. The loops poll their socket
    /// first, so under steady load the phase timer may never get its turn.
    #[inline]
    pub fn drain_if_over(&mut self, now: u64, phase: Pin<&mut Sleep>) {
        // A stop is taken in here too: under steady load the branch that hears of it may not
        // get its turn either.
        self.ctx.follow_end();
        if !self.draining && now >= self.ctx.schedule().end {
            self.drain(phase);
        }
    }

    /// The phase timer fired: starts draining, or, if the final wait is over, gives up on what
    /// is still unanswered. `true` when the run is over for this connection.
    pub fn phase_ended(&mut self, phase: Pin<&mut Sleep>) -> bool {
        if self.phase_over() {
            return true;
        }
        phase.reset(self.ctx.clock.tokio_instant(self.deadline()));
        false
    }

    /// The current phase's [`deadline`](Flow::deadline) has passed: starts draining, or, if
    /// the final wait is over, gives up on what is still unanswered. `true` when the run is
    /// over for this connection.
    pub fn phase_over(&mut self) -> bool {
        if self.draining {
            self.give_up();
            return true;
        }
        self.draining = true;
        false
    }

    /// Ends the final wait: messages still in flight are lost.
    pub fn give_up(&mut self) {
        let before = self.totals.errors.lost;
        let totals = &mut self.totals;
        self.window.lose_all(|m| totals.fault(Fault::Lost, m));
        self.lost_in_interval(self.totals.errors.lost - before);
    }

    /// The connection failed: every message in flight is lost.
    pub fn disconnected(&mut self) {
        let before = self.totals.errors.lost;
        let totals = &mut self.totals;
        self.window.lose_all(|m| totals.fault(Fault::Lost, m));
        self.totals.errors.disconnected += 1;
        // The lost messages and the disconnection itself.
        self.lost_in_interval(self.totals.errors.lost - before + 1);
        let now = self.ctx.clock.now();
        self.ctx.recorder.series.borrow_mut().disconnect(now);
    }

    /// Queues a new message latency counts from `sent_at` (it goes out at `wire_at`).
    #[inline]
    pub fn push(&mut self, sent_at: u64, wire_at: u64) {
        let schedule = self.ctx.schedule();
        let measured = match self.term {
            Some(term) => term.measured,
            None => sent_at >= schedule.warm_end && sent_at < schedule.end,
        };
        self.window.push(sent_at, wire_at, measured);
        if measured {
            self.totals.messages_sent += 1;
            self.totals.bytes_sent += self.ctx.pattern.size() as u64;
        }
    }

    /// Open loop: queues every message whose scheduled time has come, as far as the pipeline
    /// allows, and sets the pacer for the next one. Does nothing in closed loop, where replies
    /// make room for the next messages.
    #[inline]
    pub fn send_due(&mut self, now: u64, pacer: Option<&mut Pacer>) {
        if let Some(due) = self.queue_due(now)
            && let Some(p) = pacer
            && let Err(e) = p.arm(due)
        {
            // Without a pacer the next send waits for a reply or the end of the run;
            // timerfd_settime on a valid timer does not fail in practice.
            tracing::warn!("cannot set the send timer: {e}");
        }
    }

    /// Open loop: queues every message whose scheduled time has come by `now`, as far as the
    /// pipeline allows, and returns when the next one falls due, if one does before the end of
    /// the measured period and there is room for it. Closed loop: nothing, ever.
    ///
    /// A message due before the end of the measured period still goes out a little after it
    /// (a loop woken late), but only until [`ThreadCtx::catch_up_end`]: a load generator that
    /// fell far behind would otherwise go on sending its backlog through the final wait, and
    /// its last message would count as lost. What was due and not sent is counted once, when
    /// the connection is done ([`commit`](Flow::commit)).
    #[inline]
    pub fn queue_due(&mut self, now: u64) -> Option<u64> {
        let pacing = self.plan.pacing?;
        if now >= self.ctx.catch_up_end() {
            return None;
        }
        while self.window.has_room(self.ctx.pipeline) {
            let due = pacing.due(self.window.next_seq());
            if due >= self.ctx.schedule().end {
                return None;
            }
            if due > now {
                return Some(due);
            }
            self.push(due, now);
        }
        None
    }

    /// Counts the intact reply, received at `now`, to the message `sent`.
    #[inline]
    pub fn answered(&mut self, sent: Sent, reordered: bool, now: u64) {
        if reordered {
            self.fault(Fault::Reordered, sent.measured);
        }
        if let Some(term) = &mut self.term
            && term.awaiting_first
        {
            term.awaiting_first = false;
            if sent.measured {
                self.ctx
                    .recorder
                    .first_echo
                    .borrow_mut()
                    .saturating_record(now.saturating_sub(term.began));
            }
        }
        if sent.measured {
            self.totals.messages_received += 1;
            self.totals.bytes_received += self.ctx.pattern.size() as u64;
            self.ctx
                .recorder
                .series
                .borrow_mut()
                .record(now, now.saturating_sub(sent.sent_at));
        }
    }
}

/// What to wait for: replies always, and room to write while queued messages are not all out.
#[inline]
pub(super) fn interest(all_out: bool) -> Interest {
    if all_out {
        Interest::READABLE
    } else {
        Interest::READABLE | Interest::WRITABLE
    }
}
