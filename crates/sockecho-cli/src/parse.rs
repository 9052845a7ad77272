//! Value parsers shared by the command line's flags: durations, start times, shards, sizes,
//! rates, networks and source address lists. Each returns a message that names the rejected
//! text, which clap shows as a usage error (exit 2).

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use sockecho::bench::Shard;

/// Parses `30s`, `1.5s`, `250ms`, `5m`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|e| format!("{text:?}: {e}"));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration ({e}); write e.g. 30s, 250ms or 5m"))
}

/// Parses a duration like [`parse_duration`], refusing zero: a timeout, interval or run length
/// of 0 would make the command useless (everything closed or late at once, a busy loop,
/// nothing measured).
pub fn parse_nonzero_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        Duration::ZERO => Err(format!("{text:?}: must be longer than zero")),
        d => Ok(d),
    }
}

/// Parses a TLS certificate fingerprint (`--pin-sha256`): 64 hex digits, colons optional. The
/// text is kept as given; this only checks it before anything connects.
pub fn parse_fingerprint(text: &str) -> Result<String, String> {
    sockecho::tls::parse_fingerprint(text)
        .map(|_| text.to_owned())
        .map_err(|e| e.to_string())
}

/// Parses `HOST:PORT` for a listening address (`serve --metrics`): an IP address and port
/// (IPv6 in brackets), or a host name and port.
pub fn parse_listen_addr(text: &str) -> Result<String, String> {
    let bad = || {
        format!(
            "{text:?} is not an address to listen on; write HOST:PORT, e.g. 127.0.0.1:9100, \
             [::1]:9100 or localhost:9100"
        )
    };
    if text.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(text.to_owned());
    }
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let name_ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !name_ok || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok(text.to_owned())
}

/// Parses an `--identity`: printable text, as a log line, a label value and JSON carry it.
pub fn parse_identity(text: &str) -> Result<String, String> {
    const MAX_LEN: usize = 253; // a DNS name, the longest pod or host name
    if text.is_empty() || text.len() > MAX_LEN || text.chars().any(char::is_control) {
        return Err(format!(
            "{text:?} is not a usable name: use 1 to {MAX_LEN} printable characters (or `auto` \
             for the host name)"
        ));
    }
    Ok(text.to_owned())
}

/// Parses `--start-at`: an RFC 3339 time (`2026-12-06T09:00:00Z`, or with an offset from UTC as
/// `date -Iseconds` prints it, `2026-12-06T10:00:00+01:00`; fractions of a second allowed), or
/// `+DURATION` from now (`+30s`). Whether it is still ahead is checked with the rest of the run's
/// settings.
pub fn parse_start_at(text: &str) -> Result<SystemTime, String> {
    let text = text.trim();
    if let Some(ahead) = text.strip_prefix('+') {
        return Ok(SystemTime::now() + parse_duration(ahead)?);
    }
    let explain = |e: &dyn std::fmt::Display| {
        format!(
            "{text:?} is not a start time ({e}); write it as 2026-12-06T09:00:00Z or \
             2026-12-06T10:00:00+01:00 (`date -Iseconds` prints one), or +30s for 30 seconds \
             from now"
        )
    };
    // humantime reads UTC only (`Z`); an offset is taken off here and applied after.
    let (utc, offset_s) = match split_utc_offset(text) {
        Some((local, offset_s)) => (format!("{local}Z"), offset_s),
        None => (text.to_owned(), 0),
    };
    let local = humantime::parse_rfc3339(&utc).map_err(|e| explain(&e))?;
    // Local time = UTC + offset, so UTC = local - offset.
    let shift = Duration::from_secs(offset_s.unsigned_abs());
    let at = if offset_s >= 0 {
        local.checked_sub(shift)
    } else {
        local.checked_add(shift)
    };
    at.ok_or_else(|| explain(&"out of range"))
}

/// Splits an RFC 3339 time that ends in a numeric offset (`+01:00`, `-05:30`, `+00:00`) into the
/// time before it and the offset in seconds east of UTC. `None` for any other ending (`Z`, or
/// something that is not a time at all, left to the parser's error).
fn split_utc_offset(text: &str) -> Option<(&str, i64)> {
    let at = text.len().checked_sub(6)?;
    let (local, offset) = (text.get(..at)?, text.get(at..)?.as_bytes());
    if !local.contains('T') && !local.contains(' ') {
        return None;
    }
    let sign = match offset[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digit = |b: u8| b.is_ascii_digit().then(|| i64::from(b - b'0'));
    let hours = digit(offset[1])? * 10 + digit(offset[2])?;
    let minutes = digit(offset[4])? * 10 + digit(offset[5])?;
    if offset[3] != b':' || hours > 23 || minutes > 59 {
        return None;
    }
    Some((local, sign * (hours * 3600 + minutes * 60)))
}

/// Parses `--shard I/N`.
pub fn parse_shard(text: &str) -> Result<Shard, String> {
    text.parse()
}

/// Parses a byte count: `64`, `1500`, `4KiB`, `1MiB` (the library's notation).
pub fn parse_size(text: &str) -> Result<usize, String> {
    sockecho::bench::parse_size(text)
}

/// Parses the largest WebSocket message (`serve --ws-max-message`): a size of at least one byte.
pub fn parse_ws_max_message(text: &str) -> Result<usize, String> {
    match parse_size(text)? {
        0 => Err("the largest WebSocket message must be at least 1 byte".into()),
        size => Ok(size),
    }
}

/// Parses a fault spec (`serve --fault`): `delay=10ms±5ms`, `drop=1%`, `reset-after=64KiB@5%`.
pub fn parse_fault(text: &str) -> Result<sockecho::server::fault::Fault, String> {
    text.parse()
        .map_err(|e: sockecho::server::fault::FaultSpecError| e.to_string())
}

/// Parses a positive rate such as `100` or `0.5`.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    positive(text, "a positive number")
}

/// Parses a positive number of messages per second (`bench --rate`).
pub fn parse_message_rate(text: &str) -> Result<f64, String> {
    positive(text, "a positive number of messages per second")
}

/// Parses `--conn-rate`: new connections per second, a positive number.
pub fn parse_conn_rate(text: &str) -> Result<f64, String> {
    positive(text, "a positive number of connections per second")
}

fn positive(text: &str, what: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!("{text:?} is not {what}")),
    }
}

/// Parses a network in CIDR notation, or a single address (a /32 or /128 network).
pub fn parse_net(text: &str) -> Result<ipnet::IpNet, String> {
    if let Ok(net) = text.parse::<ipnet::IpNet>() {
        return Ok(net.trunc());
    }
    text.parse::<IpAddr>()
        .map(ipnet::IpNet::from)
        .map_err(|_| format!("{text:?} is not a network (e.g. 10.0.0.0/8, fd00::/8) or an address"))
}

/// The parsed `--source` list: a newtype, so that clap takes the whole list as one value.
#[derive(Debug, Clone)]
pub struct Sources(pub Vec<IpAddr>);

/// Parses `IP[,IP...]` or `FIRST-LAST` (the library's notation).
pub fn parse_sources(text: &str) -> Result<Sources, String> {
    sockecho::bench::parse_sources(text).map(Sources)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(
            parse_duration("soon")
                .unwrap_err()
                .contains("not a duration")
        );
        assert!(parse_duration("-1").is_err());
        assert_eq!(
            parse_nonzero_duration("300ms"),
            Ok(Duration::from_millis(300))
        );
        assert!(parse_nonzero_duration("0").unwrap_err().contains("zero"));
    }

    #[test]
    fn start_times() {
        let at = parse_start_at("2026-12-06T09:00:00Z").unwrap();
        assert_eq!(
            at.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
            1_796_547_600
        );
        let at = parse_start_at("2026-12-06T09:00:00.250Z").unwrap();
        assert_eq!(
            at.duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
            1_796_547_600_250
        );
        let ahead = parse_start_at("+30s")
            .unwrap()
            .duration_since(SystemTime::now())
            .unwrap();
        assert!(ahead > Duration::from_secs(29) && ahead <= Duration::from_secs(30));
        assert!(parse_start_at("tomorrow").unwrap_err().contains("+30s"));
        assert!(parse_start_at("+soon").is_err());
    }

    #[test]
    fn start_times_with_an_offset_from_utc() {
        let utc = parse_start_at("2026-12-06T09:00:00Z").unwrap();
        assert_eq!(parse_start_at("2026-12-06T10:00:00+01:00"), Ok(utc));
        assert_eq!(parse_start_at("2026-12-06T03:30:00-05:30"), Ok(utc));
        assert_eq!(parse_start_at("2026-12-06T09:00:00+00:00"), Ok(utc));
        assert_eq!(
            parse_start_at("2026-12-06T10:00:00.250+01:00"),
            Ok(utc + Duration::from_millis(250))
        );
        // Across midnight and a month's end.
        assert_eq!(
            parse_start_at("2026-12-01T01:00:00+02:00"),
            parse_start_at("2026-11-30T23:00:00Z")
        );
        for bad in [
            "2026-12-06T10:00:00+1:00",
            "2026-12-06T10:00:00+24:00",
            "2026-12-06T10:00:00+01:60",
            "2026-12-06T10:00:00+0100",
            "2026-12-06+01:00",
        ] {
            assert!(
                parse_start_at(bad).unwrap_err().contains("date -Iseconds"),
                "{bad}"
            );
        }
    }

    #[test]
    fn identities() {
        assert_eq!(parse_identity("pod-7"), Ok("pod-7".to_owned()));
        assert!(parse_identity("").is_err());
        assert!(parse_identity("a\nb").is_err());
        assert!(parse_identity("\u{1b}[31m").is_err());
        assert!(parse_identity(&"x".repeat(254)).is_err());
    }

    #[test]
    fn fingerprints() {
        let hex = "ab".repeat(32);
        assert_eq!(parse_fingerprint(&hex), Ok(hex.clone()));
        assert!(parse_fingerprint("zz").unwrap_err().contains("hex digit"));
        assert!(
            parse_fingerprint("abcd")
                .unwrap_err()
                .contains("found 4 hex digits")
        );
    }

    #[test]
    fn listen_addresses() {
        for good in [
            "127.0.0.1:9100",
            "[::1]:9100",
            "localhost:0",
            "metrics.example:80",
        ] {
            assert_eq!(parse_listen_addr(good), Ok(good.to_owned()));
        }
        for bad in [
            "nonsense",
            "127.0.0.1",
            ":9100",
            "host:99999",
            "host:x",
            "a b:1",
            "::1:80",
        ] {
            assert!(parse_listen_addr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn networks() {
        assert_eq!(parse_net("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_net("127.0.0.2").unwrap().to_string(), "127.0.0.2/32");
        assert_eq!(parse_net("::1").unwrap().to_string(), "::1/128");
        assert!(
            parse_net("10.0.0.0/33")
                .unwrap_err()
                .contains("not a network")
        );
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("2.5"), Ok(2.5));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("inf").is_err());
        assert_eq!(parse_message_rate("2500"), Ok(2500.0));
        assert_eq!(
            parse_message_rate("0"),
            Err("\"0\" is not a positive number of messages per second".into())
        );
    }

    #[test]
    fn sizes_and_sources() {
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_ws_max_message("64KiB"), Ok(65536));
        assert!(
            parse_ws_max_message("0")
                .unwrap_err()
                .contains("at least 1 byte")
        );
        assert_eq!(parse_sources("127.0.0.1,127.0.0.2").unwrap().0.len(), 2);
    }
}
