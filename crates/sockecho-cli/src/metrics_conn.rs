//! One connection to the metrics endpoint, held to its limits: the request head must arrive
//! within the header timeout and fit in [`MAX_HEADER_BYTES`] (else 431), and a kept-alive
//! connection on which nothing moves for the idle timeout is closed. With the connection cap
//! (applied by the accept loop in `metrics`), whoever can reach the port can hold only a few
//! descriptors, and only briefly: the echo listeners keep theirs.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Largest request head (request line and headers) served; larger ones get 431. A scrape's
/// head is a few hundred bytes.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;

/// Bounds on the metrics endpoint's connections (`--metrics-*` flags).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; further ones are closed as soon as they are accepted.
    pub max_conns: usize,
    /// Time to send a whole request head, from the connection's start or from the first byte
    /// of a later request on it.
    pub header_timeout: Duration,
    /// Time a connection may sit with nothing moving between requests (or while its response
    /// is not being read).
    pub idle_timeout: Duration,
}

/// What the limits turned away, for `sockecho_metrics_*`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections served (accepted within the cap).
    pub accepted: AtomicU64,
    /// Closed at once: the cap was reached.
    pub over_limit: AtomicU64,
    /// Closed: a request head took longer than the header timeout.
    pub header_timeout: AtomicU64,
    /// Closed: idle for the idle timeout.
    pub idle_timeout: AtomicU64,
    /// Answered 431 and closed: a request head over [`MAX_HEADER_BYTES`].
    pub header_too_large: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Serves HTTP/1.1 on `stream` with `respond` until the client closes or a limit closes it.
pub async fn serve<F>(stream: TcpStream, limits: Limits, counters: &Counters, respond: F)
where
    F: Fn(&Request<Incoming>) -> Response<Full<Bytes>> + Send + 'static,
{
    let clock = Arc::new(Clock::new());
    let io = Watched {
        inner: stream,
        clock: clock.clone(),
    };
    let service = {
        let clock = clock.clone();
        hyper::service::service_fn(move |req| {
            clock.request_complete();
            std::future::ready(Ok::<_, Infallible>(respond(&req)))
        })
    };
    let connection = hyper::server::conn::http1::Builder::new()
        .max_header_size(MAX_HEADER_BYTES)
        // The clock below keeps the time; hyper's own header timer would also end idle
        // kept-alive connections at the header timeout.
        .header_read_timeout(None)
        .serve_connection(hyper_util::rt::TokioIo::new(io), service);
    tokio::pin!(connection);
    let expired = loop {
        let (deadline, _) = clock.deadline(&limits);
        tokio::select! {
            result = connection.as_mut() => {
                match result {
                    Ok(()) => {}
                    Err(e) if e.is_parse_too_large() => Counters::add(&counters.header_too_large),
                    Err(e) => tracing::debug!("metrics connection: {e}"),
                }
                return;
            }
            () = tokio::time::sleep_until(deadline) => {
                let (deadline, expired) = clock.deadline(&limits);
                if deadline <= Instant::now() {
                    break expired;
                }
            }
            () = clock.changed.notified() => {}
        }
    };
    match expired {
        Expired::Header => Counters::add(&counters.header_timeout),
        Expired::Idle => Counters::add(&counters.idle_timeout),
    }
    tracing::debug!("metrics connection closed: {expired:?} timeout");
}

/// Which limit a connection ran out of.
#[derive(Debug, Clone, Copy)]
enum Expired {
    Header,
    Idle,
}

/// Where a connection is, and since when.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// A request head is due: the connection is new, or bytes of a next request came.
    Head(Instant),
    /// A request was answered; nothing moved since.
    Idle(Instant),
}

/// A connection's phase, moved by its socket and its service, read by its watchdog.
#[derive(Debug)]
struct Clock {
    phase: Mutex<Phase>,
    /// Woken when a deadline may have moved earlier.
    changed: Notify,
}

impl Clock {
    fn new() -> Self {
        Clock {
            phase: Mutex::new(Phase::Head(Instant::now())),
            changed: Notify::new(),
        }
    }

    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        // Every write leaves a whole Phase behind, so a poisoned one is still consistent.
        self.phase.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes arrived: if the connection was idle, a request head is now due.
    fn bytes_read(&self) {
        let mut phase = self.phase();
        if let Phase::Idle(_) = *phase {
            *phase = Phase::Head(Instant::now());
            drop(phase);
            // `notify_one` keeps the wake-up if the watchdog is not waiting at this moment.
            self.changed.notify_one();
        }
    }

    /// Bytes of a response left: an idle connection is still moving.
    fn bytes_written(&self) {
        let mut phase = self.phase();
        if let Phase::Idle(_) = *phase {
            *phase = Phase::Idle(Instant::now());
        }
    }

    /// A whole request head arrived and is being answered.
    fn request_complete(&self) {
        *self.phase() = Phase::Idle(Instant::now());
    }

    fn deadline(&self, limits: &Limits) -> (Instant, Expired) {
        match *self.phase() {
            Phase::Head(since) => (since + limits.header_timeout, Expired::Header),
            Phase::Idle(since) => (since + limits.idle_timeout, Expired::Idle),
        }
    }
}

/// The connection's socket, telling its clock when bytes move.
struct Watched {
    inner: TcpStream,
    clock: Arc<Clock>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.bytes_read();
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.clock.bytes_written();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.clock.bytes_written();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
