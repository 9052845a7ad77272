//! `sockecho serve`'s flags.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use sockecho::Endpoint;

use crate::cli::common::{IoChoice, LogFormat, Verbosity, boolish};
use crate::parse::{
    parse_duration, parse_fault, parse_identity, parse_listen_addr, parse_net,
    parse_nonzero_duration, parse_rate, parse_ws_max_message,
};

/// The variable that lists endpoints when the command line names none (read by the runner, not
/// by clap: see [`ServeOpts::endpoints`]).
pub const ENDPOINTS_VAR: &str = "SOCKECHO_ENDPOINTS";

#[derive(Debug, Args)]
pub struct ServeOpts {
    /// Where to listen; repeat for several. Default: tcp://*:54000 (IPv4 and IPv6).
    ///
    /// [env: SOCKECHO_ENDPOINTS=] separated by commas, read when no ENDPOINT is given (a Unix
    /// path with a comma in it goes on the command line, where no comma separates)
    // Not clap's `env`: its delimiter would split the command line's values too.
    #[arg(value_name = "ENDPOINT")]
    pub endpoints: Vec<Endpoint>,
    /// Most stream connections served at once; more wait in the listen backlog.
    /// Default: the open-file limit less a small reserve.
    #[arg(long, value_name = "N", env = "SOCKECHO_MAX_CONNS",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_conns: Option<u32>,
    /// Close stream connections idle this long (e.g. 30s, 5m). Default: never (0 also means
    /// never).
    #[arg(long, value_name = "DURATION", env = "SOCKECHO_IDLE_TIMEOUT", value_parser = parse_duration)]
    pub idle_timeout: Option<Duration>,
    /// On SIGINT/SIGTERM, how long open connections get to finish before they are cut (0: cut
    /// them at once).
    #[arg(long, value_name = "DURATION", env = "SOCKECHO_GRACE", value_parser = parse_duration,
          default_value = "5s")]
    pub grace: Duration,
    /// Log every received payload (lossy UTF-8, trimmed).
    #[arg(long, env = "SOCKECHO_LOG_DATA", value_parser = boolish())]
    pub log_data: bool,
    /// Serve only peers in this network (CIDR like 10.0.0.0/8 or fd00::/8, or one address);
    /// repeatable (in the variable: separated by commas). Applies to TCP and UDP.
    /// Default: everyone.
    #[arg(long, value_name = "CIDR", env = "SOCKECHO_ALLOW", value_delimiter = ',',
          value_parser = parse_net)]
    pub allow: Vec<ipnet::IpNet>,
    /// Refuse peers in this network; repeatable (in the variable: separated by commas); wins
    /// over --allow. Denied TCP peers are closed at once, denied datagrams dropped; both are
    /// counted.
    #[arg(long, value_name = "CIDR", env = "SOCKECHO_DENY", value_delimiter = ',',
          value_parser = parse_net)]
    pub deny: Vec<ipnet::IpNet>,
    /// Most TCP connections from one address at once; further ones are closed at once.
    #[arg(long, value_name = "N", env = "SOCKECHO_MAX_CONNS_PER_IP",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_conns_per_ip: Option<u32>,
    /// Most datagrams per second from one source — an IPv4 address or an IPv6 /64 — (token
    /// bucket, bursts of one second's worth); the excess is dropped and counted.
    #[arg(long, value_name = "RATE", env = "SOCKECHO_UDP_RATE", value_parser = parse_rate)]
    pub udp_rate: Option<f64>,
    /// Answer datagrams from well-known service ports (echo, chargen, DNS, NTP, ...) and
    /// broadcast/multicast sources too. By default they are dropped, so two echo services
    /// cannot be made to bounce datagrams between them forever.
    #[arg(long, env = "SOCKECHO_NO_REFLECTION_GUARD", value_parser = boolish())]
    pub no_reflection_guard: bool,
    /// TLS certificate chain (PEM) for tls:// and wss:// endpoints. Without --cert/--key a self-signed
    /// certificate is made for the run and its SHA-256 fingerprint logged.
    #[arg(long, value_name = "FILE", env = "SOCKECHO_CERT", requires = "key")]
    pub cert: Option<PathBuf>,
    /// TLS private key (PEM: PKCS#8, PKCS#1 or SEC1) matching --cert.
    #[arg(long, value_name = "FILE", env = "SOCKECHO_KEY", requires = "cert")]
    pub key: Option<PathBuf>,
    /// How long a client may take to finish the TLS handshake (and, on ws:// and wss://, to
    /// send its WebSocket upgrade request) before it is dropped. Must be longer than zero.
    #[arg(long, value_name = "DURATION", env = "SOCKECHO_TLS_HANDSHAKE_TIMEOUT",
          value_parser = parse_nonzero_duration, default_value = "10s")]
    pub tls_handshake_timeout: Duration,
    /// Largest WebSocket message taken on ws:// and wss:// endpoints (fragments added up, e.g.
    /// 64KiB, 16MiB); a larger one closes the connection with code 1009 (message too big).
    #[arg(long, value_name = "SIZE", env = "SOCKECHO_WS_MAX_MESSAGE", value_parser = parse_ws_max_message, default_value = "16MiB")]
    pub ws_max_message: usize,
    /// Expect a PROXY protocol header (v1 text or v2 binary, told apart by their signatures) at
    /// the start of TCP and TLS connections from --proxy-from peers, before any TLS handshake.
    /// Each connection is then served as the client the header names: --allow/--deny,
    /// --max-conns-per-ip, logs and metrics see that address. A peer outside --proxy-from that
    /// sends a header is refused; other peers are served as themselves.
    #[arg(long, env = "SOCKECHO_PROXY_PROTOCOL", value_parser = boolish())]
    pub proxy_protocol: bool,
    /// Proxies whose PROXY headers are believed (CIDR or one address); repeatable (in the
    /// variable: separated by commas). Their connections must start with a header, or they are
    /// closed. Default: loopback only (127.0.0.0/8 and ::1).
    #[arg(long, value_name = "CIDR", env = "SOCKECHO_PROXY_FROM", value_delimiter = ',',
          value_parser = parse_net, requires = "proxy_protocol")]
    pub proxy_from: Vec<ipnet::IpNet>,
    /// How long a proxy may take to send its whole PROXY header before the connection is
    /// closed (and how long other peers get to send their first bytes before they are served
    /// without a header check).
    #[arg(long, value_name = "DURATION", env = "SOCKECHO_PROXY_HEADER_TIMEOUT",
          value_parser = parse_duration, default_value = "5s")]
    pub proxy_header_timeout: Duration,
    /// Serve Prometheus metrics over HTTP at this address (e.g. 127.0.0.1:9100), with
    /// /metrics, /healthz, /readyz and /info.
    #[arg(long, value_name = "ADDR", env = "SOCKECHO_METRICS", value_parser = parse_listen_addr)]
    pub metrics: Option<String>,
    /// Most connections to the metrics endpoint at once; more are closed at once and counted.
    /// Their descriptors are kept back from the default --max-conns.
    #[arg(long, value_name = "N", env = "SOCKECHO_METRICS_MAX_CONNS", default_value_t = 64,
          requires = "metrics", value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub metrics_max_conns: u32,
    /// How long a metrics client may take to send a whole request head; then it is closed.
    #[arg(long, value_name = "DURATION", env = "SOCKECHO_METRICS_HEADER_TIMEOUT",
          value_parser = parse_nonzero_duration, default_value = "5s", requires = "metrics")]
    pub metrics_header_timeout: Duration,
    /// Close a kept-alive metrics connection idle this long between requests.
    #[arg(long, value_name = "DURATION", env = "SOCKECHO_METRICS_IDLE_TIMEOUT",
          value_parser = parse_nonzero_duration, default_value = "30s", requires = "metrics")]
    pub metrics_idle_timeout: Duration,
    /// A name for this instance (e.g. the pod name), shown in the `listening on` lines, in the
    /// sockecho_info metric and on /info; never in echoed data. `auto` takes the host name.
    #[arg(long, value_name = "NAME", env = "SOCKECHO_IDENTITY", value_parser = parse_identity)]
    pub identity: Option<String>,
    /// Log format: text for people, json for machines (one object per event).
    #[arg(long, value_enum, env = "SOCKECHO_LOG_FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Worker threads. Default: one per CPU core.
    #[arg(short = 't', long, value_name = "N", env = "SOCKECHO_THREADS",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
    /// Stream I/O engine for plain TCP and Unix connections: io_uring (one system call per loop
    /// turn for all connections, shared receive buffers), epoll (an epoll loop of its own; what
    /// auto falls back to where a seccomp profile forbids io_uring), or auto (io_uring if the
    /// kernel allows it). TLS, WebSocket and datagrams are served on tokio (epoll).
    #[arg(long, value_enum, value_name = "LOOP", env = "SOCKECHO_IO", default_value_t = IoChoice::Auto)]
    pub io: IoChoice,
    /// Misbehave on purpose: inject a fault, KIND[=VALUE][@CHANCE]; repeatable, one of each
    /// kind (in the variable: separated by commas). Applies to every listener.
    ///
    /// Streams: delay=10ms±5ms (before each echo; `+-` works too), bandwidth=1MiB/s (per
    /// connection), slice=16B[:1ms] (echo in pieces, optionally apart), reset-after=64KiB|2s
    /// (RST), close-after=64KiB|2s (FIN), blackhole (accept, never answer), refuse[=5s] (reset
    /// new connections at once; with a duration, only that long after start). Datagrams: drop,
    /// duplicate, delay=10ms±5ms (jitter reorders), reorder[=10ms] (hold a reply back),
    /// truncate=32B, corrupt (flip one byte).
    ///
    /// CHANCE is P% (at random, from --fault-seed) or 1/N (exactly every Nth); default: every
    /// time. Per read for delay on streams, per connection for the other stream kinds, per
    /// datagram for datagram kinds. Kinds without a value take the chance as one: drop=1%.
    /// With stream faults every stream connection is served on tokio (epoll), not an engine.
    #[arg(long, value_name = "SPEC", env = "SOCKECHO_FAULT", value_delimiter = ',',
          value_parser = parse_fault)]
    pub fault: Vec<sockecho::server::fault::Fault>,
    /// Seed of every random choice --fault makes, so a run can be repeated. Default: a random
    /// seed, logged at start.
    #[arg(
        long,
        value_name = "N",
        env = "SOCKECHO_FAULT_SEED",
        requires = "fault"
    )]
    pub fault_seed: Option<u64>,
    #[command(flatten)]
    pub verbosity: Verbosity,
}
