//! The flow key: a 5-tuple normalized so that the inside (PU-side) end comes
//! first. A packet from the inside port has the PU as its source; one from the
//! outside port has it as its destination; both build the same key.

use std::net::IpAddr;

use crate::Side;

/// A packet's 5-tuple as it was read, source first: addresses as 128-bit
/// big-endian values (IPv4 mapped, see [`addr128`]), `family` 4 or 6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuple {
    pub src: u128,
    pub dst: u128,
    pub family: u8,
    pub proto: u8,
    pub src_port: u16,
    pub dst_port: u16,
}

/// A normalized 5-tuple, IPv4 or IPv6 (IPv4 addresses are stored as
/// IPv4-mapped IPv6 so one layout serves both). 40 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(C, align(8))]
pub struct FlowKey {
    pub inside_addr: [u8; 16],
    pub outside_addr: [u8; 16],
    pub inside_port: u16,
    pub outside_port: u16,
    pub proto: u8,
    /// 4 or 6.
    pub family: u8,
    _pad: [u8; 2],
}

pub(crate) const ZERO_KEY: FlowKey = FlowKey {
    inside_addr: [0; 16],
    outside_addr: [0; 16],
    inside_port: 0,
    outside_port: 0,
    proto: 0,
    family: 0,
    _pad: [0; 2],
};

impl FlowKey {
    /// From a packet's fields and the port it arrived on. For protocols without
    /// ports pass 0 (or, for ICMP echo, the identifier as both ports).
    #[inline]
    pub fn new(side: Side, src: IpAddr, dst: IpAddr, sport: u16, dport: u16, proto: u8) -> FlowKey {
        let (ia, ip, oa, op) = match side {
            Side::Inside => (src, sport, dst, dport),
            Side::Outside => (dst, dport, src, sport),
        };
        let family = if ia.is_ipv4() { 4 } else { 6 };
        FlowKey {
            inside_addr: bytes(ia),
            outside_addr: bytes(oa),
            inside_port: ip,
            outside_port: op,
            proto,
            family,
            _pad: [0; 2],
        }
    }

    /// [`Self::new`] and [`Self::hash`] with `seed` at once. Same key, same
    /// hash; the hash is computed from the values in registers instead of
    /// being read back from the key just written (wide loads of a key written
    /// in narrower pieces stall on store-to-load forwarding, on every packet).
    #[inline(always)]
    pub fn new_hashed(side: Side, t: &Tuple, seed: u64) -> (FlowKey, u64) {
        let (i, ip, o, op) = match side {
            Side::Inside => (t.src, t.src_port, t.dst, t.dst_port),
            Side::Outside => (t.dst, t.dst_port, t.src, t.src_port),
        };
        // the little-endian words of the big-endian address bytes
        let w = |x: u128| [((x >> 64) as u64).swap_bytes(), (x as u64).swap_bytes()];
        let [i0, i1] = w(i);
        let [o0, o1] = w(o);
        let h = hash_words(seed, [i0, i1, o0, o1, tail(ip, op, t.proto, t.family)]);
        let key = FlowKey {
            inside_addr: i.to_be_bytes(),
            outside_addr: o.to_be_bytes(),
            inside_port: ip,
            outside_port: op,
            proto: t.proto,
            family: t.family,
            _pad: [0; 2],
        };
        (key, h)
    }

    /// From raw address bytes (as the packet parser has them).
    #[inline]
    pub fn from_v4(side: Side, src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, proto: u8) -> FlowKey {
        Self::new(side, IpAddr::from(src), IpAddr::from(dst), sport, dport, proto)
    }

    #[inline]
    pub fn from_v6(side: Side, src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16, proto: u8) -> FlowKey {
        Self::new(side, IpAddr::from(src), IpAddr::from(dst), sport, dport, proto)
    }

    pub fn inside_ip(&self) -> IpAddr {
        ip(self.inside_addr, self.family)
    }

    pub fn outside_ip(&self) -> IpAddr {
        ip(self.outside_addr, self.family)
    }

    /// A seeded 64-bit hash (folded multiplies over the key's five words).
    /// Seed it per table with a random value so that flow placement cannot be
    /// predicted from outside.
    #[inline]
    pub fn hash(&self, seed: u64) -> u64 {
        let w = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap());
        hash_words(
            seed,
            [
                w(&self.inside_addr[..8]),
                w(&self.inside_addr[8..]),
                w(&self.outside_addr[..8]),
                w(&self.outside_addr[8..]),
                tail(self.inside_port, self.outside_port, self.proto, self.family),
            ],
        )
    }
}

#[inline(always)]
fn tail(inside_port: u16, outside_port: u16, proto: u8, family: u8) -> u64 {
    (inside_port as u64) | (outside_port as u64) << 16 | (proto as u64) << 32 | (family as u64) << 40
}

/// A 64x64 -> 128-bit multiply folded to 64 bits (wyhash's mixer).
#[inline(always)]
fn mum(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

/// Seeded hash of the key's five words. Three independent folded multiplies
/// and one to finish: a dependency chain of two multiplies instead of one
/// per word, which matters on every packet. Every input bit reaches every
/// output bit through the multiplies; the per-table random seed enters each
/// of them, so flow placement (and bucket collisions) cannot be steered from
/// outside without it.
#[inline(always)]
fn hash_words(seed: u64, [i0, i1, o0, o1, t]: [u64; 5]) -> u64 {
    const K: [u64; 6] = [
        0xa076_1d64_78bd_642f,
        0xe703_7ed1_a0b4_28db,
        0x8ebc_6af0_9c88_c6e3,
        0x5899_65cc_7537_4cc3,
        0x1d8e_4e27_c47d_124f,
        0x9e37_79b9_7f4a_7c15,
    ];
    let a = mum(i0 ^ seed ^ K[0], i1 ^ K[1]);
    let b = mum(o0 ^ K[2], o1 ^ seed ^ K[3]);
    let c = mum(t ^ K[4], seed ^ K[5]);
    mum(a ^ b.rotate_left(23) ^ c.rotate_left(46) ^ K[5], K[0] ^ seed)
}

/// The 16 address bytes as one big-endian value (IPv4 as IPv4-mapped IPv6).
/// Built whole, not byte by byte: what is read back as words right after
/// must not have been written in narrower pieces (store forwarding).
#[inline(always)]
pub fn addr128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v4) => (0xffff_u128 << 32) | u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

#[inline(always)]
fn bytes(a: IpAddr) -> [u8; 16] {
    addr128(a).to_be_bytes()
}

fn ip(b: [u8; 16], family: u8) -> IpAddr {
    let v6 = std::net::Ipv6Addr::from(b);
    match (family, v6.to_ipv4_mapped()) {
        (4, Some(v4)) => IpAddr::V4(v4),
        _ => IpAddr::V6(v6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ip_proto;

    #[test]
    fn new_hashed_is_new_then_hash() {
        let addrs: [IpAddr; 4] = [
            "10.1.0.10".parse().unwrap(),
            "192.0.2.255".parse().unwrap(),
            "fd00::1".parse().unwrap(),
            "2001:db8::ff:1".parse().unwrap(),
        ];
        for (s, d) in [(addrs[0], addrs[1]), (addrs[2], addrs[3])] {
            for side in [Side::Inside, Side::Outside] {
                for seed in [0, 1, 0xdead_beef_0123_4567, u64::MAX] {
                    let fam = if s.is_ipv4() { 4 } else { 6 };
                    let t = Tuple {
                        src: addr128(s),
                        dst: addr128(d),
                        family: fam,
                        proto: ip_proto::TCP,
                        src_port: 40000,
                        dst_port: 443,
                    };
                    let (k, h) = FlowKey::new_hashed(side, &t, seed);
                    let want = FlowKey::new(side, s, d, 40000, 443, ip_proto::TCP);
                    assert_eq!(k, want);
                    assert_eq!(h, want.hash(seed), "{side:?} {s} {d} {seed}");
                    assert_eq!((k.inside_ip(), k.outside_ip()), if side == Side::Inside { (s, d) } else { (d, s) });
                }
            }
        }
    }

    /// Keys that differ in one field only (what a scan or a flood looks like)
    /// spread over the table like random values: no home slot gets more
    /// than a handful, and the tag bits (the hash's high half) are as
    /// distinct as the slot bits (its low half).
    #[test]
    fn hash_spreads_keys_differing_in_one_field() {
        let a: IpAddr = "10.1.0.10".parse().unwrap();
        let n = 1u32 << 16;
        let variants: [&dyn Fn(u32) -> FlowKey; 3] = [
            &|i| FlowKey::new(Side::Inside, a, IpAddr::from((0x0a02_0000 + i).to_be_bytes()), 40000, 443, 6),
            &|i| FlowKey::new(Side::Inside, a, "10.2.0.5".parse().unwrap(), i as u16, 443, 6),
            &|i| {
                FlowKey::new(
                    Side::Inside,
                    "fd00::1".parse().unwrap(),
                    IpAddr::from((u128::from(i) << 64).to_be_bytes()),
                    1,
                    2,
                    17,
                )
            },
        ];
        for (v, key) in variants.iter().enumerate() {
            let mut slots = vec![0u16; n as usize];
            let mut tags = std::collections::HashSet::new();
            for i in 0..n {
                let h = key(i).hash(0x1234_5678_9abc_def0);
                slots[((u64::from(h as u32) * u64::from(n)) >> 32) as usize] += 1;
                tags.insert((h >> 32) as u32);
            }
            let max = *slots.iter().max().unwrap();
            let empty = slots.iter().filter(|&&c| c == 0).count() as f64 / f64::from(n);
            // Random placement: max load ~8, 1/e ~ 0.368 of slots empty.
            assert!(max <= 12, "variant {v}: a slot got {max} keys");
            assert!((0.34..0.40).contains(&empty), "variant {v}: {empty} of slots empty");
            assert!(tags.len() as u32 > n - 16, "variant {v}: {} distinct tags", tags.len());
        }
    }

    #[test]
    fn both_directions_one_key() {
        let pu: IpAddr = "10.1.0.10".parse().unwrap();
        let peer: IpAddr = "10.2.0.5".parse().unwrap();
        let out = FlowKey::new(Side::Inside, pu, peer, 40000, 443, 6);
        let back = FlowKey::new(Side::Outside, peer, pu, 443, 40000, 6);
        assert_eq!(out, back);
        assert_eq!(out.hash(7), back.hash(7));
        assert_ne!(out.hash(7), out.hash(8));
        assert_eq!(out.inside_ip(), pu);
        assert_eq!(out.outside_ip(), peer);
        // The same addresses with the sides swapped are another flow.
        let other = FlowKey::new(Side::Inside, peer, pu, 443, 40000, 6);
        assert_ne!(out, other);
        assert_eq!(FlowKey::from_v4(Side::Inside, [10, 1, 0, 10], [10, 2, 0, 5], 40000, 443, 6), out);
    }

    #[test]
    fn ipv6_keys() {
        let pu: IpAddr = "fd00:1::10".parse().unwrap();
        let peer: IpAddr = "2001:db8::5".parse().unwrap();
        let a = FlowKey::new(Side::Inside, pu, peer, 1, 2, 17);
        let b = FlowKey::new(Side::Outside, peer, pu, 2, 1, 17);
        assert_eq!(a, b);
        assert_eq!(a.family, 6);
        assert_eq!(a.outside_ip(), peer);
        // ::ffff:a.b.c.d given as IPv6 stays IPv6.
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let k = FlowKey::new(Side::Inside, mapped, peer, 1, 2, 6);
        assert_eq!(k.inside_ip(), mapped);
        assert_ne!(k, FlowKey::new(Side::Inside, "10.0.0.1".parse().unwrap(), peer, 1, 2, 6));
        assert_eq!(std::mem::size_of::<FlowKey>(), 40);
    }
}
