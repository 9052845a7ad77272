//! The io_uring engine for plain TCP and Unix stream connections (`--io uring`).
//!
//! Each worker thread that can create a ring gets one engine thread, and the worker hands it
//! its plain TCP and Unix listeners: the engine accepts on them itself, with a multishot accept
//! in its ring (applying `--max-conns` permits, access rules and per-address limits as the
//! tokio loop does), and serves each connection to the end, with no tokio on the path from
//! accept to close. (Behind `--proxy-protocol` or stream faults the tokio loop accepts and
//! reads first, then hands each plain connection over.)
//!
//! - **No thread hop, no extra system call per connection.** The accept completes in the ring;
//!   the connection's first receive is armed in the same turn; `TCP_NODELAY` comes from the
//!   listener; the close is a ring request too. Per connection the engine allocates nothing
//!   unless the connection log is on (the peer's name) or its echo queue grows.
//!
//! - **One system call per loop turn.** Every receive, send and poll of every connection is a
//!   request in one ring; `io_uring_enter` submits the turn's new requests and waits for the next
//!   completions at once. The ring is single-issuer with deferred task work, so the kernel does
//!   the receive work of many sockets in one go, when the engine asks for completions.
//! - **No buffer per connection.** Each connection keeps one multishot receive armed, which
//!   takes a buffer from a pool shared by the whole engine (a *provided buffer ring*) only when
//!   bytes arrive, and only as many bytes of it as arrived (the pool is consumed incrementally).
//!   The echo is sent straight from the pool; a buffer goes back once the kernel has filled it
//!   and every echo sent from it has completed, normally within the turn. Bytes that arrive
//!   while a send is under way wait in the pool too, and the next send gathers up to
//!   [`GATHER`](conn::GATHER) of those pieces into one write (a 1 MiB message arrives as 16 receives).
//! - **Backpressure.** Sends are non-blocking (`MSG_DONTWAIT`). Bytes the peer's socket cannot
//!   take yet are copied out of the pool into one piece of the connection's own memory, and the
//!   connection stops receiving until the queue is written, so a client that never reads
//!   cannot hold pool buffers or make the server buffer without bound. Each receive asks the
//!   kernel to end it after [`QUEUE_LIMIT`](state::QUEUE_LIMIT) bytes (a capped multishot
//!   receive, Linux 6.17; on older kernels one receive of one pool buffer at a time, see
//!   [`ReceiveKind`](crate::sys::uring::ReceiveKind)): a multishot receive the engine could only
//!   cancel at its next turn drained whatever the socket held first, about 3 MiB per client
//!   that never reads. So a queue holds at most 256 KiB and the rest of one 64 KiB buffer,
//!   close to the epoll path's bound.
//!
//! Shutdown follows the tokio path: on drain a connection is half-closed once it has been quiet
//! for [`DRAIN_SETTLE`](crate::server::echo::DRAIN_SETTLE) counted from the start of the shutdown, then whatever it sends is
//! discarded until its EOF (or the idle timeout); at the end of the grace period every
//! connection left is cut.
//!
//! The parts, top down (each uses only parts listed after it; the handle and the inbox it
//! shares with the accepting side are the parent module's, as for the epoll engine):
//!
//! - [`engine`]: the ring loop, which owns the ring, the pool and the connection table;
//! - [`accept`]: accepting on the ring, and admission;
//! - [`ops`]: how a completion names its request;
//! - [`conn`]: one connection's socket and queue of echo bytes, and the requests that point at
//!   them;
//! - [`state`]: one connection's life as a state machine — what it has in the ring and what it
//!   needs next — with no kernel in it, so it is tested on its own.
//!
//! This is the server's only module with `unsafe` code (in `engine`, `accept` and `conn`): the kernel
//! reads and writes memory that the ring's requests point to, so the engine must keep that
//! memory alive and untouched until each request completes. Every block says why it holds.

mod accept;
mod conn;
mod engine;
mod ops;
mod state;

pub(super) use engine::UringEngine;
