//! `sockecho ping`'s flags.

use std::time::Duration;

use clap::Args;
use sockecho::Endpoint;

use crate::cli::common::{SendProxyArgs, TlsClientArgs, Verbosity};
use crate::parse::{parse_nonzero_duration, parse_size};

/// Send one message per interval to an echo server and time each reply.
#[derive(Debug, Args)]
pub struct PingOpts {
    /// Echo server to ping.
    #[arg(
        value_name = "ENDPOINT",
        env = "SOCKECHO_ENDPOINT",
        default_value = "tcp://localhost:54000"
    )]
    pub endpoint: Endpoint,
    /// Stop after COUNT messages. Default: until Ctrl-C.
    #[arg(short = 'c', long, value_name = "COUNT", env = "SOCKECHO_COUNT",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Time between messages (e.g. 1s, 200ms).
    #[arg(short = 'i', long, value_name = "DURATION", env = "SOCKECHO_INTERVAL", default_value = "1s",
          value_parser = parse_nonzero_duration)]
    pub interval: Duration,
    /// Bytes per message (64, 1500, 4KiB, ...).
    #[arg(short = 's', long, value_name = "BYTES", env = "SOCKECHO_SIZE", default_value = "64",
          value_parser = parse_size)]
    pub size: usize,
    /// How long a reply may take before it is reported as a timeout. Default: 1s, or the
    /// interval if that is longer.
    #[arg(long, value_name = "DURATION", env = "SOCKECHO_TIMEOUT",
          value_parser = parse_nonzero_duration)]
    pub timeout: Option<Duration>,
    #[command(flatten)]
    pub tls: TlsClientArgs,
    #[command(flatten)]
    pub send_proxy: SendProxyArgs,
    #[command(flatten)]
    pub verbosity: Verbosity,
}
