//! `sockecho bench`'s flags, and those of `sockecho bench merge` and `sockecho bench report`.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};
use sockecho::Endpoint;
use sockecho::bench::{Shard, Threshold, sweep};

use crate::cli::common::{IoChoice, SendProxyArgs, TlsClientArgs, Verbosity, boolish};
use crate::parse::{
    Sources, parse_conn_rate, parse_duration, parse_message_rate, parse_nonzero_duration,
    parse_shard, parse_size, parse_sources, parse_start_at,
};

/// Load an echo server and measure throughput, latency and correctness.
///
/// Every echoed byte is checked; mismatched, truncated, duplicated or lost messages make the exit
/// code 1, and so does reordering on stream transports (datagrams need not keep their order).
/// Closed loop by default (each connection sends its next message when an echo comes back);
/// `--rate` switches to open loop, where messages go out on a schedule and latency counts from
/// the scheduled time.
///
/// `--rates` runs a capacity sweep instead: one open-loop run per rate, stopping once the server
/// falls behind; `--find-max` searches for the highest rate that meets a latency target.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BenchOpts {
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    /// Echo server to load.
    #[arg(
        value_name = "ENDPOINT",
        env = "SOCKECHO_ENDPOINT",
        default_value = "tcp://localhost:54000"
    )]
    pub endpoint: Endpoint,
    /// Connections (datagram endpoints: sockets) open at once.
    #[arg(short = 'c', long, value_name = "N", env = "SOCKECHO_CONNECTIONS", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub connections: u32,
    /// Bytes per message: 64, 1500, 4KiB, 1MiB, ...
    #[arg(short = 's', long, value_name = "BYTES", env = "SOCKECHO_SIZE", default_value = "64",
          value_parser = parse_size)]
    pub size: usize,
    /// Length of the measured period (e.g. 10s, 500ms).
    #[arg(short = 'd', long, value_name = "DURATION", env = "SOCKECHO_DURATION", default_value = "10s",
          value_parser = parse_nonzero_duration)]
    pub duration: Duration,
    /// Load run first and left out of the results.
    #[arg(long, value_name = "DURATION", env = "SOCKECHO_WARMUP", default_value = "1s",
          value_parser = parse_duration)]
    pub warmup: Duration,
    /// Messages in flight per connection (in open loop, the most in flight).
    #[arg(long, value_name = "K", env = "SOCKECHO_PIPELINE", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub pipeline: u32,
    /// Load-generating threads; one is usually plenty and leaves the CPUs to the server.
    #[arg(short = 't', long, value_name = "N", env = "SOCKECHO_THREADS", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: u16,
    /// Open loop: messages per second over all connections (at most 1e9). What bench cannot
    /// send in time is reported as not sent, apart from the server's errors.
    #[arg(long, value_name = "MSGS_PER_S", env = "SOCKECHO_RATE", value_parser = parse_message_rate)]
    pub rate: Option<f64>,
    /// Run only part I (from 0) of N of this run, alongside N-1 other bench processes (on other
    /// machines) that run the other parts: this one opens every N-th connection (I, I+N, ...)
    /// and offers its share of --rate, interleaved with theirs. -c and --rate are the totals
    /// (with --churn: -c the slots, --conn-rate the connections per second, each N-th start).
    /// Give every part the same --start-at; `bench merge` adds up their --save-hist logs.
    #[arg(long, value_name = "I/N", env = "SOCKECHO_SHARD", value_parser = parse_shard)]
    pub shard: Option<Shard>,
    /// Like --shard, with I from JOB_COMPLETION_INDEX, which a Kubernetes Indexed Job sets in
    /// each of its pods.
    #[arg(long, value_name = "N", env = "SOCKECHO_SHARDS",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub shards: Option<u32>,
    /// Begin the warm-up at TIME, after the connections are open: RFC 3339, in UTC or with an
    /// offset (2026-12-06T09:00:00Z, 2026-12-06T10:00:00+01:00; `date -Iseconds -d +1min` prints
    /// one) or +DURATION from now. Bench processes given the same TIME load and measure the same
    /// period.
    #[arg(long, value_name = "TIME", env = "SOCKECHO_START_AT", value_parser = parse_start_at)]
    pub start_at: Option<SystemTime>,
    /// Datagram endpoints: how long a reply may take before the message counts as lost. Also
    /// how long replies still in flight at the end are waited for.
    #[arg(long, value_name = "DURATION", env = "SOCKECHO_TIMEOUT", default_value = "1s",
          value_parser = parse_nonzero_duration)]
    pub timeout: Duration,
    /// How long each connection attempt may take.
    #[arg(long, value_name = "DURATION", env = "SOCKECHO_CONNECT_TIMEOUT", default_value = "5s",
          value_parser = parse_nonzero_duration)]
    pub connect_timeout: Duration,
    /// Local addresses to connect from, in turn: IP[,IP...] or FIRST-LAST. Each adds about
    /// 28 000 connections to one server address.
    #[arg(long, value_name = "IPS", env = "SOCKECHO_SOURCE", value_parser = parse_sources)]
    pub source: Option<Sources>,
    /// Event loop for plain TCP and Unix connections: io_uring (one system call per turn for
    /// all connections, receives into shared buffers), epoll, or auto (io_uring if the kernel
    /// allows it). TLS, WebSocket and datagrams always run on tokio.
    #[arg(long, value_enum, value_name = "LOOP", env = "SOCKECHO_IO", default_value_t = IoChoice::Auto)]
    pub io: IoChoice,
    /// UDP: a socket with several messages queued sends them in one call (UDP GSO), and
    /// replies that arrive together are taken in one receive (GRO). Each datagram is still
    /// checked on its own, but a server sees bursts arrive at once (as one packet on loopback),
    /// as from a client that batches (QUIC stacks do). Off by default: one datagram per call.
    #[arg(long, env = "SOCKECHO_UDP_OFFLOAD", value_parser = boolish())]
    pub udp_offload: bool,
    /// Connection churn, the accept–echo–close workload: each connection exchanges its
    /// messages (--messages-per-conn, --conn-lifetime), closes (client first) and is replaced
    /// at once, -c being the connections open at once; with --conn-rate, new connections start
    /// on a schedule instead. Measures connections per second, connect and first-echo times.
    #[arg(long, env = "SOCKECHO_CHURN", value_parser = boolish())]
    pub churn: bool,
    /// Churn: messages each connection exchanges before it closes [default: 1, or as many as
    /// fit in --conn-lifetime].
    #[arg(long, value_name = "N", env = "SOCKECHO_MESSAGES_PER_CONN", requires = "churn",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub messages_per_conn: Option<u64>,
    /// Churn: how long each connection goes on sending before it closes.
    #[arg(long, value_name = "DURATION", env = "SOCKECHO_CONN_LIFETIME", requires = "churn",
          value_parser = parse_duration)]
    pub conn_lifetime: Option<Duration>,
    /// Churn: how the client closes: fin (orderly; the client's side then waits a minute in
    /// TIME_WAIT, holding its source port) or rst (SO_LINGER 0: a reset, no TIME_WAIT).
    #[arg(long, value_enum, value_name = "HOW", env = "SOCKECHO_CLOSE", default_value_t = CloseChoice::Fin)]
    pub close: CloseChoice,
    /// Churn, open loop: new connections per second over all of them (all shards, with
    /// --shard), each timed from its scheduled start; -c caps how many are open at once.
    #[arg(long, value_name = "CONNS_PER_S", env = "SOCKECHO_CONN_RATE", requires = "churn",
          value_parser = parse_conn_rate)]
    pub conn_rate: Option<f64>,
    /// Churn over TLS: each slot resumes the session of its own last connection (an abbreviated
    /// handshake, as a returning client's) instead of making a full handshake. The report
    /// counts the handshakes that resumed and those that were full, and warns if the server
    /// resumed none.
    #[arg(long, env = "SOCKECHO_TLS_RESUME", requires = "churn", value_parser = boolish())]
    pub tls_resume: bool,
    /// Print the report as one JSON object (fields: docs/bench-json.md).
    #[arg(long, env = "SOCKECHO_JSON", value_parser = boolish())]
    pub json: bool,
    /// Also write the latencies to FILE as an HdrHistogram interval log (one histogram per
    /// --interval, connection times tagged `connect`, the report in it), which `bench merge`
    /// and HdrHistogram's tools read. `-` writes the log on stdout in place of the report (for
    /// `kubectl logs`).
    #[arg(long, value_name = "FILE", env = "SOCKECHO_SAVE_HIST")]
    pub save_hist: Option<PathBuf>,
    /// Also write the latency percentile distribution to FILE in HdrHistogram's `.hgrm` text
    /// form (values in milliseconds), which HdrHistogram's plotter draws.
    #[arg(long, value_name = "FILE", env = "SOCKECHO_SAVE_HGRM")]
    pub save_hgrm: Option<PathBuf>,
    /// Length of the report's intervals: the `intervals` time series of --json, and each
    /// histogram of --save-hist.
    #[arg(long, value_name = "DURATION", env = "SOCKECHO_INTERVAL", default_value = "1s",
          value_parser = parse_duration)]
    pub interval: Duration,
    /// Pass/fail condition, repeatable: METRIC OP VALUE, e.g. 'p99<2ms', 'errors==0',
    /// 'rate>=50k'. Metrics: p50 p90 p99 p999 p9999 min mean max (latency; units ns us ms s),
    /// connect_p99 and the like, rate (msg/s), errors (every failing kind), errors.KIND (e.g.
    /// errors.lost), cpu_us_per_msg; OP: < <= > >= ==. Any that fails makes the exit code 1.
    #[arg(long, value_name = "COND", env = "SOCKECHO_THRESHOLD", value_parser = parse_threshold,
          value_delimiter = ',')]
    pub threshold: Vec<Threshold>,
    /// Print the summary as csv or markdown (one row per run, or per sweep step) instead of
    /// the table.
    #[arg(
        long,
        value_enum,
        value_name = "FORMAT",
        env = "SOCKECHO_EXPORT",
        conflicts_with = "json"
    )]
    pub export: Option<ExportFormat>,
    /// Capacity sweep: one open-loop run per rate, FROM:TO:STEP (10k:200k:10k) or a list
    /// (10k,20k,50k), each with its warm-up and measured period; stops once the server falls
    /// behind (see --margin) or errors appear. With --find-max: the first rate is where the
    /// search starts, the last the highest it tries.
    #[arg(long, value_name = "RATES", env = "SOCKECHO_RATES", value_parser = parse_rates,
          conflicts_with = "rate")]
    pub rates: Option<Rates>,
    /// Search for the highest rate that meets a target, e.g. 'p99<1ms' (threshold syntax):
    /// doubles from the start rate (the first of --rates, else 1000) while steps keep up, then
    /// bisects to within --precision.
    #[arg(long, value_name = "COND", env = "SOCKECHO_FIND_MAX", value_parser = parse_threshold,
          conflicts_with = "rate")]
    pub find_max: Option<Threshold>,
    /// Sweeps: how far below the offered rate the achieved rate may fall before a step counts
    /// as falling behind (5% or 0.05).
    #[arg(long, value_name = "FRACTION", env = "SOCKECHO_MARGIN", default_value = "5%",
          value_parser = parse_fraction)]
    pub margin: f64,
    /// --find-max: the search ends when the last good and first bad rates are this close.
    #[arg(long, value_name = "FRACTION", env = "SOCKECHO_PRECISION", default_value = "5%",
          value_parser = parse_fraction)]
    pub precision: f64,
    /// --find-max: the most steps the search runs.
    #[arg(long, value_name = "N", env = "SOCKECHO_MAX_STEPS", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_steps: u32,
    /// Also write the report as a self-contained HTML page to FILE, with the whole latency
    /// distribution (see `bench report`).
    #[arg(long, value_name = "FILE", env = "SOCKECHO_HTML")]
    pub html: Option<PathBuf>,
    #[command(flatten)]
    pub tls: TlsClientArgs,
    #[command(flatten)]
    pub send_proxy: SendProxyArgs,
    #[command(flatten)]
    pub verbosity: Verbosity,
}

/// How a churn connection closes (`--close`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CloseChoice {
    Fin,
    Rst,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Combine histogram logs saved with --save-hist into one report.
    Merge(MergeOpts),
    /// Draw run reports, sweeps and histogram logs as one self-contained HTML page.
    Report(ReportOpts),
    /// Capacity sweep: `bench sweep ENDPOINT --rates 10k:200k:10k` (or `--find-max 'p99<1ms'`)
    /// is `bench ENDPOINT --rates ...`, with every flag of `sockecho bench`.
    #[command(
        after_help = "Takes the endpoint and every flag of `sockecho bench` (see `sockecho \
                            bench --help`); --rates or --find-max is required."
    )]
    Sweep(SweepOpts),
}

#[derive(Debug, Args)]
pub struct SweepOpts {
    /// The endpoint and `sockecho bench` flags, with --rates or --find-max.
    #[arg(
        value_name = "ARGS",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub args: Vec<std::ffi::OsString>,
}

#[derive(Debug, Args)]
pub struct MergeOpts {
    /// Histogram logs to combine; `-` reads stdin. A file may hold several logs one after
    /// another (`kubectl logs` of a bench Job's pods).
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// Print the merged report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Also write the merged histograms to FILE as an HdrHistogram interval log.
    #[arg(long, value_name = "FILE")]
    pub save_hist: Option<PathBuf>,
    /// Also write the merged latency percentile distribution to FILE (`.hgrm` text).
    #[arg(long, value_name = "FILE")]
    pub save_hgrm: Option<PathBuf>,
    /// Pass/fail condition on the merged report, repeatable (as for `bench`).
    #[arg(long, value_name = "COND", value_parser = parse_threshold, value_delimiter = ',')]
    pub threshold: Vec<Threshold>,
    /// Print the summary as csv or markdown instead of the table.
    #[arg(long, value_enum, value_name = "FORMAT", conflicts_with = "json")]
    pub export: Option<ExportFormat>,
}

/// Summary formats for `--export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// Comma-separated values with a header row.
    Csv,
    /// A GitHub-flavoured markdown table.
    Markdown,
}

/// The parsed `--rates`: a newtype, so that clap takes the whole list as one value.
#[derive(Debug, Clone, PartialEq)]
pub struct Rates(pub Vec<f64>);

fn parse_rates(text: &str) -> Result<Rates, String> {
    sweep::parse_rates(text)
        .map(Rates)
        .map_err(|e| e.to_string())
}

fn parse_threshold(text: &str) -> Result<Threshold, String> {
    Threshold::parse(text).map_err(|e| e.problem)
}

/// Parses `5%` or `0.05`: a fraction from 0 to 1.
fn parse_fraction(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let value = match t.strip_suffix('%') {
        Some(pct) => pct.trim().parse::<f64>().map(|p| p / 100.0),
        None => t.parse::<f64>(),
    };
    match value {
        Ok(f) if (0.0..1.0).contains(&f) => Ok(f),
        _ => Err(format!(
            "{text:?} is not a fraction below 1, such as 5% or 0.05"
        )),
    }
}

#[derive(Debug, Args)]
pub struct ReportOpts {
    /// Run reports (`bench --json`, `bench merge --json`), sweeps (`bench sweep --json`) or
    /// histogram logs (`--save-hist`; their whole latency distribution is drawn).
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// The HTML file to write.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: PathBuf,
}
