//! sockecho: echo servers, clients and load generation over TCP, UDP and Unix sockets.
//!
//! The `sockecho` binary is a thin shell over this library; everything it does can be embedded,
//! for instance to get an echo server inside another crate's tests:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use sockecho::{Endpoint, server::{Server, ServerConfig}};
//! let server = Server::bind(&["tcp://127.0.0.1:0".parse::<Endpoint>()?], ServerConfig::default()).await?;
//! println!("echo at {}", server.endpoints()[0]); // the real port, not 0
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let task = tokio::spawn(server.run(async { let _ = stopped.await; }));
//! // ... use the server ...
//! stop.send(()).ok();
//! let stats = task.await?;
//! println!("{} connections", stats.connections_accepted);
//! # Ok(()) }
//! ```
// No unsafe code, except where io_uring needs it: the server's io_uring engine (`server::engine::uring`), the
// load generator's loops (`bench::uring`, `bench::churn::uring`) and the ring setup and buffer
// pool they share in the system-call layer (`sys::uring`), each of which says why at every block.
#![deny(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod bench;
pub mod client;
pub mod connect;
pub mod endpoint;
pub mod io;
pub mod net_error;
pub mod payload;
pub mod ping;
pub mod proxy_protocol;
pub mod server;
pub mod stats;
mod sys;
pub mod tls;

#[cfg(test)]
mod layering;

pub use sys::rlimit as limits;

/// Log target of per-connection events (connected, disconnected), so they can be silenced
/// apart from lifecycle lines such as `listening on`.
pub const CONN_LOG: &str = "sockecho::conn";
/// Log target of payloads logged with `--log-data`.
pub const DATA_LOG: &str = "sockecho::data";

pub use endpoint::{Endpoint, Host, HostPort, ParseEndpointError, Transport, WsTarget};
pub use stats::{Counters, Stats};
