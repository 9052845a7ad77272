//! Numbers as the reports print them: digit groups, byte counts, latencies, percentages.

use std::time::Duration;

/// Digits in groups of three: `1,234,567`.
pub fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes in decimal units: `7.90 MB`.
pub fn bytes_si(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} B")
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

/// A latency in microseconds with a fitting unit: `41.2µs`, `1.25ms`, `2.10s`.
pub fn micros(us: f64) -> String {
    if us < 1_000.0 {
        format!("{us:.1}µs")
    } else if us < 1_000_000.0 {
        format!("{:.2}ms", us / 1_000.0)
    } else {
        format!("{:.2}s", us / 1_000_000.0)
    }
}

/// Milliseconds with microsecond precision, as ping prints them: `0.061`.
pub fn millis(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

/// `0%`, `25%`, `33.3%`.
pub fn percent(p: f64) -> String {
    if p.fract() == 0.0 {
        format!("{p:.0}%")
    } else {
        format!("{p:.1}%")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formats() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1_234_567), "1,234,567");
        assert_eq!(micros(41.25), "41.2µs");
        assert_eq!(micros(1_250.0), "1.25ms");
        assert_eq!(micros(2_100_000.0), "2.10s");
        assert_eq!(bytes_si(999.0), "999 B");
        assert_eq!(bytes_si(7_900_000.0), "7.90 MB");
        assert_eq!(millis(Duration::from_micros(61)), "0.061");
        assert_eq!(percent(25.0), "25%");
        assert_eq!(percent(100.0 / 3.0), "33.3%");
    }
}
