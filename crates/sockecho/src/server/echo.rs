//! The stream echo itself: every byte back, in order, over any connected byte stream.
//!
//! [`echo_stream`] works on anything that is `AsyncRead + AsyncWrite` — a TCP or Unix socket,
//! one end of `UnixStream::pair()`, a TLS stream — so it can be tested without a listener.
//!
//! Memory: a connection owns no buffer while it is idle or keeping up. Reads land in one
//! scratch buffer per worker thread and are written straight back within the same poll; only the
//! bytes the peer's socket could not take yet are copied into a per-connection `pending` buffer,
//! and while that holds anything the connection stops reading (backpressure), so a client that
//! sends but never reads costs at most one scratch-sized buffer here and its kernel socket
//! buffers.
//!
//! Shutdown: once `drain` is cancelled the echo goes on until the connection has been quiet
//! for [`DRAIN_SETTLE`], then the server half-closes (the peer reads EOF) and waits for the
//! peer to close its side, discarding anything more it sends, so the close never resets the
//! connection under echoes the peer has not read yet.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use rustix::net::RecvFlags;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::sys::socket::NO_SIGPIPE;

/// Most bytes read per system call: whatever has arrived, up to this. Large enough that a
/// 1 MiB message takes four reads; there is one such buffer per worker thread, not per
/// connection. It is also the most a stalled connection keeps in `pending`.
pub const SCRATCH_SIZE: usize = 256 * 1024;

thread_local! {
    /// One read buffer per worker thread, shared by every connection the thread polls. It is only
    /// borrowed inside a single synchronous poll, never across an `.await`.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_SIZE].into_boxed_slice());
}

/// How long a connection must be quiet, once the server is shutting down, before the server
/// half-closes it. Bytes the peer wrote before the shutdown may still be on their way (in its
/// send buffer, waiting for the receive window to open as the echo drains); they arrive within
/// a round trip, and are echoed rather than cut off.
pub const DRAIN_SETTLE: Duration = Duration::from_millis(100);

/// Why an echo ended normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// The peer closed (or half-closed) and got all its bytes back.
    PeerClosed,
    /// Nothing was read or written for the idle timeout.
    IdleTimeout,
    /// The server is shutting down: what had already arrived was echoed, then the connection
    /// was closed.
    Drained,
    /// The shutdown grace period ended (or the server was asked to stop at once) before the
    /// connection did.
    Cut,
    /// An injected fault ended it (`reset-after`, `close-after`).
    Fault,
}

impl CloseReason {
    /// Short label for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::PeerClosed => "peer closed",
            CloseReason::IdleTimeout => "idle timeout",
            CloseReason::Drained => "server shutdown",
            CloseReason::Cut => "cut at shutdown before it finished",
            CloseReason::Fault => "ended by an injected fault",
        }
    }
}

/// Settings for one echoed stream.
#[derive(Debug, Clone, Default)]
pub struct EchoOptions {
    /// Close the connection after this long without traffic.
    pub idle_timeout: Option<Duration>,
    /// Log each received payload (trimmed, control characters escaped: see
    /// [`peer_text`](super::peer_text)) under this peer label.
    pub log_data_as: Option<String>,
}

/// How an echo went: bytes echoed and why it stopped. On error the bytes echoed before it are
/// kept too.
#[derive(Debug)]
pub struct EchoOutcome {
    /// Bytes read from the peer and written back.
    pub bytes: u64,
    /// `Ok` with the reason for a normal end, or the I/O error that ended it.
    pub result: io::Result<CloseReason>,
}

/// Echoes `stream` until the peer closes, the idle timeout passes, an I/O error occurs, or
/// `drain` is cancelled. On drain, bytes that have already arrived are still echoed, then the
/// write side is shut down.
pub async fn echo_stream<S>(
    stream: &mut S,
    options: &EchoOptions,
    drain: &CancellationToken,
) -> EchoOutcome
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    echo_io(&mut Generic(stream), options, drain, None, None).await
}

/// [`echo_stream`] over anything that implements [`EchoIo`]; the server uses it with TCP and
/// Unix sockets directly to get their fast read path. Cancelling `cut` ends the echo at once
/// (the end of the shutdown grace period), still reporting the bytes echoed.
///
/// `live`, when given, is added every byte as it is read to be echoed, so a counter shared with
/// a metrics endpoint moves while the connection is open, not only when it ends (one relaxed
/// atomic add per read, nothing more).
pub async fn echo_io<S: EchoIo>(
    stream: &mut S,
    options: &EchoOptions,
    drain: &CancellationToken,
    cut: Option<&CancellationToken>,
    live: Option<&AtomicU64>,
) -> EchoOutcome {
    let mut pump = Pump::new(options.log_data_as.as_deref());
    pump.live = live;
    let result = tokio::select! {
        result = run(&mut pump, stream, options.idle_timeout, drain) => result,
        () = async { match cut {
            Some(cut) => cut.cancelled().await,
            None => std::future::pending().await,
        } } => Ok(CloseReason::Cut),
    };
    EchoOutcome {
        bytes: pump.bytes,
        result,
    }
}

async fn run<S: EchoIo>(
    pump: &mut Pump<'_>,
    stream: &mut S,
    idle_timeout: Option<Duration>,
    drain: &CancellationToken,
) -> io::Result<CloseReason> {
    // One timer for the whole connection, re-armed only when it fires early, so traffic does
    // not touch the timer wheel on every read.
    let idle = tokio::time::sleep(idle_timeout.unwrap_or(Duration::MAX / 4));
    tokio::pin!(idle);
    // Made once: a fresh `cancelled()` per wake-up would register and unregister a waiter
    // under the token's lock on every echo.
    let drained = drain.cancelled();
    tokio::pin!(drained);
    // While draining: fires once the connection has been quiet for DRAIN_SETTLE.
    let settle = tokio::time::sleep(Duration::MAX / 4);
    tokio::pin!(settle);
    loop {
        tokio::select! {
            biased;
            done = poll_fn(|cx| pump.poll(cx, stream)) => {
                done?;
                return Ok(if pump.draining { CloseReason::Drained } else { CloseReason::PeerClosed });
            }
            () = &mut drained, if !pump.draining => {
                pump.draining = true;
                settle.as_mut().reset(Instant::now() + DRAIN_SETTLE);
            }
            () = &mut settle, if pump.draining && !pump.closing => {
                let now = Instant::now();
                let quiet_since = pump.last_activity + DRAIN_SETTLE;
                if now >= quiet_since && !pump.has_pending() {
                    // Everything the peer sent before the shutdown has come and gone back.
                    pump.closing = true;
                } else {
                    settle.as_mut().reset(quiet_since.max(now + DRAIN_SETTLE / 4));
                }
            }
            () = &mut idle, if idle_timeout.is_some() => {
                let deadline = pump.last_activity + idle_timeout.unwrap_or_default();
                if Instant::now() >= deadline {
                    return Ok(CloseReason::IdleTimeout);
                }
                idle.as_mut().reset(deadline);
            }
        }
    }
}

/// The three operations the echo needs from a byte stream.
pub trait EchoIo: Unpin {
    /// Reads some bytes into `buf`; `Ok(0)` is end of stream.
    fn poll_read_some(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>>;
    /// Writes some of `buf`.
    fn poll_write_some(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>>;
    /// Shuts down the write side, so the peer reads EOF.
    fn poll_close_write(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Whether dropping the stream ends it cleanly for a peer that has sent EOF and got all its
    /// bytes back, so no half-close need come first: a plain socket's close sends the FIN
    /// itself (nothing can be left unread after the peer's EOF). A TLS stream must send its
    /// close_notify first.
    fn close_is_clean_after_eof(&self) -> bool {
        false
    }
}

/// Any `AsyncRead + AsyncWrite` stream, through the standard traits.
pub struct Generic<S>(pub S);

impl<S: AsyncRead + AsyncWrite + Unpin> EchoIo for Generic<S> {
    fn poll_read_some(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut buf = ReadBuf::new(buf);
        Pin::new(&mut self.0)
            .poll_read(cx, &mut buf)
            .map_ok(|()| buf.filled().len())
    }

    fn poll_write_some(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_close_write(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// TCP and Unix stream sockets: `recv`/`send` directly, and no extra `recv` that would only
/// return `EAGAIN`.
///
/// A stream socket's `read` returns less than asked only when it has emptied the receive queue,
/// so after a short read the socket is known to be drained and its readiness can be cleared
/// without asking the kernel again. Readiness is cleared through `try_io`, which keeps it if the
/// reactor has seen a new event since, so bytes that arrive meanwhile are never missed.
macro_rules! socket_echo_io {
    ($ty:ty) => {
        impl EchoIo for $ty {
            fn poll_read_some(
                &mut self,
                cx: &mut Context<'_>,
                buf: &mut [u8],
            ) -> Poll<io::Result<usize>> {
                loop {
                    std::task::ready!(self.poll_read_ready(cx))?;
                    let mut short = 0;
                    let sock = &*self;
                    let result = sock.try_io(Interest::READABLE, || {
                        // recv, not read: it skips the VFS layer and the file-position lock.
                        let (_, n) = rustix::net::recv(sock, &mut *buf, RecvFlags::empty())?;
                        if n > 0 && n < buf.len() {
                            // Drained: report "would block" so tokio clears readiness.
                            short = n;
                            return Err(io::ErrorKind::WouldBlock.into());
                        }
                        Ok(n)
                    });
                    match result {
                        Ok(n) => return Poll::Ready(Ok(n)),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            if short > 0 {
                                return Poll::Ready(Ok(short));
                            }
                        }
                        Err(e) => return Poll::Ready(Err(e)),
                    }
                }
            }

            fn poll_write_some(
                &mut self,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                loop {
                    std::task::ready!(self.poll_write_ready(cx))?;
                    let sock = &*self;
                    // send, not write, for the same reason as recv above; NOSIGNAL so a peer
                    // that is gone is an EPIPE error, never a signal.
                    match sock.try_io(Interest::WRITABLE, || {
                        Ok(rustix::net::send(sock, buf, NO_SIGPIPE)?)
                    }) {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        result => return Poll::Ready(result),
                    }
                }
            }

            fn poll_close_write(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(self).poll_shutdown(cx)
            }

            fn close_is_clean_after_eof(&self) -> bool {
                true
            }
        }
    };
}

socket_echo_io!(tokio::net::TcpStream);
socket_echo_io!(tokio::net::UnixStream);

/// The state of one echoed stream between polls.
struct Pump<'a> {
    /// Bytes read but not yet written back. Empty (and unallocated) unless the peer's socket
    /// refused part of a write.
    pending: Vec<u8>,
    /// How much of `pending` has been written.
    written: usize,
    /// The peer sent EOF (or half-closed): it will send nothing more.
    peer_eof: bool,
    /// Once `pending` is flushed, shut down our write side.
    closing: bool,
    /// Our write side is shut down; we only wait for the peer's EOF now.
    shut: bool,
    /// Server shutdown: echo what has already arrived, then close instead of waiting for more.
    draining: bool,
    bytes: u64,
    /// A shared counter that `bytes` is added to as it grows.
    live: Option<&'a AtomicU64>,
    last_activity: Instant,
    log_data_as: Option<&'a str>,
}

impl<'a> Pump<'a> {
    fn new(log_data_as: Option<&'a str>) -> Self {
        Pump {
            pending: Vec::new(),
            written: 0,
            peer_eof: false,
            closing: false,
            shut: false,
            draining: false,
            bytes: 0,
            live: None,
            last_activity: Instant::now(),
            log_data_as,
        }
    }

    /// Moves bytes until the stream would block (`Pending`) or the echo is complete (`Ready`).
    fn poll<S: EchoIo>(&mut self, cx: &mut Context<'_>, stream: &mut S) -> Poll<io::Result<()>> {
        loop {
            if self.written < self.pending.len() {
                match stream.poll_write_some(cx, &self.pending[self.written..]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(write_zero())),
                    Poll::Ready(Ok(n)) => {
                        self.written += n;
                        self.last_activity = Instant::now();
                        if self.written == self.pending.len() {
                            // Give the memory back: an idle connection holds no buffer.
                            self.pending = Vec::new();
                            self.written = 0;
                        }
                        continue;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    // Backpressure: do not read more until the peer takes what it was sent.
                    Poll::Pending => return Poll::Pending,
                }
            }
            if self.closing && !self.shut {
                if self.peer_eof && stream.close_is_clean_after_eof() {
                    // Saves a system call per connection: the close that follows sends the FIN.
                    return Poll::Ready(Ok(()));
                }
                match stream.poll_close_write(cx) {
                    Poll::Ready(Ok(())) => self.shut = true,
                    // The peer may already have gone; it has everything it sent.
                    Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::NotConnected => {
                        return Poll::Ready(Ok(()));
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            if self.shut {
                if self.peer_eof {
                    return Poll::Ready(Ok(()));
                }
                // Draining: our FIN is out. Wait for the peer's, discarding what it still sends,
                // so that closing with unread bytes does not reset the connection and destroy
                // echoes the peer has not read yet (a "lingering close").
                match self.discard(cx, stream) {
                    Poll::Ready(Ok(())) => continue,
                    other => return other,
                }
            }
            match self.read_and_echo(cx, stream) {
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Reads once into the thread's scratch buffer and writes the bytes straight back; whatever
    /// the write does not take is copied to `pending`.
    fn read_and_echo<S: EchoIo>(
        &mut self,
        cx: &mut Context<'_>,
        stream: &mut S,
    ) -> Poll<io::Result<()>> {
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let n = match stream.poll_read_some(cx, &mut scratch[..]) {
                Poll::Ready(Ok(n)) => n,
                // A TLS peer that closes without close_notify: common, and harmless for an
                // echo (nothing is trusted from the truncation), so it is an ordinary EOF.
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            let data = &scratch[..n];
            if data.is_empty() {
                self.peer_eof = true;
                self.closing = true;
                return Poll::Ready(Ok(()));
            }
            self.bytes += data.len() as u64;
            if let Some(live) = self.live {
                live.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
            self.last_activity = Instant::now();
            if let Some(peer) = self.log_data_as {
                tracing::info!(target: crate::DATA_LOG, "{peer}: {}", super::peer_text::escaped(data));
            }
            let mut written = 0;
            while written < data.len() {
                match stream.poll_write_some(cx, &data[written..]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(write_zero())),
                    Poll::Ready(Ok(n)) => written += n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => break,
                }
            }
            if written < data.len() {
                self.pending.extend_from_slice(&data[written..]);
            }
            Poll::Ready(Ok(()))
        })
    }
}

impl Pump<'_> {
    /// Whether some echo is still waiting to be written.
    fn has_pending(&self) -> bool {
        self.written < self.pending.len()
    }

    /// Reads and drops whatever the peer sends after we shut down our side, until its EOF.
    fn discard<S: EchoIo>(&mut self, cx: &mut Context<'_>, stream: &mut S) -> Poll<io::Result<()>> {
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            match stream.poll_read_some(cx, &mut scratch[..]) {
                Poll::Ready(Ok(n)) => {
                    if n == 0 {
                        self.peer_eof = true;
                    }
                    Poll::Ready(Ok(()))
                }
                // The peer went away instead of closing cleanly: nothing left to do.
                Poll::Ready(Err(_)) => {
                    self.peer_eof = true;
                    Poll::Ready(Ok(()))
                }
                Poll::Pending => Poll::Pending,
            }
        })
    }
}

fn write_zero() -> io::Error {
    io::Error::new(io::ErrorKind::WriteZero, "the peer accepted no more bytes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixStream;
    use tokio::time::timeout;

    const LIMIT: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn echoes_binary_over_a_socketpair_and_closes_after_half_close() {
        let (mut client, mut server) = UnixStream::pair().unwrap();
        let drain = CancellationToken::new();
        let task =
            tokio::spawn(
                async move { echo_stream(&mut server, &EchoOptions::default(), &drain).await },
            );
        let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (mut rd, mut wr) = client.split();
        let send = async {
            wr.write_all(&payload).await.unwrap();
            wr.shutdown().await.unwrap();
        };
        let mut back = Vec::new();
        let recv = rd.read_to_end(&mut back);
        let ((), n) = timeout(LIMIT, async { tokio::join!(send, recv) })
            .await
            .unwrap();
        assert_eq!(n.unwrap(), payload.len());
        assert!(back == payload, "echo differs from what was sent");
        let outcome = timeout(LIMIT, task).await.unwrap().unwrap();
        assert_eq!(outcome.bytes, payload.len() as u64);
        assert_eq!(outcome.result.unwrap(), CloseReason::PeerClosed);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_timeout_closes_only_after_silence() {
        let (mut client, mut server) = UnixStream::pair().unwrap();
        let drain = CancellationToken::new();
        let options = EchoOptions {
            idle_timeout: Some(Duration::from_secs(30)),
            ..Default::default()
        };
        let task = tokio::spawn(async move { echo_stream(&mut server, &options, &drain).await });
        // Traffic at 20 s keeps it open past the first 30 s.
        tokio::time::sleep(Duration::from_secs(20)).await;
        client.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert!(!task.is_finished(), "closed although traffic came 20 s ago");
        let outcome = task.await.unwrap();
        assert_eq!(outcome.result.unwrap(), CloseReason::IdleTimeout);
        assert_eq!(outcome.bytes, 4);
        assert_eq!(client.read(&mut buf).await.unwrap(), 0, "expected EOF");
    }

    #[tokio::test]
    async fn drain_echoes_what_arrived_then_sends_eof() {
        let (mut client, mut server) = UnixStream::pair().unwrap();
        let drain = CancellationToken::new();
        let token = drain.clone();
        let task =
            tokio::spawn(
                async move { echo_stream(&mut server, &EchoOptions::default(), &token).await },
            );
        client.write_all(b"first").await.unwrap();
        let mut buf = [0u8; 5];
        timeout(LIMIT, client.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        client.write_all(b"second").await.unwrap();
        drain.cancel();
        let mut rest = Vec::new();
        timeout(LIMIT, client.read_to_end(&mut rest))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rest, b"second");
        // The server waits for our side to close too (no reset), then finishes.
        assert!(!task.is_finished());
        drop(client);
        let outcome = timeout(LIMIT, task).await.unwrap().unwrap();
        assert_eq!(outcome.result.unwrap(), CloseReason::Drained);
        assert_eq!(outcome.bytes, 11);
    }

    #[tokio::test]
    async fn a_client_that_never_reads_stalls_the_echo_without_buffering() {
        let (mut client, mut server) = UnixStream::pair().unwrap();
        let drain = CancellationToken::new();
        let task = tokio::spawn(async move {
            let mut pump = Pump::new(None);
            let res = timeout(
                Duration::from_millis(300),
                run(&mut pump, &mut server, None, &drain),
            )
            .await;
            assert!(
                res.is_err(),
                "echo ended although the client is still there"
            );
            (pump.pending.len() - pump.written, pump.bytes)
        });
        // Write far more than the socket buffers hold; the writer blocks once they are full.
        let chunk = vec![0xA5u8; 4096];
        let mut sent = 0u64;
        let _ = timeout(Duration::from_millis(300), async {
            loop {
                sent += client.write(&chunk).await.unwrap() as u64;
            }
        })
        .await;
        assert!(sent > 0);
        let (pending, read) = task.await.unwrap();
        assert!(pending <= SCRATCH_SIZE, "pending grew to {pending} bytes");
        assert!(read < sent, "server read all {sent} bytes: no backpressure");
    }
}

#[cfg(test)]
mod socket_tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::time::timeout;

    /// The TCP fast path (short reads clear readiness) must never lose a wake-up: send bytes in
    /// uneven bursts with pauses, so reads are short and new data arrives after each of them.
    #[tokio::test]
    async fn tcp_fast_path_echoes_uneven_bursts_exactly() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            echo_io(
                &mut stream,
                &EchoOptions::default(),
                &CancellationToken::new(),
                None,
                None,
            )
            .await
        });
        let mut client = TcpStream::connect(addr).await.unwrap();
        let (mut rd, mut wr) = client.split();
        let payload: Vec<u8> = (0..2_000_000u32).map(|i| (i ^ (i >> 8)) as u8).collect();
        let send = async {
            let mut at = 0;
            let mut step = 1;
            while at < payload.len() {
                let end = (at + step).min(payload.len());
                wr.write_all(&payload[at..end]).await.unwrap();
                at = end;
                step = step * 3 % 100_003 + 1;
                if step % 7 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            wr.shutdown().await.unwrap();
        };
        let mut back = Vec::new();
        let recv = rd.read_to_end(&mut back);
        let ((), got) = timeout(Duration::from_secs(20), async { tokio::join!(send, recv) })
            .await
            .expect("echo stalled");
        assert_eq!(got.unwrap(), payload.len());
        assert!(back == payload, "echo differs");
        let outcome = server.await.unwrap();
        assert_eq!(outcome.bytes, payload.len() as u64);
        assert_eq!(outcome.result.unwrap(), CloseReason::PeerClosed);
    }
}
