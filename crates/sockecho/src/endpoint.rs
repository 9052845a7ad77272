//! `Endpoint`: the one address syntax used by every command, in arguments and in output.
//!
//! Accepted forms:
//! - `tcp://HOST:PORT`, `udp://HOST:PORT` (IPv6 hosts in brackets: `tcp://[::1]:7`)
//! - `tls://HOST:PORT` (TCP with TLS)
//! - `ws://HOST:PORT[/PATH]` and `wss://HOST:PORT[/PATH]` (WebSocket, `wss` over TLS; the path
//!   defaults to `/`)
//! - `unix:PATH` (stream) and `unixgram:PATH` (datagram)
//! - `HOST:PORT` (TCP) and a bare `PORT` (TCP on all interfaces)
//!
//! A host of `*` (or an empty host) means every interface, IPv4 and IPv6.
//! `Display` writes the canonical form, so parsing what was printed gives the same endpoint.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The accepted forms, shown in every parse error so a user can fix the typo at once.
pub const ACCEPTED_FORMS: &str = "tcp://HOST:PORT, udp://HOST:PORT, tls://HOST:PORT, \
ws://HOST:PORT[/PATH], wss://HOST:PORT[/PATH], unix:PATH, unixgram:PATH, \
HOST:PORT (tcp) or PORT (tcp on all interfaces); IPv6 hosts go in brackets, e.g. tcp://[::1]:7";

/// Longest path the kernel accepts in `sockaddr_un.sun_path`, leaving room for the NUL.
pub const MAX_UNIX_PATH: usize = 107;

/// Where a socket listens or connects.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// TCP stream socket.
    Tcp(HostPort),
    /// UDP datagram socket.
    Udp(HostPort),
    /// TLS over TCP.
    Tls(HostPort),
    /// WebSocket over TCP. Boxed: the path would make every endpoint larger.
    Ws(Box<WsTarget>),
    /// WebSocket over TLS.
    Wss(Box<WsTarget>),
    /// Unix-domain stream socket at a filesystem path.
    Unix(PathBuf),
    /// Unix-domain datagram socket at a filesystem path.
    UnixGram(PathBuf),
}

/// The transport an endpoint uses; also a label in logs and statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Tcp,
    Udp,
    Tls,
    Ws,
    Wss,
    Unix,
    UnixGram,
}

impl Transport {
    /// The scheme name as written in endpoints (`tcp`, `udp`, `tls`, `ws`, `wss`, `unix`,
    /// `unixgram`).
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
            Transport::Tls => "tls",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
            Transport::Unix => "unix",
            Transport::UnixGram => "unixgram",
        }
    }

    /// Whether messages keep their boundaries (UDP, unixgram) rather than forming a byte stream.
    pub fn is_datagram(self) -> bool {
        matches!(self, Transport::Udp | Transport::UnixGram)
    }

    /// Whether connections start with a TLS handshake (`tls`, `wss`).
    pub fn is_tls(self) -> bool {
        matches!(self, Transport::Tls | Transport::Wss)
    }

    /// Whether connections carry WebSocket messages (`ws`, `wss`).
    pub fn is_websocket(self) -> bool {
        matches!(self, Transport::Ws | Transport::Wss)
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An Internet host and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub host: Host,
    /// Port 0 asks the kernel for a free port when binding.
    pub port: u16,
}

/// Where a WebSocket endpoint is: the host and port, and the HTTP path of the upgrade.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WsTarget {
    pub addr: HostPort,
    /// Starts with `/`; `/` when the endpoint names none.
    pub path: String,
}

/// The host part of an Internet endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// Every interface, IPv4 and IPv6 (written `*`).
    Any,
    /// A literal address.
    Ip(IpAddr),
    /// A name to resolve, such as `localhost`.
    Name(String),
}

/// Why a piece of text is not an endpoint. The message quotes the text and lists the accepted
/// forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid endpoint {input:?}: {reason}\n  accepted forms: {ACCEPTED_FORMS}")]
pub struct ParseEndpointError {
    /// The text that was given.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

/// The name in Linux's abstract namespace that a Unix endpoint's path stands for, when it is
/// written `@NAME` (`unix:@NAME`, `unixgram:@NAME`): no file, and gone when the socket closes.
/// A file whose name starts with `@` is reached as `./@NAME`.
pub fn abstract_unix_name(path: &Path) -> Option<&[u8]> {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str().as_bytes().strip_prefix(b"@")
}

impl Endpoint {
    /// The transport this endpoint uses.
    pub fn transport(&self) -> Transport {
        match self {
            Endpoint::Tcp(_) => Transport::Tcp,
            Endpoint::Udp(_) => Transport::Udp,
            Endpoint::Tls(_) => Transport::Tls,
            Endpoint::Ws(_) => Transport::Ws,
            Endpoint::Wss(_) => Transport::Wss,
            Endpoint::Unix(_) => Transport::Unix,
            Endpoint::UnixGram(_) => Transport::UnixGram,
        }
    }

    /// The endpoint of an Internet socket bound or connected to `addr`.
    pub fn inet(transport: Transport, addr: SocketAddr) -> Endpoint {
        let hp = HostPort {
            host: Host::Ip(addr.ip()),
            port: addr.port(),
        };
        match transport {
            Transport::Udp => Endpoint::Udp(hp),
            Transport::Tls => Endpoint::Tls(hp),
            Transport::Ws | Transport::Wss => {
                let target = Box::new(WsTarget {
                    addr: hp,
                    path: "/".into(),
                });
                if transport == Transport::Ws {
                    Endpoint::Ws(target)
                } else {
                    Endpoint::Wss(target)
                }
            }
            _ => Endpoint::Tcp(hp),
        }
    }

    /// This endpoint moved to `addr` (a resolved or bound address), keeping its transport and,
    /// for WebSocket, its path.
    pub fn at(&self, addr: SocketAddr) -> Endpoint {
        let moved = Endpoint::inet(self.transport(), addr);
        match (self, moved) {
            (Endpoint::Ws(old), Endpoint::Ws(mut new)) => {
                new.path.clone_from(&old.path);
                Endpoint::Ws(new)
            }
            (Endpoint::Wss(old), Endpoint::Wss(mut new)) => {
                new.path.clone_from(&old.path);
                Endpoint::Wss(new)
            }
            (_, moved) => moved,
        }
    }

    /// The host and port of an Internet endpoint; `None` for Unix-domain ones.
    pub fn host_port(&self) -> Option<&HostPort> {
        match self {
            Endpoint::Tcp(hp) | Endpoint::Udp(hp) | Endpoint::Tls(hp) => Some(hp),
            Endpoint::Ws(target) | Endpoint::Wss(target) => Some(&target.addr),
            Endpoint::Unix(_) | Endpoint::UnixGram(_) => None,
        }
    }
}

impl HostPort {
    /// The socket addresses this host and port stand for, resolving names. `Any` yields the
    /// IPv6 wildcard first (dual-stack where available), then the IPv4 one.
    pub async fn resolve(&self) -> std::io::Result<Vec<SocketAddr>> {
        match &self.host {
            Host::Any => Ok(vec![
                SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), self.port),
                SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), self.port),
            ]),
            Host::Ip(ip) => Ok(vec![SocketAddr::new(*ip, self.port)]),
            Host::Name(name) => {
                let mut addrs: Vec<SocketAddr> =
                    tokio::net::lookup_host((name.as_str(), self.port))
                        .await?
                        .collect();
                let mut seen = std::collections::HashSet::new();
                addrs.retain(|a| seen.insert(*a));
                if addrs.is_empty() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("host {name:?} has no addresses"),
                    ));
                }
                Ok(addrs)
            }
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Any => f.write_str("*"),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}"),
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Name(name) => f.write_str(name),
        }
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(hp) => write!(f, "tcp://{hp}"),
            Endpoint::Udp(hp) => write!(f, "udp://{hp}"),
            Endpoint::Tls(hp) => write!(f, "tls://{hp}"),
            Endpoint::Ws(t) => write!(f, "ws://{}{}", t.addr, t.path),
            Endpoint::Wss(t) => write!(f, "wss://{}{}", t.addr, t.path),
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
            Endpoint::UnixGram(path) => write!(f, "unixgram:{}", path.display()),
        }
    }
}

impl FromStr for Endpoint {
    type Err = ParseEndpointError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |reason: String| ParseEndpointError {
            input: input.to_owned(),
            reason,
        };
        if input.is_empty() {
            return Err(fail("it is empty".into()));
        }
        if let Some(path) = input.strip_prefix("unixgram:") {
            return parse_path(path).map(Endpoint::UnixGram).map_err(fail);
        }
        if let Some(path) = input.strip_prefix("unix:") {
            return parse_path(path).map(Endpoint::Unix).map_err(fail);
        }
        if let Some(rest) = input.strip_prefix("tcp://") {
            return parse_host_port(rest).map(Endpoint::Tcp).map_err(fail);
        }
        if let Some(rest) = input.strip_prefix("udp://") {
            return parse_host_port(rest).map(Endpoint::Udp).map_err(fail);
        }
        if let Some(rest) = input.strip_prefix("tls://") {
            return parse_host_port(rest).map(Endpoint::Tls).map_err(fail);
        }
        if let Some(rest) = input.strip_prefix("ws://") {
            return parse_ws(rest)
                .map(|t| Endpoint::Ws(Box::new(t)))
                .map_err(fail);
        }
        if let Some(rest) = input.strip_prefix("wss://") {
            return parse_ws(rest)
                .map(|t| Endpoint::Wss(Box::new(t)))
                .map_err(fail);
        }
        if let Some((scheme, _)) = input.split_once("://") {
            return Err(fail(format!("unknown scheme {scheme:?}")));
        }
        if input.bytes().all(|b| b.is_ascii_digit()) {
            let port = parse_port(input).map_err(fail)?;
            return Ok(Endpoint::Tcp(HostPort {
                host: Host::Any,
                port,
            }));
        }
        parse_host_port(input).map(Endpoint::Tcp).map_err(fail)
    }
}

fn parse_path(path: &str) -> Result<PathBuf, String> {
    if path.is_empty() {
        return Err("the socket path is empty".into());
    }
    if path.len() > MAX_UNIX_PATH {
        return Err(
            "the socket path is longer than the 107 bytes a Unix socket address holds".into(),
        );
    }
    if path.contains('\0') {
        return Err("the socket path contains a NUL byte".into());
    }
    Ok(PathBuf::from(path))
}

/// `HOST:PORT` then an optional path. The path is sent in the upgrade request as written, so
/// it must be printable ASCII without spaces; a query string is kept as part of it.
fn parse_ws(text: &str) -> Result<WsTarget, String> {
    let (addr, path) = match text.find('/') {
        Some(at) => text.split_at(at),
        None => (text, "/"),
    };
    if let Some(bad) = path.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "the path {path:?} contains {bad:?}; write it percent-encoded"
        ));
    }
    if path.contains('#') {
        return Err(format!(
            "the path {path:?} has a fragment ('#'), which is never sent"
        ));
    }
    Ok(WsTarget {
        addr: parse_host_port(addr)?,
        path: path.to_owned(),
    })
}

fn parse_host_port(text: &str) -> Result<HostPort, String> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest
            .split_once(']')
            .ok_or("an IPv6 host opened with '[' is never closed with ']'")?;
        let port = after
            .strip_prefix(':')
            .ok_or("the port is missing after the bracketed host")?;
        let ip: std::net::Ipv6Addr = inside
            .parse()
            .map_err(|_| format!("{inside:?} in brackets is not an IPv6 address"))?;
        (Host::Ip(IpAddr::V6(ip)), port)
    } else {
        let (host, port) = text
            .rsplit_once(':')
            .ok_or("the port is missing (write HOST:PORT)")?;
        if host.contains(':') {
            return Err(format!(
                "{host:?} looks like an IPv6 address; put it in brackets, e.g. [{host}]:{port}"
            ));
        }
        (parse_host(host)?, port)
    };
    Ok(HostPort {
        host,
        port: parse_port(port)?,
    })
}

fn parse_host(host: &str) -> Result<Host, String> {
    if host.is_empty() || host == "*" {
        return Ok(Host::Any);
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(Host::Ip(ip));
    }
    let valid = host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !valid {
        return Err(format!("{host:?} is not a valid host name or IP address"));
    }
    Ok(Host::Name(host.to_owned()))
}

fn parse_port(port: &str) -> Result<u16, String> {
    if port.is_empty() {
        return Err("the port is empty".to_owned());
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port {port:?} is not a number"));
    }
    port.parse()
        .map_err(|_| format!("port {port} is out of range (0 to 65535)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Endpoint {
        text.parse()
            .unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
    }

    fn err(text: &str) -> String {
        match text.parse::<Endpoint>() {
            Ok(e) => panic!("{text:?} should not parse, got {e:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn parses_every_form() {
        assert_eq!(
            ok("tcp://127.0.0.1:7"),
            Endpoint::Tcp(HostPort {
                host: Host::Ip("127.0.0.1".parse().unwrap()),
                port: 7
            })
        );
        assert_eq!(
            ok("udp://[::1]:9"),
            Endpoint::Udp(HostPort {
                host: Host::Ip("::1".parse().unwrap()),
                port: 9
            })
        );
        assert_eq!(ok("unix:/tmp/a.sock"), Endpoint::Unix("/tmp/a.sock".into()));
        assert_eq!(
            ok("unixgram:rel.sock"),
            Endpoint::UnixGram("rel.sock".into())
        );
        assert_eq!(
            ok("localhost:54000"),
            Endpoint::Tcp(HostPort {
                host: Host::Name("localhost".into()),
                port: 54000
            })
        );
        assert_eq!(
            ok("54000"),
            Endpoint::Tcp(HostPort {
                host: Host::Any,
                port: 54000
            })
        );
        assert_eq!(ok("tcp://*:0"), ok("0"));
        assert_eq!(ok("tcp://:80"), ok("80"));
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "tcp://127.0.0.1:7",
            "tcp://[::1]:7",
            "udp://[fe80::1]:65535",
            "tls://localhost:443",
            "tls://[::1]:0",
            "tcp://localhost:0",
            "tcp://*:54000",
            "unix:/tmp/x.sock",
            "unixgram:./y",
            "ws://127.0.0.1:80/",
            "ws://localhost:8080/echo?x=1",
            "wss://[::1]:443/a/b",
        ] {
            assert_eq!(ok(text).to_string(), text);
            assert_eq!(ok(&ok(text).to_string()), ok(text));
        }
    }

    #[test]
    fn errors_name_the_text_and_the_forms() {
        let msg = err("tcp://localhost");
        assert!(msg.contains("\"tcp://localhost\""), "{msg}");
        assert!(msg.contains("port is missing"), "{msg}");
        assert!(msg.contains("unix:PATH"), "{msg}");
        assert!(err("tcp://h:70000").contains("out of range"));
        assert!(err("tcp://h:x").contains("not a number"));
        assert!(err("tcp://::1:7").contains("brackets"));
        assert!(err("tcp://[::1:7").contains("never closed"));
        assert!(err("tcp://[1.2.3.4]:7").contains("not an IPv6 address"));
        assert!(err("sctp://h:1").contains("unknown scheme \"sctp\""));
        assert!(err("unix:").contains("path is empty"));
        assert!(err(&format!("unix:{}", "a".repeat(108))).contains("107 bytes"));
        assert!(err("").contains("empty"));
        assert!(err("bad host:1").contains("not a valid host name"));
        assert!(err("99999").contains("out of range"));
    }

    #[test]
    fn websocket_endpoints() {
        assert_eq!(
            ok("ws://localhost:8080"),
            Endpoint::Ws(Box::new(WsTarget {
                addr: HostPort {
                    host: Host::Name("localhost".into()),
                    port: 8080
                },
                path: "/".into()
            }))
        );
        assert_eq!(ok("ws://h:1").to_string(), "ws://h:1/");
        let Endpoint::Wss(target) = ok("wss://[::1]:9/echo") else {
            panic!("wss:// parses as Wss");
        };
        assert_eq!(target.path, "/echo");
        assert_eq!(ok("wss://h:1/x").transport(), Transport::Wss);
        assert!(ok("wss://h:1/x").transport().is_tls());
        assert!(ok("ws://h:1/x").transport().is_websocket());
        assert!(err("ws://h:1/a b").contains("percent-encoded"));
        assert!(err("ws://h:1/a#b").contains("fragment"));
        assert!(err("ws://h/x").contains("port is missing"));
        let moved = ok("ws://localhost:0/echo").at("127.0.0.1:9".parse().unwrap());
        assert_eq!(moved.to_string(), "ws://127.0.0.1:9/echo");
    }

    #[test]
    fn transports() {
        assert!(ok("udp://h:1").transport().is_datagram());
        assert!(ok("unixgram:p").transport().is_datagram());
        assert!(!ok("unix:p").transport().is_datagram());
        assert_eq!(ok("h:1").transport().as_str(), "tcp");
    }
}
