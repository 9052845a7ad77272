//! Who may use the server: allow/deny lists, per-address connection limits, per-source datagram
//! rate limits, and the UDP reflection guard.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use ipnet::IpNet;

/// `--allow` and `--deny` rules. A peer is served when it matches no deny rule and, if there are
/// allow rules, at least one of them: deny wins over allow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessPolicy {
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
}

impl AccessPolicy {
    /// Whether `ip` may be served. IPv4 peers seen through a dual-stack IPv6 socket
    /// (`::ffff:a.b.c.d`) are matched as the IPv4 addresses they are.
    pub fn permits(&self, ip: IpAddr) -> bool {
        if self.is_open() {
            return true;
        }
        let ip = ip.to_canonical();
        if self.deny.iter().any(|net| net.contains(&ip)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|net| net.contains(&ip))
    }

    /// Whether no rule is set, so every peer is served without looking at its address.
    pub fn is_open(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }
}

/// Source ports of services that answer any datagram, and so could bounce an echo back and forth
/// forever, or be used to reflect traffic at a victim: echo, discard, daytime, qotd, chargen,
/// time, DNS, TFTP, portmap, NTP, NetBIOS, SNMP, CLDAP, SSDP, mDNS, memcached — and port 0,
/// which no real sender uses.
pub const REFLECTOR_PORTS: &[u16] = &[
    0, 7, 9, 13, 17, 19, 37, 53, 69, 111, 123, 137, 138, 161, 162, 389, 1900, 5353, 11211,
];

/// Whether a datagram from `source` must not be answered: it comes from a well-known service
/// port, or from a broadcast or multicast address (which no unicast reply should go to).
pub fn is_reflection_risk(source: SocketAddr) -> bool {
    if REFLECTOR_PORTS.contains(&source.port()) {
        return true;
    }
    match source.ip().to_canonical() {
        IpAddr::V4(ip) => ip.is_broadcast() || ip.is_multicast() || ip.is_unspecified(),
        IpAddr::V6(ip) => ip.is_multicast() || ip.is_unspecified(),
    }
}

/// Counts open connections per peer address for `--max-conns-per-ip`.
#[derive(Debug)]
pub(crate) struct PerIpLimit {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One counted connection; dropping it gives the slot back.
#[derive(Debug)]
pub(crate) struct PerIpSlot {
    limit: Arc<PerIpLimit>,
    ip: IpAddr,
}

impl PerIpLimit {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(PerIpLimit {
            max,
            open: Mutex::default(),
        })
    }

    /// A slot for one more connection from `ip`, or `None` if it already has `max`.
    pub(crate) fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<PerIpSlot> {
        let ip = ip.to_canonical();
        let mut open = lock(&self.open);
        let count = open.entry(ip).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(PerIpSlot {
            limit: self.clone(),
            ip,
        })
    }
}

impl Drop for PerIpSlot {
    fn drop(&mut self) {
        let mut open = lock(&self.limit.open);
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// A token bucket per source address for `--udp-rate`: each source may send `rate` datagrams
/// per second on average, in bursts of up to one second's worth.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    rate: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Sources tracked before idle ones are forgotten, so spoofed sources cannot grow the table
/// without bound.
const MAX_TRACKED_SOURCES: usize = 65_536;

impl RateLimiter {
    pub(crate) fn new(rate: f64) -> Self {
        RateLimiter {
            rate,
            buckets: Mutex::default(),
        }
    }

    /// Takes a token for one datagram from `ip`; `false` means drop it.
    pub(crate) fn allow(&self, ip: IpAddr, now: Instant) -> bool {
        let burst = self.rate.max(1.0);
        let mut buckets = lock(&self.buckets);
        if buckets.len() >= MAX_TRACKED_SOURCES && !buckets.contains_key(&ip) {
            // A source whose bucket has refilled is indistinguishable from a new one.
            let full_after = burst / self.rate;
            buckets.retain(|_, b| now.duration_since(b.updated).as_secs_f64() < full_after);
            if buckets.len() >= MAX_TRACKED_SOURCES {
                return false; // still full: a flood of distinct sources; refuse newcomers
            }
        }
        let bucket = buckets.entry(ip.to_canonical()).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Locks a mutex, carrying on if another thread panicked while holding it: the maps stay
/// consistent after every single operation.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn net(text: &str) -> IpNet {
        text.parse().unwrap()
    }

    #[test]
    fn deny_wins_and_allow_restricts() {
        let open = AccessPolicy::default();
        assert!(open.permits("10.1.2.3".parse().unwrap()));
        let policy = AccessPolicy {
            allow: vec![net("127.0.0.0/8"), net("::1/128")],
            deny: vec![net("127.0.0.2/32")],
        };
        assert!(policy.permits("127.0.0.1".parse().unwrap()));
        assert!(!policy.permits("127.0.0.2".parse().unwrap()));
        assert!(!policy.permits("10.0.0.1".parse().unwrap()));
        assert!(policy.permits("::1".parse().unwrap()));
        assert!(!policy.permits("::2".parse().unwrap()));
        // IPv4 through a dual-stack socket.
        assert!(!policy.permits("::ffff:127.0.0.2".parse().unwrap()));
        assert!(policy.permits("::ffff:127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn reflection_guard() {
        for risky in [
            "127.0.0.1:19",
            "127.0.0.1:7",
            "[::1]:53",
            "255.255.255.255:4000",
            "224.0.0.1:5000",
            "[ff02::1]:4000",
            "10.0.0.1:0",
        ] {
            assert!(is_reflection_risk(risky.parse().unwrap()), "{risky}");
        }
        for fine in ["127.0.0.1:40000", "[::1]:50000", "192.0.2.1:1024"] {
            assert!(!is_reflection_risk(fine.parse().unwrap()), "{fine}");
        }
    }

    #[test]
    fn per_ip_limit_counts_and_releases() {
        let limit = PerIpLimit::new(2);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let a = limit.acquire(ip).unwrap();
        let _b = limit.acquire("::ffff:127.0.0.1".parse().unwrap()).unwrap();
        assert!(limit.acquire(ip).is_none());
        assert!(limit.acquire("127.0.0.2".parse().unwrap()).is_some());
        drop(a);
        assert!(limit.acquire(ip).is_some());
    }

    #[test]
    fn token_bucket_allows_rate_with_one_second_burst() {
        let limiter = RateLimiter::new(10.0);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let start = Instant::now();
        let burst = (0..30).filter(|_| limiter.allow(ip, start)).count();
        assert_eq!(burst, 10);
        // Half a second later, five more tokens.
        let later = start + Duration::from_millis(500);
        let refill = (0..30).filter(|_| limiter.allow(ip, later)).count();
        assert_eq!(refill, 5);
        // Another source has its own bucket.
        assert!(limiter.allow("127.0.0.2".parse().unwrap(), later));
    }
}
