//! `sockecho ping`: one message per interval to an echo server, a line per reply with its
//! round-trip time, and ping's summary at the end or on Ctrl-C. Exit 0 if every message got its
//! reply, 1 otherwise.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use sockecho::Endpoint;
use sockecho::ping::{PingConfig, PingError, PingEvent, PingSummary, ping};

use crate::cli::{Verbosity, parse_duration};

/// Send one message per interval to an echo server and time each reply.
#[derive(Debug, Args)]
pub struct PingOpts {
    /// Echo server to ping.
    #[arg(value_name = "ENDPOINT", default_value = "tcp://localhost:54000")]
    pub endpoint: Endpoint,
    /// Stop after COUNT messages. Default: until Ctrl-C.
    #[arg(short = 'c', long, value_name = "COUNT",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Time between messages (e.g. 1s, 200ms).
    #[arg(short = 'i', long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Bytes per message (64, 1500, 4KiB, ...).
    #[arg(short = 's', long, value_name = "BYTES", default_value = "64",
          value_parser = sockecho::bench::parse_size)]
    pub size: usize,
    /// How long a reply may take before it is reported as a timeout. Default: 1s, or the
    /// interval if that is longer.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    #[command(flatten)]
    pub tls: crate::cli::TlsClientArgs,
    #[command(flatten)]
    pub send_proxy: crate::cli::SendProxyArgs,
    #[command(flatten)]
    pub verbosity: Verbosity,
}

pub fn main(opts: PingOpts) -> anyhow::Result<ExitCode> {
    crate::logging::init(&opts.verbosity);
    let config = PingConfig {
        endpoint: opts.endpoint,
        interval: opts.interval,
        count: opts.count,
        size: opts.size,
        timeout: opts
            .timeout
            .unwrap_or_else(|| opts.interval.max(Duration::from_secs(1))),
        connect: opts.send_proxy.apply(opts.tls.connect_options()),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(config))
}

async fn run(config: PingConfig) -> anyhow::Result<ExitCode> {
    let mut signals = crate::cli::Interrupts::new()?;
    let stop = async move {
        signals.next().await;
    };
    let size = config.size;
    let timeout = config.timeout;
    let mut stdout = std::io::stdout();
    let mut peer = config.endpoint.to_string();
    let summary = ping(
        &config,
        |event| {
            let line = describe(&event, &mut peer, size, timeout);
            // Output is best effort: a closed pipe must not stop the summary or the exit code.
            let _ = writeln!(stdout, "{line}");
            let _ = stdout.flush();
        },
        stop,
    )
    .await;
    let summary = match summary {
        Ok(s) => s,
        Err(PingError::Invalid(problem)) => {
            eprintln!("error: {problem}");
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(e.into()),
    };
    let _ = write!(stdout, "{}", summary_text(&summary));
    let _ = stdout.flush();
    if let Some(reason) = &summary.ended_by {
        eprintln!("error: connection to {} lost: {reason}", summary.peer);
    }
    Ok(if summary.all_replied() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One output line for an event. `peer` is updated when the connection opens.
fn describe(event: &PingEvent, peer: &mut String, size: usize, timeout: Duration) -> String {
    match event {
        PingEvent::Started {
            peer: reached,
            connect,
        } => {
            *peer = reached.to_string();
            let connected = connect.map_or(String::new(), |d| {
                format!(", connected in {} ms", millis(d))
            });
            format!("PING {peer}: {size} bytes per message{connected}")
        }
        PingEvent::Reply { seq, bytes, rtt } => {
            format!(
                "{bytes} bytes from {peer}: seq={seq} time={} ms",
                millis(*rtt)
            )
        }
        PingEvent::Timeout { seq } => {
            format!(
                "no reply from {peer}: seq={seq} timeout after {} ms",
                millis(timeout)
            )
        }
        PingEvent::Corrupt { seq, bytes, rtt } => {
            let seq = seq.map_or("?".into(), |s| s.to_string());
            let time = rtt.map_or(String::new(), |d| format!(" time={} ms", millis(d)));
            format!("wrong reply from {peer}: seq={seq} {bytes} bytes, not what was sent{time}")
        }
        PingEvent::Late { seq, rtt } => format!(
            "late reply from {peer}: seq={seq} time={} ms (already counted as lost)",
            millis(*rtt)
        ),
        PingEvent::Duplicate { seq } => format!("duplicate reply from {peer}: seq={seq}"),
        PingEvent::Error { seq, problem } => match seq {
            Some(seq) => format!("error from {peer}: seq={seq} {problem}"),
            None => format!("error from {peer}: {problem}"),
        },
    }
}

/// The closing statistics, in ping's layout.
fn summary_text(s: &PingSummary) -> String {
    let mut out = format!(
        "\n--- {} ping statistics ---\n{} sent, {} received, {} loss, time {} ms",
        s.peer,
        s.sent,
        s.received,
        percent(s.loss_percent()),
        s.elapsed.as_millis()
    );
    for (n, what) in [
        (s.corrupt, "wrong"),
        (s.duplicates, "duplicates"),
        (s.errors, "errors"),
    ] {
        if n > 0 {
            out.push_str(&format!(", {n} {what}"));
        }
    }
    out.push('\n');
    if let Some(rtt) = s.rtt {
        out.push_str(&format!(
            "rtt min/avg/max/mdev = {}/{}/{}/{} ms\n",
            millis(rtt.min),
            millis(rtt.avg),
            millis(rtt.max),
            millis(rtt.mdev)
        ));
    }
    out
}

/// Milliseconds with microsecond precision, as ping prints them: `0.061`.
fn millis(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

/// `0%`, `25%`, `33.3%`.
fn percent(p: f64) -> String {
    if p.fract() == 0.0 {
        format!("{p:.0}%")
    } else {
        format!("{p:.1}%")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_look_like_ping() {
        let mut peer = String::new();
        let started = PingEvent::Started {
            peer: "tcp://127.0.0.1:7000".parse().unwrap(),
            connect: Some(Duration::from_micros(120)),
        };
        let t = Duration::from_secs(1);
        assert_eq!(
            describe(&started, &mut peer, 64, t),
            "PING tcp://127.0.0.1:7000: 64 bytes per message, connected in 0.120 ms"
        );
        let reply = PingEvent::Reply {
            seq: 3,
            bytes: 64,
            rtt: Duration::from_micros(61),
        };
        assert_eq!(
            describe(&reply, &mut peer, 64, t),
            "64 bytes from tcp://127.0.0.1:7000: seq=3 time=0.061 ms"
        );
        assert_eq!(
            describe(&PingEvent::Timeout { seq: 4 }, &mut peer, 64, t),
            "no reply from tcp://127.0.0.1:7000: seq=4 timeout after 1000.000 ms"
        );
        assert_eq!(percent(25.0), "25%");
        assert_eq!(percent(100.0 / 3.0), "33.3%");
    }
}
