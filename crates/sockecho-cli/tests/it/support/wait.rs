//! Bounded polling, for what announces nothing a test could block on: a child's exit, a metrics
//! counter reaching a value, a socket path that is not bound yet. Each poll is a few
//! milliseconds apart and the whole wait is bounded.

use std::fmt::Display;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use super::WAIT;

/// Time between two polls: short next to any bound, long next to a system call.
const POLL: Duration = Duration::from_millis(5);

/// Calls `attempt` until it returns `Ok`, failing the test after [`WAIT`] with `what` and the
/// last `Err`, which says how far things got.
pub fn poll_until<T, E: Display>(what: &str, mut attempt: impl FnMut() -> Result<T, E>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        match attempt() {
            Ok(done) => return done,
            Err(last) if Instant::now() >= deadline => {
                panic!("waited {WAIT:?} for {what}; last seen:\n{last}")
            }
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// Waits up to `limit` for `child` to exit; `None` if it is still running.
pub fn wait_child(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}
