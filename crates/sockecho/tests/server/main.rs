//! In-process tests of the echo server library: bind on port 0 or a temporary socket path, run
//! the server on the test's own runtime with a shutdown future the test completes, and check the
//! bytes that come back and the statistics `run` returns. No child process and no signals, so
//! drain and cut are driven directly.
//!
//! The stream tests run on whichever I/O path `SOCKECHO_IO` selects, as the CLI does, so the
//! suite covers both io_uring and epoll when run twice.

mod support;

mod datagram;
mod echo_stream;
mod shutdown;
mod stream;
