//! What a benchmark run does: [`BenchConfig`], checked before anything connects, and the parsers
//! for the message sizes and source-address lists the command line accepts.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::error::BenchError;
use super::shard::Shard;
use crate::connect::{ConnectOptions, MAX_UDP_SIZE};
use crate::io::IoMode;
use crate::{Endpoint, Transport};

/// The highest open-loop rate (`--rate`), in messages per second over all connections. The
/// schedule counts in nanoseconds, so a faster one would give several messages the same send
/// time, and no single machine sends a billion echo messages a second anyway.
pub const MAX_RATE: f64 = 1e9;

/// Largest message for any transport. Every connection shares one read-only copy of the
/// expected content, so this bounds the memory a run needs whatever the connection count.
pub const MAX_SIZE: usize = 256 << 20;

/// How sends are paced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Each connection sends its next message as soon as a reply frees a pipeline slot.
    Closed,
    /// Messages go out on a fixed schedule whatever the server does, and latency counts from
    /// the scheduled time, so a stalled server cannot hide its stall.
    Open,
}

impl Mode {
    /// `closed` or `open`, as in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Closed => "closed",
            Mode::Open => "open",
        }
    }
}

/// Everything a run needs; the CLI fills it from its flags, tests build it directly.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The echo server to load.
    pub endpoint: Endpoint,
    /// Stream connections, or datagram sockets, open at once (over all shards of a split run).
    pub connections: usize,
    /// Bytes per message.
    pub size: usize,
    /// Length of the measured period.
    pub duration: Duration,
    /// Load run before the measured period and left out of its figures, so connection setup,
    /// cold caches and slow start do not count.
    pub warmup: Duration,
    /// Messages in flight per connection. In open loop it caps them: a message due while the
    /// cap is reached waits, and its latency includes the wait.
    pub pipeline: usize,
    /// Messages per second over all connections (of all shards); `None` runs a closed loop.
    pub rate: Option<f64>,
    /// This process's part of a run split among several; `None` runs the whole.
    pub shard: Option<Shard>,
    /// When the warm-up begins, by the wall clock, so processes on several machines load and
    /// measure the same period; `None` starts as soon as the connections are open.
    pub start_at: Option<SystemTime>,
    /// Load-generating threads, each with its own event loop and share of the connections.
    pub threads: usize,
    /// How long a datagram's reply may take before it counts as lost, and how long replies
    /// still in flight at the end are waited for.
    pub timeout: Duration,
    /// How long one connection attempt may take, the TLS handshake included.
    pub connect_timeout: Duration,
    /// For `tls://` endpoints: which server certificates to trust, and how long a handshake may
    /// take. The run builds one TLS configuration from it for all its connections.
    pub connect: ConnectOptions,
    /// Local addresses to connect from, used in turn; empty lets the kernel choose. Each
    /// address has its own ~28 000 ephemeral ports toward one server address.
    pub sources: Vec<IpAddr>,
    /// The event loop for plain TCP and Unix connections: io_uring or the load threads' own
    /// epoll loops (tokio tasks, like TLS connections and datagram sockets, off Linux).
    pub io: IoMode,
    /// UDP: send queued messages several per system call (GSO) and take replies the kernel
    /// hands over together (GRO), where the kernel supports it. A server sees the same
    /// datagrams, but a burst reaches it at once, as one packet on loopback, which a server
    /// with UDP GRO takes in one receive: this measures clients that batch, as QUIC stacks do.
    pub udp_offload: bool,
    /// Length of the report's intervals (its time series and the interval log).
    pub interval: Duration,
    /// Connection churn: each connection exchanges a few messages, closes and is replaced,
    /// which measures a server's accept path rather than its echo loop. `None`: connections
    /// stay open for the whole run.
    pub churn: Option<Churn>,
}

/// How connections come and go in a churn run (stream transports only). `connections` is the
/// number of slots: each holds at most one connection at a time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Churn {
    /// Messages each connection exchanges before it closes; `None` lets `lifetime` decide.
    pub messages_per_conn: Option<u64>,
    /// How long each connection goes on sending; it closes once the replies in flight are in.
    pub lifetime: Option<Duration>,
    /// How the client closes (it always closes first, so TIME_WAIT lands on the client).
    pub close: Close,
    /// Open loop: new connections per second over all slots (of all shards, in a split run:
    /// each shard makes every N-th start), each latency counted from its
    /// scheduled start, so a slow accept cannot hide. `None`: a closed loop, where a slot
    /// opens its next connection as soon as the last one closed.
    pub conn_rate: Option<f64>,
    /// TLS: each slot resumes the session of its own last connection (an abbreviated
    /// handshake) rather than making a full handshake every time.
    pub tls_resume: bool,
}

impl Default for Churn {
    fn default() -> Self {
        Churn {
            messages_per_conn: Some(1),
            lifetime: None,
            close: Close::Fin,
            conn_rate: None,
            tls_resume: false,
        }
    }
}

/// How a churn connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Close {
    /// An orderly close (FIN); the client's side of it waits in TIME_WAIT for a minute, holding
    /// its source port.
    #[default]
    Fin,
    /// An abortive close (`SO_LINGER` 0: RST): no TIME_WAIT, so source ports are never used
    /// up, but the server sees a reset rather than an end of stream.
    Rst,
}

impl BenchConfig {
    /// A one-connection, 64-byte, 10-second closed-loop run against `endpoint`.
    pub fn new(endpoint: Endpoint) -> BenchConfig {
        BenchConfig {
            endpoint,
            connections: 1,
            size: 64,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            pipeline: 1,
            rate: None,
            shard: None,
            start_at: None,
            threads: 1,
            timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(5),
            connect: ConnectOptions::default(),
            sources: Vec::new(),
            io: IoMode::Auto,
            udp_offload: false,
            interval: Duration::from_secs(1),
            churn: None,
        }
    }

    /// Closed or open loop, from whether a message rate (or in churn, a connection rate) is set.
    pub fn mode(&self) -> Mode {
        if self.rate.is_some() || self.churn.is_some_and(|c| c.conn_rate.is_some()) {
            Mode::Open
        } else {
            Mode::Closed
        }
    }

    /// The part of the run this process makes.
    pub fn shard(&self) -> Shard {
        self.shard.unwrap_or(Shard::WHOLE)
    }

    /// The connections this process opens: its shard's share.
    pub fn own_connections(&self) -> usize {
        self.shard().connections(self.connections)
    }

    /// This process's share of the rate.
    pub fn own_rate(&self) -> Option<f64> {
        self.rate
            .map(|rate| self.shard().rate(rate, self.connections))
    }

    /// Checks the settings make sense together, before anything connects.
    pub fn validate(&self) -> Result<(), BenchError> {
        let invalid = |text: String| Err(BenchError::Invalid(text));
        let transport = self.endpoint.transport();
        if self.connections == 0 {
            return invalid("at least one connection is needed".into());
        }
        if self.interval < Duration::from_millis(1) {
            return invalid("the interval must be at least 1ms".into());
        }
        if self.size == 0 {
            return invalid("the message size must be at least 1 byte".into());
        }
        if self.size > MAX_SIZE {
            return invalid(format!(
                "a {} message is larger than the {} limit",
                format_size(self.size),
                format_size(MAX_SIZE)
            ));
        }
        if transport == Transport::Udp && self.size > MAX_UDP_SIZE {
            return invalid(format!(
                "a UDP datagram carries at most {MAX_UDP_SIZE} bytes; {} were asked for",
                self.size
            ));
        }
        if self.pipeline == 0 {
            return invalid("the pipeline depth must be at least 1".into());
        }
        if self.duration.is_zero() {
            return invalid("the duration must be longer than zero".into());
        }
        if self.threads == 0 {
            return invalid("at least one thread is needed".into());
        }
        if self.timeout.is_zero() || self.connect_timeout.is_zero() {
            return invalid("timeouts must be longer than zero".into());
        }
        if let Some(rate) = self.rate
            && !(rate.is_finite() && rate > 0.0)
        {
            return invalid(format!("the rate must be a positive number, not {rate}"));
        }
        if let Some(rate) = self.rate
            && rate > MAX_RATE
        {
            return invalid(format!(
                "a rate of {rate} messages per second cannot be scheduled: the most is {MAX_RATE:e} \
                 (one message per nanosecond, the resolution of the send schedule)"
            ));
        }
        if self.connect.send_proxy.is_some()
            && !matches!(
                self.endpoint,
                Endpoint::Tcp(_) | Endpoint::Tls(_) | Endpoint::Ws(_) | Endpoint::Wss(_)
            )
        {
            return invalid(
                "a PROXY header (--send-proxy) goes on ws, wss, tcp and tls endpoints only".into(),
            );
        }
        if !self.sources.is_empty() {
            let Some(hp) = self.endpoint.host_port() else {
                return invalid(
                    "source addresses apply to tcp, tls, ws, wss and udp endpoints only".into(),
                );
            };
            if let crate::Host::Ip(server) = hp.host
                && let Some(bad) = self
                    .sources
                    .iter()
                    .find(|s| s.is_ipv4() != server.is_ipv4())
            {
                return invalid(format!(
                    "source address {bad} is not of the same family as the server {server}"
                ));
            }
        }
        let shard = self.shard();
        if self.connections < shard.count as usize {
            return invalid(format!(
                "{} connections cannot be split into {} shards: each needs at least one",
                self.connections, shard.count
            ));
        }
        if let Some(at) = self.start_at
            && let Err(past) = at.duration_since(SystemTime::now())
        {
            return invalid(format!(
                "the start time ({:.3} s since the epoch) was {:.3} s ago; give one in the future",
                at.duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs_f64(),
                past.duration().as_secs_f64()
            ));
        }
        if let Some(problem) = self.io.unsupported_here() {
            return invalid(problem.into());
        }
        if self.udp_offload && !cfg!(target_os = "linux") {
            return invalid("--udp-offload needs Linux (UDP GSO and GRO)".into());
        }
        if let Some(churn) = &self.churn {
            self.validate_churn(churn)?;
        }
        // Each connection is one descriptor; open-loop send timers are one per load thread.
        let needed = self.own_connections() as u64;
        let available = crate::sys::rlimit::default_max_conns() as u64;
        if needed > available {
            return invalid(format!(
                "{} connections need {needed} file descriptors, but only {available} are \
                 available under the open-file limit (raise it with ulimit -n)",
                self.own_connections()
            ));
        }
        Ok(())
    }
}

impl BenchConfig {
    fn validate_churn(&self, churn: &Churn) -> Result<(), BenchError> {
        let invalid = |text: &str| Err(BenchError::Invalid(text.into()));
        if self.endpoint.transport().is_datagram() {
            return invalid("connection churn needs a stream endpoint (tcp, tls or unix)");
        }
        if self.endpoint.transport().is_websocket() {
            return invalid(
                "connection churn runs on tcp, tls and unix endpoints; on ws and wss, bench \
                 long-lived connections (without --churn)",
            );
        }
        if self.rate.is_some() {
            return invalid(
                "--rate paces messages on long-lived connections; with churn, pace new \
                 connections with --conn-rate",
            );
        }
        match (churn.messages_per_conn, churn.lifetime) {
            (None, None) => {
                return invalid("a churn connection needs a message count or a lifetime");
            }
            (Some(0), _) => return invalid("a churn connection exchanges at least one message"),
            (_, Some(d)) if d.is_zero() => {
                return invalid("a churn connection's lifetime must be longer than zero");
            }
            _ => {}
        }
        if let Some(rate) = churn.conn_rate
            && !(rate.is_finite() && rate > 0.0)
        {
            return Err(BenchError::Invalid(format!(
                "the connection rate must be a positive number, not {rate}"
            )));
        }
        if churn.tls_resume && self.endpoint.transport() != Transport::Tls {
            return invalid("session resumption applies to tls endpoints only");
        }
        if self.connect.send_proxy.is_some() && self.endpoint.transport() == Transport::Tcp {
            return invalid(
                "churn runs on tcp send no PROXY header (--send-proxy); it works with churn on \
                 tls endpoints, and without --churn",
            );
        }
        Ok(())
    }
}

/// Parses a byte count: `64`, `1500B`, `4KiB`, `1MiB`, `2GiB` (powers of 1024) or `4kB`, `1MB`
/// (powers of 1000). Units are case-insensitive; `k`, `m`, `g` alone are the binary ones.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit = unit.trim();
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => {
            return Err(format!(
                "{text:?} has an unknown unit {unit:?}; write e.g. 64, 4KiB or 1MiB"
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size; write e.g. 64, 4KiB or 1MiB"))?;
    let bytes = value * multiplier as f64;
    if bytes.fract() != 0.0 {
        return Err(format!("{text:?} is not a whole number of bytes"));
    }
    if bytes > usize::MAX as f64 {
        return Err(format!("{text:?} is too large"));
    }
    Ok(bytes as usize)
}

/// Writes a byte count the way [`parse_size`] reads it: `64 B`, `4 KiB`, `1.5 MiB`.
pub fn format_size(bytes: usize) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 {
        format!("{value} {}", UNITS[unit])
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

/// Most addresses one `--source` range may stand for.
const MAX_SOURCES: u128 = 65_536;

/// Parses `--source`: addresses separated by commas, each one alone or a range of the same
/// family written `FIRST-LAST`, e.g. `127.0.0.2-127.0.0.9,127.0.1.1`.
pub fn parse_sources(text: &str) -> Result<Vec<IpAddr>, String> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(format!("{text:?} has an empty entry"));
        }
        let parse = |s: &str| {
            s.trim()
                .parse::<IpAddr>()
                .map_err(|_| format!("{s:?} is not an IP address"))
        };
        match part.split_once('-') {
            None => out.push(parse(part)?),
            Some((first, last)) => {
                let (first, last) = (parse(first)?, parse(last)?);
                let (lo, hi) = match (first, last) {
                    (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a) as u128, u32::from(b) as u128),
                    (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b)),
                    _ => return Err(format!("{part:?} mixes IPv4 and IPv6")),
                };
                if hi < lo {
                    return Err(format!("{part:?} ends before it starts"));
                }
                if hi - lo >= MAX_SOURCES {
                    return Err(format!("{part:?} holds more than {MAX_SOURCES} addresses"));
                }
                for n in lo..=hi {
                    out.push(match first {
                        // The range was checked to be IPv4, so `n` fits in 32 bits.
                        IpAddr::V4(_) => IpAddr::V4((n as u32).into()),
                        IpAddr::V6(_) => IpAddr::V6(n.into()),
                    });
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64"), Ok(64));
        assert_eq!(parse_size("1"), Ok(1));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("4kib"), Ok(4096));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("1 MiB"), Ok(1 << 20));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("4kB"), Ok(4000));
        assert_eq!(parse_size("1.5KiB"), Ok(1536));
        assert_eq!(parse_size("100B"), Ok(100));
        assert!(parse_size("1.3").unwrap_err().contains("whole number"));
        assert!(parse_size("4XB").unwrap_err().contains("unknown unit"));
        assert!(parse_size("KiB").unwrap_err().contains("not a size"));
        assert_eq!(format_size(64), "64 B");
        assert_eq!(format_size(4096), "4 KiB");
        assert_eq!(format_size(1536), "1.50 KiB");
    }

    #[test]
    fn sources() {
        let ips = parse_sources("127.0.0.2-127.0.0.4,127.0.1.1").unwrap();
        let text: Vec<String> = ips.iter().map(ToString::to_string).collect();
        assert_eq!(text, ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.1.1"]);
        assert_eq!(parse_sources("::1").unwrap().len(), 1);
        assert_eq!(parse_sources("::1-::3").unwrap().len(), 3);
        assert!(parse_sources("127.0.0.9-127.0.0.1").is_err());
        assert!(
            parse_sources("127.0.0.1-::1")
                .unwrap_err()
                .contains("mixes")
        );
        assert!(parse_sources("10.0.0.0-10.255.255.255").is_err());
        assert!(parse_sources("a.b").is_err());
        assert!(parse_sources("127.0.0.1,").is_err());
    }

    fn config(endpoint: &str) -> BenchConfig {
        BenchConfig::new(endpoint.parse().unwrap())
    }

    #[test]
    fn validation() {
        assert!(config("tcp://127.0.0.1:1").validate().is_ok());
        let mut c = config("udp://127.0.0.1:1");
        c.size = MAX_UDP_SIZE + 1;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("UDP datagram")
        );
        let mut c = config("tcp://127.0.0.1:1");
        c.connections = 0;
        assert!(c.validate().is_err());
        let mut c = config("tcp://127.0.0.1:1");
        c.rate = Some(f64::NAN);
        assert!(c.validate().is_err());
        let mut c = config("tcp://127.0.0.1:1");
        c.sources = vec!["::1".parse().unwrap()];
        assert!(c.validate().unwrap_err().to_string().contains("family"));
        let mut c = config("unix:/tmp/x");
        c.sources = vec!["127.0.0.1".parse().unwrap()];
        assert!(c.validate().is_err());
        let mut c = config("tcp://127.0.0.1:1");
        c.connections = 100_000_000;
        assert!(c.validate().unwrap_err().to_string().contains("ulimit"));
    }

    #[test]
    fn a_shard_opens_its_share_and_offers_its_share_of_the_rate() {
        let mut c = config("tcp://127.0.0.1:1");
        c.connections = 10;
        c.rate = Some(1000.0);
        c.shard = Some(Shard { index: 1, count: 3 });
        assert!(c.validate().is_ok());
        assert_eq!(c.own_connections(), 3);
        assert_eq!(c.own_rate(), Some(300.0));
        c.shard = None;
        assert_eq!(c.own_connections(), 10);
        assert_eq!(c.own_rate(), Some(1000.0));
        c.connections = 2;
        c.shard = Some(Shard { index: 0, count: 3 });
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("2 connections cannot be split into 3 shards"),
            "{err}"
        );
    }

    #[test]
    fn a_start_time_in_the_past_is_refused() {
        let mut c = config("tcp://127.0.0.1:1");
        c.start_at = Some(SystemTime::now() - Duration::from_secs(5));
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("s ago; give one in the future"), "{err}");
        c.start_at = Some(SystemTime::now() + Duration::from_secs(5));
        assert!(c.validate().is_ok());
    }

    #[test]
    fn open_loop_connections_need_no_timer_descriptor_each() {
        let available = crate::sys::rlimit::default_max_conns();
        for endpoint in [
            "tcp://127.0.0.1:1",
            "tls://127.0.0.1:1",
            "udp://127.0.0.1:1",
        ] {
            let mut c = config(endpoint);
            c.rate = Some(1000.0);
            c.connections = available * 2 / 3;
            assert!(c.validate().is_ok(), "{endpoint}");
            c.connections = available + 1;
            assert!(c.validate().unwrap_err().to_string().contains("ulimit"));
        }
    }

    #[test]
    fn churn_settings() {
        let churn = |f: fn(&mut Churn)| {
            let mut c = config("tcp://127.0.0.1:1");
            let mut churn = Churn::default();
            f(&mut churn);
            c.churn = Some(churn);
            c.validate().map_err(|e| e.to_string())
        };
        assert!(churn(|_| {}).is_ok());
        assert!(churn(|c| c.messages_per_conn = Some(0)).is_err());
        assert!(churn(|c| c.messages_per_conn = None).is_err());
        assert!(
            churn(|c| {
                c.messages_per_conn = None;
                c.lifetime = Some(Duration::from_millis(5));
            })
            .is_ok()
        );
        assert!(churn(|c| c.conn_rate = Some(-1.0)).is_err());
        assert!(churn(|c| c.tls_resume = true).unwrap_err().contains("tls"));
        let mut c = config("unixgram:/tmp/x");
        c.churn = Some(Churn::default());
        assert!(c.validate().unwrap_err().to_string().contains("stream"));
        let mut c = config("tcp://127.0.0.1:1");
        c.churn = Some(Churn::default());
        c.rate = Some(5.0);
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("--conn-rate")
        );
    }
}
