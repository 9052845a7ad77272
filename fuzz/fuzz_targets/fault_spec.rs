//! Fuzzes the fault spec parser behind `serve --fault`, which reads the command line and the
//! environment: no input may panic it, and whatever parses must print back to a spec that
//! parses to the same fault.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockecho::server::fault::Fault;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(fault) = text.parse::<Fault>() {
        let printed = fault.to_string();
        let again: Fault = printed
            .parse()
            .unwrap_or_else(|e| panic!("{text:?} parsed, but its display {printed:?} does not: {e}"));
        assert_eq!(again, fault, "display of {text:?} round-trips to another fault");
    }
});
