//! `--udp-rate`: a token bucket per datagram source, kept in a table of bounded size in which
//! every datagram costs the same small amount of work however full the table is.
//!
//! A source is an IPv4 address or an IPv6 /64 — one host or subnet usually holds a whole /64, so
//! counting its addresses apart would give it 2^64 buckets — and an IPv4-mapped IPv6 address
//! (`::ffff:a.b.c.d`) is the IPv4 address it maps. When the table is full, a new source takes the
//! bucket of the source seen least recently: that bucket has been refilling the longest, so
//! forgetting it costs its owner least, and a flood of new (spoofed) sources can push old
//! sources out but never keeps a new legitimate one from getting a bucket.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use super::access::lock;

/// Sources tracked at once. A forgotten source gets a full bucket when it comes back, so the
/// bound only limits memory (about 100 bytes a source), never who is served.
pub(crate) const MAX_TRACKED_SOURCES: usize = 65_536;

/// A token bucket per source for `--udp-rate`: each source may send `rate` datagrams per
/// second on average, in bursts of up to one second's worth (at least one datagram).
#[derive(Debug)]
pub(crate) struct RateLimiter {
    rate: f64,
    table: Mutex<SourceTable>,
}

impl RateLimiter {
    pub(crate) fn new(rate: f64) -> Self {
        RateLimiter::with_capacity(rate, MAX_TRACKED_SOURCES)
    }

    fn with_capacity(rate: f64, capacity: usize) -> Self {
        RateLimiter {
            rate,
            table: Mutex::new(SourceTable::new(capacity)),
        }
    }

    /// Takes a token for one datagram from `ip`; `false` means drop it.
    pub(crate) fn allow(&self, ip: IpAddr, now: Instant) -> bool {
        let burst = self.rate.max(1.0);
        let mut table = lock(&self.table);
        let bucket = table.bucket(
            Source::of(ip),
            Bucket {
                tokens: burst,
                updated: now,
            },
        );
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
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

/// Who a bucket belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    V4(u32),
    /// The first 64 bits of the address.
    V6Net(u64),
}

impl Source {
    fn of(ip: IpAddr) -> Source {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Source::V4(v4.to_bits()),
            IpAddr::V6(v6) => Source::V6Net((v6.to_bits() >> 64) as u64),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Marks the end of the recency list.
const NIL: u32 = u32::MAX;

/// At most `capacity` buckets, found by source through a hash map and kept in order of last use
/// by a doubly linked list threaded through a vector, so lookup, refresh and eviction are each a
/// constant number of steps. The map's hasher is seeded at random per process, so senders who
/// choose their addresses cannot pile them into one hash chain.
#[derive(Debug)]
struct SourceTable {
    capacity: usize,
    index: HashMap<Source, u32>,
    entries: Vec<Entry>,
    /// The most recently seen entry, or [`NIL`].
    newest: u32,
    /// The least recently seen entry, the next to be evicted, or [`NIL`].
    oldest: u32,
    /// Entries looked at so far, to show in tests that the work per datagram does not grow
    /// with the table.
    #[cfg(test)]
    examined: u64,
}

#[derive(Debug)]
struct Entry {
    source: Source,
    bucket: Bucket,
    /// The next more recently seen entry, or [`NIL`].
    newer: u32,
    /// The next less recently seen entry, or [`NIL`].
    older: u32,
}

impl SourceTable {
    fn new(capacity: usize) -> Self {
        SourceTable {
            // Indices are u32 with one value kept for NIL.
            capacity: capacity.clamp(1, NIL as usize),
            index: HashMap::new(),
            entries: Vec::new(),
            newest: NIL,
            oldest: NIL,
            #[cfg(test)]
            examined: 0,
        }
    }

    /// The bucket of `source`, now the most recently seen; a new source gets `fresh`, in a new
    /// entry while there is room and in the least recently seen source's entry after that.
    fn bucket(&mut self, source: Source, fresh: Bucket) -> &mut Bucket {
        let slot = match self.index.get(&source) {
            Some(&slot) => {
                self.unlink(slot);
                slot
            }
            None if self.entries.len() < self.capacity => {
                // Below capacity, which fits in u32 (see `new`).
                let slot = self.entries.len() as u32;
                self.entries.push(Entry {
                    source,
                    bucket: fresh,
                    newer: NIL,
                    older: NIL,
                });
                self.index.insert(source, slot);
                slot
            }
            None => {
                let slot = self.oldest;
                self.unlink(slot);
                let evicted = &mut self.entries[slot as usize];
                self.index.remove(&evicted.source);
                evicted.source = source;
                evicted.bucket = fresh;
                self.index.insert(source, slot);
                slot
            }
        };
        self.push_newest(slot);
        &mut self.entries[slot as usize].bucket
    }

    fn unlink(&mut self, slot: u32) {
        #[cfg(test)]
        {
            self.examined += 1;
        }
        let Entry { newer, older, .. } = self.entries[slot as usize];
        match newer {
            NIL => self.newest = older,
            n => self.entries[n as usize].older = older,
        }
        match older {
            NIL => self.oldest = newer,
            o => self.entries[o as usize].newer = newer,
        }
    }

    fn push_newest(&mut self, slot: u32) {
        let previous = self.newest;
        let entry = &mut self.entries[slot as usize];
        entry.newer = NIL;
        entry.older = previous;
        match previous {
            NIL => self.oldest = slot,
            p => self.entries[p as usize].newer = slot,
        }
        self.newest = slot;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn v4(n: u32) -> IpAddr {
        IpAddr::from(n.to_be_bytes())
    }

    #[test]
    fn token_bucket_allows_rate_with_one_second_burst() {
        let limiter = RateLimiter::new(10.0);
        let start = Instant::now();
        let burst = (0..30)
            .filter(|_| limiter.allow(ip("127.0.0.1"), start))
            .count();
        assert_eq!(burst, 10);
        // Half a second later, five more tokens.
        let later = start + Duration::from_millis(500);
        let refill = (0..30)
            .filter(|_| limiter.allow(ip("127.0.0.1"), later))
            .count();
        assert_eq!(refill, 5);
        // Another source has its own bucket.
        assert!(limiter.allow(ip("127.0.0.2"), later));
    }

    #[test]
    fn a_full_table_still_gives_a_new_source_its_tokens() {
        let limiter = RateLimiter::new(1.0);
        let start = Instant::now();
        for i in 0..MAX_TRACKED_SOURCES as u32 {
            // Every source spends its one token, so none of them has refilled.
            assert!(limiter.allow(v4(0x0a00_0000 + i), start));
        }
        let newcomer = ip("192.0.2.1");
        assert!(limiter.allow(newcomer, start + Duration::from_millis(1)));
        assert!(!limiter.allow(newcomer, start + Duration::from_millis(2)));
    }

    #[test]
    fn the_work_per_datagram_does_not_grow_with_the_table() {
        let limiter = RateLimiter::new(1.0);
        let now = Instant::now();
        let examined = || lock(&limiter.table).examined;
        let mut most = 0;
        for i in 0..(MAX_TRACKED_SOURCES + 1000) as u32 {
            let before = examined();
            assert!(limiter.allow(v4(0x0a00_0000 + i), now), "source {i}");
            most = most.max(examined() - before);
        }
        // A new source looks at no entry, or at the one it evicts.
        assert_eq!(most, 1);
        assert_eq!(lock(&limiter.table).index.len(), MAX_TRACKED_SOURCES);
        // A known source, in a full table: one entry.
        let last = v4(0x0a00_0000 + MAX_TRACKED_SOURCES as u32 + 999);
        let before = examined();
        assert!(!limiter.allow(last, now));
        assert_eq!(examined() - before, 1);
    }

    #[test]
    fn the_least_recently_seen_source_is_evicted_first() {
        let limiter = RateLimiter::with_capacity(1.0, 3);
        let now = Instant::now();
        for source in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
            assert!(limiter.allow(ip(source), now));
        }
        // 10.0.0.1 is seen again (and refused: its one token is spent), so 10.0.0.2 is now the
        // least recently seen.
        assert!(!limiter.allow(ip("10.0.0.1"), now));
        assert!(limiter.allow(ip("10.0.0.4"), now));
        // 10.0.0.1 kept its empty bucket; 10.0.0.2 was forgotten and starts full again.
        assert!(!limiter.allow(ip("10.0.0.1"), now));
        assert!(limiter.allow(ip("10.0.0.2"), now));
    }

    #[test]
    fn ipv6_sources_in_one_slash_64_share_a_bucket() {
        let limiter = RateLimiter::new(2.0);
        let now = Instant::now();
        assert!(limiter.allow(ip("2001:db8:1:2::1"), now));
        assert!(limiter.allow(ip("2001:db8:1:2:ffff::9"), now));
        assert!(!limiter.allow(ip("2001:db8:1:2:abcd::1"), now));
        // The next /64 is another source.
        assert!(limiter.allow(ip("2001:db8:1:3::1"), now));
    }

    #[test]
    fn an_ipv4_source_has_one_bucket_in_either_form() {
        let limiter = RateLimiter::new(2.0);
        let now = Instant::now();
        assert!(limiter.allow(ip("1.2.3.4"), now));
        assert!(limiter.allow(ip("::ffff:1.2.3.4"), now));
        assert!(!limiter.allow(ip("1.2.3.4"), now));
        assert!(!limiter.allow(ip("::ffff:1.2.3.4"), now));
        assert_eq!(lock(&limiter.table).index.len(), 1);
    }
}
