//! The life of one engine connection as a state machine, apart from the ring: which requests it
//! has in the kernel, how many echo bytes it holds, and what it must do next.
//!
//! The engine feeds it every completion and asks it for the next [`Action`]; the machine never
//! touches a socket or memory, so each transition can be checked without a kernel.
//!
//! A connection has at most one receive, one send (or wait for writability) and one cancel in
//! the ring at a time. It is in one [`Phase`]:
//!
//! - **Echo**: a multishot receive stays armed; whatever arrives is queued and sent back. If the
//!   peer's socket is full, or the queue outgrows [`QUEUE_LIMIT`], the receive is cancelled
//!   until the queue is written. Once the peer's EOF has come and its echo has gone out, the
//!   connection closes (the close sends our FIN).
//! - **HalfClosed**: draining for shutdown, our write side is shut; what the peer still sends is
//!   discarded until its EOF.
//! - **Closing**: every request still in the kernel is cancelled; once the last has completed
//!   the engine frees the connection.

#![deny(unsafe_code)]

use std::io;
use std::time::{Duration, Instant};

use crate::server::echo::{CloseReason, DRAIN_SETTLE, SCRATCH_SIZE};

/// A connection whose queue of unsent echo grows past this stops receiving, as the tokio path
/// does with its pending buffer.
pub(super) const QUEUE_LIMIT: usize = SCRATCH_SIZE;

/// Where a connection is in its life.
#[derive(Debug)]
enum Phase {
    /// Echoing.
    Echo,
    /// Draining for shutdown: our write side is shut; discard what comes until the peer's EOF.
    HalfClosed,
    /// Ending: waiting for its outstanding requests to complete before the socket is closed.
    Closing {
        /// Why it ended.
        outcome: io::Result<CloseReason>,
        /// A cancel of everything outstanding has been asked for.
        cancel_asked: bool,
    },
}

/// The receive side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Receiving {
    /// No receive in the ring.
    Idle,
    /// A multishot receive is armed.
    Armed,
    /// Armed, and a cancel of it has been asked for (backpressure) and not yet taken effect.
    Cancelling,
    /// The peer sent EOF: nothing more to receive.
    Eof,
}

/// The send side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sending {
    /// Nothing in the ring.
    Idle,
    /// A send of the queue's front (one chunk, or several gathered) is in flight.
    InFlight,
    /// The peer's socket was full: a wait for it to be writable is in the ring.
    WaitingWritable,
}

/// What the machine asks the engine to do next for a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    Nothing,
    /// Arm a multishot receive.
    ArmRecv,
    /// Send the queue's front.
    Send,
    /// Stop receiving: cancel the armed receive.
    CancelRecv,
    /// Cancel every request of the connection (closing).
    CancelAll,
    /// All its requests have completed after it was closed: free it.
    End,
}

/// Where the bytes of a receive go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Keep {
    /// Not echoing (half-closed or closing): give the buffer back.
    Discard,
    /// Queue them where they are, in the pool: the fast path.
    Pooled,
    /// The peer is not reading: copy them into the connection's own memory, so a slow peer
    /// does not hold the pool. No send is in flight meanwhile.
    Copy,
}

/// What a send completion leaves the engine to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sent {
    /// The connection is closing (already, or because the send failed): the rest of the echo is
    /// not sent, and no wait for writability may follow.
    Closing,
    /// This many bytes went, and the socket took all it was asked to (or nothing is left).
    Done(usize),
    /// This many bytes went and the socket is full: move the rest of the queue out of the pool
    /// and wait until the socket is writable (the wait is already counted as outstanding).
    Stalled(usize),
}

/// What a timer tick asks of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tick {
    Nothing,
    /// It is now closing (idle timeout): ask for its next action.
    Close,
    /// Draining and quiet: shut our write side, then ask for its next action.
    HalfClose,
}

/// The state of one connection served by the engine.
#[derive(Debug)]
pub(super) struct ConnState {
    phase: Phase,
    recv: Receiving,
    send: Sending,
    /// Echo bytes queued and not yet sent.
    queued: usize,
    last_activity: Instant,
    /// Requests in the ring that will still produce a completion for this connection. The
    /// socket and the queue's memory live until this is zero.
    outstanding: u32,
}

impl ConnState {
    pub(super) fn new(now: Instant) -> ConnState {
        ConnState {
            phase: Phase::Echo,
            recv: Receiving::Idle,
            send: Sending::Idle,
            queued: 0,
            last_activity: now,
            outstanding: 0,
        }
    }

    /// Echo bytes queued and not yet sent.
    pub(super) fn queued(&self) -> usize {
        self.queued
    }

    /// Picks the next request for the connection and counts it as outstanding.
    pub(super) fn next(&mut self) -> Action {
        match &mut self.phase {
            Phase::Closing { cancel_asked, .. } => {
                if self.outstanding == 0 {
                    return Action::End;
                }
                if *cancel_asked {
                    return Action::Nothing;
                }
                *cancel_asked = true;
                self.outstanding += 1;
                return Action::CancelAll;
            }
            Phase::Echo => {
                if self.send == Sending::Idle && self.queued > 0 {
                    self.send = Sending::InFlight;
                    self.outstanding += 1;
                    return Action::Send;
                }
                if self.queued == 0 && self.recv == Receiving::Eof {
                    // Everything came back: close the socket. Its close sends our FIN (nothing
                    // can be left unread after the peer's EOF), so no half-close comes first.
                    self.close(Ok(CloseReason::PeerClosed));
                    return self.next();
                }
                let stalled = self.send == Sending::WaitingWritable || self.queued > QUEUE_LIMIT;
                if stalled {
                    if self.recv == Receiving::Armed {
                        self.recv = Receiving::Cancelling;
                        self.outstanding += 1;
                        return Action::CancelRecv;
                    }
                    return Action::Nothing;
                }
                if self.queued > 0 {
                    return Action::Nothing;
                }
            }
            Phase::HalfClosed => {}
        }
        // Echoing with nothing queued, or half-closed: keep a receive armed until EOF.
        if self.recv == Receiving::Idle {
            self.recv = Receiving::Armed;
            self.outstanding += 1;
            return Action::ArmRecv;
        }
        Action::Nothing
    }

    /// The receive's last completion (it is no longer armed).
    pub(super) fn recv_ended(&mut self) {
        if self.recv != Receiving::Eof {
            self.recv = Receiving::Idle;
        }
        self.outstanding -= 1;
    }

    /// `len` bytes arrived.
    pub(super) fn received(&mut self, len: usize, now: Instant) -> Keep {
        self.last_activity = now;
        if !matches!(self.phase, Phase::Echo) {
            // Half-closed for shutdown (discarded) or closing (nobody to echo to).
            return Keep::Discard;
        }
        self.queued += len;
        if self.send == Sending::WaitingWritable {
            Keep::Copy
        } else {
            Keep::Pooled
        }
    }

    /// The peer sent EOF.
    pub(super) fn peer_closed(&mut self) {
        self.recv = Receiving::Eof;
        if matches!(self.phase, Phase::HalfClosed) {
            self.close(Ok(CloseReason::Drained));
        }
    }

    /// A receive failed with `errno`.
    pub(super) fn recv_failed(&mut self, errno: i32) {
        if errno == rustix::io::Errno::NOBUFS.raw_os_error()
            || errno == rustix::io::Errno::CANCELED.raw_os_error()
        {
            // The pool was empty for a moment (buffers come back within the turn; the receive
            // is armed again), or our own cancel for backpressure or closing.
        } else if matches!(self.phase, Phase::HalfClosed) {
            // The peer went away instead of closing cleanly: the drain is done.
            self.close(Ok(CloseReason::Drained));
        } else {
            self.fail(errno);
        }
    }

    /// The send in flight completed (the engine then reports its result to [`sent`](Self::sent)).
    pub(super) fn send_completed(&mut self) {
        self.send = Sending::Idle;
        self.outstanding -= 1;
    }

    /// The result of a send that asked for `asked` bytes.
    pub(super) fn sent(&mut self, result: i32, asked: usize, now: Instant) -> Sent {
        if !matches!(self.phase, Phase::Echo) {
            return Sent::Closing;
        }
        let sent = if result >= 0 {
            result as usize
        } else if -result == rustix::io::Errno::AGAIN.raw_os_error() {
            0
        } else {
            // A real error, such as a reset.
            self.fail(-result);
            return Sent::Closing;
        };
        if sent > 0 {
            self.last_activity = now;
        }
        self.queued -= sent;
        if self.queued == 0 || sent == asked {
            // All of it went: the next send, if anything is queued, follows at once.
            return Sent::Done(sent);
        }
        // The peer's socket is full: wait until it is writable, and stop receiving meanwhile.
        self.send = Sending::WaitingWritable;
        self.outstanding += 1;
        Sent::Stalled(sent)
    }

    /// The wait for writability completed. Whatever it says (writable, error, hang-up), the
    /// next send tells.
    pub(super) fn writable(&mut self) {
        self.send = Sending::Idle;
        self.outstanding -= 1;
    }

    /// A cancel this connection asked for completed.
    pub(super) fn cancel_completed(&mut self) {
        self.outstanding -= 1;
    }

    /// The grace period is over. Returns whether this closed the connection.
    pub(super) fn cut(&mut self) -> bool {
        if matches!(self.phase, Phase::Closing { .. }) {
            return false;
        }
        self.close(Ok(CloseReason::Cut));
        true
    }

    /// Idle timeouts, and the drain's half-close once the connection has been quiet since
    /// `drain_started` (if shutdown has started).
    pub(super) fn tick(
        &mut self,
        now: Instant,
        idle_timeout: Option<Duration>,
        drain_started: Option<Instant>,
    ) -> Tick {
        if matches!(self.phase, Phase::Closing { .. }) {
            return Tick::Nothing;
        }
        let quiet = now.saturating_duration_since(self.last_activity);
        if idle_timeout.is_some_and(|idle| quiet >= idle) {
            // Also while half-closed for shutdown, as on the epoll path.
            self.close(Ok(CloseReason::IdleTimeout));
            Tick::Close
        } else if let Some(drain_started) = drain_started
            && matches!(self.phase, Phase::Echo)
            && self.queued == 0
            && now.saturating_duration_since(self.last_activity.max(drain_started)) >= DRAIN_SETTLE
        {
            // Quiet for the settle time since the shutdown began: whatever the peer sent before
            // it has arrived and gone back.
            self.phase = Phase::HalfClosed;
            Tick::HalfClose
        } else {
            Tick::Nothing
        }
    }

    /// Why the connection ended, once it has.
    pub(super) fn into_outcome(self) -> io::Result<CloseReason> {
        match self.phase {
            Phase::Closing { outcome, .. } => outcome,
            Phase::Echo | Phase::HalfClosed => Ok(CloseReason::PeerClosed),
        }
    }

    /// Ends the echo on an I/O error.
    fn fail(&mut self, errno: i32) {
        self.close(Err(io::Error::from_raw_os_error(errno)));
    }

    /// Moves to `Closing` with `outcome`. An error while already closing replaces the reason,
    /// but the cancel already asked for stands.
    fn close(&mut self, outcome: io::Result<CloseReason>) {
        match &mut self.phase {
            Phase::Closing {
                outcome: reason, ..
            } => *reason = outcome,
            _ => {
                self.phase = Phase::Closing {
                    outcome,
                    cancel_asked: false,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ECONNRESET: i32 = 104;

    fn outcome(state: &ConnState) -> Option<Result<CloseReason, Option<i32>>> {
        match &state.phase {
            Phase::Closing { outcome, .. } => Some(match outcome {
                Ok(reason) => Ok(*reason),
                Err(e) => Err(e.raw_os_error()),
            }),
            _ => None,
        }
    }

    /// A new connection with its receive armed.
    fn armed(now: Instant) -> ConnState {
        let mut state = ConnState::new(now);
        assert_eq!(state.next(), Action::ArmRecv);
        assert_eq!(state.next(), Action::Nothing);
        assert_eq!(state.recv, Receiving::Armed);
        assert_eq!(state.outstanding, 1);
        state
    }

    #[test]
    fn echo_sends_what_arrives_then_closes_after_the_peer() {
        let t0 = Instant::now();
        let mut state = armed(t0);
        assert_eq!(state.received(5, t0), Keep::Pooled);
        assert_eq!(state.next(), Action::Send);
        assert_eq!(state.send, Sending::InFlight);
        // One send at a time; more bytes wait for it.
        assert_eq!(state.received(3, t0), Keep::Pooled);
        assert_eq!(state.next(), Action::Nothing);
        assert_eq!(state.outstanding, 2);
        state.send_completed();
        assert_eq!(state.sent(5, 5, t0), Sent::Done(5));
        assert_eq!(state.queued(), 3);
        assert_eq!(state.next(), Action::Send);
        state.send_completed();
        assert_eq!(state.sent(3, 3, t0), Sent::Done(3));
        assert_eq!(state.next(), Action::Nothing);
        assert!(matches!(state.phase, Phase::Echo));

        // The peer's EOF ends the receive; nothing is left to echo: free it (its close sends
        // our FIN).
        state.recv_ended();
        state.peer_closed();
        assert_eq!(state.next(), Action::End);
        assert_eq!(outcome(&state), Some(Ok(CloseReason::PeerClosed)));
        assert_eq!(state.into_outcome().unwrap(), CloseReason::PeerClosed);
    }

    #[test]
    fn peer_half_close_waits_for_the_pending_echo() {
        let t0 = Instant::now();
        let mut state = armed(t0);
        assert_eq!(state.received(10, t0), Keep::Pooled);
        assert_eq!(state.next(), Action::Send);
        state.recv_ended();
        state.peer_closed();
        // The echo is still going out: no half-close yet, and no new receive after EOF.
        assert_eq!(state.next(), Action::Nothing);
        assert!(matches!(state.phase, Phase::Echo));
        state.send_completed();
        assert_eq!(state.sent(4, 10, t0), Sent::Stalled(4));
        assert_eq!(state.next(), Action::Nothing);
        state.writable();
        assert_eq!(state.next(), Action::Send);
        state.send_completed();
        assert_eq!(state.sent(6, 6, t0), Sent::Done(6));
        assert_eq!(state.next(), Action::End);
        assert_eq!(state.into_outcome().unwrap(), CloseReason::PeerClosed);
    }

    #[test]
    fn a_stalled_peer_stops_the_receive_until_its_socket_is_writable() {
        let t0 = Instant::now();
        let mut state = armed(t0);
        assert_eq!(state.received(100, t0), Keep::Pooled);
        assert_eq!(state.next(), Action::Send);
        state.send_completed();
        assert_eq!(state.sent(40, 100, t0), Sent::Stalled(40));
        assert_eq!(state.send, Sending::WaitingWritable);
        // The receive and the wait for writability.
        assert_eq!(state.outstanding, 2);
        assert_eq!(state.next(), Action::CancelRecv);
        assert_eq!(state.recv, Receiving::Cancelling);
        assert_eq!(state.next(), Action::Nothing);
        // What arrives before the cancel takes effect leaves the pool.
        assert_eq!(state.received(7, t0), Keep::Copy);
        assert_eq!(state.queued(), 67);
        state.recv_ended();
        state.recv_failed(rustix::io::Errno::CANCELED.raw_os_error());
        state.cancel_completed();
        assert_eq!(state.recv, Receiving::Idle);
        assert_eq!(state.next(), Action::Nothing, "no receive while stalled");
        state.writable();
        assert_eq!(state.next(), Action::Send);
        state.send_completed();
        // A full socket that took nothing is a stall too.
        assert_eq!(
            state.sent(-rustix::io::Errno::AGAIN.raw_os_error(), 67, t0),
            Sent::Stalled(0)
        );
        state.writable();
        assert_eq!(state.next(), Action::Send);
        state.send_completed();
        assert_eq!(state.sent(67, 67, t0), Sent::Done(67));
        assert_eq!(state.next(), Action::ArmRecv);
        assert_eq!(state.outstanding, 1);
        assert!(matches!(state.phase, Phase::Echo));
    }

    #[test]
    fn a_queue_past_its_limit_stops_the_receive() {
        let t0 = Instant::now();
        let mut state = armed(t0);
        assert_eq!(state.received(QUEUE_LIMIT, t0), Keep::Pooled);
        assert_eq!(state.next(), Action::Send);
        assert_eq!(state.received(1, t0), Keep::Pooled);
        assert_eq!(state.next(), Action::CancelRecv);
        assert_eq!(state.next(), Action::Nothing);
        state.send_completed();
        assert_eq!(
            state.sent(QUEUE_LIMIT as i32, QUEUE_LIMIT, t0),
            Sent::Done(QUEUE_LIMIT)
        );
        assert_eq!(state.next(), Action::Send);
    }

    #[test]
    fn idle_timeout_closes_and_cancels_what_is_outstanding() {
        let t0 = Instant::now();
        let idle = Some(Duration::from_secs(1));
        let mut state = armed(t0);
        let t1 = t0 + Duration::from_millis(600);
        assert_eq!(state.received(2, t1), Keep::Pooled);
        assert_eq!(state.next(), Action::Send);
        state.send_completed();
        assert_eq!(state.sent(2, 2, t1), Sent::Done(2));
        // Activity restarted the clock.
        assert_eq!(
            state.tick(t0 + Duration::from_secs(1), idle, None),
            Tick::Nothing
        );
        assert_eq!(
            state.tick(t1 + Duration::from_secs(1), idle, None),
            Tick::Close
        );
        assert_eq!(outcome(&state), Some(Ok(CloseReason::IdleTimeout)));
        assert_eq!(state.next(), Action::CancelAll);
        assert_eq!(state.next(), Action::Nothing, "one cancel only");
        assert_eq!(
            state.tick(t1 + Duration::from_secs(5), idle, None),
            Tick::Nothing
        );
        state.recv_ended();
        assert_eq!(state.next(), Action::Nothing);
        state.cancel_completed();
        assert_eq!(state.next(), Action::End);
        assert_eq!(state.into_outcome().unwrap(), CloseReason::IdleTimeout);
    }

    #[test]
    fn drain_half_closes_a_quiet_connection_and_discards_until_eof() {
        let t0 = Instant::now();
        let mut state = armed(t0);
        assert_eq!(state.received(4, t0), Keep::Pooled);
        assert_eq!(state.next(), Action::Send);
        let drain = t0 + Duration::from_millis(10);
        // Not while an echo is pending, nor before the settle time.
        let settled = drain + DRAIN_SETTLE;
        assert_eq!(state.tick(settled, None, Some(drain)), Tick::Nothing);
        state.send_completed();
        assert_eq!(state.sent(4, 4, t0), Sent::Done(4));
        assert_eq!(
            state.tick(settled - Duration::from_millis(1), None, Some(drain)),
            Tick::Nothing
        );
        assert_eq!(state.tick(settled, None, Some(drain)), Tick::HalfClose);
        assert!(matches!(state.phase, Phase::HalfClosed));
        assert_eq!(state.next(), Action::Nothing, "the receive stays armed");
        assert_eq!(state.received(9, settled), Keep::Discard);
        assert_eq!(state.queued(), 0);
        state.recv_ended();
        state.peer_closed();
        assert_eq!(outcome(&state), Some(Ok(CloseReason::Drained)));
        assert_eq!(state.next(), Action::End);
    }

    #[test]
    fn a_reset_while_half_closed_ends_the_drain() {
        let t0 = Instant::now();
        let mut state = armed(t0);
        assert_eq!(
            state.tick(t0 + DRAIN_SETTLE, None, Some(t0)),
            Tick::HalfClose
        );
        state.recv_ended();
        state.recv_failed(ECONNRESET);
        assert_eq!(outcome(&state), Some(Ok(CloseReason::Drained)));
        assert_eq!(state.next(), Action::End);
    }

    #[test]
    fn cut_closes_once_and_waits_for_the_send_in_flight() {
        let t0 = Instant::now();
        let mut state = armed(t0);
        assert_eq!(state.received(8, t0), Keep::Pooled);
        assert_eq!(state.next(), Action::Send);
        assert!(state.cut());
        assert!(!state.cut(), "already closing");
        assert_eq!(outcome(&state), Some(Ok(CloseReason::Cut)));
        assert_eq!(state.next(), Action::CancelAll);
        assert_eq!(state.outstanding, 3);
        state.send_completed();
        assert_eq!(state.sent(8, 8, t0), Sent::Closing);
        state.recv_ended();
        state.recv_failed(rustix::io::Errno::CANCELED.raw_os_error());
        assert_eq!(state.next(), Action::Nothing);
        state.cancel_completed();
        assert_eq!(state.next(), Action::End);
        assert_eq!(state.into_outcome().unwrap(), CloseReason::Cut);
    }

    #[test]
    fn a_connection_arriving_after_the_cut_ends_at_once() {
        let mut state = ConnState::new(Instant::now());
        assert!(state.cut());
        assert_eq!(state.next(), Action::End);
    }

    #[test]
    fn errors_close_with_their_errno_and_keep_the_cancel_asked_for() {
        let t0 = Instant::now();
        let mut state = armed(t0);
        // An empty pool is not an error: the receive is armed again.
        state.recv_ended();
        state.recv_failed(rustix::io::Errno::NOBUFS.raw_os_error());
        assert_eq!(state.next(), Action::ArmRecv);
        assert_eq!(state.received(1, t0), Keep::Pooled);
        assert_eq!(state.next(), Action::Send);
        state.send_completed();
        assert_eq!(state.sent(-ECONNRESET, 1, t0), Sent::Closing);
        assert_eq!(outcome(&state), Some(Err(Some(ECONNRESET))));
        assert_eq!(state.next(), Action::CancelAll);
        // A later error replaces the reason but asks for no second cancel.
        state.recv_ended();
        state.recv_failed(32);
        assert_eq!(outcome(&state), Some(Err(Some(32))));
        assert_eq!(state.next(), Action::Nothing);
        state.cancel_completed();
        assert_eq!(state.next(), Action::End);
    }
}
