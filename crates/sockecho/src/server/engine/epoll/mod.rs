//! The epoll engine for plain TCP and Unix stream connections (`--io epoll`, and the fallback
//! where io_uring is not allowed).
//!
//! One thread per worker, one epoll set, no tokio between accept and close:
//!
//! - **Accepting.** Each plain listener is in the set (level-triggered, `EPOLLEXCLUSIVE`, so a
//!   new connection wakes one worker's engine, not all of them); a readiness event accepts up to
//!   [`ACCEPT_BATCH`](accept::ACCEPT_BATCH) connections with `accept4` (non-blocking at once,
//!   `TCP_NODELAY` inherited from the listener), each taking a `--max-conns` permit first: with
//!   none left, the listener leaves the set and its clients wait in the kernel's backlog until a
//!   permit comes back.
//! - **One registration per connection.** A new connection joins the set once, edge-triggered
//!   for reading, writing and the peer's FIN; its close takes it out again. The registration
//!   itself reports bytes that arrived before it, so nothing is read before the kernel says
//!   there is something to read.
//! - **No buffer per connection.** Reads land in one scratch buffer per engine and are written
//!   straight back; only what the peer's socket cannot take yet is copied into the connection's
//!   own pending buffer, and while that holds anything the connection reads no more (at most
//!   [`SCRATCH_SIZE`](crate::server::echo::SCRATCH_SIZE) per client that never reads), as on the
//!   tokio path.
//! - **No `EAGAIN` reads.** A read that returns less than asked has emptied the socket, so the
//!   connection waits for the next edge instead of reading again (unless the peer's FIN has been
//!   reported, which produces no further edge): a 64-byte exchange costs one `recv` and one
//!   `send`, and the close one `recv` of 0 bytes.
//! - **Fair turns.** A connection that is still readable after [`READS_PER_TURN`](conn::READS_PER_TURN)
//!   reads in a turn (a fast sender of large messages) goes on in the next turn, after the
//!   others.
//!
//! The parts, top down: [`engine`] (the loop, the connection table, timers and shutdown),
//! [`accept`] (the listeners and admission) and [`conn`] (one connection's echo, tested on
//! socket pairs). No `unsafe` code: every call goes through `rustix`.

#![deny(unsafe_code)]

mod accept;
mod conn;
mod engine;

pub(super) use engine::EpollEngine;
