//! Time for the load generator: one monotonic clock read per batch of sends or receives, a
//! precise pacer for open-loop sends, and this process's CPU time.
//!
//! Times on the hot path are nanoseconds since the run's base instant, in a `u64`: cheap to store
//! per message and to subtract. The pacer is a `timerfd` rather than a tokio timer because
//! tokio's timer wheel has millisecond resolution: a message due at 10.2 ms would go out at
//! 11 ms, and open-loop latency, measured from the due time, would carry that delay as if the
//! server had caused it. A timerfd wakes within microseconds of the due time. timerfd is
//! Linux's: elsewhere the pacer falls back to tokio's timer, and open-loop latency there carries
//! up to a millisecond of that rounding.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
#[cfg(target_os = "linux")]
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

#[cfg(target_os = "linux")]
use tokio::io::Interest;
#[cfg(target_os = "linux")]
use tokio::io::unix::AsyncFd;

use crate::sys::clock;
#[cfg(target_os = "linux")]
use crate::sys::timer::TimerFd;

/// The run's clock: nanoseconds since a base instant.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Instant,
    /// `CLOCK_MONOTONIC` at `base`, in nanoseconds, to turn clock times into timerfd deadlines.
    /// `Instant` reads the same clock on Linux, so this is exact up to the gap between two reads.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    base_monotonic: u64,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

impl Clock {
    /// A clock whose zero is now.
    pub fn new() -> Clock {
        let base = Instant::now();
        Clock {
            base,
            base_monotonic: clock::monotonic_ns(),
        }
    }

    /// Nanoseconds since the base.
    #[inline]
    pub fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// The instant `at` nanoseconds after the base.
    pub fn instant(&self, at: u64) -> Instant {
        self.base + Duration::from_nanos(at)
    }

    /// The same, for tokio's timers.
    pub fn tokio_instant(&self, at: u64) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.instant(at))
    }

    /// `CLOCK_MONOTONIC` nanoseconds at `at`.
    #[cfg(target_os = "linux")]
    fn monotonic(&self, at: u64) -> u64 {
        self.base_monotonic + at
    }
}

/// CPU time (user and system) this process has used so far, all threads together.
pub fn process_cpu_time() -> Duration {
    Duration::from_nanos(clock::process_cpu_ns())
}

/// A one-shot timer with microsecond precision (a `timerfd`): readable once its deadline has
/// passed. [`Pacer`] waits on it through tokio; the plain-socket loop (`reactor`) through its
/// own epoll set.
#[cfg(target_os = "linux")]
#[derive(Debug)]
pub struct Timer {
    fd: TimerFd,
    clock: Clock,
    /// The deadline it is set for, if any.
    armed: Option<u64>,
}

#[cfg(target_os = "linux")]
impl Timer {
    /// A disarmed, non-blocking timer on `clock`.
    pub fn new(clock: Clock) -> io::Result<Timer> {
        Ok(Timer {
            fd: TimerFd::new()?,
            clock,
            armed: None,
        })
    }

    /// Whether a deadline is set.
    pub fn is_armed(&self) -> bool {
        self.armed.is_some()
    }

    /// Sets the timer to fire at `at` (clock nanoseconds); a time already past fires at once.
    /// Setting the deadline it already has costs nothing.
    pub fn arm(&mut self, at: u64) -> io::Result<()> {
        if self.armed == Some(at) {
            return Ok(());
        }
        self.fd.set(self.clock.monotonic(at))?;
        self.armed = Some(at);
        Ok(())
    }

    /// Consumes an expiry: `Ok(true)` if the deadline had passed (the timer is now disarmed),
    /// `Ok(false)` if it had not fired.
    pub fn take_expiry(&mut self) -> io::Result<bool> {
        let fired = self.fd.take_expiry()?;
        if fired {
            self.armed = None;
        }
        Ok(fired)
    }
}

#[cfg(target_os = "linux")]
impl AsFd for Timer {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(target_os = "linux")]
impl AsRawFd for Timer {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// A [`Timer`] for tokio tasks, for pacing open-loop sends.
#[cfg(target_os = "linux")]
#[derive(Debug)]
pub struct Pacer {
    timer: AsyncFd<Timer>,
}

#[cfg(target_os = "linux")]
impl Pacer {
    /// A disarmed pacer on `clock`. Needs a tokio runtime with I/O enabled.
    pub fn new(clock: Clock) -> io::Result<Pacer> {
        // `with_interest` is deprecated because a generic `T` might hand tokio a different or
        // closed descriptor later; a `Timer` owns its descriptor and never replaces it, which is
        // what the `unsafe` replacement would have us promise. The crate forbids `unsafe`, so
        // the safe form stays.
        #[allow(deprecated)]
        let timer = AsyncFd::with_interest(Timer::new(clock)?, Interest::READABLE)?;
        Ok(Pacer { timer })
    }

    /// Whether a deadline is set.
    pub fn is_armed(&self) -> bool {
        self.timer.get_ref().is_armed()
    }

    /// Sets the timer to fire at `at`; see [`Timer::arm`].
    pub fn arm(&mut self, at: u64) -> io::Result<()> {
        self.timer.get_mut().arm(at)
    }

    /// Waits until the deadline passes, then leaves the pacer disarmed. Pending forever while
    /// disarmed, so it can sit in a `select!` with a condition.
    pub async fn fired(&mut self) -> io::Result<()> {
        loop {
            let mut guard = self.timer.readable_mut().await?;
            match guard.get_inner_mut().take_expiry() {
                Ok(true) => return Ok(()),
                Ok(false) => {
                    // Readiness was stale (already consumed); wait for the next expiry.
                    guard.clear_ready();
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Paces open-loop sends on tokio's timer, where there is no timerfd.
#[cfg(not(target_os = "linux"))]
#[derive(Debug)]
pub struct Pacer {
    clock: Clock,
    /// The deadline it is set for, if any.
    armed: Option<u64>,
}

#[cfg(not(target_os = "linux"))]
impl Pacer {
    /// A disarmed pacer on `clock`.
    pub fn new(clock: Clock) -> io::Result<Pacer> {
        Ok(Pacer { clock, armed: None })
    }

    /// Whether a deadline is set.
    pub fn is_armed(&self) -> bool {
        self.armed.is_some()
    }

    /// Sets the timer to fire at `at` (clock nanoseconds); a time already past fires at once.
    pub fn arm(&mut self, at: u64) -> io::Result<()> {
        self.armed = Some(at);
        Ok(())
    }

    /// Waits until the deadline passes, then leaves the pacer disarmed. Pending forever while
    /// disarmed. Dropped before the deadline, it stays armed.
    pub async fn fired(&mut self) -> io::Result<()> {
        let Some(at) = self.armed else {
            return std::future::pending().await;
        };
        tokio::time::sleep_until(self.clock.tokio_instant(at)).await;
        self.armed = None;
        Ok(())
    }
}

/// Open-loop send times of the connections of a thread's own loop, earliest first. An entry
/// goes stale when its connection is given another time; the loop tells by comparing with the
/// time it keeps for that connection.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
#[derive(Debug, Default)]
pub struct SendTimes(BinaryHeap<Reverse<(u64, usize)>>);

#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
impl SendTimes {
    /// Connection `conn` sends next at `at`.
    pub fn push(&mut self, at: u64, conn: usize) {
        self.0.push(Reverse((at, conn)));
    }

    /// The earliest send time.
    pub fn next(&self) -> Option<u64> {
        self.0.peek().map(|Reverse((at, _))| *at)
    }

    /// Takes the earliest entry if it is due by `now`: its time and connection.
    pub fn pop_due(&mut self, now: u64) -> Option<(u64, usize)> {
        match self.0.peek() {
            Some(Reverse((at, _))) if *at <= now => self.0.pop().map(|Reverse(entry)| entry),
            _ => None,
        }
    }
}

/// Waits for `pacer` to fire; pending forever without one (closed loop), so a `select!` branch
/// can name it either way.
pub async fn fire(pacer: &mut Option<Pacer>) -> io::Result<()> {
    match pacer {
        Some(p) => p.fired().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pacer_fires_at_its_deadline_not_a_millisecond_late() {
        let clock = Clock::new();
        let mut pacer = Pacer::new(clock).unwrap();
        let mut worst = 0;
        for _ in 0..20 {
            let due = clock.now() + 300_000;
            pacer.arm(due).unwrap();
            assert!(pacer.is_armed());
            tokio::time::timeout(Duration::from_secs(5), pacer.fired())
                .await
                .expect("the pacer fires")
                .unwrap();
            let late = clock.now().saturating_sub(due);
            assert!(clock.now() >= due);
            worst = worst.max(late);
            assert!(!pacer.is_armed());
        }
        // Under load a wake-up can be late; the median case is microseconds, and even a busy
        // machine should stay far below tokio's 1 ms granularity on most of 20 tries.
        assert!(worst < 200_000_000, "worst lateness {worst} ns");
    }

    #[test]
    fn clock_matches_instant() {
        let clock = Clock::new();
        let at = clock.now() + 5_000;
        let diff = clock.instant(at).duration_since(clock.instant(0));
        assert_eq!(diff, Duration::from_nanos(at));
        assert!(process_cpu_time() > Duration::ZERO);
    }
}
