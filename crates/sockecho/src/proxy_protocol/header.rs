//! The header as the rest of the crate sees it: [`ProxyHeader`] (owned, with the fields the
//! server logs), its [`Version`], the length limits an untrusted sender must keep to, and
//! [`HeaderError`]. Every other file of the module stands on this one.

use std::fmt;
use std::net::SocketAddr;

/// Longest v1 header, CRLF included, as the specification bounds it.
pub const MAX_V1_LEN: usize = 107;
/// Longest v2 header accepted: the 16-byte preamble and up to 4 KiB of addresses and TLVs.
/// The format allows 64 KiB, but no load balancer sends more than a few hundred bytes, and a
/// peer must not make the server buffer more before it is known who that peer is.
pub const MAX_V2_LEN: usize = 16 + 4096;

/// The two versions of the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// The text header: `PROXY TCP4 src dst sport dport\r\n`.
    V1,
    /// The binary header, with optional TLV fields.
    V2,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Version {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "v1" | "1" => Ok(Version::V1),
            "v2" | "2" => Ok(Version::V2),
            _ => Err(format!(
                "{text:?} is not a PROXY protocol version; use v1 or v2"
            )),
        }
    }
}

/// A decoded header, owned, with the fields the server uses and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyHeader {
    pub version: Version,
    /// The client and the address it connected to, as the proxy saw them. `None` when the
    /// header carries no usable addresses: a v2 LOCAL command (the proxy's own health check),
    /// v1 `UNKNOWN`, or an address family other than IPv4/IPv6. The connection's own peer
    /// address stands then.
    pub addresses: Option<Addresses>,
    /// v2 TLV `PP2_TYPE_ALPN`: the protocol the client negotiated with the proxy.
    pub alpn: Option<Vec<u8>>,
    /// v2 TLV `PP2_TYPE_AUTHORITY`: the host name the client asked for (TLS SNI, typically).
    pub authority: Option<String>,
    /// v2 TLV `PP2_TYPE_UNIQUE_ID`: the proxy's identifier of the connection.
    pub unique_id: Option<Vec<u8>>,
}

/// The two ends of the proxied connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    /// The real client.
    pub source: SocketAddr,
    /// Where the client connected to (the proxy's front end).
    pub destination: SocketAddr,
}

impl ProxyHeader {
    /// A header naming `source` and `destination`, with no TLVs.
    pub fn new(version: Version, source: SocketAddr, destination: SocketAddr) -> Self {
        ProxyHeader {
            version,
            addresses: Some(Addresses {
                source,
                destination,
            }),
            alpn: None,
            authority: None,
            unique_id: None,
        }
    }

    /// The real client, if the header names one.
    pub fn source(&self) -> Option<SocketAddr> {
        self.addresses.map(|a| a.source)
    }

    /// The unique ID as it is logged: the text itself when it is printable ASCII (as HAProxy's
    /// `unique-id-format` makes it), else hexadecimal.
    pub fn unique_id_text(&self) -> Option<String> {
        self.unique_id.as_deref().map(printable_or_hex)
    }

    /// The ALPN protocol as it is logged (`h2`, `http/1.1`), hexadecimal if it is not text.
    pub fn alpn_text(&self) -> Option<String> {
        self.alpn.as_deref().map(printable_or_hex)
    }
}

fn printable_or_hex(bytes: &[u8]) -> String {
    if !bytes.is_empty() && bytes.iter().all(|b| b.is_ascii_graphic()) {
        String::from_utf8_lossy(bytes).into_owned()
    } else {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Why a connection that should start with a header did not give a usable one.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// The first bytes are not a PROXY signature: the client (or a misconfigured proxy) sent
    /// its data straight away.
    #[error("no PROXY header: the connection starts with other data")]
    Missing,
    /// The signature is there but the rest does not follow the format.
    #[error("malformed PROXY header: {0}")]
    Malformed(&'static str),
    /// The header would be longer than [`MAX_V1_LEN`] or [`MAX_V2_LEN`].
    #[error("PROXY header too long (v1 at most {MAX_V1_LEN} bytes, v2 at most {MAX_V2_LEN})")]
    TooLong,
    /// The peer closed the connection before the header was complete.
    #[error("closed before the PROXY header was complete")]
    Closed,
    /// The header did not complete in time.
    #[error("no complete PROXY header within {0:?}")]
    Timeout(std::time::Duration),
    /// Reading the socket failed.
    #[error("reading the PROXY header failed: {0}")]
    Io(#[from] std::io::Error),
}

impl HeaderError {
    /// A short label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            HeaderError::Missing => "missing",
            HeaderError::Malformed(_) => "malformed",
            HeaderError::TooLong => "too_long",
            HeaderError::Closed => "closed",
            HeaderError::Timeout(_) => "timeout",
            HeaderError::Io(_) => "io_error",
        }
    }
}
