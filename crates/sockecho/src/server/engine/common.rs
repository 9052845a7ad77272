//! What the two engines have in common: what their handle needs of either ([`Engine`]), and how
//! often their timer looks at the connections.

#![deny(unsafe_code)]

#[cfg(target_os = "linux")]
use std::io;
#[cfg(target_os = "linux")]
use std::sync::Arc;
#[cfg(target_os = "linux")]
use std::time::Duration;

#[cfg(target_os = "linux")]
use super::inbox::Inbox;
#[cfg(target_os = "linux")]
use crate::server::echo::DRAIN_SETTLE;
#[cfg(target_os = "linux")]
use crate::server::shared::Shared;

/// An engine, as its thread drives it.
#[cfg(target_os = "linux")]
pub(super) trait Engine: Sized {
    /// How logs name it.
    const NAME: &'static str;
    /// Sets the engine up on the thread that will run it; fails if this kernel (or a sandbox)
    /// does not offer what it needs.
    fn new(inbox: Arc<Inbox>, shared: Arc<Shared>) -> io::Result<Self>;
    /// Serves until the accepting side is done and the last connection has ended.
    fn run(&mut self) -> io::Result<()>;
    /// After `run` failed: refuses further connections, gives the listeners back, and ends
    /// every connection where it stands, so shutdown can finish.
    fn stop_after_failure(&mut self);
}

/// How often an engine looks at idle and draining connections (and at accepting paused for
/// want of a permit): a tenth of the idle timeout, within 5 ms..25 ms (a quarter of the drain's
/// settle time).
#[cfg(target_os = "linux")]
pub(super) fn tick_period(idle_timeout: Option<Duration>) -> Duration {
    let period = idle_timeout.map_or(DRAIN_SETTLE / 4, |idle| idle / 10);
    period.clamp(Duration::from_millis(5), DRAIN_SETTLE / 4)
}
