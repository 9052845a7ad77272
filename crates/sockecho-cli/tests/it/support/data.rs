//! Test payloads that catch reordering and lost bytes, and temporary directories for socket
//! files and certificates.

/// `len` bytes that cycle through every byte value, offset by `seed` so streams differ.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    // A cheap xorshift, so the data is not periodic with any buffer size.
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x as u8) ^ (i as u8)
        })
        .collect()
}

/// Asserts every byte value occurs in `data`.
pub fn assert_all_byte_values(data: &[u8]) {
    let mut seen = [false; 256];
    for &b in data {
        seen[b as usize] = true;
    }
    assert!(seen.iter().all(|&s| s), "test data misses some byte values");
}

/// A fresh temporary directory, removed when dropped.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("create a temporary directory")
}
