//! Fuzzes the endpoint parser: no input may panic it, and whatever parses must print back to
//! text that parses to the same endpoint.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockecho::Endpoint;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(endpoint) = text.parse::<Endpoint>() {
        let printed = endpoint.to_string();
        let again: Endpoint = printed
            .parse()
            .unwrap_or_else(|e| panic!("{text:?} parsed, but its display {printed:?} does not: {e}"));
        assert_eq!(again, endpoint, "display of {text:?} round-trips to another endpoint");
    }
});
