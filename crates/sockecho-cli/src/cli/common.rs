//! Flags and value types that several subcommands share: verbosity, log format, the I/O path
//! choice, the client side's TLS trust and the PROXY header it can send.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use sockecho::io::IoMode;

use crate::parse::parse_fingerprint;

/// Which server certificates a client accepts on `tls://` and `wss://` endpoints.
#[derive(Debug, Clone, Args)]
pub struct TlsClientArgs {
    /// Trust the CA certificate(s) in this PEM file instead of the system's roots.
    #[arg(long, value_name = "FILE", env = "SOCKECHO_CA",
          conflicts_with_all = ["pin_sha256", "insecure"])]
    pub ca: Option<PathBuf>,
    /// Accept exactly the server certificate with this SHA-256 fingerprint (as `sockecho serve`
    /// logs it; colons optional). No CA is needed, and names and dates are not checked.
    #[arg(
        long,
        value_name = "FINGERPRINT",
        env = "SOCKECHO_PIN_SHA256",
        conflicts_with = "insecure",
        value_parser = parse_fingerprint
    )]
    pub pin_sha256: Option<String>,
    /// Accept any server certificate. The traffic is encrypted, but anyone on the path can
    /// pretend to be the server: for tests only.
    // No environment variable: switching verification off must be seen on the command line,
    // not left behind in an image's settings.
    #[arg(long)]
    pub insecure: bool,
}

/// `--send-proxy` and `--proxy-source`: stand in for a load balancer in front of a
/// PROXY-speaking server.
#[derive(Debug, Clone, Args)]
pub struct SendProxyArgs {
    /// Send a PROXY protocol header first on each TCP or TLS connection (before the TLS
    /// handshake), as HAProxy or a cloud load balancer would: v1 text or v2 binary. The server
    /// must strip it (e.g. `sockecho serve --proxy-protocol`); it is not echoed.
    #[arg(long, value_enum, value_name = "VERSION", env = "SOCKECHO_SEND_PROXY")]
    pub send_proxy: Option<ProxyVersion>,
    /// The client address the header claims, ADDR:PORT (e.g. 203.0.113.7:40000 or
    /// [2001:db8::7]:40000). Default: the connection's own local address. The destination is
    /// always the server's address.
    #[arg(
        long,
        value_name = "ADDR:PORT",
        env = "SOCKECHO_PROXY_SOURCE",
        requires = "send_proxy"
    )]
    pub proxy_source: Option<SocketAddr>,
}

/// Values of `--send-proxy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProxyVersion {
    V1,
    V2,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    Text,
    /// One JSON object per event, with its fields (peer, transport, bytes, duration_ms, reason).
    Json,
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

/// Values of `serve --io` and `bench --io`: the flag's spelling of the library's [`IoMode`],
/// so the library needs no clap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IoChoice {
    Auto,
    Uring,
    Epoll,
}

impl From<IoChoice> for IoMode {
    fn from(choice: IoChoice) -> IoMode {
        match choice {
            IoChoice::Auto => IoMode::Auto,
            IoChoice::Uring => IoMode::Uring,
            IoChoice::Epoll => IoMode::Epoll,
        }
    }
}

/// The parser of on/off flags, so that their environment variables read as people write them:
/// 1, true, yes, on, y, t turn the flag on; 0, false, no, off, n, f (or no variable) leave it
/// off; anything else is a usage error rather than a silent guess.
pub fn boolish() -> clap::builder::BoolishValueParser {
    clap::builder::BoolishValueParser::new()
}
