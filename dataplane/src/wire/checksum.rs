//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! Sums are kept unfolded in a `u32` while accumulating and folded to 16 bits
//! once at the end. Incremental updates follow RFC 1624 eqn. 3,
//! `HC' = ~(~HC + ~m + m')`, which never produces the `-0` ambiguity of eqn. 2.

/// One's-complement sum of `data` as big-endian 16-bit words (an odd final byte
/// is padded with zero), unfolded. Callers must keep the total below ~2^32: one
/// frame (≤ 64 KiB) adds at most 2^31.
#[inline]
pub fn sum(data: &[u8]) -> u32 {
    let mut acc: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        acc += u32::from(*b) << 8;
    }
    acc
}

/// Folds an unfolded sum into 16 bits (end-around carry).
#[inline]
pub fn fold(mut acc: u32) -> u16 {
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc as u16
}

/// The checksum field value for data whose unfolded sum is `acc`.
#[inline]
pub fn finish(acc: u32) -> u16 {
    !fold(acc)
}

/// RFC 1624 eqn. 3: the new checksum after words summing to `removed` were
/// replaced by words summing to `added` (both unfolded sums, word-aligned).
#[inline]
pub fn adjust(csum: u16, removed: u32, added: u32) -> u16 {
    let acc = u32::from(!csum) + u32::from(!fold(removed)) + u32::from(fold(added));
    !fold(acc)
}

/// RFC 1624 for a single 16-bit word changing from `old` to `new`.
#[inline]
pub fn adjust_word(csum: u16, old: u16, new: u16) -> u16 {
    adjust(csum, u32::from(old), u32::from(new))
}

/// The unfolded sum of the TCP/UDP pseudo-header for IPv4 (RFC 793/768).
#[inline]
pub fn pseudo_v4(src: &[u8; 4], dst: &[u8; 4], proto: u8, len: u16) -> u32 {
    sum(src) + sum(dst) + u32::from(proto) + u32::from(len)
}

/// The unfolded sum of the upper-layer pseudo-header for IPv6 (RFC 8200 §8.1).
/// `len` is the upper-layer length (fits in 16 bits for non-jumbograms).
#[inline]
pub fn pseudo_v6(src: &[u8; 16], dst: &[u8; 16], proto: u8, len: u32) -> u32 {
    sum(src) + sum(dst) + (len >> 16) + (len & 0xffff) + u32::from(proto)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: 0001 f203 f4f5 f6f7 sums to ddf2 (folded).
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&d)), 0xddf2);
        assert_eq!(finish(sum(&d)), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
    }

    #[test]
    fn incremental_matches_recompute() {
        let mut d = [
            0x45u8, 0x00, 0x00, 0x3c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0, 0, 0xac, 0x10, 0x0a, 0x63, 0xac, 0x10,
            0x0a, 0x0c,
        ];
        let c = finish(sum(&d));
        d[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(fold(sum(&d)), 0xffff);
        // change total length 0x003c -> 0x0050 incrementally
        let c2 = adjust_word(c, 0x003c, 0x0050);
        d[2..4].copy_from_slice(&0x0050u16.to_be_bytes());
        d[10..12].copy_from_slice(&[0, 0]);
        assert_eq!(c2, finish(sum(&d)));
        // many random-ish updates never diverge from a recompute
        let mut x: u32 = 0x1234_5678;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let i = (x as usize % 9) * 2;
            if i == 10 {
                continue;
            }
            let old = u16::from_be_bytes([d[i], d[i + 1]]);
            let new = (x >> 16) as u16;
            let before = finish(sum(&d));
            d[i..i + 2].copy_from_slice(&new.to_be_bytes());
            let mut full = d;
            full[10..12].copy_from_slice(&[0, 0]);
            // both finishes are of the same data with checksum field zero
            let _ = before;
            let inc = adjust_word(
                finish(sum(&{
                    let mut p = full;
                    p[i..i + 2].copy_from_slice(&old.to_be_bytes());
                    p
                })),
                old,
                new,
            );
            assert_eq!(inc, finish(sum(&full)));
        }
    }
}
