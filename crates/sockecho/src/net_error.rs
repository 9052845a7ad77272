//! Turns socket errors into one-line explanations that say what to do next.

use std::io::{self, ErrorKind};

use crate::Endpoint;

/// Explains an error from binding `endpoint`, e.g. "address already in use — is another server
/// running?".
pub fn describe_bind_error(endpoint: &Endpoint, err: &io::Error) -> String {
    match err.kind() {
        ErrorKind::AddrInUse => {
            "address already in use — is another server running? (port 0 picks a free port)".into()
        }
        ErrorKind::PermissionDenied => match endpoint.host_port() {
            Some(hp) if hp.port != 0 && hp.port < 1024 => {
                "permission denied — ports below 1024 need root or CAP_NET_BIND_SERVICE".into()
            }
            _ => "permission denied".into(),
        },
        ErrorKind::AddrNotAvailable => {
            "address not available — no interface on this host has that address".into()
        }
        ErrorKind::NotFound if endpoint.host_port().is_none() => {
            "no such directory — create the socket's parent directory first".into()
        }
        _ => plain(err),
    }
}

/// Explains an error from connecting to `endpoint`, e.g. "connection refused — is the server
/// running?".
pub fn describe_connect_error(err: &io::Error) -> String {
    match err.kind() {
        ErrorKind::ConnectionRefused => "connection refused — is the server running?".into(),
        ErrorKind::NotFound => "no such socket file — is the server running?".into(),
        ErrorKind::PermissionDenied => "permission denied".into(),
        ErrorKind::TimedOut => "timed out — is the host reachable?".into(),
        ErrorKind::HostUnreachable => "host unreachable".into(),
        ErrorKind::NetworkUnreachable => "network unreachable".into(),
        ErrorKind::AddrNotAvailable => "address not available".into(),
        _ => plain(err),
    }
}

/// The OS message without the "(os error N)" suffix, starting lower-case.
pub fn plain(err: &io::Error) -> String {
    let text = err.to_string();
    let text = match text.find(" (os error") {
        Some(i) => &text[..i],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text.to_owned(),
    }
}

/// Whether an `accept` error comes from running out of a resource (file descriptors, memory),
/// which calls for backing off rather than retrying at once.
pub fn is_resource_exhaustion(err: &io::Error) -> bool {
    use rustix::io::Errno;
    matches!(
        err.raw_os_error().map(Errno::from_raw_os_error),
        Some(Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM)
    )
}
