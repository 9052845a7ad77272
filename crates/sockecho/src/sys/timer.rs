//! A one-shot `timerfd` on `CLOCK_MONOTONIC` with absolute deadlines: microsecond wake-ups where
//! tokio's timer wheel rounds to the millisecond. Linux only.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use rustix::time::{
    Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, timerfd_create,
    timerfd_settime,
};

/// A non-blocking, close-on-exec timerfd.
#[derive(Debug)]
pub(crate) struct TimerFd(OwnedFd);

impl TimerFd {
    /// A disarmed timer.
    pub(crate) fn new() -> io::Result<TimerFd> {
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        Ok(TimerFd(fd))
    }

    /// Fires once `CLOCK_MONOTONIC` reaches `at_ns`; a time already past fires at once.
    pub(crate) fn set(&self, at_ns: u64) -> io::Result<()> {
        let mut value = Timespec {
            tv_sec: (at_ns / 1_000_000_000) as i64,
            tv_nsec: (at_ns % 1_000_000_000) as i64,
        };
        if value.tv_sec == 0 && value.tv_nsec == 0 {
            // All zeros would disarm the timer instead.
            value.tv_nsec = 1;
        }
        let spec = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: value,
        };
        timerfd_settime(&self.0, TimerfdTimerFlags::ABSTIME, &spec)?;
        Ok(())
    }

    /// Consumes an expiry: `Ok(true)` if the deadline had passed (the timer is now disarmed),
    /// `Ok(false)` if it had not fired.
    pub(crate) fn take_expiry(&self) -> io::Result<bool> {
        let mut count = [0u8; 8];
        match rustix::io::read(&self.0, &mut count) {
            Ok(_) => Ok(true),
            Err(rustix::io::Errno::AGAIN) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

impl AsFd for TimerFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl AsRawFd for TimerFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}
