//! The Internet checksum (RFC 1071) and the TCP/UDP pseudo-headers.

use std::net::IpAddr;

/// One's-complement sum of `data` as big-endian 16-bit words, added to `acc`
/// (not folded, not inverted).
pub fn sum(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for w in &mut chunks {
        acc = acc.wrapping_add(u32::from(u16::from_be_bytes([w[0], w[1]])));
        // Fold early so a 64 KiB datagram cannot overflow the accumulator.
        if acc > 0xFFFF_0000 {
            acc = (acc & 0xFFFF) + (acc >> 16);
        }
    }
    if let [last] = chunks.remainder() {
        acc = acc.wrapping_add(u32::from(*last) << 8);
    }
    acc
}

/// Folds a sum to 16 bits and inverts it: the value that goes on the wire.
pub fn finish(mut acc: u32) -> u16 {
    while acc > 0xFFFF {
        acc = (acc & 0xFFFF) + (acc >> 16);
    }
    !(acc as u16)
}

/// The IPv4 header checksum over `header` (its checksum field must be zero).
pub fn ipv4_header(header: &[u8]) -> u16 {
    finish(sum(0, header))
}

/// The TCP or UDP checksum of `segment` (checksum field zero) under the
/// pseudo-header of `src`/`dst`/`proto`. Both addresses must be one family.
pub fn transport(src: IpAddr, dst: IpAddr, proto: u8, segment: &[u8]) -> u16 {
    let len = segment.len() as u32;
    let mut acc = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let acc = sum(sum(0, &s.octets()), &d.octets());
            acc + u32::from(proto) + len
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let acc = sum(sum(0, &s.octets()), &d.octets());
            acc + (len >> 16) + (len & 0xFFFF) + u32::from(proto)
        }
        _ => panic!("pseudo-header over mixed address families"),
    };
    acc = sum(acc, segment);
    let c = finish(acc);
    // UDP sends a computed zero as all ones (zero means "no checksum");
    // TCP may do the same, the two are equal in one's complement.
    if c == 0 {
        0xFFFF
    } else {
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(finish(sum(0, &data)), !0xddf2);
    }

    #[test]
    fn known_ipv4_header() {
        // A header from the Wikipedia IPv4 checksum example: 0xb861.
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8,
            0x00, 0xc7,
        ];
        assert_eq!(ipv4_header(&h), 0xb861);
        h[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(finish(sum(0, &h)), 0);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum(0, &[0xab]), 0xab00);
    }
}
