//! The message format: what each benchmark and ping message carries, so every echoed byte can be
//! checked.
//!
//! A message of `size` bytes for sequence number `seq` on connection `conn` is:
//!
//! | bytes   | content                                                        |
//! |---------|----------------------------------------------------------------|
//! | 0..8    | `seq`, little-endian                                           |
//! | 8..12   | `conn`, little-endian                                          |
//! | 12..16  | a check word computed from `seq` and `conn`                    |
//! | 16..    | filler: byte `i` is `TABLE[(seq + i) % 251]`                    |
//!
//! A message shorter than 16 bytes is the first `size` bytes of that header, so even a 1-byte
//! message is derived from its sequence number (its low byte). What can be verified then:
//!
//! - **16 bytes and more**: everything. A reply names its message, so duplicates, reordering,
//!   replies meant for another connection and corruption anywhere are told apart.
//! - **Shorter, stream transports**: each reply is compared byte for byte with the next message
//!   expected in order; any corruption, duplicate or reordering shows as a mismatch.
//! - **Shorter, datagram transports**: the reply's first bytes hold the low bytes of its
//!   sequence number, enough to find it among the messages in flight (1 byte tells apart 256),
//!   and the rest is compared with what that message held.
//!
//! The filler is a slice of one shared, read-only buffer (the 251-byte table repeated), so
//! building or checking a message of any size copies or compares memory and computes nothing;
//! 251 is prime so the pattern never lines up with power-of-two sizes.

use std::sync::Arc;

/// Bytes of the header, when the message is long enough to hold it.
pub const HEADER_LEN: usize = 16;

/// Period of the filler pattern.
const PERIOD: usize = 251;

/// The filler table: fixed pseudo-random bytes (an xorshift sequence), the same in every build.
const TABLE: [u8; PERIOD] = {
    let mut table = [0u8; PERIOD];
    let mut x: u32 = 0x9E37_79B9;
    let mut i = 0;
    while i < PERIOD {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        table[i] = (x >> 24) as u8;
        i += 1;
    }
    table
};

/// The check word: a multiplicative hash of `seq` and `conn`, so a corrupted header is not taken
/// for a different but valid message.
fn check(seq: u64, conn: u32) -> u32 {
    let mut x = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ u64::from(conn)
            .wrapping_add(0x5EC0_EC40)
            .wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    x ^= x >> 29;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 32;
    x as u32
}

/// The 16-byte header of message `seq` on connection `conn`.
pub fn header(seq: u64, conn: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&seq.to_le_bytes());
    h[8..12].copy_from_slice(&conn.to_le_bytes());
    h[12..].copy_from_slice(&check(seq, conn).to_le_bytes());
    h
}

/// A header that holds together: its check word matches its sequence number and connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub seq: u64,
    pub conn: u32,
}

/// Reads a full header; `None` if its check word does not match (corruption, or not ours).
pub fn parse_header(bytes: &[u8; HEADER_LEN]) -> Option<Header> {
    let word = |r: std::ops::Range<usize>| {
        let mut b = [0u8; 4];
        b.copy_from_slice(&bytes[r]);
        u32::from_le_bytes(b)
    };
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&bytes[..8]);
    let seq = u64::from_le_bytes(seq);
    let conn = word(8..12);
    (word(12..16) == check(seq, conn)).then_some(Header { seq, conn })
}

/// The low bytes of a sequence number, as far as a short reply holds them: `(value, bits)`.
pub fn seq_prefix(bytes: &[u8]) -> (u64, u32) {
    let n = bytes.len().min(8);
    let mut b = [0u8; 8];
    b[..n].copy_from_slice(&bytes[..n]);
    (u64::from_le_bytes(b), 8 * n as u32)
}

/// The expected content of every message of one size: the shared filler buffer and the size.
/// Cloning shares the buffer.
#[derive(Debug, Clone)]
pub struct Pattern {
    size: usize,
    /// `TABLE` repeated to `PERIOD + size` bytes, so any `size`-long window is one slice.
    filler: Arc<[u8]>,
}

impl Pattern {
    /// The pattern for `size`-byte messages.
    pub fn new(size: usize) -> Pattern {
        let len = PERIOD + size.saturating_sub(HEADER_LEN);
        let filler: Arc<[u8]> = (0..len).map(|i| TABLE[i % PERIOD]).collect();
        Pattern { size, filler }
    }

    /// The message size.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Bytes of the header a message holds: 16, or all of it if shorter.
    pub fn header_len(&self) -> usize {
        self.size.min(HEADER_LEN)
    }

    /// Bytes `from..from + len` of message `seq`'s filler, where `from >= HEADER_LEN` and the
    /// range lies within the message.
    pub fn filler(&self, seq: u64, from: usize, len: usize) -> &[u8] {
        debug_assert!(from >= HEADER_LEN && from + len <= self.size);
        let start = ((seq % PERIOD as u64) as usize + from) % PERIOD;
        &self.filler[start..start + len]
    }

    /// Writes message `seq` of connection `conn` into `out`, which is `size` bytes long.
    pub fn write(&self, seq: u64, conn: u32, out: &mut [u8]) {
        let hl = self.header_len();
        out[..hl].copy_from_slice(&header(seq, conn)[..hl]);
        if self.size > HEADER_LEN {
            out[HEADER_LEN..].copy_from_slice(self.filler(seq, HEADER_LEN, self.size - HEADER_LEN));
        }
    }

    /// Message `seq` of connection `conn` as a new buffer (for ping and tests, not the hot path).
    pub fn message(&self, seq: u64, conn: u32) -> Vec<u8> {
        let mut out = vec![0; self.size];
        self.write(seq, conn, &mut out);
        out
    }

    /// Whether `bytes`, found at offset `from` of a reply, are what message `seq` of `conn`
    /// holds there. `from + bytes.len()` must not exceed the size.
    pub fn matches(&self, seq: u64, conn: u32, from: usize, bytes: &[u8]) -> bool {
        let mut ok = true;
        let mut at = from;
        let mut rest = bytes;
        if at < HEADER_LEN {
            let n = rest.len().min(self.header_len() - at);
            ok &= rest[..n] == header(seq, conn)[at..at + n];
            at += n;
            rest = &rest[n..];
        }
        if !rest.is_empty() {
            ok &= rest == self.filler(seq, at, rest.len());
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_detects_corruption() {
        let h = header(0x0102_0304_0506_0708, 77);
        assert_eq!(
            parse_header(&h),
            Some(Header {
                seq: 0x0102_0304_0506_0708,
                conn: 77
            })
        );
        for byte in 0..HEADER_LEN {
            for bit in 0..8 {
                let mut bad = h;
                bad[byte] ^= 1 << bit;
                assert_eq!(parse_header(&bad), None, "flip of byte {byte} bit {bit}");
            }
        }
    }

    #[test]
    fn messages_differ_by_sequence_and_check_themselves() {
        for size in [1, 2, 7, 8, 15, 16, 17, 64, 300, 4096] {
            let p = Pattern::new(size);
            let a = p.message(5, 1);
            let b = p.message(6, 1);
            assert_eq!(a.len(), size);
            assert_ne!(a, b, "size {size}");
            assert!(p.matches(5, 1, 0, &a));
            assert!(!p.matches(6, 1, 0, &a));
            // Checking in pieces gives the same answer as checking at once.
            for split in 0..size {
                assert!(p.matches(5, 1, 0, &a[..split]));
                assert!(p.matches(5, 1, split, &a[split..]));
            }
            for i in 0..size {
                let mut bad = a.clone();
                bad[i] ^= 0x40;
                assert!(!p.matches(5, 1, 0, &bad), "size {size}, flipped byte {i}");
            }
        }
    }

    #[test]
    fn short_messages_carry_low_sequence_bytes() {
        let p = Pattern::new(1);
        assert_eq!(p.message(0x1234, 0), [0x34]);
        assert_eq!(seq_prefix(&[0x34]), (0x34, 8));
        assert_eq!(seq_prefix(&header(9, 3)), (9, 64));
    }

    #[test]
    fn filler_wraps_across_the_period() {
        let p = Pattern::new(HEADER_LEN + 3 * PERIOD);
        let m = p.message(PERIOD as u64 - 1, 0);
        for i in HEADER_LEN..m.len() {
            assert_eq!(m[i], TABLE[(PERIOD - 1 + i) % PERIOD]);
        }
    }
}
