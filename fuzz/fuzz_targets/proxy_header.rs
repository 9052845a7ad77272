//! Fuzzes the PROXY protocol header parser, which reads untrusted bytes: no input may panic it;
//! a header that parses must encode back to bytes that parse to the same header, of the same
//! length; every prefix of a parsed header must read as incomplete, not as an error; and framing
//! must agree with parsing on where the header ends.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockecho::proxy_protocol::{frame_len, parse};

fuzz_target!(|data: &[u8]| {
    let parsed = parse(data);
    if let Ok(Some(len)) = frame_len(data) {
        assert!(len >= 1);
        if data.len() < len {
            assert!(matches!(parsed, Ok(None)), "{data:?} is short of its frame but parsed");
        }
    }
    let Ok(Some((header, len))) = parsed else {
        return;
    };
    assert!(len <= data.len());
    for n in 0..len {
        assert!(
            matches!(parse(&data[..n]), Ok(None)),
            "{n}-byte prefix of {data:?} is not incomplete"
        );
    }
    let encoded = header
        .encode()
        .unwrap_or_else(|e| panic!("{header:?}, parsed from {data:?}, does not encode: {e}"));
    let (again, again_len) = match parse(&encoded) {
        Ok(Some(parsed)) => parsed,
        other => panic!("{header:?} encodes to {encoded:?}, which parses to {other:?}"),
    };
    assert_eq!(again, header, "{data:?} round-trips to another header");
    assert_eq!(again_len, encoded.len());
});
