//! The server's own loops for plain TCP and Unix stream connections, off tokio: one engine
//! thread beside each worker thread, which accepts on the worker's plain listeners itself and
//! serves every connection from accept to close.
//!
//! - [`uring`] (`--io uring`, the default where the kernel allows it): every receive, send,
//!   accept and close is a request in one io_uring, with a receive pool shared by all
//!   connections.
//! - [`epoll`] (`--io epoll`, and wherever io_uring is not allowed, as under the default
//!   seccomp profile of most container runtimes): one edge-triggered epoll set, `recv` and
//!   `send` on a scratch buffer per engine.
//!
//! Both apply what the tokio accept loop applies (`--max-conns` permits, `--allow`/`--deny`,
//! `--max-conns-per-ip`, the accept error classes and backoff, one last sweep of the backlog on
//! shutdown), echo with the same bound on what a slow reader can make the server hold, and shut
//! down the same way: on drain a connection is half-closed once it has been quiet for
//! [`DRAIN_SETTLE`] counted from the start of the shutdown, then whatever it sends is discarded
//! until its EOF (or the idle timeout); at the end of the grace period every connection left is
//! cut. TLS, WebSocket and datagram sockets, a server without worker threads, and stream
//! faults stay on tokio; behind `--proxy-protocol` the tokio loop accepts and reads the header,
//! then hands each connection over.
//!
//! The parts (each uses only parts listed after it):
//!
//! - [`handle`]: [`EngineHandle`], the worker's handle on its engine — starts the engine thread,
//!   hands listeners and connections over, passes the shutdown steps on;
//! - [`uring`] and [`epoll`]: the two engines;
//! - [`inbox`]: what the worker and the engine thread share ([`Arrival`]s waiting, shutdown
//!   flags, the eventfd that wakes the engine);
//! - [`common`]: what the handle needs of an engine ([`Engine`](common::Engine)), the
//!   connection table both keep ([`Table`](common::Table): slots with generations), and the
//!   timer period both use.
//!
//! The engines exist on Linux only; elsewhere `elsewhere` stands in with the same names and an
//! engine that never starts.

mod common;
#[cfg(not(target_os = "linux"))]
mod elsewhere;
#[cfg(target_os = "linux")]
mod epoll;
#[cfg(target_os = "linux")]
mod handle;
#[cfg(target_os = "linux")]
mod inbox;
#[cfg(target_os = "linux")]
mod uring;

#[cfg(not(target_os = "linux"))]
pub(crate) use elsewhere::{Arrival, EngineHandle};
#[cfg(target_os = "linux")]
pub(crate) use handle::EngineHandle;
#[cfg(target_os = "linux")]
pub(crate) use inbox::Arrival;
