//! Values as the document writes them: ports and port ranges, protocol
//! lists, X25519 keys.

use super::error::Problem;
use crate::policy::model::{PortSpec, Protocol};
use crate::policy::snapshot::{P_ICMP, P_OTHER, P_TCP, P_UDP};

pub(super) fn parse_port(p: &PortSpec) -> Result<(u16, u16), Problem> {
    let one = |s: &str| -> Result<u16, Problem> { s.trim().parse::<u16>().map_err(|_| Problem::BadPort) };
    match p {
        PortSpec::Number(n) => u16::try_from(*n).map(|n| (n, n)).map_err(|_| Problem::BadPort),
        PortSpec::Text(s) => {
            let (lo, hi) = match s.split_once('-') {
                Some((a, b)) => (one(a)?, one(b)?),
                None => {
                    let n = one(s)?;
                    (n, n)
                }
            };
            if lo > hi {
                return Err(Problem::InvertedRange);
            }
            Ok((lo, hi))
        }
    }
}

pub(super) fn proto_mask(list: &[Protocol]) -> u8 {
    list.iter().fold(0, |m, p| {
        m | match p {
            Protocol::Tcp => P_TCP,
            Protocol::Udp => P_UDP,
            Protocol::Icmp => P_ICMP,
            Protocol::Any => P_TCP | P_UDP | P_ICMP | P_OTHER,
        }
    })
}

/// The ports as written, when ports are given but the protocols (icmp only)
/// have none.
pub(super) fn ports_without_protocol(protos: u8, ports: &[PortSpec]) -> Option<String> {
    if ports.is_empty() || protos == 0 || protos & (P_TCP | P_UDP) != 0 {
        return None;
    }
    let v = ports.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    Some(format!("[{v}]"))
}

/// Decodes 32 bytes from 64 hex digits or base64 (standard or URL alphabet, padding optional).
pub fn decode_key32(s: &str) -> Result<[u8; 32], String> {
    let s = s.trim();
    let mut out = [0u8; 32];
    if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
        }
        return Ok(out);
    }
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    };
    let body = s.trim_end_matches('=');
    let mut bytes = Vec::with_capacity(33);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in body.bytes() {
        let Some(v) = val(c) else {
            return Err(format!("{s:?} is neither 64 hex digits nor base64"));
        };
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            bytes.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if bytes.len() != 32 {
        return Err(format!("{s:?} decodes to {} bytes, an X25519 key has 32", bytes.len()));
    }
    out.copy_from_slice(&bytes);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_decode() {
        let k = decode_key32("rpkk17OQp1XpEndN4If+uJpXXc82EU7P8keCkbzIpBs=").unwrap();
        assert_eq!(k[0], 0xae);
        assert_eq!(decode_key32("rpkk17OQp1XpEndN4If-uJpXXc82EU7P8keCkbzIpBs").unwrap(), k);
        assert_eq!(decode_key32(&"ab".repeat(32)).unwrap(), [0xab; 32]);
        assert!(decode_key32("AAAA").unwrap_err().contains("decodes to 3 bytes"));
    }
}
