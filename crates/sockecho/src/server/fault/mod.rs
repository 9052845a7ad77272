//! Faults on demand: a server that misbehaves on purpose, so clients, proxies and retry
//! policies can be tested against delays, slow or cut connections, and lost, repeated,
//! reordered, cut or corrupted datagrams — each with a chance and a seed, so a run repeats.
//!
//! - `spec`: the text form (`delay=10ms±5ms`, `drop=1%`, `reset-after=64KiB@5%`) and
//!   [`Fault`] itself;
//! - `plan`: a server's [`FaultPlan`] and the seeded dice that apply it;
//! - `stream`: the echo of a connection with faults (on tokio; the fast paths never see one);
//! - `datagram`: what happens to the reply to one datagram.
//!
//! Every fault injected is counted by kind ([`crate::stats::FaultCounters`]) and logged at
//! debug level.

pub(crate) mod datagram;
pub(crate) mod plan;
mod spec;
pub(crate) mod stream;

pub use plan::{FaultPlan, FaultPlanError};
pub use spec::{Action, Chance, DEFAULT_REORDER_HOLD, Fault, FaultKind, FaultSpecError, Limit};
