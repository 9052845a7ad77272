//! Command-line syntax: every flag of every subcommand, with its help text.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use sockecho::Endpoint;

/// Echo server, client and load generator for TCP, UDP and Unix sockets.
///
/// Endpoints: tcp://HOST:PORT, udp://HOST:PORT, tls://HOST:PORT, unix:PATH, unixgram:PATH,
/// HOST:PORT (tcp),
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
    /// Load an echo server: throughput, latency percentiles and verification of every echo.
    Bench(crate::bench::BenchOpts),
    /// Send one message per interval to an echo server and time each reply, like ping.
    Ping(crate::ping::PingOpts),
}

/// Which server certificates a client accepts on `tls://` endpoints.
#[derive(Debug, Clone, Args)]
pub struct TlsClientArgs {
    /// Trust the CA certificate(s) in this PEM file instead of the system's roots.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["pin_sha256", "insecure"])]
    pub ca: Option<std::path::PathBuf>,
    /// Accept exactly the server certificate with this SHA-256 fingerprint (as `sockecho serve`
    /// logs it; colons optional). No CA is needed, and names and dates are not checked.
    #[arg(long, value_name = "FINGERPRINT", conflicts_with = "insecure")]
    pub pin_sha256: Option<String>,
    /// Accept any server certificate. The traffic is encrypted, but anyone on the path can
    /// pretend to be the server: for tests only.
    #[arg(long)]
    pub insecure: bool,
}

impl TlsClientArgs {
    /// The library's connect options; warns loudly about --insecure.
    pub fn connect_options(&self) -> sockecho::client::ConnectOptions {
        if self.insecure {
            eprintln!(
                "warning: --insecure: the server's certificate is not checked; anyone on the \
                 path can impersonate the server and read or change this traffic"
            );
        }
        sockecho::client::ConnectOptions {
            tls: sockecho::tls::ClientTlsOptions {
                ca_file: self.ca.clone(),
                pin_sha256: self.pin_sha256.clone(),
                insecure: self.insecure,
            },
            ..Default::default()
        }
    }
}

/// `--send-proxy` and `--proxy-source`: stand in for a load balancer in front of a
/// PROXY-speaking server.
#[derive(Debug, Clone, Args)]
pub struct SendProxyArgs {
    /// Send a PROXY protocol header first on each TCP or TLS connection (before the TLS
    /// handshake), as HAProxy or a cloud load balancer would: v1 text or v2 binary. The server
    /// must strip it (e.g. `sockecho serve --proxy-protocol`); it is not echoed.
    #[arg(long, value_enum, value_name = "VERSION")]
    pub send_proxy: Option<ProxyVersion>,
    /// The client address the header claims, ADDR:PORT (e.g. 203.0.113.7:40000 or
    /// [2001:db8::7]:40000). Default: the connection's own local address. The destination is
    /// always the server's address.
    #[arg(long, value_name = "ADDR:PORT", requires = "send_proxy")]
    pub proxy_source: Option<std::net::SocketAddr>,
}

/// Values of `--send-proxy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProxyVersion {
    V1,
    V2,
}

impl SendProxyArgs {
    /// `options` with the header these flags ask for.
    pub fn apply(
        &self,
        options: sockecho::client::ConnectOptions,
    ) -> sockecho::client::ConnectOptions {
        use sockecho::proxy_protocol::{SendProxy, Version};
        sockecho::client::ConnectOptions {
            send_proxy: self.send_proxy.map(|version| SendProxy {
                version: match version {
                    ProxyVersion::V1 => Version::V1,
                    ProxyVersion::V2 => Version::V2,
                },
                source: self.proxy_source,
            }),
            ..options
        }
    }
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
    /// Serve only peers in this network (CIDR like 10.0.0.0/8 or fd00::/8, or one address);
    /// repeatable. Applies to TCP and UDP. Default: everyone.
    #[arg(long, value_name = "CIDR", value_parser = parse_net)]
    pub allow: Vec<ipnet::IpNet>,
    /// Refuse peers in this network; repeatable; wins over --allow. Denied TCP peers are closed
    /// at once, denied datagrams dropped; both are counted.
    #[arg(long, value_name = "CIDR", value_parser = parse_net)]
    pub deny: Vec<ipnet::IpNet>,
    /// Most TCP connections from one address at once; further ones are closed at once.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_conns_per_ip: Option<u32>,
    /// Most datagrams per second from one source address (token bucket, bursts of one
    /// second's worth); the excess is dropped and counted.
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub udp_rate: Option<f64>,
    /// Answer datagrams from well-known service ports (echo, chargen, DNS, NTP, ...) and
    /// broadcast/multicast sources too. By default they are dropped, so two echo services
    /// cannot be made to bounce datagrams between them forever.
    #[arg(long)]
    pub no_reflection_guard: bool,
    /// TLS certificate chain (PEM) for tls:// endpoints. Without --cert/--key a self-signed
    /// certificate is made for the run and its SHA-256 fingerprint logged.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<std::path::PathBuf>,
    /// TLS private key (PEM: PKCS#8, PKCS#1 or SEC1) matching --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<std::path::PathBuf>,
    /// How long a client may take to finish the TLS handshake before it is dropped.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    pub tls_handshake_timeout: Duration,
    /// Expect a PROXY protocol header (v1 text or v2 binary, told apart by their signatures) at
    /// the start of TCP and TLS connections from --proxy-from peers, before any TLS handshake.
    /// Each connection is then served as the client the header names: --allow/--deny,
    /// --max-conns-per-ip, logs and metrics see that address. A peer outside --proxy-from that
    /// sends a header is refused; other peers are served as themselves.
    #[arg(long)]
    pub proxy_protocol: bool,
    /// Proxies whose PROXY headers are believed (CIDR or one address); repeatable. Their
    /// connections must start with a header, or they are closed. Default: loopback only
    /// (127.0.0.0/8 and ::1).
    #[arg(long, value_name = "CIDR", value_parser = parse_net, requires = "proxy_protocol")]
    pub proxy_from: Vec<ipnet::IpNet>,
    /// How long a proxy may take to send its whole PROXY header before the connection is
    /// closed (and how long other peers get to send their first bytes before they are served
    /// without a header check).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5s", requires = "proxy_protocol")]
    pub proxy_header_timeout: Duration,
    /// Serve Prometheus metrics over HTTP at this address (e.g. 127.0.0.1:9100), with
    /// /metrics, /healthz and /readyz.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Log format: text for people, json for machines (one object per event).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Worker threads. Default: one per CPU core.
    #[arg(short = 't', long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
    /// Stream I/O path: io_uring (one system call per loop turn for all connections, shared
    /// receive buffers), epoll, or auto (io_uring if the kernel allows it). TLS and datagrams
    /// always use epoll.
    #[arg(long, value_enum, value_name = "PATH", env = "SOCKECHO_IO", default_value_t = IoChoice::Auto)]
    pub io: IoChoice,
    #[command(flatten)]
    pub verbosity: Verbosity,
}

/// Values of `serve --io` and `bench --io`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IoChoice {
    Auto,
    Uring,
    Epoll,
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
    pub tls: TlsClientArgs,
    #[command(flatten)]
    pub send_proxy: SendProxyArgs,
    #[command(flatten)]
    pub verbosity: Verbosity,
}

/// Parses a network in CIDR notation, or a single address (a /32 or /128 network).
pub fn parse_net(text: &str) -> Result<ipnet::IpNet, String> {
    if let Ok(net) = text.parse::<ipnet::IpNet>() {
        return Ok(net.trunc());
    }
    text.parse::<std::net::IpAddr>()
        .map(ipnet::IpNet::from)
        .map_err(|_| format!("{text:?} is not a network (e.g. 10.0.0.0/8, fd00::/8) or an address"))
}

/// Parses a positive rate such as `100` or `0.5`.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!("{text:?} is not a positive number")),
    }
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

/// SIGINT and SIGTERM, the two ways a user or a service manager asks a command to stop, as one
/// stream. Once made, neither signal ends the process by itself any more.
pub struct Interrupts {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Interrupts {
    /// Installs the handlers. Needs a tokio runtime with signals enabled.
    pub fn new() -> anyhow::Result<Interrupts> {
        use anyhow::Context;
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Interrupts {
            interrupt: signal(SignalKind::interrupt())
                .context("cannot install a SIGINT handler")?,
            terminate: signal(SignalKind::terminate())
                .context("cannot install a SIGTERM handler")?,
        })
    }

    /// Waits for the next of either signal; returns its name.
    pub async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
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
    fn networks_and_rates() {
        assert_eq!(parse_net("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_net("127.0.0.2").unwrap().to_string(), "127.0.0.2/32");
        assert_eq!(parse_net("::1").unwrap().to_string(), "::1/128");
        assert!(
            parse_net("10.0.0.0/33")
                .unwrap_err()
                .contains("not a network")
        );
        assert_eq!(parse_rate("2.5"), Ok(2.5));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("inf").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
