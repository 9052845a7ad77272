//! The text form of a fault (`delay=10ms±5ms`, `drop=1%`, `reset-after=64KiB@5%`): parsing,
//! and printing back to text that parses to the same [`Fault`].
//!
//! Grammar: `KIND[=VALUE][@CHANCE]`. `CHANCE` is `P%` (each event independently, from the
//! seeded generator) or `1/N` (exactly every Nth event, for counts known in advance); without
//! it the fault hits every event. Kinds that take no value also accept the chance as their
//! value (`drop=1%` is `drop@1%`). The text is untrusted (command line, environment), so every
//! number is range-checked and nothing here can panic.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The longest duration a fault accepts: long enough for any test, short enough that adding
/// it to a clock reading can never overflow.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// What kind of misbehaviour a fault is; also its label in metrics (`kind="reset-after"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    Delay,
    Bandwidth,
    Slice,
    ResetAfter,
    CloseAfter,
    Blackhole,
    Refuse,
    Drop,
    Duplicate,
    Reorder,
    Truncate,
    Corrupt,
}

impl FaultKind {
    /// Every kind, in the order help texts and metrics list them.
    pub const ALL: [FaultKind; 12] = [
        FaultKind::Delay,
        FaultKind::Bandwidth,
        FaultKind::Slice,
        FaultKind::ResetAfter,
        FaultKind::CloseAfter,
        FaultKind::Blackhole,
        FaultKind::Refuse,
        FaultKind::Drop,
        FaultKind::Duplicate,
        FaultKind::Reorder,
        FaultKind::Truncate,
        FaultKind::Corrupt,
    ];

    /// The name written in a spec.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Delay => "delay",
            FaultKind::Bandwidth => "bandwidth",
            FaultKind::Slice => "slice",
            FaultKind::ResetAfter => "reset-after",
            FaultKind::CloseAfter => "close-after",
            FaultKind::Blackhole => "blackhole",
            FaultKind::Refuse => "refuse",
            FaultKind::Drop => "drop",
            FaultKind::Duplicate => "duplicate",
            FaultKind::Reorder => "reorder",
            FaultKind::Truncate => "truncate",
            FaultKind::Corrupt => "corrupt",
        }
    }

    /// Its position in [`FaultKind::ALL`], for arrays of counters.
    pub fn index(self) -> usize {
        FaultKind::ALL
            .iter()
            .position(|k| *k == self)
            .unwrap_or_default()
    }

    /// Whether it acts on stream connections (TCP, TLS, Unix).
    pub fn on_streams(self) -> bool {
        !matches!(
            self,
            FaultKind::Drop
                | FaultKind::Duplicate
                | FaultKind::Reorder
                | FaultKind::Truncate
                | FaultKind::Corrupt
        )
    }

    /// Whether it acts on datagrams (UDP, Unix datagram).
    pub fn on_datagrams(self) -> bool {
        !self.on_streams() || self == FaultKind::Delay
    }

    /// The syntax of its spec, for help and error messages.
    fn syntax(self) -> &'static str {
        match self {
            FaultKind::Delay => "delay=10ms[±5ms]",
            FaultKind::Bandwidth => "bandwidth=1MiB/s",
            FaultKind::Slice => "slice=16B[:1ms]",
            FaultKind::ResetAfter => "reset-after=64KiB|2s",
            FaultKind::CloseAfter => "close-after=64KiB|2s",
            FaultKind::Blackhole => "blackhole",
            FaultKind::Refuse => "refuse[=5s]",
            FaultKind::Drop => "drop",
            FaultKind::Duplicate => "duplicate",
            FaultKind::Reorder => "reorder[=10ms]",
            FaultKind::Truncate => "truncate=32B",
            FaultKind::Corrupt => "corrupt",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How often a fault hits among the events it applies to (reads, datagrams, connections).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Chance {
    /// Every event.
    Always,
    /// Each event independently with this probability, in percent (above 0, at most 100).
    Percent(f64),
    /// Exactly every Nth event (the Nth, the 2Nth, ...); N ≥ 1.
    Every(u64),
}

/// Where a connection ends: after so many bytes echoed, or so long after it opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Bytes(u64),
    Time(Duration),
}

/// What a fault does, with its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Wait `base` plus or minus up to `jitter` (uniformly) before echoing a read or a
    /// datagram. Jitter on datagrams reorders them.
    Delay { base: Duration, jitter: Duration },
    /// Echo a connection at most this many bytes per second.
    Bandwidth { bytes_per_sec: u64 },
    /// Write every echo in pieces of at most `size` bytes, `pause` apart.
    Slice { size: u64, pause: Duration },
    /// Reset the connection (RST) at the limit.
    ResetAfter(Limit),
    /// Close the connection (FIN) at the limit.
    CloseAfter(Limit),
    /// Accept the connection, read everything, answer nothing.
    Blackhole,
    /// Reset new connections at once: those within `window` of the server's start, or all
    /// (subject to the chance) without one.
    Refuse { window: Option<Duration> },
    /// Answer no datagram.
    Drop,
    /// Answer a datagram twice.
    Duplicate,
    /// Hold a datagram's reply back this long, so replies to later datagrams overtake it.
    Reorder { hold: Duration },
    /// Cut a datagram's reply to at most this many bytes.
    Truncate { len: u64 },
    /// Flip one byte of a datagram's reply.
    Corrupt,
}

impl Action {
    pub fn kind(&self) -> FaultKind {
        match self {
            Action::Delay { .. } => FaultKind::Delay,
            Action::Bandwidth { .. } => FaultKind::Bandwidth,
            Action::Slice { .. } => FaultKind::Slice,
            Action::ResetAfter(_) => FaultKind::ResetAfter,
            Action::CloseAfter(_) => FaultKind::CloseAfter,
            Action::Blackhole => FaultKind::Blackhole,
            Action::Refuse { .. } => FaultKind::Refuse,
            Action::Drop => FaultKind::Drop,
            Action::Duplicate => FaultKind::Duplicate,
            Action::Reorder { .. } => FaultKind::Reorder,
            Action::Truncate { .. } => FaultKind::Truncate,
            Action::Corrupt => FaultKind::Corrupt,
        }
    }
}

/// One fault as given with `--fault`: what it does and how often.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fault {
    pub action: Action,
    pub chance: Chance,
}

impl Fault {
    pub fn kind(&self) -> FaultKind {
        self.action.kind()
    }
}

/// A spec that does not parse: which part is wrong and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad fault {spec:?}: {part:?} {problem} (kinds: {kinds})", kinds = kinds_help())]
pub struct FaultSpecError {
    /// The whole spec as given.
    pub spec: String,
    /// The part that is wrong.
    pub part: String,
    /// What is wrong with it.
    pub problem: String,
}

/// Every kind with its syntax, comma-separated.
fn kinds_help() -> String {
    FaultKind::ALL.map(FaultKind::syntax).join(", ")
}

impl FromStr for Fault {
    type Err = FaultSpecError;

    fn from_str(spec: &str) -> Result<Fault, FaultSpecError> {
        let fail = |part: &str, problem: String| FaultSpecError {
            spec: spec.to_owned(),
            part: part.to_owned(),
            problem,
        };
        let text = spec.trim();
        let (body, chance) = match text.rsplit_once('@') {
            Some((body, chance)) => (body, Some(chance)),
            None => (text, None),
        };
        let (name, value) = match body.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim())),
            None => (body.trim(), None),
        };
        let kind = FaultKind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(name))
            .ok_or_else(|| fail(name, "is not a kind of fault".into()))?;
        let mut chance = match chance {
            Some(c) => Some(parse_chance(c.trim()).map_err(|problem| fail(c, problem))?),
            None => None,
        };
        let missing = || fail(body, format!("needs a value: write {}", kind.syntax()));
        // Kinds without a value take the chance there instead.
        let valueless = matches!(
            kind,
            FaultKind::Blackhole | FaultKind::Drop | FaultKind::Duplicate | FaultKind::Corrupt
        );
        let mut value = value;
        if valueless && let Some(v) = value {
            if chance.is_some() {
                return Err(fail(v, format!("is not a value {} takes", kind)));
            }
            chance = Some(parse_chance(v).map_err(|problem| {
                fail(v, format!("{problem} ({kind} takes no value but a chance)"))
            })?);
            value = None;
        }
        let action = match kind {
            FaultKind::Delay => {
                let v = value.ok_or_else(missing)?;
                let (base, jitter) = match v.split_once('±').or_else(|| v.split_once("+-")) {
                    Some((base, jitter)) => (base.trim(), Some(jitter.trim())),
                    None => (v, None),
                };
                let base = parse_duration(base).map_err(|p| fail(base, p))?;
                let jitter = match jitter {
                    Some(j) => parse_duration(j).map_err(|p| fail(j, p))?,
                    None => Duration::ZERO,
                };
                Action::Delay { base, jitter }
            }
            FaultKind::Bandwidth => {
                let v = value.ok_or_else(missing)?;
                let size = v
                    .strip_suffix("/s")
                    .ok_or_else(|| fail(v, "is not a rate: write e.g. 1MiB/s".into()))?;
                let bytes_per_sec = parse_size(size).map_err(|p| fail(size, p))?;
                if bytes_per_sec == 0 {
                    return Err(fail(v, "must be above zero".into()));
                }
                Action::Bandwidth { bytes_per_sec }
            }
            FaultKind::Slice => {
                let v = value.ok_or_else(missing)?;
                let (size, pause) = match v.split_once(':') {
                    Some((size, pause)) => (size.trim(), Some(pause.trim())),
                    None => (v, None),
                };
                let size_bytes = parse_size(size).map_err(|p| fail(size, p))?;
                if size_bytes == 0 {
                    return Err(fail(size, "must be at least 1B".into()));
                }
                let pause = match pause {
                    Some(p) => parse_duration(p).map_err(|problem| fail(p, problem))?,
                    None => Duration::ZERO,
                };
                Action::Slice {
                    size: size_bytes,
                    pause,
                }
            }
            FaultKind::ResetAfter | FaultKind::CloseAfter => {
                let v = value.ok_or_else(missing)?;
                let limit = parse_limit(v).map_err(|p| fail(v, p))?;
                if kind == FaultKind::ResetAfter {
                    Action::ResetAfter(limit)
                } else {
                    Action::CloseAfter(limit)
                }
            }
            FaultKind::Refuse => Action::Refuse {
                window: match value {
                    Some(v) => Some(parse_duration(v).map_err(|p| fail(v, p))?),
                    None => None,
                },
            },
            FaultKind::Reorder => Action::Reorder {
                hold: match value {
                    Some(v) => parse_duration(v).map_err(|p| fail(v, p))?,
                    None => DEFAULT_REORDER_HOLD,
                },
            },
            FaultKind::Truncate => {
                let v = value.ok_or_else(missing)?;
                Action::Truncate {
                    len: parse_size(v).map_err(|p| fail(v, p))?,
                }
            }
            FaultKind::Blackhole => Action::Blackhole,
            FaultKind::Drop => Action::Drop,
            FaultKind::Duplicate => Action::Duplicate,
            FaultKind::Corrupt => Action::Corrupt,
        };
        Ok(Fault {
            action,
            chance: chance.unwrap_or(Chance::Always),
        })
    }
}

/// How long `reorder` holds a reply back when the spec does not say.
pub const DEFAULT_REORDER_HOLD: Duration = Duration::from_millis(10);

fn parse_chance(text: &str) -> Result<Chance, String> {
    if let Some(percent) = text.strip_suffix('%') {
        let p: f64 = percent
            .trim()
            .parse()
            .map_err(|_| "is not a chance: write e.g. 5% or 1/10".to_owned())?;
        if !(p.is_finite() && p > 0.0 && p <= 100.0) {
            return Err("must be above 0% and at most 100%".into());
        }
        return Ok(Chance::Percent(p));
    }
    if let Some(n) = text.strip_prefix("1/") {
        let n: u64 = n
            .trim()
            .parse()
            .map_err(|_| "is not a chance: write 1/N with N a whole number".to_owned())?;
        if n == 0 {
            return Err("cannot be 1/0".into());
        }
        return Ok(Chance::Every(n));
    }
    Err("is not a chance: write e.g. 5% (at random) or 1/10 (every tenth)".into())
}

fn parse_limit(text: &str) -> Result<Limit, String> {
    if let Ok(d) = parse_duration(text) {
        return Ok(Limit::Time(d));
    }
    parse_size(text)
        .map(Limit::Bytes)
        .map_err(|_| "is neither a size (64KiB) nor a duration (2s)".into())
}

/// A whole number followed by its unit, split apart.
fn split_number(text: &str) -> (&str, &str) {
    let at = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(at);
    (number, unit.trim())
}

/// `10ms`, `1.5s`, `250us`, `2m`: a decimal number and a unit, exact to the nanosecond.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = split_number(text.trim());
    let unit_ns: u64 = match unit {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" | "min" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return Err("is not a duration: write e.g. 10ms, 1.5s or 250us".into()),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return Err("is not a duration: write e.g. 10ms, 1.5s or 250us".into());
    }
    let too_long = || format!("is longer than {}h", MAX_DURATION.as_secs() / 3600);
    let mut ns: u64 = if whole.is_empty() {
        0
    } else {
        whole
            .parse::<u64>()
            .ok()
            .and_then(|w| w.checked_mul(unit_ns))
            .ok_or_else(too_long)?
    };
    // Each fractional digit is worth a tenth of the one before; digits below a nanosecond
    // must be zero, so the value stays exact.
    let mut place = unit_ns;
    for digit in fraction.chars() {
        let d = digit
            .to_digit(10)
            .ok_or_else(|| "is not a duration: write e.g. 10ms, 1.5s or 250us".to_owned())?;
        if !place.is_multiple_of(10) {
            if d != 0 {
                return Err("is finer than a nanosecond".into());
            }
            continue;
        }
        place /= 10;
        ns = ns.checked_add(u64::from(d) * place).ok_or_else(too_long)?;
    }
    let d = Duration::from_nanos(ns);
    if d > MAX_DURATION {
        return Err(too_long());
    }
    Ok(d)
}

/// `64`, `16B`, `64KiB`, `1MiB`, `1kB`: a whole number of bytes.
fn parse_size(text: &str) -> Result<u64, String> {
    let (number, unit) = split_number(text.trim());
    let unit_bytes: u64 = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err("is not a size: write e.g. 16B, 64KiB or 1MiB".into()),
    };
    number
        .parse::<u64>()
        .map_err(|_| "is not a size: write a whole number, e.g. 16B, 64KiB or 1MiB".to_owned())?
        .checked_mul(unit_bytes)
        .ok_or_else(|| "is too large".to_owned())
}

/// Prints a duration in the largest unit that keeps it exact.
struct ShowDuration(Duration);

impl fmt::Display for ShowDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0.as_nanos();
        for (unit, per) in [("s", 1_000_000_000), ("ms", 1_000_000), ("us", 1_000)] {
            if ns != 0 && ns.is_multiple_of(per) {
                return write!(f, "{}{unit}", ns / per);
            }
        }
        write!(f, "{ns}ns")
    }
}

/// Prints a byte count in the largest binary unit that keeps it exact.
struct ShowSize(u64);

impl fmt::Display for ShowSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, per) in [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if n != 0 && n.is_multiple_of(per) {
                return write!(f, "{}{unit}", n / per);
            }
        }
        write!(f, "{n}B")
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Bytes(n) => ShowSize(*n).fmt(f),
            Limit::Time(d) => ShowDuration(*d).fmt(f),
        }
    }
}

impl fmt::Display for Chance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Chance::Always => Ok(()),
            Chance::Percent(p) => write!(f, "@{p}%"),
            Chance::Every(n) => write!(f, "@1/{n}"),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind().as_str())?;
        match self.action {
            Action::Delay { base, jitter } if jitter.is_zero() => {
                write!(f, "={}", ShowDuration(base))?;
            }
            Action::Delay { base, jitter } => {
                write!(f, "={}±{}", ShowDuration(base), ShowDuration(jitter))?;
            }
            Action::Bandwidth { bytes_per_sec } => write!(f, "={}/s", ShowSize(bytes_per_sec))?,
            Action::Slice { size, pause } if pause.is_zero() => write!(f, "={}", ShowSize(size))?,
            Action::Slice { size, pause } => {
                write!(f, "={}:{}", ShowSize(size), ShowDuration(pause))?;
            }
            Action::ResetAfter(limit) | Action::CloseAfter(limit) => write!(f, "={limit}")?,
            Action::Refuse {
                window: Some(window),
            } => write!(f, "={}", ShowDuration(window))?,
            Action::Reorder { hold } => write!(f, "={}", ShowDuration(hold))?,
            Action::Truncate { len } => write!(f, "={}", ShowSize(len))?,
            Action::Refuse { window: None }
            | Action::Blackhole
            | Action::Drop
            | Action::Duplicate
            | Action::Corrupt => {}
        }
        self.chance.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Fault {
        text.parse()
            .unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
    }

    #[test]
    fn parses_the_documented_examples() {
        assert_eq!(
            parse("delay=10ms±5ms"),
            Fault {
                action: Action::Delay {
                    base: Duration::from_millis(10),
                    jitter: Duration::from_millis(5)
                },
                chance: Chance::Always
            }
        );
        assert_eq!(parse("delay=10ms+-5ms"), parse("delay=10ms±5ms"));
        assert_eq!(
            parse("drop=1%"),
            Fault {
                action: Action::Drop,
                chance: Chance::Percent(1.0)
            }
        );
        assert_eq!(parse("drop@1%"), parse("drop=1%"));
        assert_eq!(
            parse("reset-after=64KiB@5%"),
            Fault {
                action: Action::ResetAfter(Limit::Bytes(65_536)),
                chance: Chance::Percent(5.0)
            }
        );
        assert_eq!(
            parse("close-after=2s").action,
            Action::CloseAfter(Limit::Time(Duration::from_secs(2)))
        );
        assert_eq!(
            parse("bandwidth=1MiB/s").action,
            Action::Bandwidth {
                bytes_per_sec: 1 << 20
            }
        );
        assert_eq!(
            parse("slice=16B:1.5ms").action,
            Action::Slice {
                size: 16,
                pause: Duration::from_micros(1500)
            }
        );
        assert_eq!(parse("duplicate@1/10").chance, Chance::Every(10));
        assert_eq!(parse("truncate=32").action, Action::Truncate { len: 32 });
        assert_eq!(
            parse("refuse=5s").action,
            Action::Refuse {
                window: Some(Duration::from_secs(5))
            }
        );
        assert_eq!(
            parse("reorder").action,
            Action::Reorder {
                hold: DEFAULT_REORDER_HOLD
            }
        );
        assert_eq!(parse("blackhole@50%").action, Action::Blackhole);
    }

    #[test]
    fn prints_back_to_the_same_fault() {
        for text in [
            "delay=10ms±5ms",
            "delay=1.5s",
            "bandwidth=1000B/s",
            "slice=16B:250us",
            "reset-after=64KiB@5%",
            "close-after=2s@1/3",
            "blackhole@0.5%",
            "refuse",
            "refuse=5s@1/2",
            "drop=1%",
            "duplicate",
            "reorder=20ms@10%",
            "truncate=1MiB",
            "corrupt@1/7",
        ] {
            let fault = parse(text);
            assert_eq!(parse(&fault.to_string()), fault, "{text} -> {fault}");
        }
        assert_eq!(parse("delay=1.5s").to_string(), "delay=1500ms");
        assert_eq!(parse("drop=1%").to_string(), "drop@1%");
    }

    #[test]
    fn rejects_malformed_specs_naming_the_bad_part() {
        for (text, part) in [
            ("jitter=5ms", "jitter"),
            ("delay", "delay"),
            ("delay=10xs", "10xs"),
            ("delay=10ms±zz", "zz"),
            ("drop=150%", "150%"),
            ("drop@0%", "0%"),
            ("drop@NaN%", "NaN%"),
            ("drop@1/0", "1/0"),
            ("bandwidth=1MiB", "1MiB"),
            ("bandwidth=0/s", "0/s"),
            ("slice=0B", "0B"),
            ("reset-after=lots", "lots"),
            ("truncate=1.5B", "1.5B"),
            ("delay=99999999999999999999s", "99999999999999999999s"),
            ("delay=25h", "25h"),
            ("delay=1.0000000001s", "1.0000000001s"),
            ("corrupt=1ms", "1ms"),
        ] {
            let e = text.parse::<Fault>().expect_err(text);
            assert_eq!(e.part, part, "{text}: {e}");
            let message = e.to_string();
            assert!(message.contains("delay=10ms[±5ms]"), "{message}");
            assert!(message.contains("corrupt"), "{message}");
        }
    }

    /// What the fuzz target checks, over specs stitched from the grammar's own pieces so most
    /// of them come close to parsing: no panic, and whatever parses prints back to itself.
    #[test]
    fn stitched_specs_never_panic_and_round_trip() {
        const PIECES: [&str; 34] = [
            "delay",
            "drop",
            "slice",
            "reset-after",
            "close-after",
            "refuse",
            "reorder",
            "truncate",
            "bandwidth",
            "corrupt",
            "=",
            "@",
            "%",
            "1/",
            "±",
            "+-",
            ":",
            "/s",
            "0",
            "1",
            "7",
            ".",
            "5",
            "99999999999999999999",
            "ms",
            "s",
            "us",
            "µs",
            "h",
            "B",
            "KiB",
            "GiB",
            " ",
            "x",
        ];
        let mut rng = fastrand::Rng::with_seed(11);
        let mut parsed = 0;
        for _ in 0..50_000 {
            let text: String = (0..rng.usize(1..8))
                .map(|_| PIECES[rng.usize(..PIECES.len())])
                .collect();
            if let Ok(fault) = text.parse::<Fault>() {
                parsed += 1;
                let printed = fault.to_string();
                assert_eq!(parse(&printed), fault, "{text:?} printed as {printed:?}");
            }
        }
        assert!(parsed > 100, "only {parsed} stitched specs parsed");
    }
}
