//! Fuzzes the checks `sockecho bench` applies to echoed bytes, which any server under test can
//! make arbitrary: no reply may panic them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockecho::payload::{self, Pattern};

fuzz_target!(|data: &[u8]| {
    if let Some(header) = data.first_chunk::<{ payload::HEADER_LEN }>() {
        let _ = payload::parse_header(header);
    }
    let _ = payload::seq_prefix(data);
    let size = data.len().max(1);
    let pattern = Pattern::new(size);
    let seq = data.len() as u64;
    let _ = pattern.matches(seq, 7, 0, data);
});
