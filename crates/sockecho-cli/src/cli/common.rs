//! Flags and value types that several subcommands share: verbosity, log format, the I/O path
//! choice and the client side's TLS trust.

use std::path::PathBuf;

use clap::Args;
use sockecho::io::IoMode;

/// Which server certificates a client accepts on `tls://` endpoints.
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
        conflicts_with = "insecure"
    )]
    pub pin_sha256: Option<String>,
    /// Accept any server certificate. The traffic is encrypted, but anyone on the path can
    /// pretend to be the server: for tests only.
    // No environment variable: switching verification off must be seen on the command line,
    // not left behind in an image's settings.
    #[arg(long)]
    pub insecure: bool,
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
