//! Writing a header: the inverse of [`parse`](super::parse), for clients and round-trip tests.

use std::net::{IpAddr, SocketAddr};

use proxy_header::{ProxiedAddress, Tlv};

use super::header::{MAX_V2_LEN, ProxyHeader, Version};

/// Why a header cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// v1 has no room for ALPN, authority or unique ID.
    #[error("a PROXY v1 header cannot carry TLVs (ALPN, authority, unique ID); use v2")]
    V1Tlvs,
    /// Addresses and TLVs together exceed what the server side accepts.
    #[error("the PROXY header would be longer than {MAX_V2_LEN} bytes")]
    TooLong,
    /// The encoder refused the header for another reason.
    #[error("cannot encode the PROXY header: {0}")]
    Format(String),
}

impl ProxyHeader {
    /// The header's bytes. A header without addresses is v1 `UNKNOWN` or v2 `LOCAL`. Source and
    /// destination of different families are both written as IPv6, the IPv4 one mapped
    /// (`::ffff:a.b.c.d`), since the format names one family for both.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let address = self.addresses.map(|a| {
            let (source, destination) = same_family(a.source, a.destination);
            ProxiedAddress::stream(source, destination)
        });
        let mut tlvs = Vec::new();
        if let Some(alpn) = &self.alpn {
            tlvs.push(Tlv::Alpn(alpn.into()));
        }
        if let Some(authority) = &self.authority {
            tlvs.push(Tlv::Authority(authority.into()));
        }
        if let Some(id) = &self.unique_id {
            tlvs.push(Tlv::UniqueId(id.into()));
        }
        let mut out = Vec::with_capacity(64);
        let result = match self.version {
            Version::V1 => {
                if !tlvs.is_empty() {
                    return Err(EncodeError::V1Tlvs);
                }
                let header = match address {
                    Some(a) => proxy_header::ProxyHeader::with_address(a),
                    None => proxy_header::ProxyHeader::with_local(),
                };
                header.encode_v1(&mut out)
            }
            Version::V2 => {
                // Checked before encoding: a TLV longer than 64 KiB would panic in the encoder.
                let addresses = match address {
                    Some(ProxiedAddress {
                        source: SocketAddr::V4(_),
                        ..
                    }) => 12,
                    Some(_) => 36,
                    None => 0,
                };
                let tlv_bytes: usize = [
                    self.alpn.as_ref().map(Vec::len),
                    self.authority.as_ref().map(String::len),
                    self.unique_id.as_ref().map(Vec::len),
                ]
                .into_iter()
                .flatten()
                .map(|len| 3 + len)
                .sum();
                if 16 + addresses + tlv_bytes > MAX_V2_LEN {
                    return Err(EncodeError::TooLong);
                }
                proxy_header::ProxyHeader::with_tlvs(address, tlvs).encode_v2(&mut out)
            }
        };
        result.map_err(|e| EncodeError::Format(e.to_string()))?;
        Ok(out)
    }
}

/// `a` and `b` in one address family: IPv6 with the IPv4 one mapped if they differ.
fn same_family(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    let v6 = |addr: SocketAddr| match addr.ip() {
        IpAddr::V4(ip) => SocketAddr::new(IpAddr::V6(ip.to_ipv6_mapped()), addr.port()),
        IpAddr::V6(_) => addr,
    };
    if a.is_ipv4() == b.is_ipv4() {
        (a, b)
    } else {
        (v6(a), v6(b))
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;

    #[test]
    fn v1_text_is_exact() {
        let header = ProxyHeader::new(
            Version::V1,
            "127.0.0.1:4000".parse().unwrap(),
            "127.0.0.1:54000".parse().unwrap(),
        );
        assert_eq!(
            header.encode().unwrap(),
            b"PROXY TCP4 127.0.0.1 127.0.0.1 4000 54000\r\n"
        );
    }

    #[test]
    fn round_trips_and_mixed_families() {
        let mut header = ProxyHeader::new(
            Version::V2,
            "192.0.2.1:4000".parse().unwrap(),
            "[2001:db8::1]:443".parse().unwrap(),
        );
        header.authority = Some("example.com".into());
        header.unique_id = Some(vec![0, 1, 2]);
        let bytes = header.encode().unwrap();
        let (back, len) = parse(&bytes).unwrap().unwrap();
        assert_eq!(len, bytes.len());
        assert_eq!(
            back.source(),
            Some("[::ffff:192.0.2.1]:4000".parse().unwrap())
        );
        assert_eq!(back.authority, header.authority);
        assert_eq!(back.unique_id_text().as_deref(), Some("000102"));

        let local = ProxyHeader {
            addresses: None,
            ..header.clone()
        };
        assert_eq!(parse(&local.encode().unwrap()).unwrap().unwrap().0, local);
        assert!(matches!(
            ProxyHeader {
                version: Version::V1,
                ..header.clone()
            }
            .encode(),
            Err(EncodeError::V1Tlvs)
        ));
        header.authority = Some("x".repeat(5000));
        assert!(matches!(header.encode(), Err(EncodeError::TooLong)));
    }

    /// What the fuzz target checks, over every one-byte change of a few headers: no panic, and
    /// whatever parses encodes back to the same header.
    #[test]
    fn one_byte_changes_never_panic_and_round_trip() {
        let mut v2 = ProxyHeader::new(
            Version::V2,
            "[2001:db8::1]:4000".parse().unwrap(),
            "[2001:db8::2]:443".parse().unwrap(),
        );
        v2.alpn = Some(b"h2".to_vec());
        v2.unique_id = Some(b"abc".to_vec());
        let seeds = [
            v2.encode().unwrap(),
            ProxyHeader::new(
                Version::V1,
                "192.0.2.1:1".parse().unwrap(),
                "192.0.2.2:65535".parse().unwrap(),
            )
            .encode()
            .unwrap(),
        ];
        for seed in seeds {
            for at in 0..seed.len() {
                for byte in [0u8, 1, b' ', b'\r', b'\n', b'0', b':', 0x7f, 0xff] {
                    let mut data = seed.clone();
                    data[at] = byte;
                    if let Ok(Some((header, _))) = parse(&data) {
                        let again = parse(&header.encode().unwrap()).unwrap().unwrap().0;
                        assert_eq!(again, header, "{data:?}");
                    }
                }
            }
        }
    }
}
