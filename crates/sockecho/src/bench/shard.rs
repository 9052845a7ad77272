//! Splitting one run among several bench processes, on one machine or many, with no
//! coordinator: [`Shard`] `I/N` names a process's part, and from it alone each process knows its
//! connections and its share of an open-loop rate.
//!
//! Connections are dealt out in turn: shard `I` of `N` takes the run's connections `I`, `I+N`,
//! `I+2N`, ..., so the shares differ by at most one and add up to the whole. In open loop every
//! connection keeps the send times it would have in one process driving them all (connection
//! `k` of `C` sends at `start + k/R + n·C/R`), so the shards' schedules interleave into the
//! run's target schedule: shard `I`'s first send is `I/R` after the common start, and its rate is
//! `R × its connections / C`. Started at one instant (`--start-at`), the shards together offer
//! exactly the rate asked for, evenly spread, as k6's execution segments do.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Part `index` (from 0) of a run split into `count` parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// The whole run: one part.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Part `index` of `count`; `None` unless `index < count`.
    pub fn new(index: u32, count: u32) -> Option<Shard> {
        (index < count).then_some(Shard { index, count })
    }

    /// How many of the run's `total` connections are this part's.
    pub fn connections(&self, total: usize) -> usize {
        let (index, count) = (self.index as usize, self.count as usize);
        total / count + usize::from(index < total % count)
    }

    /// The run-wide numbers of this part's connections, in order.
    pub fn connection_ids(&self, total: usize) -> impl Iterator<Item = usize> + use<> {
        (self.index as usize..total).step_by(self.count as usize)
    }

    /// Where connection `id` (one of [`connection_ids`](Shard::connection_ids)) stands among
    /// this part's connections.
    pub fn position(&self, id: usize) -> usize {
        id / self.count as usize
    }

    /// This part's messages per second when the whole run, `total` connections, offers `rate`.
    pub fn rate(&self, rate: f64, total: usize) -> f64 {
        rate * self.connections(total) as f64 / total as f64
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;

    /// `I/N`: part `I` (from 0) of `N`.
    fn from_str(text: &str) -> Result<Shard, String> {
        let usage =
            || format!("{text:?} is not a shard; write I/N, e.g. 0/3 for the first of three");
        let (index, count) = text.trim().split_once('/').ok_or_else(usage)?;
        let index: u32 = index.trim().parse().map_err(|_| usage())?;
        let count: u32 = count.trim().parse().map_err(|_| usage())?;
        if count == 0 {
            return Err(format!("{text:?}: a run splits into at least 1 shard"));
        }
        Shard::new(index, count).ok_or_else(|| {
            format!(
                "{text:?}: shards are numbered from 0, so the last of {count} is {}",
                count - 1
            )
        })
    }
}

/// What is wrong with the set of shards a merge was given, if anything: a shard missing, one
/// given twice, or shards of runs split differently. `shards` holds each run's shard (`None`
/// for a run that was not split, which says nothing).
pub fn coverage_problem(shards: &[Option<Shard>]) -> Option<String> {
    let given: Vec<Shard> = shards.iter().flatten().copied().collect();
    let first = given.first()?;
    if let Some(other) = given.iter().find(|s| s.count != first.count) {
        return Some(format!(
            "the logs hold shards of runs split {} and {} ways",
            first.count, other.count
        ));
    }
    let mut seen = vec![0usize; first.count as usize];
    for s in &given {
        seen[s.index as usize] += 1;
    }
    let list = |want: &dyn Fn(usize) -> bool| -> String {
        let found: Vec<String> = (0..seen.len())
            .filter(|&i| want(seen[i]))
            .map(|i| format!("{i}/{}", first.count))
            .collect();
        found.join(", ")
    };
    let twice = list(&|n| n > 1);
    if !twice.is_empty() {
        return Some(format!("shard {twice} given more than once"));
    }
    let missing = list(&|n| n == 0);
    (!missing.is_empty())
        .then(|| format!("shard {missing} missing: the merge is not the whole run"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shards(count: u32) -> impl Iterator<Item = Shard> {
        (0..count).map(move |index| Shard { index, count })
    }

    #[test]
    fn parses_and_prints_i_of_n() {
        assert_eq!("1/3".parse(), Ok(Shard { index: 1, count: 3 }));
        assert_eq!(" 0 / 1 ".parse(), Ok(Shard::WHOLE));
        assert_eq!(Shard { index: 2, count: 5 }.to_string(), "2/5");
        assert!(
            "3/3"
                .parse::<Shard>()
                .unwrap_err()
                .contains("last of 3 is 2")
        );
        assert!("0/0".parse::<Shard>().unwrap_err().contains("at least 1"));
        for bad in ["1", "a/3", "1/b", "-1/3", "1/3/4", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn shares_add_up_to_the_whole_and_differ_by_at_most_one() {
        for count in 1..=7u32 {
            for total in count as usize..=50 {
                let shares: Vec<usize> = shards(count).map(|s| s.connections(total)).collect();
                assert_eq!(shares.iter().sum::<usize>(), total, "{total} over {count}");
                let (min, max) = (shares.iter().min(), shares.iter().max());
                assert!(max.unwrap() - min.unwrap() <= 1, "{shares:?}");
            }
        }
        // 10 over 3: the remainder goes to the first shards.
        let shares: Vec<usize> = shards(3).map(|s| s.connections(10)).collect();
        assert_eq!(shares, [4, 3, 3]);
    }

    #[test]
    fn every_connection_belongs_to_exactly_one_shard() {
        for count in 1..=5u32 {
            let total = 23;
            let mut seen = vec![0u32; total];
            for shard in shards(count) {
                let ids: Vec<usize> = shard.connection_ids(total).collect();
                assert_eq!(ids.len(), shard.connections(total));
                for (position, &id) in ids.iter().enumerate() {
                    assert_eq!(shard.position(id), position);
                    seen[id] += 1;
                }
            }
            assert!(seen.iter().all(|&n| n == 1), "{count}: {seen:?}");
        }
        let ids: Vec<usize> = Shard { index: 1, count: 3 }.connection_ids(10).collect();
        assert_eq!(ids, [1, 4, 7]);
    }

    #[test]
    fn a_merge_says_which_shards_are_missing_or_repeated() {
        let s = |index, count| Some(Shard { index, count });
        assert_eq!(coverage_problem(&[]), None);
        assert_eq!(coverage_problem(&[None, None]), None);
        assert_eq!(coverage_problem(&[s(2, 3), s(0, 3), s(1, 3)]), None);
        assert_eq!(
            coverage_problem(&[s(0, 3), s(2, 3)]).unwrap(),
            "shard 1/3 missing: the merge is not the whole run"
        );
        assert_eq!(
            coverage_problem(&[s(0, 2), s(0, 2), s(1, 2)]).unwrap(),
            "shard 0/2 given more than once"
        );
        assert!(
            coverage_problem(&[s(0, 2), s(1, 3)])
                .unwrap()
                .contains("split 2 and 3 ways")
        );
    }

    #[test]
    fn rate_shares_sum_to_the_target() {
        for count in 1..=6u32 {
            let total: f64 = shards(count).map(|s| s.rate(1000.0, 10)).sum();
            assert!((total - 1000.0).abs() < 1e-9, "{count}: {total}");
        }
        assert_eq!(Shard { index: 0, count: 3 }.rate(900.0, 10), 360.0);
        assert_eq!(Shard { index: 2, count: 3 }.rate(900.0, 10), 270.0);
    }
}
