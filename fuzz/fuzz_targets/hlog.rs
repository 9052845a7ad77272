//! Fuzzes the histogram-log reader behind `sockecho bench merge`, which reads files that may
//! come from anywhere: no input may panic it, and whatever it accepts can be merged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockecho::bench::{hlog, merge};

fuzz_target!(|data: &[u8]| {
    if let Ok(run) = hlog::read(data) {
        let _ = merge::merge(std::slice::from_ref(&run));
    }
});
