//! Command-line syntax: every flag of every subcommand, with its help text.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use sockecho::Endpoint;

/// Echo server, client and load generator for TCP, UDP and Unix sockets.
///
/// Endpoints: tcp://HOST:PORT, udp://HOST:PORT, unix:PATH, unixgram:PATH, HOST:PORT (tcp),
/// PORT (tcp on all interfaces). IPv6 hosts go in brackets: tcp://[::1]:7. Port 0 picks a free
/// port.
#[derive(Debug, Parser)]
#[command(name = "sockecho", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run an echo server on one or more endpoints (default: TCP port 54000, all interfaces).
    Serve(ServeOpts),
    /// Connect to an echo server: interactive on a terminal, a pipe tool otherwise.
    Client(ClientOpts),
}

#[derive(Debug, Args)]
pub struct Verbosity {
    /// Log less: -q hides per-connection lines (keeps `listening on`), -qq shows errors only.
    #[arg(short, long, action = clap::ArgAction::Count, global = true, conflicts_with = "verbose")]
    pub quiet: u8,
    /// Log more: -v adds debug detail, -vv traces every datagram.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

#[derive(Debug, Args)]
pub struct ServeOpts {
    /// Where to listen; repeat for several. Default: tcp://*:54000 (IPv4 and IPv6).
    #[arg(value_name = "ENDPOINT")]
    pub endpoints: Vec<Endpoint>,
    /// Most stream connections served at once; more wait in the listen backlog.
    /// Default: the open-file limit less a small reserve.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_conns: Option<u32>,
    /// Close stream connections idle this long (e.g. 30s, 5m). Default: never.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub idle_timeout: Option<Duration>,
    /// On SIGINT/SIGTERM, how long open connections get to finish before they are cut.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5s")]
    pub grace: Duration,
    /// Log every received payload (lossy UTF-8, trimmed).
    #[arg(long)]
    pub log_data: bool,
    /// Worker threads. Default: one per CPU core.
    #[arg(short = 't', long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
    #[command(flatten)]
    pub verbosity: Verbosity,
}

#[derive(Debug, Args)]
pub struct ClientOpts {
    /// Server to connect to.
    #[arg(value_name = "ENDPOINT", default_value = "tcp://localhost:54000")]
    pub endpoint: Endpoint,
    /// Datagram endpoints: how long to wait for each reply before counting it lost.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1s")]
    pub timeout: Duration,
    #[command(flatten)]
    pub verbosity: Verbosity,
}

/// Parses `30s`, `1.5s`, `250ms`, `5m`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|e| format!("{text:?}: {e}"));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration ({e}); write e.g. 30s, 250ms or 5m"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(
            parse_duration("soon")
                .unwrap_err()
                .contains("not a duration")
        );
        assert!(parse_duration("-1").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
