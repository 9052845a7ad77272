//! A budget for warnings that peers can cause by the thousand (failed TLS handshakes): the
//! first few in each interval are logged one by one, the rest only counted and then summed up
//! in one line, so a flood cannot bury the log. The metrics counters stay exact either way.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::access::lock;

/// Warnings logged one by one per interval.
pub(crate) const WARNINGS_PER_INTERVAL: u32 = 5;
/// How often the warnings held back are summed up.
pub(crate) const INTERVAL: Duration = Duration::from_secs(10);

/// Decides which warnings of one kind are logged; see the module documentation.
#[derive(Debug)]
pub(crate) struct LogBudget {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    interval_start: Instant,
    /// Warnings logged one by one in the current interval.
    logged: u32,
    /// Warnings held back since the last summary.
    held_back: u64,
}

impl LogBudget {
    pub(crate) fn new(now: Instant) -> Self {
        LogBudget {
            state: Mutex::new(State {
                interval_start: now,
                logged: 0,
                held_back: 0,
            }),
        }
    }

    /// Whether one more warning at `now` may be logged; if not, it is counted for the summary.
    pub(crate) fn admit(&self, now: Instant) -> bool {
        let mut state = lock(&self.state);
        if now.saturating_duration_since(state.interval_start) >= INTERVAL {
            state.interval_start = now;
            state.logged = 0;
        }
        if state.logged < WARNINGS_PER_INTERVAL {
            state.logged += 1;
            true
        } else {
            state.held_back += 1;
            false
        }
    }

    /// How many warnings were held back since the last call, resetting the count.
    pub(crate) fn take_held_back(&self) -> u64 {
        std::mem::take(&mut lock(&self.state).held_back)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_per_interval_are_logged_and_the_rest_counted_exactly() {
        let start = Instant::now();
        let budget = LogBudget::new(start);
        let logged = (0..100).filter(|_| budget.admit(start)).count();
        assert_eq!(logged, WARNINGS_PER_INTERVAL as usize);
        assert_eq!(budget.take_held_back(), 95);
        assert_eq!(budget.take_held_back(), 0);

        // Still inside the interval: held back.
        assert!(!budget.admit(start + INTERVAL / 2));
        // A new interval logs again.
        let next = start + INTERVAL;
        let logged = (0..7).filter(|_| budget.admit(next)).count();
        assert_eq!(logged, WARNINGS_PER_INTERVAL as usize);
        assert_eq!(budget.take_held_back(), 3);
    }
}
