//! `sockecho client`'s flags.

use std::time::Duration;

use clap::Args;
use sockecho::Endpoint;

use crate::cli::common::{SendProxyArgs, TlsClientArgs, Verbosity};
use crate::parse::parse_nonzero_duration;

#[derive(Debug, Args)]
pub struct ClientOpts {
    /// Server to connect to. On ws:// and wss:// each input line is one message, without its
    /// newline (text if it is UTF-8, binary if not), and each reply is printed as a line.
    #[arg(
        value_name = "ENDPOINT",
        env = "SOCKECHO_ENDPOINT",
        default_value = "tcp://localhost:54000"
    )]
    pub endpoint: Endpoint,
    /// Datagram endpoints: how long to wait for each reply before counting it lost.
    #[arg(long, value_name = "DURATION", env = "SOCKECHO_TIMEOUT", value_parser = parse_nonzero_duration,
          default_value = "1s")]
    pub timeout: Duration,
    #[command(flatten)]
    pub tls: TlsClientArgs,
    #[command(flatten)]
    pub send_proxy: SendProxyArgs,
    #[command(flatten)]
    pub verbosity: Verbosity,
}
