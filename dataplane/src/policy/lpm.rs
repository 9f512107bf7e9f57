//! Longest-prefix match over IPv4 (`u32`) and IPv6 (`u128`) keys.
//!
//! Prefixes are flattened at build time into disjoint address intervals, each
//! carrying the value of the most specific prefix that covers it. A lookup is a
//! binary search over the interval starts: no allocation, no pointer chasing,
//! `log2(intervals)` probes into one contiguous array. Memory is one key and
//! one `u32` per interval (at most two intervals per prefix, plus one).

use std::fmt::Debug;

/// An address type usable as an LPM key.
pub trait LpmKey: Copy + Ord + Debug + Send + Sync + 'static {
    const BITS: u32;
    const ZERO: Self;
    const MAX: Self;
    /// The first address of the prefix `self/len`.
    fn network(self, len: u32) -> Self;
    /// The last address of the prefix `self/len`.
    fn broadcast(self, len: u32) -> Self;
    fn succ(self) -> Self;
}

macro_rules! lpm_key {
    ($t:ty) => {
        impl LpmKey for $t {
            const BITS: u32 = <$t>::BITS;
            const ZERO: Self = 0;
            const MAX: Self = <$t>::MAX;
            #[inline]
            fn network(self, len: u32) -> Self {
                if len == 0 {
                    0
                } else {
                    self & (<$t>::MAX << (Self::BITS - len))
                }
            }
            #[inline]
            fn broadcast(self, len: u32) -> Self {
                if len == 0 {
                    <$t>::MAX
                } else {
                    self | !(<$t>::MAX << (Self::BITS - len))
                }
            }
            #[inline]
            fn succ(self) -> Self {
                self + 1
            }
        }
    };
}
lpm_key!(u32);
lpm_key!(u128);

/// No value: the address is covered by no prefix.
const NONE: u32 = u32::MAX;

/// An immutable longest-prefix-match table from addresses to `u32` values.
#[derive(Debug, Clone)]
pub struct Lpm<K: LpmKey> {
    /// Interval starts, ascending; `starts[0] == 0` whenever the table is non-empty.
    starts: Box<[K]>,
    /// Value of each interval (`NONE` where no prefix covers it).
    values: Box<[u32]>,
}

impl<K: LpmKey> Default for Lpm<K> {
    fn default() -> Self {
        Lpm { starts: Box::new([]), values: Box::new([]) }
    }
}

impl<K: LpmKey> Lpm<K> {
    /// Builds a table from `(address, prefix length, value)`. Where the same
    /// prefix appears twice, the later value wins (the compiler rejects such
    /// input where it matters). Host bits of `address` are ignored.
    pub fn build(prefixes: &[(K, u32, u32)]) -> Lpm<K> {
        // (first, last, value), outer prefixes before the prefixes they contain.
        let mut ps: Vec<(K, K, u32, usize)> = prefixes
            .iter()
            .enumerate()
            .map(|(i, &(a, len, v))| {
                assert!(len <= K::BITS && v != NONE);
                (a.network(len), a.broadcast(len), v, i)
            })
            .collect();
        ps.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.3.cmp(&b.3)));

        let mut starts: Vec<K> = Vec::new();
        let mut values: Vec<u32> = Vec::new();
        let mut emit = |at: K, v: u32| {
            if starts.last() == Some(&at) {
                values.pop();
                starts.pop();
            }
            if values.last() == Some(&v) {
                return;
            }
            starts.push(at);
            values.push(v);
        };
        emit(K::ZERO, NONE);
        // Stack of enclosing prefixes: (last address, value).
        let mut stack: Vec<(K, u32)> = Vec::new();
        for &(first, last, v, _) in &ps {
            while let Some(&(end, _)) = stack.last() {
                if end >= first {
                    break;
                }
                stack.pop();
                let outer = stack.last().map_or(NONE, |&(_, v)| v);
                emit(end.succ(), outer);
            }
            emit(first, v);
            stack.push((last, v));
        }
        while let Some((end, _)) = stack.pop() {
            if end == K::MAX {
                break;
            }
            let outer = stack.last().map_or(NONE, |&(_, v)| v);
            emit(end.succ(), outer);
        }
        Lpm { starts: starts.into(), values: values.into() }
    }

    /// The value of the longest prefix covering `addr`.
    #[inline]
    pub fn lookup(&self, addr: K) -> Option<u32> {
        if self.starts.is_empty() {
            return None;
        }
        // Index of the last start <= addr (starts[0] == 0 so it exists).
        let i = self.starts.partition_point(|&s| s <= addr) - 1;
        let v = self.values[i];
        (v != NONE).then_some(v)
    }

    /// Whether any prefix covers `addr`.
    #[inline]
    pub fn contains(&self, addr: K) -> bool {
        self.lookup(addr).is_some()
    }

    /// Number of flattened intervals (a measure of size).
    pub fn intervals(&self) -> usize {
        self.starts.len()
    }
}

/// Parses `a.b.c.d`, `a.b.c.d/n`, `x::y` or `x::y/n`; host bits must be zero.
pub fn parse_cidr(s: &str) -> Result<Cidr, String> {
    let s = s.trim();
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => {
            let l: u32 = l.parse().map_err(|_| format!("{s:?} has a bad prefix length"))?;
            (a, Some(l))
        }
        None => (s, None),
    };
    let ip: std::net::IpAddr = addr.parse().map_err(|_| format!("{s:?} is not an IP address or CIDR"))?;
    match ip {
        std::net::IpAddr::V4(a) => {
            let len = len.unwrap_or(32);
            if len > 32 {
                return Err(format!("{s:?} has a prefix length over 32"));
            }
            let a = u32::from(a);
            if a.network(len) != a {
                return Err(format!(
                    "{s:?} has host bits set (did you mean {}/{len}?)",
                    std::net::Ipv4Addr::from(a.network(len))
                ));
            }
            Ok(Cidr::V4(a, len))
        }
        std::net::IpAddr::V6(a) => {
            let len = len.unwrap_or(128);
            if len > 128 {
                return Err(format!("{s:?} has a prefix length over 128"));
            }
            let a = u128::from(a);
            if a.network(len) != a {
                return Err(format!(
                    "{s:?} has host bits set (did you mean {}/{len}?)",
                    std::net::Ipv6Addr::from(a.network(len))
                ));
            }
            Ok(Cidr::V6(a, len))
        }
    }
}

/// A parsed prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cidr {
    V4(u32, u32),
    V6(u128, u32),
}

impl Cidr {
    /// Whether the two prefixes share any address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        match (*self, *other) {
            (Cidr::V4(a, la), Cidr::V4(b, lb)) => {
                let l = la.min(lb);
                a.network(l) == b.network(l)
            }
            (Cidr::V6(a, la), Cidr::V6(b, lb)) => {
                let l = la.min(lb);
                a.network(l) == b.network(l)
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Cidr::V4(a, l) => write!(f, "{}/{l}", std::net::Ipv4Addr::from(a)),
            Cidr::V6(a, l) => write!(f, "{}/{l}", std::net::Ipv6Addr::from(a)),
        }
    }
}

/// A pair of tables, one per address family.
#[derive(Debug, Clone, Default)]
pub struct LpmPair {
    pub v4: Lpm<u32>,
    pub v6: Lpm<u128>,
}

impl LpmPair {
    pub fn build(prefixes: &[(Cidr, u32)]) -> LpmPair {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for &(c, v) in prefixes {
            match c {
                Cidr::V4(a, l) => v4.push((a, l, v)),
                Cidr::V6(a, l) => v6.push((a, l, v)),
            }
        }
        LpmPair { v4: Lpm::build(&v4), v6: Lpm::build(&v6) }
    }

    #[inline]
    pub fn lookup(&self, ip: std::net::IpAddr) -> Option<u32> {
        match ip {
            std::net::IpAddr::V4(a) => self.v4.lookup(u32::from(a)),
            std::net::IpAddr::V6(a) => self.v6.lookup(u128::from(a)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(prefixes: &[(u32, u32, u32)], addr: u32) -> Option<u32> {
        let mut best: Option<(u32, u32)> = None;
        for &(a, l, v) in prefixes {
            if addr.network(l) == a.network(l) && best.is_none_or(|(bl, _)| l >= bl) {
                best = Some((l, v));
            }
        }
        best.map(|(_, v)| v)
    }

    #[test]
    fn nested_and_adjacent() {
        let p = [
            (0x0a00_0000, 8, 1),
            (0x0a01_0000, 16, 2),
            (0x0a01_0100, 24, 3),
            (0x0a01_0105, 32, 4),
            (0x0b00_0000, 8, 5),
            (0xc0a8_0000, 16, 6),
        ];
        let t = Lpm::build(&p);
        for addr in [
            0u32,
            0x09ff_ffff,
            0x0a00_0000,
            0x0a00_ffff,
            0x0a01_0000,
            0x0a01_0104,
            0x0a01_0105,
            0x0a01_0106,
            0x0a01_01ff,
            0x0a01_0200,
            0x0aff_ffff,
            0x0b00_0000,
            0x0bff_ffff,
            0x0c00_0000,
            0xc0a8_0101,
            0xffff_ffff,
        ] {
            assert_eq!(t.lookup(addr), naive(&p, addr), "{addr:#x}");
        }
    }

    #[test]
    fn default_route_and_host_routes_at_the_ends() {
        let p: [(u32, u32, u32); 3] = [(0, 0, 1), (0xffff_ffff, 32, 2), (0, 32, 3)];
        let t = Lpm::build(&p);
        assert_eq!(t.lookup(0), Some(3));
        assert_eq!(t.lookup(1), Some(1));
        assert_eq!(t.lookup(0xffff_fffe), Some(1));
        assert_eq!(t.lookup(0xffff_ffff), Some(2));
        let t6 = Lpm::<u128>::build(&[(0, 0, 7), (u128::MAX, 128, 8)]);
        assert_eq!(t6.lookup(5), Some(7));
        assert_eq!(t6.lookup(u128::MAX), Some(8));
        assert_eq!(Lpm::<u32>::default().lookup(1), None);
    }

    #[test]
    fn random_against_naive() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..50 {
            let n = (rnd() % 40) as usize;
            let p: Vec<(u32, u32, u32)> = (0..n)
                .map(|i| {
                    let l = (rnd() % 33) as u32;
                    // Cluster addresses so prefixes nest.
                    let a = ((rnd() as u32) & 0x0f0f_0f0f).network(l);
                    (a, l, i as u32)
                })
                .collect();
            // Deduplicate equal prefixes (the later wins in both).
            let t = Lpm::build(&p);
            for _ in 0..200 {
                let addr = (rnd() as u32) & 0x0f0f_0f0f | (rnd() as u32 & 0x0101_0101);
                assert_eq!(t.lookup(addr), naive(&p, addr), "{p:?} {addr:#x}");
            }
        }
    }

    #[test]
    fn cidr_parsing() {
        assert_eq!(parse_cidr("10.0.0.0/8"), Ok(Cidr::V4(0x0a00_0000, 8)));
        assert_eq!(parse_cidr("10.1.2.3"), Ok(Cidr::V4(0x0a01_0203, 32)));
        assert_eq!(parse_cidr("::/0"), Ok(Cidr::V6(0, 0)));
        assert!(parse_cidr("10.0.0.1/8").unwrap_err().contains("did you mean 10.0.0.0/8"));
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("10.0.0/8").is_err());
        assert!(parse_cidr("fd00::1/64").is_err());
        assert!(Cidr::V4(0x0a00_0000, 8).overlaps(&Cidr::V4(0x0a01_0000, 16)));
        assert!(!Cidr::V4(0x0a00_0000, 8).overlaps(&Cidr::V4(0x0b00_0000, 8)));
    }
}
