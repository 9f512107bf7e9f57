//! Which worker owns a frame: a symmetric flow hash.
//!
//! Both directions of a flow must be handled by one worker (it owns the flow's
//! state). Devices cannot be trusted to ensure that: af_packet's fanout rolls
//! over to another socket when one is full, and many NICs hash asymmetrically.
//! So every worker hashes what it receives, and hands frames it does not own to
//! their owner over a single-producer/single-consumer ring. The hash orders the
//! two endpoints before mixing them, so (a→b) and (b→a) hash alike.
//!
//! Every length is checked before use; a frame too short to hold what its
//! headers claim simply hashes on what could be read.

use crate::wire::ethernet::{self, ethertype, MAX_VLAN_TAGS, VLAN_TAG_LEN};
use crate::wire::{ip_proto, ipv4, ipv6};

#[inline(always)]
fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

#[inline(always)]
fn mix(mut h: u64) -> u64 {
    // The finaliser of splitmix64: cheap and avalanching.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Folds one endpoint (address bytes and port) into 64 bits.
#[inline(always)]
fn endpoint(addr: &[u8], port: u16) -> u64 {
    let mut h = u64::from(port);
    for chunk in addr.chunks(8) {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        h = mix(h ^ u64::from_le_bytes(w));
    }
    h
}

/// A direction-independent hash of the frame's flow: addresses, protocol and
/// (for unfragmented TCP/UDP) ports. Non-IP frames hash to 0.
pub fn symmetric_flow_hash(frame: &[u8]) -> u64 {
    // The ethertype field: the last two bytes of the untagged header.
    let mut off = ethernet::HEADER_LEN - 2;
    let Some(mut et) = be16(frame, off) else { return 0 };
    // Up to two VLAN tags (802.1ad outer, 802.1Q inner).
    for _ in 0..MAX_VLAN_TAGS {
        if et != ethertype::VLAN && et != ethertype::QINQ {
            break;
        }
        off += VLAN_TAG_LEN;
        let Some(t) = be16(frame, off) else { return 0 };
        et = t;
    }
    let l3 = off + 2;
    let (proto, src, dst, l4) = match et {
        ethertype::IPV4 => {
            let Some(hdr) = frame.get(l3..l3 + ipv4::HEADER_LEN) else { return 0 };
            let ihl = usize::from(hdr[0] & 0x0f) * 4;
            // A fragment other than the first has no ports; the first has
            // them but later ones would not: hash fragments on addresses only.
            let frag = u16::from_be_bytes([hdr[6], hdr[7]]) & 0x3fff != 0;
            let l4 = if frag || ihl < ipv4::HEADER_LEN { None } else { Some(l3 + ihl) };
            (hdr[9], &hdr[12..16], &hdr[16..20], l4)
        }
        ethertype::IPV6 => {
            let Some(hdr) = frame.get(l3..l3 + ipv6::HEADER_LEN) else { return 0 };
            // Extension headers are not walked here: a flow keeps the same
            // chain in both directions in practice, and the hash stays symmetric.
            let next = hdr[6];
            let l4 = if next == ip_proto::TCP || next == ip_proto::UDP { Some(l3 + ipv6::HEADER_LEN) } else { None };
            (next, &hdr[8..24], &hdr[24..40], l4)
        }
        _ => return 0,
    };
    let (sport, dport) = match l4 {
        Some(at) if proto == ip_proto::TCP || proto == ip_proto::UDP => {
            (be16(frame, at).unwrap_or(0), be16(frame, at + 2).unwrap_or(0))
        }
        _ => (0, 0),
    };
    let a = endpoint(src, sport);
    let b = endpoint(dst, dport);
    // Order-independent combination of the two endpoints.
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    mix(lo ^ hi.rotate_left(17) ^ u64::from(proto))
}

/// The worker (of `n`) that owns a frame with this hash.
#[inline(always)]
pub fn owner(hash: u64, n: usize) -> usize {
    if n <= 1 {
        0
    } else {
        // Multiply-shift: uniform without a division.
        ((u128::from(hash as u32) * n as u128) >> 32) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4_tcp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, vlan: bool) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        if vlan {
            f.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
        }
        f.extend_from_slice(&[0x08, 0x00]);
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[9] = ip_proto::TCP;
        ip[12..16].copy_from_slice(&src);
        ip[16..20].copy_from_slice(&dst);
        f.extend_from_slice(&ip);
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&[0u8; 16]);
        f
    }

    #[test]
    fn both_directions_hash_alike() {
        for vlan in [false, true] {
            let a = v4_tcp([10, 0, 0, 1], [10, 0, 0, 2], 40000, 80, vlan);
            let b = v4_tcp([10, 0, 0, 2], [10, 0, 0, 1], 80, 40000, vlan);
            assert_eq!(symmetric_flow_hash(&a), symmetric_flow_hash(&b));
            assert_ne!(symmetric_flow_hash(&a), 0);
        }
    }

    #[test]
    fn different_flows_spread_over_workers() {
        let mut seen = [0usize; 2];
        for port in 1000..1400u16 {
            let f = v4_tcp([10, 0, 0, 1], [10, 0, 0, 2], port, 80, false);
            seen[owner(symmetric_flow_hash(&f), 2)] += 1;
        }
        // 400 flows over 2 workers: both get a fair share.
        assert!(seen[0] > 120 && seen[1] > 120, "{seen:?}");
    }

    #[test]
    fn swapped_ports_alone_are_a_different_flow() {
        let a = v4_tcp([10, 0, 0, 1], [10, 0, 0, 2], 1, 2, false);
        let b = v4_tcp([10, 0, 0, 1], [10, 0, 0, 2], 2, 1, false);
        assert_ne!(symmetric_flow_hash(&a), symmetric_flow_hash(&b));
    }

    #[test]
    fn truncated_frames_do_not_panic() {
        let f = v4_tcp([1, 2, 3, 4], [5, 6, 7, 8], 1, 2, true);
        for len in 0..f.len() {
            let _ = symmetric_flow_hash(&f[..len]);
        }
        assert_eq!(symmetric_flow_hash(&[]), 0);
    }

    #[test]
    fn owner_is_in_range() {
        for h in [0u64, 1, u64::MAX, 0xdead_beef] {
            assert!(owner(h, 3) < 3);
            assert_eq!(owner(h, 1), 0);
        }
    }
}
