//! Load generation: many connections (or datagram sockets) sending verified messages to an echo
//! server, in closed or open loop, with latency histograms and a report.
//!
//! - [`options`]: [`BenchConfig`] and the parsers for sizes and source addresses; [`error`]:
//!   [`BenchError`].
//! - [`reach`]: the address of the endpoint that answers, found before any load (private).
//! - [`window`]: the messages in flight on one connection, where replies are matched.
//! - [`plan`]: the run's schedule, each connection's plan (with its open-loop lane) and what a
//!   thread's connections share (private); every loop below builds on it.
//! - [`shard`]: [`Shard`], one process's part of a run split among several (`--shard I/N`).
//! - [`wire`]: what the stream loops need from a socket, and the plain socket that offers it;
//!   [`tls`] offers it for TLS connections and [`ws`] for WebSocket ones (private).
//! - [`stream`] and [`datagram`]: the per-connection state machines and loops (private);
//!   [`flow`] is the message bookkeeping both share (private).
//! - [`worker`]: load threads, each an event loop with its own recorder (private); plain TCP
//!   and Unix connections run in the thread's own loop, [`uring`] (io_uring) or [`reactor`]
//!   (epoll) (private).
//! - [`churn`]: connection churn, where each connection exchanges a few messages, closes and
//!   is replaced (private).
//! - `timing` (one clock read per batch) and `recorder` (results gathered without locks on the
//!   hot path) sit under all of the loops (private).
//! - [`report`]: the [`Report`] both the table and `--json` come from.
//! - [`series`]: the run per interval (`--interval`), recorded per thread without locks.
//! - [`hlog`] and [`merge`]: HdrHistogram interval logs, and combining several runs;
//!   [`hgrm`]: HdrHistogram's percentile distribution text.
//! - [`threshold`]: pass/fail conditions on a report (`--threshold 'p99<2ms'`).
//! - [`sweep`]: open-loop runs over a range of rates, and the search for the highest rate
//!   that keeps a latency target.
//! - [`html`]: the self-contained HTML report of runs and sweeps.
//!
//! Messages use the format of [`crate::payload`]; sockets are opened by [`crate::connect`].
//!
//! [`run`] is the entry point: it checks the endpoint answers, opens the connections on
//! `threads` load threads, waits for the start time if one was given
//! ([`BenchConfig::start_at`]), runs warm-up then the measured period on one common schedule, waits
//! for the replies still in flight, and returns the report. [`Progress::stop`] (Ctrl-C) ends the
//! measured period early; the report then covers the time the run had.
//!
//! Threads: each load thread runs its own single-threaded runtime, so its connections share a
//! histogram without locks and a thread never waits for another. One thread is the default and
//! is usually enough: a thread drives a few hundred thousand round trips per second, and a
//! benchmark that uses fewer CPUs leaves more of them to the server it measures.

mod churn;
mod datagram;
mod error;
mod flow;
pub mod hgrm;
pub mod hlog;
pub mod html;
pub mod merge;
pub mod options;
mod plan;
mod reach;
#[cfg(target_os = "linux")]
mod reactor;
mod recorder;
pub mod report;
pub mod series;
pub mod shard;
mod stream;
pub mod sweep;
pub mod threshold;
mod timing;
mod tls;
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod uring;
mod window;
mod wire;
mod worker;
mod ws;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use tokio::sync::{oneshot, watch};

use crate::Transport;
use crate::connect::{Peer, udp_segmentation_supported};
use crate::io::IoMode;
use crate::payload::Pattern;
pub use error::BenchError;
pub use options::{
    BenchConfig, Churn, Close, MAX_RATE, Mode, format_size, parse_size, parse_sources,
};
pub use recorder::LiveCounters;
pub use report::{ChurnReport, ConnectErrors, ErrorCounts, LatencySummary, Report};
pub use report::{Interval, IntervalLatency, ThresholdResult};
pub use series::{IntervalHistogram, PackedHistogram};
pub use shard::Shard;
pub use threshold::Threshold;
pub use timing::process_cpu_time;

use plan::Schedule;
use recorder::{ThreadResult, new_histogram};
use timing::Clock;
use worker::{Go, Handoff, WorkerSpec};

/// Time between the go and the first message, so every thread has the schedule before it starts.
const START_MARGIN: Duration = Duration::from_millis(2);

/// How long before a start time given by the wall clock the coordinator wakes: enough for a
/// late timer on a busy machine, so the load still starts at the instant asked for.
const START_AT_MARGIN: Duration = Duration::from_millis(20);

/// A finished run: the report and the histograms behind it.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub report: Report,
    /// Round-trip latencies of the measured messages, in nanoseconds.
    pub latency: Histogram<u64>,
    /// Connection times, in nanoseconds.
    pub connect: Histogram<u64>,
    /// Wall-clock time the measured period began.
    pub measured_from: SystemTime,
    /// The latencies of each interval of the measured period, in order.
    pub intervals: Vec<IntervalHistogram>,
}

/// Live figures of a run in progress, for a progress display, and the way to stop it early.
/// Share it with [`run`]; read [`snapshot`](Progress::snapshot) or call
/// [`stop`](Progress::stop) from another task.
#[derive(Debug)]
pub struct Progress {
    live: OnceLock<Live>,
    /// When the measured period ends early: `u64::MAX` until [`stop`](Progress::stop), then
    /// the run clock's time of the stop (0 if the run had not been scheduled yet).
    end: watch::Sender<u64>,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            live: OnceLock::new(),
            end: watch::Sender::new(u64::MAX),
        }
    }
}

#[derive(Debug)]
struct Live {
    clock: Clock,
    schedule: Schedule,
    threads: Vec<Arc<LiveCounters>>,
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProgressSnapshot {
    /// Since the load began.
    pub elapsed: Duration,
    /// Warm-up plus measured period.
    pub total: Duration,
    /// Whether the measured period has begun.
    pub measuring: bool,
    /// Replies received so far, warm-up included.
    pub replies: u64,
    /// Bytes of those replies.
    pub bytes: u64,
}

impl Progress {
    pub fn new() -> Arc<Progress> {
        Arc::default()
    }

    /// `None` until the connections are open and the load has been scheduled.
    pub fn snapshot(&self) -> Option<ProgressSnapshot> {
        use std::sync::atomic::Ordering::Relaxed;
        let live = self.live.get()?;
        let now = live.clock.now();
        let s = live.schedule;
        Some(ProgressSnapshot {
            elapsed: Duration::from_nanos(now.saturating_sub(s.start).min(s.end - s.start)),
            total: Duration::from_nanos(s.end - s.start),
            measuring: now >= s.warm_end,
            replies: live.threads.iter().map(|t| t.replies.load(Relaxed)).sum(),
            bytes: live.threads.iter().map(|t| t.bytes.load(Relaxed)).sum(),
        })
    }

    /// Ends the run early (for Ctrl-C): the measured period ends a moment from now (100 ms, so
    /// that every load thread has heard of it before it passes), no message is sent after
    /// that, the replies in flight get the usual final wait, and [`run`] reports what was
    /// measured, marked `interrupted`. If the measured period has not begun by then there is
    /// nothing to report: [`run`] stops and returns [`BenchError::Interrupted`].
    pub fn stop(&self) {
        let ahead = 2 * plan::STOP_POLL.as_nanos() as u64;
        let at = self.live.get().map_or(0, |live| live.clock.now() + ahead);
        self.end.send_modify(|end| *end = (*end).min(at));
    }
}

/// Runs a benchmark as `config` says, reporting live figures through `progress`.
pub async fn run(config: &BenchConfig, progress: &Progress) -> Result<Outcome, BenchError> {
    config.validate()?;
    let peer = reach::find_peer(
        &config.endpoint,
        config.size,
        config.timeout,
        config.connect_timeout,
        &config.connect,
    )
    .await?;
    let io = stream_io(config.io, &peer)?;
    let udp_offload = config.udp_offload && udp_offload_available(&peer);
    let mut end_rx = progress.end.subscribe();
    let shard = config.shard();
    let own_connections = config.own_connections();
    let threads = config.threads.min(own_connections);
    let clock = Clock::new();
    let pattern = Pattern::new(config.size);

    let mut connected_rx = Vec::with_capacity(threads);
    let mut go_tx = Vec::with_capacity(threads);
    let mut done_rx = Vec::with_capacity(threads);
    let mut handles = Vec::with_capacity(threads);
    let mut counters = Vec::with_capacity(threads);
    for index in 0..threads {
        let (c_tx, c_rx) = oneshot::channel();
        let (g_tx, g_rx) = oneshot::channel();
        let (d_tx, d_rx) = oneshot::channel();
        let live = Arc::new(LiveCounters::default());
        counters.push(live.clone());
        let spec = WorkerSpec {
            // Connection numbers fit in u32: validation caps each shard's connections by the fd
            // limit, and shard counts are u32.
            ids: shard
                .connection_ids(config.connections)
                .skip(index)
                .step_by(threads)
                .map(|i| i as u32)
                .collect(),
            shard,
            peer: peer.clone(),
            sources: config.sources.clone(),
            send_proxy: config.connect.send_proxy,
            pattern: pattern.clone(),
            clock,
            pipeline: config.pipeline,
            timeout: config.timeout,
            connect_timeout: config.connect_timeout,
            rate: config.rate,
            run_wide_lanes: config.shard.map(|_| config.connections),
            uring: io == Some(IoMode::Uring),
            udp_offload,
            end: end_rx.clone(),
            live,
            churn: config.churn,
            index,
            threads,
        };
        let handoff = Handoff {
            connected: c_tx,
            go: g_rx,
            done: d_tx,
        };
        // On an early return, dropping `go_tx` tells the threads already started to stop.
        handles.push(worker::spawn(index, spec, handoff).map_err(BenchError::Thread)?);
        connected_rx.push(c_rx);
        go_tx.push(g_tx);
        done_rx.push(d_rx);
    }

    let mut per_thread = Vec::with_capacity(threads);
    let mut failed = 0;
    let mut first_error = None;
    for rx in connected_rx {
        // Dropping `go_tx` on return calls the threads off.
        let c = tokio::select! {
            biased;
            _ = end_rx.wait_for(|&end| end != u64::MAX) => return Err(BenchError::Interrupted),
            c = rx => c.map_err(|_| BenchError::WorkerLost)?,
        };
        per_thread.push(c.established);
        failed += c.failed;
        if first_error.is_none() {
            first_error = c.first_error;
        }
    }
    let established: usize = per_thread.iter().sum();
    if established == 0 {
        drop(go_tx);
        return Err(BenchError::Unreachable {
            endpoint: config.endpoint.clone(),
            problem: format!(
                "none of the {own_connections} connections opened: {}",
                first_error.unwrap_or_else(|| "no reason given".into())
            ),
        });
    }
    if failed > 0 {
        tracing::warn!(
            "{failed} of {own_connections} connections could not be opened: {}",
            first_error.unwrap_or_default()
        );
    }

    if *end_rx.borrow() != u64::MAX {
        return Err(BenchError::Interrupted);
    }
    let start = match config.start_at {
        None => clock.now() + START_MARGIN.as_nanos() as u64,
        Some(at) => {
            // Dropping `go_tx` on return calls the threads off.
            tokio::select! {
                biased;
                _ = end_rx.wait_for(|&end| end != u64::MAX) => return Err(BenchError::Interrupted),
                start = start_at(at, clock) => start,
            }
        }
    };
    let warm_end = start + config.warmup.as_nanos() as u64;
    let schedule = Schedule {
        start,
        warm_end,
        end: warm_end + config.duration.as_nanos() as u64,
    };
    let measured_from = SystemTime::now() + Duration::from_nanos(warm_end - clock.now());
    let _ = progress.live.set(Live {
        clock,
        schedule,
        threads: counters,
    });
    let mut rank_offset = 0;
    for (tx, n) in go_tx.into_iter().zip(&per_thread) {
        let go = Go {
            schedule,
            rank_offset,
            established,
            interval: config.interval,
        };
        rank_offset += n;
        // A thread that has gone is noticed below, when its results do not come.
        let _ = tx.send(Some(go));
    }

    let (results, cpu) = collect(done_rx, clock, schedule, end_rx.clone()).await;
    let results = results?;
    let stopped_at = *end_rx.borrow();
    if stopped_at < schedule.warm_end {
        return Err(BenchError::Interrupted);
    }
    let interrupted = stopped_at < schedule.end;
    let measured = Duration::from_nanos(schedule.end.min(stopped_at) - schedule.warm_end);
    tokio::task::spawn_blocking(move || {
        for h in handles {
            let _ = h.join();
        }
    });

    let mut total = ThreadResult {
        latency: new_histogram(),
        connect: new_histogram(),
        first_echo: new_histogram(),
        totals: Default::default(),
        series: Default::default(),
    };
    for r in &results {
        total.merge(r);
    }
    let series: Vec<_> = results.into_iter().map(|r| r.series).collect();
    let (intervals, interval_histograms) =
        series::assemble(&series, measured, config.interval, established as u64);
    let t = total.totals;
    if t.offload_refused > 0 {
        tracing::warn!(
            "the kernel refused segmented sends on {} UDP socket(s), which then sent one datagram \
             per call: the report does not count as --udp-offload",
            t.offload_refused
        );
    }
    if t.not_sent > 0 {
        tracing::warn!(
            "the load generator fell behind its schedule: {} of the messages due in the measured \
             period were never sent (not counted as sent or lost); the rate asked for was not \
             reached, so lower --rate, or add --threads, connections or --pipeline",
            t.not_sent
        );
    }
    let tls = config.endpoint.transport() == Transport::Tls;
    let handshakes = t.tls_handshakes;
    if config.churn.is_some_and(|c| c.tls_resume) && handshakes.resumed == 0 && handshakes.full > 0
    {
        // Not a failure of the server's echo, but the run measured something else than asked.
        tracing::warn!(
            "--tls-resume: the server resumed none of the {} TLS handshakes, so the run measured \
             full handshakes: the server keeps no sessions (no tickets, no session cache), or \
             forgets them before a slot comes back",
            handshakes.full
        );
    }
    let mut report = Report {
        endpoint: config.endpoint.to_string(),
        transport: config.endpoint.transport().as_str().into(),
        connections: own_connections as u64,
        connections_established: established as u64,
        size: config.size as u64,
        pipeline: config.pipeline as u64,
        mode: config.mode().as_str().into(),
        rate: config.own_rate(),
        threads: threads as u64,
        io: io_name(io).into(),
        udp_offload: udp_offload && t.offload_refused == 0,
        duration_s: measured.as_secs_f64(),
        warmup_s: config.warmup.as_secs_f64(),
        timeout_s: config.timeout.as_secs_f64(),
        messages_sent: t.messages_sent,
        messages_received: t.messages_received,
        bytes_sent: t.bytes_sent,
        bytes_received: t.bytes_received,
        not_sent: t.not_sent,
        msgs_per_s: 0.0,
        bytes_per_s_sent: 0.0,
        bytes_per_s_received: 0.0,
        latency_us: LatencySummary::from_histogram(&total.latency),
        connect_us: LatencySummary::from_histogram(&total.connect),
        errors: t.errors,
        client_cpu_s: report::round6(cpu.as_secs_f64()),
        client_cpu_us_per_msg: None,
        ok: false,
        interrupted,
        runs: 1,
        start_unix_s: Some(report::unix_seconds(measured_from)),
        shard: config.shard,
        host: crate::sys::host::name(),
        intervals,
        thresholds: Vec::new(),
        periods_overlap: None,
        churn: config.churn.map(|_| ChurnReport {
            connections_opened: t.connections_opened,
            connections_per_s: 0.0,
            connect_us: LatencySummary::from_histogram(&total.connect),
            first_echo_us: LatencySummary::from_histogram(&total.first_echo),
            connect_errors: t.connect_errors,
            tls_handshakes_full: tls.then_some(handshakes.full),
            tls_handshakes_resumed: tls.then_some(handshakes.resumed),
        }),
    };
    report.derive_rates();
    Ok(Outcome {
        report,
        latency: total.latency,
        connect: total.connect,
        measured_from,
        intervals: interval_histograms,
    })
}

/// Waits until the wall clock reads `at`, and returns that moment on the run clock. If it has
/// passed already (the connections took longer to open), the load starts at once, out of step
/// with any other shard started for the same moment, and a warning says by how much.
async fn start_at(at: SystemTime, clock: Clock) -> u64 {
    let margin = START_MARGIN.as_nanos() as u64;
    match at.duration_since(SystemTime::now()) {
        Ok(ahead) => {
            tracing::info!(
                "connections open; the load starts in {:.3} s, at the start time",
                ahead.as_secs_f64()
            );
            let early = START_AT_MARGIN.as_nanos() as u64;
            let wake = clock.now() + (ahead.as_nanos() as u64).saturating_sub(early);
            tokio::time::sleep_until(clock.tokio_instant(wake)).await;
            // Measured again after the sleep, which may have overslept a little.
            let ahead = at.duration_since(SystemTime::now()).unwrap_or_default();
            clock.now() + ahead.as_nanos() as u64
        }
        Err(late) => {
            tracing::warn!(
                "the connections opened {:.3} s after the start time; the load starts now, out \
                 of step with any shard started on time",
                late.duration().as_secs_f64()
            );
            clock.now() + margin
        }
    }
}

/// Whether UDP sockets can send several datagrams per call (`--udp-offload`): the peer is
/// UDP and the kernel knows `UDP_SEGMENT`.
fn udp_offload_available(peer: &Peer) -> bool {
    let Peer::Udp(addr) = peer else {
        tracing::warn!("--udp-offload applies to UDP only; ignored");
        return false;
    };
    let supported = udp_segmentation_supported(*addr);
    if !supported {
        tracing::warn!(
            "this kernel cannot send UDP in segments (no UDP_SEGMENT); --udp-offload ignored"
        );
    }
    supported
}

/// Decides, once for all threads, which of the load threads' loops drives plain stream
/// connections: io_uring or epoll. `None` runs every connection as a tokio task: TLS
/// connections and datagram sockets always, plain ones off Linux (which has neither loop).
fn stream_io(wanted: IoMode, peer: &Peer) -> Result<Option<IoMode>, BenchError> {
    if !matches!(peer, Peer::Tcp(_) | Peer::Unix(_)) || !cfg!(target_os = "linux") {
        return Ok(None);
    }
    wanted.resolve().map(Some).map_err(BenchError::IoUring)
}

/// The report's name for what drove the connections.
fn io_name(io: Option<IoMode>) -> &'static str {
    io.map_or("tokio", IoMode::as_str)
}

/// Waits for every thread's results while sampling this process's CPU time at the start and
/// end of the measured period. If all connections end early, the results come early and the
/// CPU time is taken up to then.
async fn collect(
    done: Vec<oneshot::Receiver<ThreadResult>>,
    clock: Clock,
    schedule: Schedule,
    mut end: watch::Receiver<u64>,
) -> (Result<Vec<ThreadResult>, BenchError>, Duration) {
    let gather = async {
        let mut results = Vec::with_capacity(done.len());
        for rx in done {
            results.push(rx.await.map_err(|_| BenchError::WorkerLost)?);
        }
        Ok(results)
    };
    tokio::pin!(gather);
    let mut cpu_from = None;
    let mut cpu_to = None;
    let results = loop {
        // The end of the measured period, earlier if the run was stopped.
        let measured_end = schedule.end.min(*end.borrow());
        let mark = match (cpu_from, cpu_to) {
            (None, _) if measured_end > schedule.warm_end => Some(schedule.warm_end),
            (Some(_), None) => Some(measured_end),
            _ => None,
        };
        tokio::select! {
            results = &mut gather => break results,
            () = tokio::time::sleep_until(clock.tokio_instant(mark.unwrap_or(schedule.end))),
                if mark.is_some() =>
            {
                let now = process_cpu_time();
                if cpu_from.is_none() {
                    cpu_from = Some(now);
                } else {
                    cpu_to = Some(now);
                }
            }
            Ok(()) = end.changed() => {}
        }
    };
    let cpu = match cpu_from {
        Some(from) => cpu_to.unwrap_or_else(process_cpu_time).saturating_sub(from),
        None => Duration::ZERO,
    };
    (results, cpu)
}
