//! What every connection loop of a load thread works from: the run's phases ([`Schedule`]), a
//! connection's place in it ([`ConnPlan`], with its open-loop [`Pacing`]), and what the
//! connections on one thread share ([`ThreadCtx`]). The loops and the thread that starts them
//! ([`worker`](super::worker)) all build on this module; it knows none of them.

use std::cell::{Cell, OnceCell, RefCell};
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::recorder::{LiveCounters, ThreadRecorder, Totals};
use super::timing::{Clock, Pacer, SendTimer};
use crate::payload::Pattern;

/// The longest a load thread's own loop waits before looking whether the run was stopped.
/// A stop ends the measured period twice this long after it is asked for, so every loop has
/// learnt of it before it passes and no message sent after the end counts as measured.
pub const STOP_POLL: Duration = Duration::from_millis(50);

/// The longest an open-loop connection goes on sending messages due before the end of the
/// measured period once it has passed, in nanoseconds (see [`ThreadCtx::catch_up_end`]): long
/// enough for a thread the scheduler kept off its CPU for a while on a busy machine.
const CATCH_UP: u64 = 1_000_000_000;

/// The phases of a run, in clock nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Load begins.
    pub start: u64,
    /// Warm-up ends and measurement begins.
    pub warm_end: u64,
    /// Measurement ends; no message is sent from here on.
    pub end: u64,
}

impl Schedule {
    /// Whether `t` falls in the measured period.
    pub fn is_measured(&self, t: u64) -> bool {
        t >= self.warm_end && t < self.end
    }
}

/// Open-loop send times of one connection: message `n` is due at `first + n * step`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pacing {
    first: u64,
    /// Nanoseconds between two of this connection's messages (fractional, so rates that do not
    /// divide a second evenly do not drift).
    step: f64,
}

impl Pacing {
    /// Message `n` due at `first + n * step`.
    pub fn new(first: u64, step: f64) -> Pacing {
        Pacing { first, step }
    }

    #[inline]
    pub fn due(&self, n: u64) -> u64 {
        // Saturating: at very low rates a due time past the clock's range is "never".
        self.first.saturating_add((n as f64 * self.step) as u64)
    }

    /// How many messages are due before `t`.
    pub fn count_before(&self, t: u64) -> u64 {
        if t <= self.first {
            return 0;
        }
        // Start from the arithmetic estimate and settle the rounding at the edge.
        let mut n = ((t - self.first) as f64 / self.step).ceil() as u64;
        while n > 0 && self.due(n - 1) >= t {
            n -= 1;
        }
        while self.due(n) < t {
            n += 1;
        }
        n
    }
}

/// Open loop, when a connection is done: messages scheduled in the measured period that
/// never went out are counted as not sent, apart from those sent and lost. Whether the load
/// generator could not keep up or a slow server kept the pipeline full, no message of theirs
/// reached the server, so none is blamed on it as lost; the report shows the shortfall
/// instead. Counted in one step: at a rate far beyond what was sent, walking the missed
/// messages one by one would take longer than the run.
pub fn give_up_unsent(
    pacing: Option<Pacing>,
    next_seq: u64,
    schedule: &Schedule,
    totals: &mut Totals,
) {
    let Some(pacing) = pacing else {
        return;
    };
    let scheduled = pacing.count_before(schedule.end);
    let warm = pacing.count_before(schedule.warm_end);
    totals.not_sent += scheduled.saturating_sub(next_seq.max(warm));
}

/// What one connection task is told.
#[derive(Debug, Clone, Copy)]
pub struct ConnPlan {
    /// Connection number, carried in every message.
    pub id: u32,
    /// Open loop: when its messages are due.
    pub pacing: Option<Pacing>,
}

/// What a churn run's connections share: how much each one sends before it closes, and how it
/// closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChurnPlan {
    /// Messages per connection; `u64::MAX` when the lifetime alone decides.
    pub messages: u64,
    /// How long a connection goes on sending, in nanoseconds; `u64::MAX` for no limit.
    pub lifetime_ns: u64,
    /// Close with a reset (`SO_LINGER` 0) rather than a FIN.
    pub rst: bool,
}

/// What every connection on one thread shares.
#[derive(Debug)]
pub struct ThreadCtx {
    pub clock: Clock,
    pub pattern: Pattern,
    /// The run's phases; the end moves earlier if the run is stopped ([`ThreadCtx::follow_end`]).
    pub schedule: Cell<Schedule>,
    /// The end of the measured period as the coordinator last set it: the scheduled end, or
    /// the moment the run was stopped.
    pub end: watch::Receiver<u64>,
    pub pipeline: usize,
    pub timeout_ns: u64,
    /// UDP sockets send and receive several datagrams per system call where they can.
    pub udp_offload: bool,
    pub recorder: ThreadRecorder,
    pub live: Arc<LiveCounters>,
    /// Receive buffer, borrowed only within one synchronous read.
    pub scratch: RefCell<Vec<u8>>,
    /// Send buffer for datagrams, which must leave as one piece: one message, or a burst of
    /// them for a segmented send.
    pub send_buf: RefCell<Vec<u8>>,
    /// Churn runs: what each connection exchanges before it closes.
    pub churn: Option<ChurnPlan>,
    /// The open-loop send timer the thread's tokio tasks share, made when the first asks.
    pub send_timer: OnceCell<SendTimer>,
}

impl ThreadCtx {
    /// The run's phases as this thread knows them.
    #[inline]
    pub fn schedule(&self) -> Schedule {
        self.schedule.get()
    }

    /// A pacer on the thread's shared send timer, which the first call sets up (tokio tasks
    /// only: the timer needs the thread's runtime).
    pub fn pacer(&self) -> io::Result<Pacer> {
        if self.send_timer.get().is_none() {
            let _ = self.send_timer.set(SendTimer::new(self.clock)?);
        }
        match self.send_timer.get() {
            Some(timer) => Ok(timer.pacer()),
            // Set just above if it was not.
            None => Err(io::Error::other("no send timer")),
        }
    }

    /// Sleeps until the run starts (for the loops that do not run on tokio).
    #[cfg(target_os = "linux")]
    pub fn sleep_until_start(&self) {
        let start = self.clock.instant(self.schedule().start);
        std::thread::sleep(start.saturating_duration_since(std::time::Instant::now()));
    }

    /// When the current phase ends: the measured period, or once `draining` the final wait
    /// for replies, which gives the last messages sent the full timeout to be answered.
    pub fn deadline(&self, draining: bool) -> u64 {
        let end = self.schedule().end;
        if draining {
            end.saturating_add(self.timeout_ns)
        } else {
            end
        }
    }

    /// Until when an open-loop connection may still send messages that fell due before the
    /// end of the measured period: a loop woken late catches up, a backlog does not run on
    /// through the final wait. Half the reply timeout, so the last message sent still has
    /// the other half to be answered, and at most a second.
    pub fn catch_up_end(&self) -> u64 {
        self.schedule().end + CATCH_UP.min(self.timeout_ns / 2)
    }

    /// [`deadline`](ThreadCtx::deadline), after taking in a stop the coordinator may have sent
    /// (see [`follow_end`](ThreadCtx::follow_end)).
    pub fn phase_deadline(&self, draining: bool) -> u64 {
        self.follow_end();
        self.deadline(draining)
    }

    /// Takes in an earlier end from the coordinator (the run was stopped), if one came since.
    /// `true` if the schedule changed.
    pub fn follow_end(&self) -> bool {
        let end = *self.end.borrow();
        let mut schedule = self.schedule.get();
        if end >= schedule.end {
            return false;
        }
        schedule.end = end;
        self.schedule.set(schedule);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing_counts_what_is_due() {
        let p = Pacing {
            first: 1_000,
            step: 333.3,
        };
        for t in [0, 1_000, 1_001, 1_333, 1_334, 5_000, 1_000_000] {
            let expected = (0..10_000).filter(|&n| p.due(n) < t).count() as u64;
            assert_eq!(p.count_before(t), expected, "t={t}");
        }
    }

    #[test]
    fn unsent_scheduled_messages_are_not_sent_nor_lost() {
        let p = Pacing {
            first: 0,
            step: 10.0,
        };
        let schedule = Schedule {
            start: 0,
            warm_end: 50,
            end: 100,
        };
        let mut totals = Totals::default();
        // Messages 0..10 are due before the end, 5..10 measured; 0..3 went out.
        give_up_unsent(Some(p), 3, &schedule, &mut totals);
        assert_eq!(totals.not_sent, 5);
        assert_eq!(totals.messages_sent, 0);
        assert_eq!(totals.errors, Default::default());
        // 0..7 went out: 7, 8 and 9 did not.
        let mut totals = Totals::default();
        give_up_unsent(Some(p), 7, &schedule, &mut totals);
        assert_eq!(totals.not_sent, 3);
    }

    /// A schedule of a trillion messages is settled at once, not message by message.
    #[test]
    fn a_vast_shortfall_is_counted_in_one_step() {
        let p = Pacing {
            first: 0,
            step: 0.001,
        };
        let schedule = Schedule {
            start: 0,
            warm_end: 0,
            end: 1_000_000_000,
        };
        let mut totals = Totals::default();
        let began = std::time::Instant::now();
        give_up_unsent(Some(p), 10, &schedule, &mut totals);
        assert!(began.elapsed() < Duration::from_secs(1));
        assert_eq!(totals.not_sent, 1_000_000_000_000 - 10);
    }
}
