//! A load thread: its own single-threaded event loop, its share of the connections, and its own
//! recorder, so connections on one thread share histograms without any lock and threads share
//! nothing until the end.
//!
//! A thread first opens its connections and reports how many opened, then waits for the
//! coordinator's go (the common schedule, or nothing if the run is called off), runs its
//! connections, and hands back its results: plain TCP and Unix connections in the thread's own
//! loop (io_uring, [`uring`](super::uring), or epoll, [`reactor`](super::reactor)), TLS
//! connections and datagram sockets as one tokio task each.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

use super::connect::{DatagramSocket, StreamSocket, Target, connect_tcp};
use super::payload::Pattern;
use super::recorder::{Fault, LiveCounters, ThreadRecorder, ThreadResult, Totals, new_histogram};
use super::timing::Clock;
use super::tls::TlsSocket;
use super::{datagram, reactor, stream, uring};
use crate::net_error::describe_connect_error;
use crate::proxy_protocol::SendProxy;

/// Connection attempts one thread has under way at once, so a large run does not flood the
/// server's listen backlog.
const CONNECT_CONCURRENCY: usize = 256;

/// The longest a load thread's own loop waits before looking whether the run was stopped.
/// A stop ends the measured period twice this long after it is asked for, so every loop has
/// learnt of it before it passes and no message sent after the end counts as measured.
pub(crate) const STOP_POLL: Duration = Duration::from_millis(50);

/// The phases of a run, in clock nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Load begins.
    pub start: u64,
    /// Warm-up ends and measurement begins.
    pub warm_end: u64,
    /// Measurement ends; no message is sent from here on.
    pub end: u64,
}

impl Schedule {
    /// Whether `t` falls in the measured period.
    pub fn is_measured(&self, t: u64) -> bool {
        t >= self.warm_end && t < self.end
    }
}

/// Open-loop send times of one connection: message `n` is due at `first + n * step`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pacing {
    first: u64,
    /// Nanoseconds between two of this connection's messages (fractional, so rates that do not
    /// divide a second evenly do not drift).
    step: f64,
}

impl Pacing {
    #[inline]
    pub fn due(&self, n: u64) -> u64 {
        self.first + (n as f64 * self.step) as u64
    }

    /// How many messages are due before `t`.
    pub fn count_before(&self, t: u64) -> u64 {
        if t <= self.first {
            return 0;
        }
        // Start from the arithmetic estimate and settle the rounding at the edge.
        let mut n = ((t - self.first) as f64 / self.step).ceil() as u64;
        while n > 0 && self.due(n - 1) >= t {
            n -= 1;
        }
        while self.due(n) < t {
            n += 1;
        }
        n
    }
}

/// Open loop, at the end of the final wait: messages scheduled before the end of the measured
/// period that never went out (the server was too slow to free a pipeline slot for them) count
/// as sent and lost, so a slow server cannot shrink the schedule by stalling at the end.
pub fn give_up_unsent(
    pacing: Option<Pacing>,
    next_seq: u64,
    schedule: &Schedule,
    size: usize,
    totals: &mut Totals,
) {
    let Some(pacing) = pacing else {
        return;
    };
    let scheduled = pacing.count_before(schedule.end);
    let warm = pacing.count_before(schedule.warm_end);
    for n in next_seq..scheduled {
        let measured = n >= warm;
        if measured {
            totals.messages_sent += 1;
            totals.bytes_sent += size as u64;
        }
        totals.fault(Fault::Lost, measured);
    }
}

/// What one connection task is told.
#[derive(Debug, Clone, Copy)]
pub struct ConnPlan {
    /// Connection number, carried in every message.
    pub id: u32,
    /// Open loop: when its messages are due.
    pub pacing: Option<Pacing>,
}

/// What every connection on one thread shares.
#[derive(Debug)]
pub struct ThreadCtx {
    pub clock: Clock,
    pub pattern: Pattern,
    /// The run's phases; the end moves earlier if the run is stopped ([`ThreadCtx::follow_end`]).
    pub schedule: Cell<Schedule>,
    /// The end of the measured period as the coordinator last set it: the scheduled end, or
    /// the moment the run was stopped.
    pub end: watch::Receiver<u64>,
    pub pipeline: usize,
    pub timeout_ns: u64,
    /// UDP sockets send and receive several datagrams per system call where they can.
    pub udp_offload: bool,
    pub recorder: ThreadRecorder,
    pub live: Arc<LiveCounters>,
    /// Receive buffer, borrowed only within one synchronous read.
    pub scratch: RefCell<Vec<u8>>,
    /// Send buffer for datagrams, which must leave as one piece: one message, or a burst of
    /// them for a segmented send.
    pub send_buf: RefCell<Vec<u8>>,
}

impl ThreadCtx {
    /// The run's phases as this thread knows them.
    #[inline]
    pub fn schedule(&self) -> Schedule {
        self.schedule.get()
    }

    /// Sleeps until the run starts (for the loops that do not run on tokio).
    pub fn sleep_until_start(&self) {
        let start = self.clock.instant(self.schedule().start);
        std::thread::sleep(start.saturating_duration_since(Instant::now()));
    }

    /// When the current phase ends: the measured period, or once `draining` the final wait
    /// for replies, which gives the last messages sent the full timeout to be answered.
    pub fn deadline(&self, draining: bool) -> u64 {
        let end = self.schedule().end;
        if draining { end + self.timeout_ns } else { end }
    }

    /// [`deadline`](ThreadCtx::deadline), after taking in a stop the coordinator may have sent
    /// (see [`follow_end`](ThreadCtx::follow_end)).
    pub fn phase_deadline(&self, draining: bool) -> u64 {
        self.follow_end();
        self.deadline(draining)
    }

    /// Takes in an earlier end from the coordinator (the run was stopped), if one came since.
    /// `true` if the schedule changed.
    pub fn follow_end(&self) -> bool {
        let end = *self.end.borrow();
        let mut schedule = self.schedule.get();
        if end >= schedule.end {
            return false;
        }
        schedule.end = end;
        self.schedule.set(schedule);
        true
    }
}

/// A thread's share of the run.
#[derive(Debug)]
pub struct WorkerSpec {
    pub ids: Vec<u32>,
    pub target: Target,
    pub sources: Vec<IpAddr>,
    /// A PROXY header each connection sends first (part of its connect time).
    pub send_proxy: Option<SendProxy>,
    pub pattern: Pattern,
    pub clock: Clock,
    pub pipeline: usize,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub rate: Option<f64>,
    /// Plain stream connections run in an io_uring loop (else in an epoll loop).
    pub uring: bool,
    /// UDP sockets send and receive several datagrams per system call where they can.
    pub udp_offload: bool,
    /// The end of the measured period, moved earlier if the run is stopped.
    pub end: watch::Receiver<u64>,
    pub live: Arc<LiveCounters>,
}

/// How the thread's connection attempts went.
#[derive(Debug, Clone, Default)]
pub struct Connected {
    pub established: usize,
    pub failed: usize,
    pub first_error: Option<String>,
}

/// The coordinator's go.
#[derive(Debug, Clone, Copy)]
pub struct Go {
    pub schedule: Schedule,
    /// Open-loop rank of this thread's first connection among all established ones, so send
    /// times interleave evenly across threads.
    pub rank_offset: usize,
    /// Connections established over all threads.
    pub established: usize,
}

/// The channels a thread talks to the coordinator through.
#[derive(Debug)]
pub struct Handoff {
    pub connected: oneshot::Sender<Connected>,
    pub go: oneshot::Receiver<Option<Go>>,
    pub done: oneshot::Sender<ThreadResult>,
}

enum Socket {
    Stream(StreamSocket),
    Tls(TlsSocket),
    Datagram(DatagramSocket),
}

/// Starts a load thread. Its runtime is built here, so a failure to build one is reported at
/// once rather than from inside the thread.
pub fn spawn(
    index: usize,
    spec: WorkerSpec,
    handoff: Handoff,
) -> io::Result<std::thread::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    std::thread::Builder::new()
        .name(format!("sockecho-bench-{index}"))
        .spawn(move || {
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, work(spec, handoff));
        })
}

async fn work(spec: WorkerSpec, handoff: Handoff) {
    let recorder = ThreadRecorder::default();
    let (sockets, connected) = open_all(&spec, &recorder).await;
    recorder.totals.borrow_mut().errors.connect_failed = connected.failed as u64;
    // The coordinator going away (an error elsewhere) means the run is off.
    let _ = handoff.connected.send(connected);
    let go = handoff.go.await.ok().flatten();
    let Some(go) = go else {
        let _ = handoff.done.send(recorder.into_result());
        return;
    };

    let size = spec.pattern.size();
    let ctx = Rc::new(ThreadCtx {
        clock: spec.clock,
        pattern: spec.pattern,
        schedule: Cell::new(go.schedule),
        end: spec.end.clone(),
        pipeline: spec.pipeline,
        timeout_ns: spec.timeout.as_nanos() as u64,
        udp_offload: spec.udp_offload,
        recorder,
        live: spec.live,
        scratch: RefCell::new(vec![0; (size + 1).max(64 * 1024)]),
        send_buf: RefCell::new(vec![0; size.max(super::datagram::GSO_BYTES)]),
    });
    let mut plain = Vec::new();
    let mut tasks = Vec::new();
    for (local_rank, (id, socket)) in sockets.into_iter().enumerate() {
        let pacing = spec.rate.map(|rate| {
            let rank = (go.rank_offset + local_rank) as f64;
            Pacing {
                first: go.schedule.start + (rank * 1e9 / rate) as u64,
                step: go.established as f64 * 1e9 / rate,
            }
        });
        let plan = ConnPlan { id, pacing };
        let ctx = ctx.clone();
        match socket {
            Socket::Stream(s) => match s.into_fd() {
                Ok(fd) => plain.push((plan, fd)),
                Err(e) => {
                    // Never seen: tokio had the socket registered and could not let go.
                    let mut conn = stream::Conn::new(&ctx, plan);
                    conn.broken(&e);
                    conn.finish();
                }
            },
            Socket::Tls(s) => tasks.push(tokio::task::spawn_local(stream::run(ctx, s, plan))),
            Socket::Datagram(s) => {
                tasks.push(tokio::task::spawn_local(datagram::run(ctx, s, plan)))
            }
        }
    }
    if !plain.is_empty() {
        match spec.uring.then(uring::Loop::new) {
            Some(Ok(ring)) => ring.run(&ctx, plain),
            Some(Err(e)) => {
                // The probe passed, so this is a shortage (memory, locked pages) in this thread.
                tracing::warn!("cannot set up io_uring in a load thread ({e}); it runs on epoll");
                reactor::run(&ctx, plain);
            }
            None => reactor::run(&ctx, plain),
        }
    }
    for task in tasks {
        if let Err(e) = task.await {
            // A connection task panicked: a bug, but the others' results still stand.
            tracing::error!("a bench connection task failed: {e}");
        }
    }
    let result = match Rc::try_unwrap(ctx) {
        Ok(ctx) => ctx.recorder.into_result(),
        Err(ctx) => ThreadResult {
            latency: ctx.recorder.latency.replace(new_histogram()),
            connect: ctx.recorder.connect.replace(new_histogram()),
            totals: *ctx.recorder.totals.borrow(),
        },
    };
    let _ = handoff.done.send(result);
}

/// Opens this thread's connections, a bounded number at a time, recording how long each took
/// (for TLS, up to the end of the handshake).
async fn open_all(spec: &WorkerSpec, recorder: &ThreadRecorder) -> (Vec<(u32, Socket)>, Connected) {
    let limit = Rc::new(tokio::sync::Semaphore::new(CONNECT_CONCURRENCY));
    let datagram = matches!(spec.target, Target::Udp(_) | Target::UnixGram(_));
    // Room for a full pipeline of datagrams in the kernel's buffers.
    let buffer = spec.pipeline.saturating_mul(spec.pattern.size() + 64) * 2;
    let mut attempts = Vec::with_capacity(spec.ids.len());
    for &id in &spec.ids {
        let source =
            (!spec.sources.is_empty()).then(|| spec.sources[id as usize % spec.sources.len()]);
        let target = spec.target.clone();
        let limit = limit.clone();
        let connect_timeout = spec.connect_timeout;
        let send_proxy = spec.send_proxy;
        attempts.push(tokio::task::spawn_local(async move {
            // The semaphore is never closed, so acquiring only waits.
            let _permit = limit.acquire().await;
            let began = Instant::now();
            let opened = if datagram {
                DatagramSocket::open(&target, source, buffer)
                    .map(Socket::Datagram)
                    .map_err(|e| describe_connect_error(&e))
            } else {
                tokio::time::timeout(connect_timeout, open_stream(&target, source, send_proxy))
                    .await
                    .unwrap_or_else(|_| Err(format!("no answer within {connect_timeout:?}")))
            };
            (id, opened, began.elapsed())
        }));
    }
    let mut sockets = Vec::with_capacity(attempts.len());
    let mut connected = Connected::default();
    for attempt in attempts {
        let failure = match attempt.await {
            Ok((id, Ok(socket), took)) => {
                recorder
                    .connect
                    .borrow_mut()
                    .saturating_record(took.as_nanos() as u64);
                sockets.push((id, socket));
                continue;
            }
            Ok((_, Err(problem), _)) => problem,
            Err(e) => format!("the connect task failed: {e}"),
        };
        connected.failed += 1;
        connected.first_error.get_or_insert(failure);
    }
    connected.established = sockets.len();
    (sockets, connected)
}

/// Opens one stream connection, sending a PROXY header first if asked; the error says what
/// failed.
async fn open_stream(
    target: &Target,
    source: Option<IpAddr>,
    send_proxy: Option<SendProxy>,
) -> Result<Socket, String> {
    match (target, send_proxy) {
        (Target::Tls(addr, client), Some(proxy)) => {
            let tcp = proxied_tcp(*addr, source, proxy).await?;
            client.handshake(tcp).await.map(Socket::Tls)
        }
        (Target::Tcp(addr), Some(proxy)) => {
            let tcp = proxied_tcp(*addr, source, proxy).await?;
            Ok(Socket::Stream(StreamSocket::Tcp(tcp)))
        }
        (Target::Tls(addr, client), None) => client.connect(*addr, source).await.map(Socket::Tls),
        _ => StreamSocket::connect(target, source)
            .await
            .map(Socket::Stream)
            .map_err(|e| describe_connect_error(&e)),
    }
}

/// A TCP connection that has sent its PROXY header, ready for the loop (or the TLS handshake).
async fn proxied_tcp(
    addr: SocketAddr,
    source: Option<IpAddr>,
    proxy: SendProxy,
) -> Result<tokio::net::TcpStream, String> {
    let mut tcp = connect_tcp(addr, source)
        .await
        .map_err(|e| describe_connect_error(&e))?;
    proxy
        .send(&mut tcp)
        .await
        .map_err(|e| format!("cannot send the PROXY header: {e}"))?;
    Ok(tcp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing_counts_what_is_due() {
        let p = Pacing {
            first: 1_000,
            step: 333.3,
        };
        for t in [0, 1_000, 1_001, 1_333, 1_334, 5_000, 1_000_000] {
            let expected = (0..10_000).filter(|&n| p.due(n) < t).count() as u64;
            assert_eq!(p.count_before(t), expected, "t={t}");
        }
    }

    #[test]
    fn unsent_scheduled_messages_are_lost() {
        let p = Pacing {
            first: 0,
            step: 10.0,
        };
        let schedule = Schedule {
            start: 0,
            warm_end: 50,
            end: 100,
        };
        let mut totals = Totals::default();
        // Messages 0..10 are due before the end; 0..3 went out.
        give_up_unsent(Some(p), 3, &schedule, 8, &mut totals);
        assert_eq!(totals.messages_sent, 5);
        assert_eq!(totals.bytes_sent, 40);
        assert_eq!(totals.errors.lost, 5);
        assert_eq!(totals.errors.warmup, 2);
    }
}
