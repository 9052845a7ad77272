//! Who may use the server: allow/deny lists, per-address connection limits and the UDP
//! reflection guard. (Per-source datagram rate limits are in `rate_limit`.)

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

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
    /// (`::ffff:a.b.c.d`) are matched as the IPv4 addresses they are, and so are rules written
    /// in that form (see [`canonical_net`]).
    pub fn permits(&self, ip: IpAddr) -> bool {
        if self.is_open() {
            return true;
        }
        let ip = ip.to_canonical();
        let covers = |net: &IpNet| canonical_net(*net).contains(&ip);
        if self.deny.iter().any(covers) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(covers)
    }

    /// Whether no rule is set, so every peer is served without looking at its address.
    pub fn is_open(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }
}

/// A network in the form peers are matched in: a rule inside the IPv4-mapped block
/// (`::ffff:0:0/96`, prefix 96 or longer) becomes the IPv4 network it maps, so
/// `::ffff:10.0.0.0/104` is `10.0.0.0/8` and `::ffff:0:0/96` is all of IPv4. Peers are
/// canonicalised the same way, so a rule matches whichever form either side was written in.
/// Wider IPv6 rules (such as `::/0`) stay IPv6 and cover IPv6 peers only.
pub fn canonical_net(net: IpNet) -> IpNet {
    const MAPPED_PREFIX: u8 = 96;
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= MAPPED_PREFIX => {
            match v6.network().to_ipv4_mapped() {
                Some(v4) => {
                    // The prefix fits: 96..=128 less 96 is 0..=32.
                    ipnet::Ipv4Net::new(v4, v6.prefix_len() - MAPPED_PREFIX).map_or(net, IpNet::V4)
                }
                None => net,
            }
        }
        other => other,
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

/// Locks a mutex, carrying on if another thread panicked while holding it: the maps stay
/// consistent after every single operation.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn rules_in_ipv4_mapped_form_match_ipv4_peers() {
        let deny = |rule: &str| AccessPolicy {
            allow: vec![],
            deny: vec![net(rule)],
        };
        let allow = |rule: &str| AccessPolicy {
            allow: vec![net(rule)],
            deny: vec![],
        };
        let v4: IpAddr = "127.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        for peer in [v4, mapped] {
            assert!(!deny("::ffff:127.0.0.1/128").permits(peer), "{peer}");
            assert!(!deny("::ffff:0:0/96").permits(peer), "{peer}");
            assert!(allow("::ffff:127.0.0.0/104").permits(peer), "{peer}");
            assert!(!allow("::ffff:10.0.0.0/104").permits(peer), "{peer}");
            // A rule wider than the mapped block names IPv6 peers only.
            assert!(deny("::/0").permits(peer), "{peer}");
        }
        // The mapped form of a rule covers what its IPv4 form covers, and nothing else.
        assert!(deny("::ffff:127.0.0.0/104").permits("10.0.0.1".parse().unwrap()));
        assert!(!allow("::ffff:0:0/96").permits("::1".parse().unwrap()));
        assert!(deny("::ffff:0:0/96").permits("::1".parse().unwrap()));
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
}
