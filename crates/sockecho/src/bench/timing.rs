//! Time for the load generator: one monotonic clock read per batch of sends or receives, a
//! precise timer for open-loop sends (one per load thread, whatever its connection count), and
//! this process's CPU time.
//!
//! Times on the hot path are nanoseconds since the run's base instant, in a `u64`: cheap to store
//! per message and to subtract. The send timer is a `timerfd` rather than a tokio timer because
//! tokio's timer wheel has millisecond resolution: a message due at 10.2 ms would go out at
//! 11 ms, and open-loop latency, measured from the due time, would carry that delay as if the
//! server had caused it. A timerfd wakes within microseconds of the due time. A thread's own
//! loops (`reactor`, `uring`) keep their send times in a heap ([`SendTimes`]) that sets their
//! wait; its tokio tasks share one [`SendTimer`]. timerfd is Linux's: elsewhere the send timer
//! falls back to tokio's timer (already one shared wheel per runtime), and open-loop latency there
//! carries up to a millisecond of that rounding.

#[cfg(target_os = "linux")]
use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
#[cfg(target_os = "linux")]
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
#[cfg(target_os = "linux")]
use std::rc::Rc;
#[cfg(target_os = "linux")]
use std::task::{Poll, Waker};
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
/// passed. [`SendTimer`] waits on it through tokio; the plain-socket loop (`reactor`) through its
/// own epoll set.
#[cfg(target_os = "linux")]
#[derive(Debug)]
pub struct Timer {
    fd: TimerFd,
    clock: Clock,
    /// The deadline it is set for, if any.
    armed: Cell<Option<u64>>,
}

#[cfg(target_os = "linux")]
impl Timer {
    /// A disarmed, non-blocking timer on `clock`.
    pub fn new(clock: Clock) -> io::Result<Timer> {
        Ok(Timer {
            fd: TimerFd::new()?,
            clock,
            armed: Cell::new(None),
        })
    }

    /// The deadline it is set for, if any.
    pub fn deadline(&self) -> Option<u64> {
        self.armed.get()
    }

    /// Sets the timer to fire at `at` (clock nanoseconds); a time already past fires at once.
    /// Setting the deadline it already has costs nothing.
    pub fn arm(&self, at: u64) -> io::Result<()> {
        if self.armed.get() == Some(at) {
            return Ok(());
        }
        self.fd.set(self.clock.monotonic(at))?;
        self.armed.set(Some(at));
        Ok(())
    }

    /// Consumes an expiry: `Ok(true)` if the deadline had passed (the timer is now disarmed),
    /// `Ok(false)` if it had not fired.
    pub fn take_expiry(&self) -> io::Result<bool> {
        let fired = self.fd.take_expiry()?;
        if fired {
            self.armed.set(None);
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

/// The open-loop send timer that every tokio task of one load thread shares (TLS connections,
/// datagram sockets): one [`Timer`], set to the earliest send time any task waits for, a heap
/// of those times, and a small task that wakes each waiting task when its time has come. So a
/// thread needs one descriptor for its timers however many connections it paces, and each send
/// keeps the timerfd's microsecond precision.
#[cfg(target_os = "linux")]
#[derive(Clone)]
pub struct SendTimer {
    shared: Rc<Shared>,
}

#[cfg(target_os = "linux")]
struct Shared {
    timer: AsyncFd<Timer>,
    clock: Clock,
    /// Send times waited for, earliest first, with the pacer waiting; an entry is stale once
    /// that pacer has been disarmed or set to another time.
    heap: RefCell<BinaryHeap<Reverse<(u64, usize)>>>,
    /// Per pacer: the time it waits for, if any, and the task to wake then.
    pacers: RefCell<Vec<(Option<u64>, Option<Waker>)>>,
}

#[cfg(target_os = "linux")]
impl SendTimer {
    /// A thread's send timer on `clock`, with the task that fires it. Needs a tokio runtime with
    /// I/O enabled, inside a `LocalSet`.
    pub fn new(clock: Clock) -> io::Result<SendTimer> {
        // `with_interest` is deprecated because a generic `T` might hand tokio a different or
        // closed descriptor later; a `Timer` owns its descriptor and never replaces it, which is
        // what the `unsafe` replacement would have us promise. The crate forbids `unsafe`, so
        // the safe form stays.
        #[allow(deprecated)]
        let timer = AsyncFd::with_interest(Timer::new(clock)?, Interest::READABLE)?;
        let shared = Rc::new(Shared {
            timer,
            clock,
            heap: RefCell::new(BinaryHeap::new()),
            pacers: RefCell::new(Vec::new()),
        });
        // It ends with the thread's `LocalSet`, after the last task that paces sends.
        tokio::task::spawn_local(fire_due(Rc::downgrade(&shared)));
        Ok(SendTimer { shared })
    }

    /// A disarmed pacer for one more task.
    pub fn pacer(&self) -> Pacer {
        let mut pacers = self.shared.pacers.borrow_mut();
        pacers.push((None, None));
        Pacer {
            shared: self.shared.clone(),
            id: pacers.len() - 1,
        }
    }
}

/// The task behind a [`SendTimer`]: each time the timer fires, wakes the pacers whose time has
/// come and sets the timer for the next. Ends when the timer is gone.
#[cfg(target_os = "linux")]
async fn fire_due(shared: std::rc::Weak<Shared>) {
    loop {
        let Some(s) = shared.upgrade() else {
            return;
        };
        let ready = s.timer.readable().await;
        let mut guard = match ready {
            Ok(guard) => guard,
            Err(e) => {
                tracing::warn!("the send timer failed: {e}");
                return;
            }
        };
        match guard.get_inner().take_expiry() {
            Ok(true) => {}
            Ok(false) => {
                guard.clear_ready();
                continue;
            }
            Err(e) => {
                tracing::warn!("the send timer failed: {e}");
                return;
            }
        }
        drop(guard);
        let now = s.clock.now();
        s.wake_due(now);
    }
}

#[cfg(target_os = "linux")]
impl Shared {
    /// Wakes every pacer whose time has come by `now`, then sets the timer for the next one.
    fn wake_due(&self, now: u64) {
        let mut heap = self.heap.borrow_mut();
        let mut pacers = self.pacers.borrow_mut();
        while let Some(&Reverse((at, id))) = heap.peek() {
            if pacers[id].0 != Some(at) {
                heap.pop(); // stale
                continue;
            }
            if at > now {
                if let Err(e) = self.timer.get_ref().arm(at) {
                    // timerfd_settime on a valid timer does not fail in practice.
                    tracing::warn!("cannot set the send timer: {e}");
                }
                return;
            }
            heap.pop();
            if let Some(waker) = pacers[id].1.take() {
                waker.wake();
            }
        }
    }
}

/// One task's handle on its thread's [`SendTimer`], for pacing its open-loop sends.
#[cfg(target_os = "linux")]
pub struct Pacer {
    shared: Rc<Shared>,
    id: usize,
}

#[cfg(target_os = "linux")]
impl std::fmt::Debug for Pacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacer")
            .field("id", &self.id)
            .field("due", &self.due())
            .finish()
    }
}

#[cfg(target_os = "linux")]
impl std::fmt::Debug for SendTimer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendTimer")
            .field("pacers", &self.shared.pacers.borrow().len())
            .finish_non_exhaustive()
    }
}

#[cfg(target_os = "linux")]
impl Pacer {
    fn due(&self) -> Option<u64> {
        self.shared.pacers.borrow()[self.id].0
    }

    /// Whether a deadline is set.
    pub fn is_armed(&self) -> bool {
        self.due().is_some()
    }

    /// Sets the pacer to fire at `at` (clock nanoseconds); a time already past fires at once.
    pub fn arm(&mut self, at: u64) -> io::Result<()> {
        {
            let mut pacers = self.shared.pacers.borrow_mut();
            if pacers[self.id].0 == Some(at) {
                return Ok(());
            }
            pacers[self.id].0 = Some(at);
        }
        self.shared.heap.borrow_mut().push(Reverse((at, self.id)));
        let timer = self.shared.timer.get_ref();
        if timer.deadline().is_none_or(|current| at < current) {
            timer.arm(at)?;
        }
        Ok(())
    }

    /// Waits until the deadline passes, then leaves the pacer disarmed. Pending forever while
    /// disarmed, so it can sit in a `select!` with a condition.
    pub async fn fired(&mut self) -> io::Result<()> {
        std::future::poll_fn(|cx| {
            let mut pacers = self.shared.pacers.borrow_mut();
            let entry = &mut pacers[self.id];
            match entry.0 {
                Some(at) if at <= self.shared.clock.now() => {
                    *entry = (None, None);
                    Poll::Ready(Ok(()))
                }
                _ => {
                    entry.1 = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }
}

/// The open-loop send timer of a load thread's tokio tasks where there is no timerfd: tokio's
/// own timer, whose wheel every task of the runtime already shares, so it costs no descriptor.
#[cfg(not(target_os = "linux"))]
#[derive(Debug, Clone)]
pub struct SendTimer {
    clock: Clock,
}

#[cfg(not(target_os = "linux"))]
impl SendTimer {
    /// A thread's send timer on `clock`.
    pub fn new(clock: Clock) -> io::Result<SendTimer> {
        Ok(SendTimer { clock })
    }

    /// A disarmed pacer for one more task.
    pub fn pacer(&self) -> Pacer {
        Pacer {
            clock: self.clock,
            armed: None,
        }
    }
}

/// One task's pacer on tokio's timer, where there is no timerfd.
#[cfg(not(target_os = "linux"))]
#[derive(Debug)]
pub struct Pacer {
    clock: Clock,
    /// The deadline it is set for, if any.
    armed: Option<u64>,
}

#[cfg(not(target_os = "linux"))]
impl Pacer {
    /// Whether a deadline is set.
    pub fn is_armed(&self) -> bool {
        self.armed.is_some()
    }

    /// Sets the pacer to fire at `at` (clock nanoseconds); a time already past fires at once.
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
        tokio::task::LocalSet::new()
            .run_until(pacer_fires_on_time())
            .await;
    }

    async fn pacer_fires_on_time() {
        let clock = Clock::new();
        let mut pacer = SendTimer::new(clock).unwrap().pacer();
        let mut best = u64::MAX;
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
            best = best.min(late);
            assert!(!pacer.is_armed());
        }
        // How late any one wake-up is depends on the scheduler (a busy machine can hold a
        // thread back for hundreds of milliseconds; the timeout above bounds that). What the
        // timer itself promises shows in the best of 20 tries: within a millisecond.
        assert!(best < 1_000_000, "best lateness {best} ns");
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
