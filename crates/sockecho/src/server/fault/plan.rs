//! The faults a server runs with ([`FaultPlan`]: the specs and the seed), and the dice that
//! decide, repeatably, which events they hit: one seeded generator per connection (from the
//! seed and the connection's number) and one per datagram socket, so a run given the same seed
//! and the same traffic injects the same faults.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::spec::{Action, Chance, Fault, FaultKind, Limit};

/// The faults to inject and the seed of every random choice they make.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultPlan {
    faults: Vec<Fault>,
    seed: u64,
}

/// A set of faults that cannot run together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultPlanError {
    #[error("the fault kind {0} is given twice; give each kind once")]
    Repeated(FaultKind),
}

impl FaultPlan {
    /// Checks that each kind comes once.
    pub fn new(faults: Vec<Fault>, seed: u64) -> Result<FaultPlan, FaultPlanError> {
        for (i, fault) in faults.iter().enumerate() {
            if faults[..i].iter().any(|f| f.kind() == fault.kind()) {
                return Err(FaultPlanError::Repeated(fault.kind()));
            }
        }
        Ok(FaultPlan { faults, seed })
    }

    /// A seed for a run that was not given one; log it so the run can be repeated.
    pub fn random_seed() -> u64 {
        fastrand::u64(..)
    }

    pub fn faults(&self) -> &[Fault] {
        &self.faults
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Whether any fault acts on stream connections (they then all take the tokio path).
    pub fn has_stream_faults(&self) -> bool {
        self.faults.iter().any(|f| f.kind().on_streams())
    }

    /// Whether any fault acts on datagrams.
    pub fn has_datagram_faults(&self) -> bool {
        self.faults.iter().any(|f| f.kind().on_datagrams())
    }

    pub(crate) fn get(&self, kind: FaultKind) -> Option<&Fault> {
        self.faults.iter().find(|f| f.kind() == kind)
    }
}

/// Per-event decisions of one connection or datagram socket.
pub(crate) struct Dice {
    rng: fastrand::Rng,
    /// Events seen so far per kind, for `1/N` chances.
    seen: [u64; FaultKind::ALL.len()],
}

impl Dice {
    /// The dice of stream `number` (a connection's number; datagram sockets use their own
    /// numbers, far from any connection's).
    pub(crate) fn new(seed: u64, number: u64) -> Dice {
        // Spread consecutive numbers over the generator's whole state space.
        let mixed = seed ^ number.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Dice {
            rng: fastrand::Rng::with_seed(mixed),
            seen: [0; FaultKind::ALL.len()],
        }
    }

    /// Whether `fault` hits the next event it applies to.
    pub(crate) fn hits(&mut self, fault: &Fault) -> bool {
        match fault.chance {
            Chance::Always => true,
            Chance::Percent(p) => self.rng.f64() * 100.0 < p,
            Chance::Every(n) => {
                let seen = &mut self.seen[fault.kind().index()];
                *seen += 1;
                seen.is_multiple_of(n)
            }
        }
    }

    /// `base` moved by a uniform amount within `±jitter`, never below zero.
    pub(crate) fn around(&mut self, base: Duration, jitter: Duration) -> Duration {
        if jitter.is_zero() {
            return base;
        }
        let span = u64::try_from(jitter.as_nanos()).unwrap_or(u64::MAX / 2);
        let offset = self.rng.u64(0..=span.saturating_mul(2));
        let ns = u64::try_from(base.as_nanos()).unwrap_or(u64::MAX / 2);
        Duration::from_nanos(ns.saturating_add(offset).saturating_sub(span))
    }

    /// A position below `len` (which must not be zero).
    pub(crate) fn index(&mut self, len: usize) -> usize {
        self.rng.usize(0..len.max(1))
    }

    /// A byte other than zero, to flip bits with.
    pub(crate) fn flip(&mut self) -> u8 {
        self.rng.u8(1..=u8::MAX)
    }
}

/// How an ending fault ends a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// RST: the peer's next read or write fails with "connection reset".
    Reset,
    /// FIN: the peer reads end of stream.
    Close,
}

impl Ending {
    pub(crate) fn kind(self) -> FaultKind {
        match self {
            Ending::Reset => FaultKind::ResetAfter,
            Ending::Close => FaultKind::CloseAfter,
        }
    }
}

/// The stream faults of a running server: the plan, the count of connections so far (each
/// connection's number seeds its dice) and when serving began (for `refuse=5s`).
#[derive(Debug)]
pub(crate) struct StreamFaults {
    plan: FaultPlan,
    connections: AtomicU64,
    started: Instant,
}

/// What happens to a new connection.
pub(crate) enum Admission {
    /// Reset it at once (`refuse`).
    Refuse,
    /// Serve it with these faults.
    Serve(Box<ConnFaults>),
}

/// The faults one connection was dealt when it was accepted.
pub(crate) struct ConnFaults {
    /// Its number among the server's connections, from 0.
    pub(crate) number: u64,
    pub(crate) dice: Dice,
    /// Read everything, answer nothing.
    pub(crate) blackhole: bool,
    /// Most bytes echoed per second.
    pub(crate) bandwidth: Option<u64>,
    /// Pieces of at most this many bytes, this far apart.
    pub(crate) slice: Option<(u64, Duration)>,
    /// Where the connection is ended on purpose, and how.
    pub(crate) ends: Vec<(Limit, Ending)>,
    /// Tried on every read: wait before echoing it.
    pub(crate) delay: Option<Fault>,
}

impl StreamFaults {
    /// The stream part of `plan`, if it has one.
    pub(crate) fn new(plan: &FaultPlan) -> Option<StreamFaults> {
        plan.has_stream_faults().then(|| StreamFaults {
            plan: plan.clone(),
            connections: AtomicU64::new(0),
            started: Instant::now(),
        })
    }

    /// Numbers a new connection and deals it its faults.
    pub(crate) fn admit(&self) -> Admission {
        let number = self.connections.fetch_add(1, Ordering::Relaxed);
        let mut dice = Dice::new(self.plan.seed, number);
        // Per-connection faults with a `1/N` chance hit every Nth connection.
        let mut hits = |fault: &Fault| match fault.chance {
            Chance::Every(n) => (number + 1).is_multiple_of(n),
            _ => dice.hits(fault),
        };
        if let Some(fault) = self.plan.get(FaultKind::Refuse)
            && let Action::Refuse { window } = fault.action
            && window.is_none_or(|w| self.started.elapsed() < w)
            && hits(fault)
        {
            return Admission::Refuse;
        }
        let mut conn = ConnFaults {
            number,
            dice: Dice::new(0, 0),
            blackhole: false,
            bandwidth: None,
            slice: None,
            ends: Vec::new(),
            delay: self.plan.get(FaultKind::Delay).copied(),
        };
        for fault in &self.plan.faults {
            match fault.action {
                Action::Blackhole if hits(fault) => conn.blackhole = true,
                Action::Bandwidth { bytes_per_sec } if hits(fault) => {
                    conn.bandwidth = Some(bytes_per_sec);
                }
                Action::Slice { size, pause } if hits(fault) => conn.slice = Some((size, pause)),
                Action::ResetAfter(limit) if hits(fault) => conn.ends.push((limit, Ending::Reset)),
                Action::CloseAfter(limit) if hits(fault) => conn.ends.push((limit, Ending::Close)),
                _ => {}
            }
        }
        conn.dice = dice;
        Admission::Serve(Box::new(conn))
    }
}

impl ConnFaults {
    /// The first byte-count ending: how many bytes are echoed before it.
    pub(crate) fn byte_end(&self) -> Option<(u64, Ending)> {
        self.ends
            .iter()
            .filter_map(|(limit, how)| match limit {
                Limit::Bytes(n) => Some((*n, *how)),
                Limit::Time(_) => None,
            })
            .min_by_key(|(n, _)| *n)
    }

    /// The first timed ending: how long after opening.
    pub(crate) fn time_end(&self) -> Option<(Duration, Ending)> {
        self.ends
            .iter()
            .filter_map(|(limit, how)| match limit {
                Limit::Time(d) => Some((*d, *how)),
                Limit::Bytes(_) => None,
            })
            .min_by_key(|(d, _)| *d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(specs: &[&str], seed: u64) -> FaultPlan {
        let faults = specs.iter().map(|s| s.parse().unwrap()).collect();
        FaultPlan::new(faults, seed).unwrap()
    }

    #[test]
    fn the_same_seed_deals_the_same_faults() {
        let deal = |seed| {
            let faults = StreamFaults::new(&plan(&["blackhole@30%", "slice=1B@50%"], seed))
                .expect("stream faults");
            (0..200)
                .map(|_| match faults.admit() {
                    Admission::Serve(c) => (c.blackhole, c.slice.is_some()),
                    Admission::Refuse => unreachable!("no refusal configured"),
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(deal(7), deal(7));
        assert_ne!(deal(7), deal(8));
        let blackholes = deal(7).iter().filter(|(b, _)| *b).count();
        assert!((30..90).contains(&blackholes), "{blackholes} of 200 at 30%");
    }

    #[test]
    fn one_in_n_hits_exactly_every_nth() {
        let p = plan(&["drop@1/4", "refuse@1/3"], 1);
        let drop = p.get(FaultKind::Drop).copied().unwrap();
        let mut dice = Dice::new(1, 0);
        let hits: Vec<bool> = (0..8).map(|_| dice.hits(&drop)).collect();
        assert_eq!(hits, [false, false, false, true, false, false, false, true]);
        let faults = StreamFaults::new(&p).unwrap();
        let refused: Vec<bool> = (0..6)
            .map(|_| matches!(faults.admit(), Admission::Refuse))
            .collect();
        assert_eq!(refused, [false, false, true, false, false, true]);
    }

    #[test]
    fn jitter_stays_within_its_bounds() {
        let mut dice = Dice::new(3, 0);
        let (base, jitter) = (Duration::from_millis(10), Duration::from_millis(5));
        for _ in 0..1000 {
            let d = dice.around(base, jitter);
            assert!(d >= base - jitter && d <= base + jitter, "{d:?}");
        }
        // Below zero is clamped, not wrapped around.
        for _ in 0..1000 {
            let d = dice.around(Duration::from_millis(1), Duration::from_millis(5));
            assert!(d <= Duration::from_millis(6), "{d:?}");
        }
    }

    #[test]
    fn a_kind_given_twice_is_refused() {
        let faults = vec!["drop@1%".parse().unwrap(), "drop@2%".parse().unwrap()];
        assert_eq!(
            FaultPlan::new(faults, 0),
            Err(FaultPlanError::Repeated(FaultKind::Drop))
        );
    }
}
