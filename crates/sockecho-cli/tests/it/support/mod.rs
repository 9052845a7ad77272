//! The one harness of the black-box tests: everything a test needs to drive the real
//! `sockecho` binary and talk to it over sockets.
//!
//! - [`process`]: run one-shot commands (`client`, `bench`, `ping`, usage errors) to completion,
//!   with the developer's `SOCKECHO_*` variables (but `SOCKECHO_IO`), `RUST_LOG` and `NO_COLOR`
//!   cleared from every command the harness makes, servers included.
//! - [`server`]: start `sockecho serve`, learn its bound endpoints from the `listening on` lines,
//!   watch its log, signal it and wait for its exit.
//! - [`net`]: raw sockets with timeouts — connect, echo once, datagram peers, closed ports,
//!   connecting from a chosen loopback address.
//! - [`data`]: test payloads and temporary directories.
//! - [`tls`]: certificates on disk and the server's TLS log lines.
//! - [`transcript`]: a child's output collected as it comes, and a bounded wait on it.
//! - [`wait`]: bounded polling for what announces nothing (a child's exit, a counter).
//! - [`bench`]: the `bench --json` report and its fields.
//! - [`faulty`]: small misbehaving echo servers, so the tools' error counts meet a known fault.
//! - [`metrics`]: a minimal HTTP/1.1 client for `--metrics`.
//!
//! # Timeouts
//! Two bounds, used everywhere, so a broken binary fails a test instead of hanging it:
//! - [`WAIT`] bounds one thing that should happen at once: a server becoming ready, a log line,
//!   an echo, a socket read or write, a process exiting after a signal.
//! - [`RUN`] bounds a whole one-shot command ([`run`]), which may itself run for a few seconds
//!   (a short bench or ping).
//!
//! Nothing sleeps to wait for readiness: readiness is a `listening on` line, a reply or an exit.
//! Where there is no event to wait on (a child's exit, a metrics counter), [`wait`] polls under
//! one of these bounds.

pub mod bench;
pub mod data;
pub mod faulty;
pub mod metrics;
pub mod net;
pub mod process;
pub mod server;
pub mod tls;
pub mod transcript;
pub mod wait;

use std::time::Duration;

pub use bench::*;
pub use data::*;
pub use faulty::*;
pub use metrics::*;
pub use net::*;
pub use process::*;
pub use server::*;
pub use tls::*;
pub use transcript::*;
pub use wait::*;

/// Bound for anything that should happen at once (readiness, a log line, an echo, an exit).
pub const WAIT: Duration = Duration::from_secs(10);

/// Bound for a whole one-shot command run to completion.
pub const RUN: Duration = Duration::from_secs(30);
