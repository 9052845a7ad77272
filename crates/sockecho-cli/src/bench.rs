//! `sockecho bench`: load an echo server, print what was measured (a table, or JSON with
//! `--json`), and exit 1 if any echo was wrong or missing. `sockecho bench merge` combines
//! histogram logs saved with `--save-hist` into one report.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use sockecho::Endpoint;
use sockecho::bench::{
    self, BenchConfig, BenchError, LatencySummary, LoadIo, Progress, Report, hlog, merge,
};

use crate::cli::{Interrupts, IoChoice, Verbosity, parse_duration};

/// Load an echo server and measure throughput, latency and correctness.
///
/// Every echoed byte is checked; mismatched, truncated, reordered, duplicated or lost messages
/// make the exit code 1. Closed loop by default (each connection sends its next message when an
/// echo comes back); `--rate` switches to open loop, where messages go out on a schedule and
/// latency counts from the scheduled time.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BenchOpts {
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    /// Echo server to load.
    #[arg(value_name = "ENDPOINT", default_value = "tcp://localhost:54000")]
    pub endpoint: Endpoint,
    /// Connections (datagram endpoints: sockets) open at once.
    #[arg(short = 'c', long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub connections: u32,
    /// Bytes per message: 64, 1500, 4KiB, 1MiB, ...
    #[arg(short = 's', long, value_name = "BYTES", default_value = "64", value_parser = parse_size_arg)]
    pub size: usize,
    /// Length of the measured period (e.g. 10s, 500ms).
    #[arg(short = 'd', long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Load run first and left out of the results.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Messages in flight per connection (in open loop, the most in flight).
    #[arg(long, value_name = "K", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub pipeline: u32,
    /// Load-generating threads; one is usually plenty and leaves the CPUs to the server.
    #[arg(short = 't', long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: u16,
    /// Open loop: messages per second over all connections.
    #[arg(long, value_name = "MSGS_PER_S", value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Datagram endpoints: how long a reply may take before the message counts as lost. Also
    /// how long replies still in flight at the end are waited for.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// How long each connection attempt may take.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Local addresses to connect from, in turn: IP[,IP...] or FIRST-LAST. Each adds about
    /// 28 000 connections to one server address.
    #[arg(long, value_name = "IPS", value_parser = parse_sources_arg)]
    pub source: Option<Sources>,
    /// Event loop for plain TCP and Unix connections: io_uring (one system call per turn for
    /// all connections, receives into shared buffers), epoll, or auto (io_uring if the kernel
    /// allows it). TLS and datagrams always run on tokio.
    #[arg(long, value_enum, value_name = "LOOP", env = "SOCKECHO_IO", default_value_t = IoChoice::Auto)]
    pub io: IoChoice,
    /// UDP: a socket with several messages queued sends them in one call (UDP GSO), and
    /// replies that arrive together are taken in one receive (GRO). Each datagram is still
    /// checked on its own, but a server sees bursts arrive at once (as one packet on loopback),
    /// as from a client that batches (QUIC stacks do). Off by default: one datagram per call.
    #[arg(long)]
    pub udp_offload: bool,
    /// Print the report as one JSON object (fields: docs/bench-json.md).
    #[arg(long)]
    pub json: bool,
    /// Also write the latency histogram to FILE as an HdrHistogram log.
    #[arg(long, value_name = "FILE")]
    pub save_hist: Option<PathBuf>,
    #[command(flatten)]
    pub tls: crate::cli::TlsClientArgs,
    #[command(flatten)]
    pub send_proxy: crate::cli::SendProxyArgs,
    #[command(flatten)]
    pub verbosity: Verbosity,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Combine histogram logs saved with --save-hist into one report.
    Merge(MergeOpts),
}

#[derive(Debug, Args)]
pub struct MergeOpts {
    /// Histogram logs to combine.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// Print the merged report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Also write the merged histograms to FILE as an HdrHistogram log.
    #[arg(long, value_name = "FILE")]
    pub save_hist: Option<PathBuf>,
}

/// The parsed `--source` list (a newtype, so clap takes it as one value).
#[derive(Debug, Clone)]
pub struct Sources(pub Vec<IpAddr>);

fn parse_sources_arg(text: &str) -> Result<Sources, String> {
    bench::parse_sources(text).map(Sources)
}

fn parse_size_arg(text: &str) -> Result<usize, String> {
    bench::parse_size(text)
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "{text:?} is not a positive number of messages per second"
        )),
    }
}

pub fn main(opts: BenchOpts) -> anyhow::Result<ExitCode> {
    crate::logging::init(&opts.verbosity);
    if let Some(BenchCommand::Merge(merge_opts)) = opts.command {
        return merge_main(merge_opts);
    }
    sockecho::limits::raise_fd_limit();
    let config = BenchConfig {
        endpoint: opts.endpoint,
        connections: opts.connections as usize,
        size: opts.size,
        duration: opts.duration,
        warmup: opts.warmup,
        pipeline: opts.pipeline as usize,
        rate: opts.rate,
        threads: opts.threads.into(),
        timeout: opts.timeout,
        connect_timeout: opts.connect_timeout,
        connect: opts.send_proxy.apply(opts.tls.connect_options()),
        sources: opts.source.map(|s| s.0).unwrap_or_default(),
        io: match opts.io {
            IoChoice::Auto => LoadIo::Auto,
            IoChoice::Uring => LoadIo::IoUring,
            IoChoice::Epoll => LoadIo::Epoll,
        },
        udp_offload: opts.udp_offload,
    };
    let show_progress = opts.verbosity.quiet == 0
        && std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none();
    // The coordinator only waits and samples; the load runs on threads of its own.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let timeout = config.timeout;
    let save_hist = opts.save_hist.clone();
    let json = opts.json;
    let finished = runtime.block_on(async {
        let progress = Progress::new();
        let display = show_progress.then(|| tokio::spawn(show(progress.clone())));
        let signals = tokio::spawn(stop_on_signal(progress.clone(), timeout));
        let outcome = bench::run(&config, &progress).await;
        signals.abort();
        if let Some(display) = display {
            display.abort();
            let _ = display.await;
        }
        let outcome = outcome?;
        // The run is over: from here a signal quits at once, even while writing the output
        // is held up (a full pipe, a slow disk), so the writing runs off this thread.
        let quit = tokio::spawn(quit_on_signal());
        let written = tokio::task::spawn_blocking(move || -> anyhow::Result<ExitCode> {
            if let Some(path) = &save_hist {
                save(path, |out| hlog::write(out, &outcome))?;
            }
            print_report(&outcome.report, json)?;
            Ok(verdict(&outcome.report))
        })
        .await;
        quit.abort();
        Ok(written)
    });
    match finished {
        Ok(written) => written.context("writing the report failed")?,
        Err(BenchError::Invalid(problem)) => {
            eprintln!("error: {problem}");
            Ok(ExitCode::from(2))
        }
        Err(BenchError::Interrupted) => {
            eprintln!("bench: stopped before the measured period began; nothing to report");
            Ok(ExitCode::from(130))
        }
        Err(e) => Err(e.into()),
    }
}

fn merge_main(opts: MergeOpts) -> anyhow::Result<ExitCode> {
    let mut runs = Vec::with_capacity(opts.files.len());
    for path in &opts.files {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let run = hlog::read(&bytes).with_context(|| format!("{} is unusable", path.display()))?;
        runs.push(run);
    }
    let merged = merge::merge(&runs);
    if let Some(path) = &opts.save_hist {
        let start = runs
            .iter()
            .map(|r| r.start)
            .min()
            .unwrap_or(std::time::UNIX_EPOCH);
        let outcome = bench::Outcome {
            report: merged.report.clone(),
            latency: merged.latency.clone(),
            connect: merged.connect.clone(),
            measured_from: start,
        };
        save(path, |out| hlog::write(out, &outcome))?;
    }
    print_report(&merged.report, opts.json)?;
    Ok(verdict(&merged.report))
}

/// On the first SIGINT or SIGTERM, ends the run early so that it reports what it measured; on
/// a second, exits at once (130), as an impatient user expects.
async fn stop_on_signal(progress: Arc<Progress>, timeout: Duration) {
    // Without handlers the signals keep their default action: the process ends.
    let Ok(mut signals) = Interrupts::new() else {
        return;
    };
    signals.next().await;
    eprintln!(
        "bench: stopping; waiting up to {} for the replies in flight (again to quit now)",
        humantime::format_duration(timeout)
    );
    progress.stop();
    signals.next().await;
    std::process::exit(130);
}

/// Exits at once (130) on SIGINT or SIGTERM.
async fn quit_on_signal() {
    let Ok(mut signals) = Interrupts::new() else {
        return;
    };
    signals.next().await;
    std::process::exit(130);
}

/// Writes a file through `write`, naming the file in any error.
fn save(
    path: &std::path::Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> Result<(), hlog::HistLogError>,
) -> anyhow::Result<()> {
    let context = || format!("cannot write the histogram log {}", path.display());
    let file = std::fs::File::create(path).with_context(context)?;
    let mut out = std::io::BufWriter::new(file);
    write(&mut out).with_context(context)?;
    std::io::Write::flush(&mut out).with_context(context)?;
    Ok(())
}

fn print_report(report: &Report, json: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let text = if json {
        let mut text = serde_json::to_string_pretty(report).context("cannot encode the report")?;
        text.push('\n');
        text
    } else {
        table(report)
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write the report")
}

/// Exit 0 if the run passed; otherwise say why on stderr and exit 1.
fn verdict(report: &Report) -> ExitCode {
    if report.passed() {
        return ExitCode::SUCCESS;
    }
    let problems = error_list(report);
    eprintln!("error: the benchmark failed: {problems}");
    ExitCode::FAILURE
}

/// The progress line: throughput so far and time left, on stderr, until aborted.
async fn show(progress: Arc<Progress>) {
    use indicatif::{ProgressBar, ProgressStyle};
    // Length 1 until the schedule is known, so the bar starts empty rather than full.
    let bar = ProgressBar::new(1);
    // `wide_msg` is cut to the terminal's width, so the line never wraps.
    let style = ProgressStyle::with_template("{spinner} [{bar:20}] {wide_msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message("connecting");
    // The task is aborted when the run ends; dropping this then clears the line.
    let _clear = ClearOnDrop(bar.clone());
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut last: Option<(Duration, u64, u64)> = None;
    loop {
        tick.tick().await;
        bar.tick();
        let Some(snap) = progress.snapshot() else {
            continue;
        };
        bar.set_length(snap.total.as_millis() as u64);
        bar.set_position(snap.elapsed.as_millis() as u64);
        let (rate, bytes_rate) = match last {
            Some((t, n, b)) if snap.elapsed > t => {
                let dt = (snap.elapsed - t).as_secs_f64();
                ((snap.replies - n) as f64 / dt, (snap.bytes - b) as f64 / dt)
            }
            _ => (0.0, 0.0),
        };
        last = Some((snap.elapsed, snap.replies, snap.bytes));
        let left = snap.total.saturating_sub(snap.elapsed).as_secs_f64();
        let phase = if snap.measuring {
            "measuring"
        } else {
            "warming up"
        };
        bar.set_message(format!(
            "{phase}: {} msg/s, {}/s in, {left:.1} s left",
            group(rate as u64),
            bytes_si(bytes_rate)
        ));
    }
}

/// Clears the progress line when the display task is aborted.
struct ClearOnDrop(indicatif::ProgressBar);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// The human-readable report.
pub fn table(r: &Report) -> String {
    let mut out = String::new();
    let runs = if r.runs > 1 {
        format!(" (merge of {} runs)", r.runs)
    } else {
        String::new()
    };
    let _ = writeln!(out, "sockecho bench {}{runs}", r.endpoint);
    let mode = match (r.mode.as_str(), r.rate) {
        ("open", Some(rate)) => format!("open loop at {} msg/s", group(rate as u64)),
        (mode, _) => format!("{mode} loop"),
    };
    let _ = writeln!(
        out,
        "  load         {} {} ({} open) × {}, pipeline {}, {mode}, {} thread{} ({})",
        r.connections,
        if r.transport == "udp" || r.transport == "unixgram" {
            "sockets"
        } else {
            "connections"
        },
        r.connections_established,
        bench::format_size(r.size as usize),
        r.pipeline,
        r.threads,
        if r.threads == 1 { "" } else { "s" },
        if r.udp_offload {
            format!("{}, UDP GSO/GRO", r.io)
        } else {
            r.io.clone()
        },
    );
    let _ = writeln!(
        out,
        "  measured     {:.3} s after {:.3} s of warm-up{}",
        r.duration_s,
        r.warmup_s,
        if r.interrupted {
            " (stopped early)"
        } else {
            ""
        },
    );
    let _ = writeln!(
        out,
        "  messages     {} sent, {} received ({} sent, {} received)",
        group(r.messages_sent),
        group(r.messages_received),
        bytes_si(r.bytes_sent as f64),
        bytes_si(r.bytes_received as f64),
    );
    let _ = writeln!(
        out,
        "  throughput   {} msg/s round trips, {}/s sent, {}/s received",
        group(r.msgs_per_s.round() as u64),
        bytes_si(r.bytes_per_s_sent),
        bytes_si(r.bytes_per_s_received),
    );
    let per_msg = r
        .client_cpu_us_per_msg
        .map_or(String::new(), |us| format!(", {us:.2} µs per message"));
    let _ = writeln!(out, "  client CPU   {:.3} s{per_msg}", r.client_cpu_s);
    let _ = writeln!(
        out,
        "\n  {:<10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "", "min", "p50", "p90", "p99", "p99.9", "p99.99", "max", "mean"
    );
    for (name, s) in [("latency", &r.latency_us), ("connect", &r.connect_us)] {
        let _ = writeln!(out, "  {name:<10} {}", latency_row(s));
    }
    let _ = writeln!(out, "\n  errors       {}", error_list(r));
    let _ = writeln!(
        out,
        "  result       {}",
        if r.passed() { "OK" } else { "FAILED" }
    );
    out
}

fn latency_row(s: &LatencySummary) -> String {
    if s.count == 0 {
        return format!("{:>9}", "-");
    }
    [s.min, s.p50, s.p90, s.p99, s.p999, s.p9999, s.max, s.mean]
        .iter()
        .map(|&us| format!("{:>9}", micros(us)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every error count that is not zero, e.g. "3 mismatched, 1 lost"; "none" if all are.
fn error_list(r: &Report) -> String {
    let e = &r.errors;
    let parts: Vec<String> = [
        (e.mismatched, "mismatched"),
        (e.truncated, "truncated"),
        (e.reordered, "reordered"),
        (e.duplicated, "duplicated"),
        (e.lost, "lost"),
        (e.warmup, "wrong during warm-up"),
        (e.connect_failed, "connections failed"),
        (e.disconnected, "disconnected"),
        (e.refused, "refused"),
        (e.late, "late replies"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

/// A latency in microseconds with a fitting unit: `41.2µs`, `1.25ms`, `2.10s`.
fn micros(us: f64) -> String {
    if us < 1_000.0 {
        format!("{us:.1}µs")
    } else if us < 1_000_000.0 {
        format!("{:.2}ms", us / 1_000.0)
    } else {
        format!("{:.2}s", us / 1_000_000.0)
    }
}

/// Bytes in decimal units: `7.90 MB`.
fn bytes_si(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} B")
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

/// Digits in groups of three: `1,234,567`.
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formats() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1_234_567), "1,234,567");
        assert_eq!(micros(41.25), "41.2µs");
        assert_eq!(micros(1_250.0), "1.25ms");
        assert_eq!(micros(2_100_000.0), "2.10s");
        assert_eq!(bytes_si(999.0), "999 B");
        assert_eq!(bytes_si(7_900_000.0), "7.90 MB");
        assert!(parse_rate("0").is_err());
        assert_eq!(parse_rate("2500"), Ok(2500.0));
    }
}
