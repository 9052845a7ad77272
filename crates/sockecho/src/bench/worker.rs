//! A load thread: its own single-threaded event loop, its share of the connections, and its own
//! recorder, so connections on one thread share histograms without any lock and threads share
//! nothing until the end.
//!
//! A thread first opens its connections and reports how many opened, then waits for the
//! coordinator's go (the common schedule, or nothing if the run is called off), runs its
//! connections, and hands back its results: plain TCP and Unix connections in the thread's own
//! loop (io_uring, `uring`, or epoll, `reactor`), TLS connections and datagram sockets as one
//! tokio task each. Off Linux, which has neither loop, plain connections are tokio tasks too.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

#[cfg(target_os = "linux")]
use super::churn::Dialer;
use super::churn::Starts;
use super::churn::task::{Server, SlotTarget};
use super::options::{Churn, Close};
use super::plan::{ChurnPlan, ConnPlan, Lanes, Schedule, ThreadCtx};
use super::recorder::{LiveCounters, ThreadRecorder, ThreadResult};
use super::shard::Shard;
use super::timing::Clock;
use super::tls::TlsSocket;
use super::wire::StreamSocket;
use super::ws::WsSocket;
use super::{churn, datagram, stream};
#[cfg(target_os = "linux")]
use super::{reactor, uring};
use crate::connect::{DatagramSocket, Peer, connect_tcp, send_proxy_header};
use crate::net_error::describe_connect_error;
use crate::payload::Pattern;
use crate::proxy_protocol::SendProxy;

/// Connection attempts one thread has under way at once, so a large run does not flood the
/// server's listen backlog.
const CONNECT_CONCURRENCY: usize = 256;

/// A thread's share of the run.
#[derive(Debug)]
pub struct WorkerSpec {
    /// Run-wide numbers of this thread's connections.
    pub ids: Vec<u32>,
    /// The process's part of the run, which the connection numbers are spread over.
    pub shard: Shard,
    pub peer: Peer,
    pub sources: Vec<IpAddr>,
    /// A PROXY header each plain TCP connection sends first (part of its connect time); TLS
    /// connections send theirs through the peer's TLS client.
    pub send_proxy: Option<SendProxy>,
    pub pattern: Pattern,
    pub clock: Clock,
    pub pipeline: usize,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Open loop: messages per second over the whole run (all shards).
    pub rate: Option<f64>,
    /// Open loop in a split run: the connections of all shards. A connection's lane is then
    /// its run-wide number, so that the shards interleave; a run in one process spreads its
    /// rate over the connections that opened instead.
    pub run_wide_lanes: Option<usize>,
    /// Plain stream connections run in an io_uring loop (else in an epoll loop; off Linux, as
    /// tokio tasks).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub uring: bool,
    /// UDP sockets send and receive several datagrams per system call where they can.
    pub udp_offload: bool,
    /// The end of the measured period, moved earlier if the run is stopped.
    pub end: watch::Receiver<u64>,
    pub live: Arc<LiveCounters>,
    /// Churn runs: `ids` are slots, each opening connection after connection.
    pub churn: Option<Churn>,
    /// This thread's number, and how many there are (to interleave churn starts).
    pub index: usize,
    pub threads: usize,
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
    /// Length of the report's intervals.
    pub interval: Duration,
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
    Ws(WsSocket),
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
    let (sockets, connected) = match spec.churn {
        // Churn slots connect once the run has started, and again after every close.
        Some(_) => (
            Vec::new(),
            Connected {
                established: spec.ids.len(),
                ..Connected::default()
            },
        ),
        None => open_all(&spec, &recorder).await,
    };
    recorder.totals.borrow_mut().errors.connect_failed = connected.failed as u64;
    // The coordinator going away (an error elsewhere) means the run is off.
    let _ = handoff.connected.send(connected);
    let go = handoff.go.await.ok().flatten();
    let Some(go) = go else {
        let _ = handoff.done.send(recorder.take_result());
        return;
    };
    recorder.series.borrow_mut().begin(
        go.schedule.warm_end,
        Duration::from_nanos(go.schedule.end - go.schedule.warm_end),
        go.interval,
    );

    let size = spec.pattern.size();
    let ctx = Rc::new(ThreadCtx {
        clock: spec.clock,
        pattern: spec.pattern.clone(),
        schedule: Cell::new(go.schedule),
        end: spec.end.clone(),
        pipeline: spec.pipeline,
        // A timeout past the clock's range (`--timeout 1e18`) is as good as never.
        timeout_ns: u64::try_from(spec.timeout.as_nanos()).unwrap_or(u64::MAX),
        udp_offload: spec.udp_offload,
        recorder,
        live: spec.live.clone(),
        scratch: RefCell::new(vec![0; (size + 1).max(64 * 1024)]),
        send_buf: RefCell::new(vec![0; size.max(datagram::GSO_BYTES)]),
        churn: spec.churn.map(|c| ChurnPlan {
            messages: c.messages_per_conn.unwrap_or(u64::MAX),
            lifetime_ns: c.lifetime.map_or(u64::MAX, |d| d.as_nanos() as u64),
            rst: c.close == Close::Rst,
        }),
        send_timer: Default::default(),
    });
    match spec.churn {
        Some(churn) => run_churn(&spec, &ctx, &go, churn).await,
        None => run_steady(&spec, &ctx, &go, sockets).await,
    }
    let _ = handoff.done.send(ctx.recorder.take_result());
}

/// Runs connections opened before the run, which stay open to its end.
async fn run_steady(spec: &WorkerSpec, ctx: &Rc<ThreadCtx>, go: &Go, sockets: Vec<(u32, Socket)>) {
    #[cfg(target_os = "linux")]
    let mut plain = Vec::new();
    let mut tasks = Vec::new();
    for (local_rank, (id, socket)) in sockets.into_iter().enumerate() {
        let pacing = spec.rate.map(|rate| match spec.run_wide_lanes {
            Some(count) => Lanes { rate, count }.pacing(go.schedule.start, id as usize),
            None => Lanes {
                rate,
                count: go.established,
            }
            .pacing(go.schedule.start, go.rank_offset + local_rank),
        });
        let plan = ConnPlan { id, pacing };
        let ctx = ctx.clone();
        match socket {
            #[cfg(not(target_os = "linux"))]
            Socket::Stream(s) => tasks.push(tokio::task::spawn_local(stream::run(ctx, s, plan))),
            #[cfg(target_os = "linux")]
            Socket::Stream(s) => match s.into_fd() {
                Ok(fd) => plain.push((plan, fd)),
                Err(e) => {
                    // Never seen: tokio had the socket registered and could not let go.
                    let mut conn = stream::StreamConn::new(&ctx, plan);
                    conn.broken(&e);
                    conn.finish();
                }
            },
            Socket::Tls(s) => tasks.push(tokio::task::spawn_local(stream::run(ctx, s, plan))),
            Socket::Ws(s) => tasks.push(tokio::task::spawn_local(stream::run(ctx, s, plan))),
            Socket::Datagram(s) => {
                tasks.push(tokio::task::spawn_local(datagram::run(ctx, s, plan)))
            }
        }
    }
    #[cfg(target_os = "linux")]
    if !plain.is_empty() {
        match spec.uring.then(uring::Loop::new) {
            Some(Ok(ring)) => ring.run(ctx, plain),
            Some(Err(e)) => {
                // The probe passed, so this is a shortage (memory, locked pages) in this thread.
                tracing::warn!("cannot set up io_uring in a load thread ({e}); it runs on epoll");
                reactor::run(ctx, plain);
            }
            None => reactor::run(ctx, plain),
        }
    }
    join(tasks).await;
}

/// Runs churn slots: plain TCP and Unix ones in the thread's own loop (io_uring or epoll), TLS
/// ones as a task each. Off Linux, which has neither loop, every slot is a task.
async fn run_churn(spec: &WorkerSpec, ctx: &Rc<ThreadCtx>, go: &Go, churn: Churn) {
    let plans: Vec<ConnPlan> = spec
        .ids
        .iter()
        .map(|&id| ConnPlan { id, pacing: None })
        .collect();
    // Start `k` of the whole run (all shards) is due at `k / rate`; shard `I` of `N` takes the
    // starts `k ≡ I (mod N)` and its threads deal those out in turn, so every lane is one
    // (thread, shard) pair and the shards' starts interleave into the run's schedule.
    let shard = spec.shard;
    let starts = churn.conn_rate.map(|rate| {
        Starts::new(
            go.schedule.start,
            rate,
            shard.index as usize + spec.index * shard.count as usize,
            spec.threads * shard.count as usize,
        )
    });
    let server = match &spec.peer {
        // Without resumption the slots share one client; with it, each slot is a client of
        // its own (`SlotTarget::for_slot`).
        Peer::Tls(addr, client) => Some(Server::Tls(client.with_resumption(false), *addr)),
        #[cfg(not(target_os = "linux"))]
        peer => Some(Server::Plain(peer.clone())),
        #[cfg(target_os = "linux")]
        _ => None,
    };
    let Some(server) = server else {
        #[cfg(target_os = "linux")]
        run_churn_loop(spec, ctx, plans, starts, churn);
        return;
    };
    let target = SlotTarget {
        server,
        sources: spec.sources.clone().into(),
        connect_timeout: spec.connect_timeout,
        send_proxy: spec.send_proxy,
    };
    let starts = starts.map(Rc::new);
    let tasks = plans
        .into_iter()
        .map(|plan| {
            let target = target.for_slot(churn.tls_resume);
            let run = churn::task::run(ctx.clone(), target, plan, starts.clone());
            tokio::task::spawn_local(run)
        })
        .collect();
    join(tasks).await;
}

/// Runs plain TCP and Unix churn slots in the thread's own io_uring or epoll loop.
#[cfg(target_os = "linux")]
fn run_churn_loop(
    spec: &WorkerSpec,
    ctx: &Rc<ThreadCtx>,
    plans: Vec<ConnPlan>,
    starts: Option<Starts>,
    churn: Churn,
) {
    // The first write of a connection never waits for an ACK, so Nagle's algorithm only
    // matters when a connection sends more than one message.
    let nodelay = churn.messages_per_conn != Some(1);
    let connect_timeout = spec.connect_timeout.as_nanos() as u64;
    match Dialer::new(&spec.peer, &spec.sources, nodelay) {
        Ok(Some(dialer)) => {
            let ring = spec.uring.then(|| {
                churn::uring::Churner::new(ctx, &dialer, starts.as_ref(), connect_timeout)
            });
            match ring {
                Some(Ok(ring)) => ring.run(plans),
                Some(Err(e)) => {
                    // The probe passed, so this is a shortage (memory, locked pages) here.
                    tracing::warn!(
                        "cannot set up io_uring in a load thread ({e}); it runs on epoll"
                    );
                    churn::epoll::run(ctx, plans, &dialer, starts.as_ref(), connect_timeout);
                }
                None => churn::epoll::run(ctx, plans, &dialer, starts.as_ref(), connect_timeout),
            }
        }
        // Validation lets churn runs through for stream endpoints only.
        Ok(None) => tracing::error!("connection churn needs a stream endpoint"),
        Err(e) => tracing::error!("cannot connect to {:?}: {e}", spec.peer),
    }
}

/// Waits for a thread's connection tasks.
async fn join(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for task in tasks {
        if let Err(e) = task.await {
            // A connection task panicked: a bug, but the others' results still stand.
            tracing::error!("a bench connection task failed: {e}");
        }
    }
}

/// Opens this thread's connections, a bounded number at a time, recording how long each took
/// (for TLS, up to the end of the handshake; for WebSocket, of the upgrade).
async fn open_all(spec: &WorkerSpec, recorder: &ThreadRecorder) -> (Vec<(u32, Socket)>, Connected) {
    let limit = Rc::new(tokio::sync::Semaphore::new(CONNECT_CONCURRENCY));
    let datagram = spec.peer.is_datagram();
    // Room for a full pipeline of datagrams in the kernel's buffers.
    let buffer = spec.pipeline.saturating_mul(spec.pattern.size() + 64) * 2;
    let mut attempts = Vec::with_capacity(spec.ids.len());
    for &id in &spec.ids {
        // Spread by place in the shard, so every shard uses every source address.
        let position = spec.shard.position(id as usize);
        let source =
            (!spec.sources.is_empty()).then(|| spec.sources[position % spec.sources.len()]);
        let peer = spec.peer.clone();
        let limit = limit.clone();
        let connect_timeout = spec.connect_timeout;
        let send_proxy = spec.send_proxy;
        let size = spec.pattern.size();
        attempts.push(tokio::task::spawn_local(async move {
            // The semaphore is never closed, so acquiring only waits.
            let _permit = limit.acquire().await;
            let began = Instant::now();
            let opened = if datagram {
                DatagramSocket::open(&peer, source, buffer)
                    .map(Socket::Datagram)
                    .map_err(|e| describe_connect_error(&e))
            } else {
                tokio::time::timeout(
                    connect_timeout,
                    open_stream(&peer, source, send_proxy, size),
                )
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
/// failed. WebSocket connections carry messages of `size` bytes.
async fn open_stream(
    peer: &Peer,
    source: Option<IpAddr>,
    send_proxy: Option<SendProxy>,
    size: usize,
) -> Result<Socket, String> {
    match peer {
        Peer::Tcp(addr) if send_proxy.is_some() => {
            let mut tcp = connect_tcp(*addr, source)
                .await
                .map_err(|e| describe_connect_error(&e))?;
            send_proxy_header(&mut tcp, send_proxy.as_ref()).await?;
            Ok(Socket::Stream(StreamSocket::Tcp(tcp)))
        }
        Peer::Tls(addr, client) => client
            .connect(*addr, source)
            .await
            .map(|tls| Socket::Tls(TlsSocket::new(tls))),
        Peer::Ws(addr, client) => client
            .connect(*addr, source)
            .await
            .map(|ws| Socket::Ws(WsSocket::new(ws, size))),
        _ => StreamSocket::connect(peer, source)
            .await
            .map(Socket::Stream)
            .map_err(|e| describe_connect_error(&e)),
    }
}
