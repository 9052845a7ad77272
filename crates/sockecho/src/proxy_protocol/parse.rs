//! Framing and decoding: where a header ends, whether it is complete, and what it says.
//!
//! Framing comes first and is strict, so the decoder only ever sees one whole header: a v1 line
//! ends at its first LF within [`MAX_V1_LEN`] bytes, a v2 header's length is in its preamble and
//! must fit [`MAX_V2_LEN`]. Until those bytes are there the answer is "incomplete"; a first byte
//! that cannot start a signature is "missing" at once.

use proxy_header::{ParseConfig, Tlv};

use super::header::{Addresses, HeaderError, MAX_V1_LEN, MAX_V2_LEN, ProxyHeader, Version};

const V1_SIGNATURE: &[u8] = b"PROXY ";
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
/// The v2 signature, the version/command byte, the family/protocol byte and the length.
const V2_PREAMBLE: usize = 16;

/// Whether `buf` agrees with `signature` as far as either goes.
fn could_be(buf: &[u8], signature: &[u8]) -> bool {
    let n = buf.len().min(signature.len());
    buf[..n] == signature[..n]
}

/// Whether `buf` starts with a whole v1 or v2 signature, so it is a PROXY header and not data
/// that merely begins like one.
pub fn starts_with_signature(buf: &[u8]) -> bool {
    buf.starts_with(V1_SIGNATURE) || buf.starts_with(V2_SIGNATURE)
}

/// The length of the header at the start of `buf`, once it can be told. `Ok(None)` means every
/// byte of `buf` belongs to a header that is still incomplete (so all of them may be consumed).
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, HeaderError> {
    if buf.is_empty() {
        return Ok(None);
    }
    if could_be(buf, V2_SIGNATURE) {
        if buf.len() < V2_PREAMBLE {
            return Ok(None);
        }
        let len = V2_PREAMBLE + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        if len > MAX_V2_LEN {
            return Err(HeaderError::TooLong);
        }
        return Ok(Some(len));
    }
    if could_be(buf, V1_SIGNATURE) {
        let window = &buf[..buf.len().min(MAX_V1_LEN)];
        return match window.iter().position(|&b| b == b'\n') {
            Some(lf) => Ok(Some(lf + 1)),
            None if buf.len() >= MAX_V1_LEN => Err(HeaderError::TooLong),
            None => Ok(None),
        };
    }
    Err(HeaderError::Missing)
}

/// Decodes the header at the start of `buf`: `Ok(None)` while it is incomplete, else the header
/// and its length (the data that follows starts there).
pub fn parse(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, HeaderError> {
    let Some(len) = frame_len(buf)? else {
        return Ok(None);
    };
    if buf.len() < len {
        return Ok(None);
    }
    let frame = &buf[..len];
    let version = if frame[0] == V1_SIGNATURE[0] {
        Version::V1
    } else {
        Version::V2
    };
    match version {
        Version::V1 if !frame.ends_with(b"\r\n") => {
            return Err(HeaderError::Malformed("the v1 line does not end in CRLF"));
        }
        Version::V2 if frame[12] >> 4 != 2 => {
            return Err(HeaderError::Malformed("unknown v2 version"));
        }
        Version::V2 if frame[12] & 0x0f > 1 => {
            return Err(HeaderError::Malformed("unknown v2 command"));
        }
        _ => {}
    }
    let config = ParseConfig {
        include_tlvs: true,
        allow_v1: version == Version::V1,
        allow_v2: version == Version::V2,
    };
    let (decoded, used) = proxy_header::ProxyHeader::parse(frame, config).map_err(|_| {
        HeaderError::Malformed(match version {
            Version::V1 => "the v1 line is not PROXY TCP4|TCP6|UNKNOWN with addresses and ports",
            Version::V2 => "bad v2 address family, protocol or address length",
        })
    })?;
    if used != len {
        return Err(HeaderError::Malformed(
            "the header is longer than its content",
        ));
    }
    let mut header = ProxyHeader {
        version,
        addresses: decoded.proxied_address().map(|a| Addresses {
            source: a.source,
            destination: a.destination,
        }),
        alpn: None,
        authority: None,
        unique_id: None,
    };
    for tlv in decoded.tlvs() {
        match tlv.map_err(|_| HeaderError::Malformed("bad v2 TLV"))? {
            Tlv::Alpn(v) => {
                header.alpn.get_or_insert_with(|| v.into_owned());
            }
            Tlv::Authority(v) => {
                header.authority.get_or_insert_with(|| v.into_owned());
            }
            Tlv::UniqueId(v) => {
                header.unique_id.get_or_insert_with(|| v.into_owned());
            }
            _ => {}
        }
    }
    Ok(Some((header, len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(0x20 | command);
        out.push(family);
        out.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn v1_tcp4_and_the_data_after_it() {
        let buf = b"PROXY TCP4 192.0.2.1 198.51.100.2 40000 443\r\nhello";
        let (header, len) = parse(buf).unwrap().unwrap();
        assert_eq!(&buf[len..], b"hello");
        assert_eq!(header.version, Version::V1);
        assert_eq!(header.source(), Some("192.0.2.1:40000".parse().unwrap()));
        assert_eq!(
            header.addresses.unwrap().destination,
            "198.51.100.2:443".parse().unwrap()
        );
    }

    #[test]
    fn v1_unknown_and_tcp6() {
        let (header, len) = parse(b"PROXY UNKNOWN\r\n").unwrap().unwrap();
        assert_eq!((header.addresses, len), (None, 15));
        let (header, _) = parse(b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(header.source(), Some("[2001:db8::1]:1".parse().unwrap()));
    }

    #[test]
    fn every_prefix_of_a_header_is_incomplete() {
        let v1 = b"PROXY TCP4 192.0.2.1 198.51.100.2 40000 443\r\n".to_vec();
        let v2 = v2(
            1,
            0x11,
            &[192, 0, 2, 1, 198, 51, 100, 2, 0x9c, 0x40, 1, 187],
        );
        for whole in [v1, v2] {
            for n in 0..whole.len() {
                assert!(parse(&whole[..n]).unwrap().is_none(), "{n} bytes");
            }
            assert_eq!(parse(&whole).unwrap().unwrap().1, whole.len());
        }
    }

    #[test]
    fn v2_proxy_local_and_tlvs() {
        let mut body = vec![192, 0, 2, 1, 198, 51, 100, 2, 0x9c, 0x40, 1, 187];
        body.extend_from_slice(&[0x01, 0, 2, b'h', b'2']);
        body.extend_from_slice(&[0x02, 0, 11]);
        body.extend_from_slice(b"example.com");
        body.extend_from_slice(&[0x05, 0, 3, b'i', b'd', b'1']);
        body.extend_from_slice(&[0xe0, 0, 1, 9]); // a custom TLV, ignored
        let buf = v2(1, 0x11, &body);
        let (header, len) = parse(&buf).unwrap().unwrap();
        assert_eq!(len, buf.len());
        assert_eq!(header.source(), Some("192.0.2.1:40000".parse().unwrap()));
        assert_eq!(header.alpn.as_deref(), Some(&b"h2"[..]));
        assert_eq!(header.authority.as_deref(), Some("example.com"));
        assert_eq!(header.unique_id_text().as_deref(), Some("id1"));

        // LOCAL keeps no addresses even if some are given.
        let (local, _) = parse(&v2(0, 0x11, &body[..12])).unwrap().unwrap();
        assert_eq!(local.addresses, None);
        let (unspec, _) = parse(&v2(0, 0x00, &[])).unwrap().unwrap();
        assert_eq!(unspec.addresses, None);
    }

    #[test]
    fn refusals_say_why() {
        let cases: [(&[u8], &str); 7] = [
            (b"GET / HTTP/1.1\r\n", "missing"),
            (b"hello", "missing"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "malformed"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "malformed"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", "malformed"),
            (b"PROXY TCP4 1.2.3.4 ::1 1 2\r\n", "malformed"),
            (b"PROXY A", "incomplete"),
        ];
        for (buf, reason) in cases {
            let got = match parse(buf) {
                Ok(None) => "incomplete",
                Ok(Some(_)) => "ok",
                Err(e) => e.reason(),
            };
            assert_eq!(got, reason, "{:?}", String::from_utf8_lossy(buf));
        }
        let long = [b"PROXY ".as_slice(), &[b'1'; 200]].concat();
        assert_eq!(parse(&long).unwrap_err().reason(), "too_long");
        let mut big = v2(1, 0x11, &[]);
        big[14..16].copy_from_slice(&5000u16.to_be_bytes());
        assert_eq!(parse(&big).unwrap_err().reason(), "too_long");
        // Bad version and command nibbles, and an address block shorter than IPv4 needs.
        let mut bad = v2(1, 0x11, &[0; 12]);
        bad[12] = 0x31;
        assert_eq!(parse(&bad).unwrap_err().reason(), "malformed");
        bad[12] = 0x22;
        assert_eq!(parse(&bad).unwrap_err().reason(), "malformed");
        assert_eq!(
            parse(&v2(1, 0x11, &[0; 4])).unwrap_err().reason(),
            "malformed"
        );
        // A TLV whose length runs past the header.
        let mut body = vec![0; 12];
        body.extend_from_slice(&[0x02, 0, 9, b'x']);
        assert_eq!(
            parse(&v2(1, 0x11, &body)).unwrap_err().reason(),
            "malformed"
        );
    }
}
