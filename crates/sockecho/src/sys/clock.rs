//! Clock reads: `CLOCK_MONOTONIC`, which `Instant` and timerfd deadlines both count in, and this
//! process's CPU time. Every Unix the crate builds for has both clocks.

use rustix::time::{ClockId, Timespec, clock_gettime};

/// `CLOCK_MONOTONIC` now, in nanoseconds.
#[inline]
pub(crate) fn monotonic_ns() -> u64 {
    nanos(clock_gettime(ClockId::Monotonic))
}

/// CPU time (user and system) this process has used so far, all threads together, in
/// nanoseconds.
pub(crate) fn process_cpu_ns() -> u64 {
    nanos(clock_gettime(ClockId::ProcessCPUTime))
}

#[inline]
fn nanos(ts: Timespec) -> u64 {
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
