//! What the server is told to do: [`ServerConfig`], filled by the CLI from its flags, and the
//! choices it holds: the stream I/O path ([`IoMode`]) and how PROXY protocol headers are
//! taken ([`ProxyProtocol`]).

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::access::AccessPolicy;
use super::fault::FaultPlan;
use crate::io::IoMode;
use crate::tls::ServerTls;

/// The default of [`ServerConfig::ws_max_message`]: 16 MiB, as common WebSocket servers allow.
pub const DEFAULT_WS_MAX_MESSAGE: usize = 16 << 20;

/// How the server behaves; the CLI fills it from its flags.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Stream connections served at once, over all listeners. Further clients wait in the
    /// listen backlog until a slot frees.
    pub max_conns: usize,
    /// Close stream connections idle this long.
    pub idle_timeout: Option<Duration>,
    /// After shutdown starts, how long open connections get before they are cut.
    pub grace: Duration,
    /// Log every received payload, trimmed and with control characters escaped (see
    /// [`peer_text`](super::peer_text)).
    pub log_data: bool,
    /// Who may connect or send datagrams (`--allow`, `--deny`).
    pub access: AccessPolicy,
    /// Most stream connections from one peer address at once (TCP).
    pub max_conns_per_ip: Option<usize>,
    /// Most datagrams per second from one source (an IPv4 address or an IPv6 /64), in bursts
    /// of up to one second's worth; the excess is dropped.
    pub udp_rate: Option<f64>,
    /// Drop datagrams from well-known service ports and from broadcast or multicast sources,
    /// so two echo services cannot be made to bounce datagrams between them forever.
    pub reflection_guard: bool,
    /// Certificate and key for `tls://` endpoints. `None` with a TLS endpoint makes a
    /// self-signed certificate for this run and logs its SHA-256 fingerprint.
    pub tls: Option<ServerTls>,
    /// How long a client may take to complete the TLS handshake before it is dropped, so
    /// half-open TLS clients cannot hold connection slots.
    pub tls_handshake_timeout: Duration,
    /// Take a PROXY protocol header (v1 or v2) at the start of TCP and TLS connections from
    /// trusted proxies, and serve each connection as the client the header names. `None`: no
    /// header is looked for, and nothing is spent on it.
    pub proxy_protocol: Option<ProxyProtocol>,
    /// The largest WebSocket message (`ws://`, `wss://`) taken, in bytes, fragments added up.
    /// A larger one closes the connection with code 1009 (message too big).
    pub ws_max_message: usize,
    /// Worker threads, each with its own single-threaded runtime serving every listener
    /// (share-nothing: a connection stays on the worker that accepted it). 0 serves on the
    /// runtime that calls [`Server::run`](super::Server::run) instead.
    pub threads: usize,
    /// A name for this instance (e.g. a Kubernetes pod name), shown in the `listening on`
    /// lines so logs gathered from many instances say which one spoke. Never sent to peers.
    pub identity: Option<String>,
    /// Which engine each worker thread runs for plain TCP and Unix stream connections: io_uring
    /// or epoll, each a loop of its own beside the worker. TLS and WebSocket connections, and
    /// serving without worker threads (`threads == 0`), always use tokio; Unix datagram sockets
    /// are served on tokio and UDP sockets by a blocking loop each.
    pub io: IoMode,
    /// Faults to inject (`--fault`), on every listener. With stream faults, every stream
    /// connection is served on tokio, whatever `io` says.
    pub faults: Option<FaultPlan>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_conns: crate::sys::rlimit::default_max_conns(),
            idle_timeout: None,
            grace: Duration::from_secs(5),
            log_data: false,
            threads: 0,
            io: IoMode::Auto,
            access: AccessPolicy::default(),
            tls: None,
            tls_handshake_timeout: Duration::from_secs(10),
            proxy_protocol: None,
            ws_max_message: DEFAULT_WS_MAX_MESSAGE,
            max_conns_per_ip: None,
            udp_rate: None,
            reflection_guard: true,
            faults: None,
            identity: None,
        }
    }
}

/// How the server takes PROXY protocol headers (`--proxy-protocol`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyProtocol {
    /// Peers whose headers are believed (the load balancers). They must send one.
    pub trusted: Vec<IpNet>,
    /// How long a trusted peer may take to send a whole header; a client that is not a proxy
    /// gets this long to send its first bytes before it is served as it is.
    pub header_timeout: Duration,
}

impl Default for ProxyProtocol {
    /// Trusts loopback only, so turning the option on never lets a remote peer pick its address.
    fn default() -> Self {
        ProxyProtocol {
            trusted: vec![
                IpNet::V4(Ipv4Net::new_assert([127, 0, 0, 0].into(), 8)),
                IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::LOCALHOST, 128)),
            ],
            header_timeout: Duration::from_secs(5),
        }
    }
}

impl ProxyProtocol {
    /// Whether `ip` is one of the trusted proxies.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted.iter().any(|net| net.contains(&ip))
    }
}

/// Which engine serves a worker's plain stream connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) enum EngineKind {
    /// The io_uring engine.
    Uring,
    /// The epoll engine.
    Epoll,
}
