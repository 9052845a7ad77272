//! The last PROXY headers a server took, kept so they can be looked at out of band (the CLI
//! serves them at `/proxy` next to its metrics): what a load balancer actually sends is the
//! first question when a backend sees the wrong client.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::header::ProxyHeader;

/// How many headers are kept; older ones are forgotten.
pub const KEPT: usize = 16;

/// One header as it was taken, ready for JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Received {
    /// When, in seconds since the Unix epoch.
    pub unix_time: f64,
    /// `tcp` or `tls`.
    pub transport: &'static str,
    /// The address the connection was served as: the header's client, or the proxy itself for
    /// a header without addresses.
    pub client: SocketAddr,
    /// The proxy that sent the header.
    pub proxied_by: SocketAddr,
    pub version: &'static str,
    /// `proxy` when the header names a client, `local` when it does not (a health check).
    pub command: &'static str,
    pub destination: Option<SocketAddr>,
    pub alpn: Option<String>,
    pub authority: Option<String>,
    pub unique_id: Option<String>,
}

impl Received {
    pub fn new(
        transport: &'static str,
        client: SocketAddr,
        proxied_by: SocketAddr,
        header: &ProxyHeader,
    ) -> Received {
        Received {
            unix_time: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |t| t.as_secs_f64()),
            transport,
            client,
            proxied_by,
            version: header.version.as_str(),
            command: if header.addresses.is_some() {
                "proxy"
            } else {
                "local"
            },
            destination: header.addresses.map(|a| a.destination),
            alpn: header.alpn_text(),
            authority: header.authority.clone(),
            unique_id: header.unique_id_text(),
        }
    }
}

/// The last [`KEPT`] headers, oldest first. Touched once per proxied connection, never on the
/// echo path.
#[derive(Debug, Default)]
pub struct RecentHeaders(Mutex<VecDeque<Received>>);

impl RecentHeaders {
    pub fn push(&self, received: Received) {
        let mut recent = self.lock();
        if recent.len() == KEPT {
            recent.pop_front();
        }
        recent.push_back(received);
    }

    /// A copy of what is kept, oldest first.
    pub fn snapshot(&self) -> Vec<Received> {
        self.lock().iter().cloned().collect()
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Received>> {
        // A panic while holding the lock leaves a whole deque behind: carry on with it.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy_protocol::Version;

    #[test]
    fn keeps_the_last_ones_oldest_first() {
        let recent = RecentHeaders::default();
        let proxy: SocketAddr = "127.0.0.1:9".parse().unwrap();
        for port in 0..(KEPT as u16 + 3) {
            let client = SocketAddr::new([192, 0, 2, 1].into(), port);
            let header = ProxyHeader::new(Version::V2, client, proxy);
            recent.push(Received::new("tcp", client, proxy, &header));
        }
        let kept = recent.snapshot();
        assert_eq!(kept.len(), KEPT);
        assert_eq!(kept[0].client.port(), 3);
        assert_eq!(kept[KEPT - 1].client.port(), KEPT as u16 + 2);
        assert_eq!(kept[0].command, "proxy");
    }
}
