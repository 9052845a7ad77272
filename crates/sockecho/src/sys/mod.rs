//! The system-call layer: every thin wrapper around a call the standard library and tokio do not
//! make for us, and the one place that knows which platform has which call.
//!
//! # Which crate wraps what
//!
//! - **rustix** for plain calls it has: `recv`/`send`/`sendmsg`, epoll, eventfd, timerfd, clocks,
//!   rlimits, errno values. Its wrappers are safe and inline to the system call.
//! - **socket2** for socket options it has (buffer sizes), through `SockRef` on any socket.
//! - **nix** for what rustix lacks: messages with UDP segmentation notes (`UDP_SEGMENT` and
//!   `UDP_GRO` control messages), `recvmmsg`/`sendmmsg` with per-message addresses and control
//!   messages, and the `UDP_GRO`, `UDP_SEGMENT` and `IP_BIND_ADDRESS_NO_PORT` options. Only this
//!   layer names it; the server's UDP loop takes its batch types from [`udp`].
//! - **libc** only for what the io_uring engines hand the kernel as C structures (`msghdr`,
//!   `iovec`, `MSG_*` and `POLL*` flags): the `io-uring` crate's requests take them in libc's
//!   terms. No call goes through libc.
//!
//! # Platforms
//!
//! Everything here but [`rlimit`], [`clock`], [`socket`] and [`unix_addr`] is Linux only: io_uring ([`uring`]), UDP
//! GSO/GRO and the multi-message calls ([`udp`]), `IP_BIND_ADDRESS_NO_PORT` ([`sockopt`]), timerfd ([`timer`]). On other systems those modules are not
//! compiled, and their users take the portable path: stream I/O on tokio's reactor (kqueue),
//! UDP with one datagram per call, open-loop pacing on tokio's timer, Unix datagram clients
//! bound to a path in the temporary directory.
//!
//! # Unsafe code
//!
//! `unsafe` lives in [`uring`] (ring setup and the provided-buffer pool the kernel writes into)
//! and in the io_uring engines that queue requests pointing into their memory
//! (`server::uring`, `bench::uring`, `bench::churn::uring`); every block says why it holds.

pub(crate) mod clock;
pub mod rlimit;
pub(crate) mod socket;
#[cfg(target_os = "linux")]
pub(crate) mod sockopt;
#[cfg(target_os = "linux")]
pub(crate) mod timer;
#[cfg(target_os = "linux")]
pub(crate) mod udp;
pub(crate) mod unix_addr;
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub(crate) mod uring;
