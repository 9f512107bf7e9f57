//! Addresses as the command line gives them: MAC addresses, IP networks
//! (`10.0.0.0/16`, `fd00:a::/64`) and port ranges (`1024-65535`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MacAddr(pub [u8; 6]);

impl FromStr for MacAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(format!("MAC address {s:?}: expected six hex bytes like 02:00:00:00:00:01"));
        }
        let mut mac = [0u8; 6];
        for (b, p) in mac.iter_mut().zip(parts) {
            *b = u8::from_str_radix(p, 16).map_err(|_| format!("MAC address {s:?}: {p:?} is not a hex byte"))?;
        }
        Ok(MacAddr(mac))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
    }
}

/// An IP network. Its "hosts" skip the network address (and, for IPv4
/// prefixes up to /30, the broadcast address), so `10.0.0.0/24` yields
/// 10.0.0.1 ..= 10.0.0.254. IPv6 networks offer at most 2^32 hosts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    network: IpAddr,
    prefix: u8,
}

impl IpNet {
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, String> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(format!("prefix /{prefix} is longer than /{max}"));
        }
        let network = match addr {
            IpAddr::V4(a) => {
                let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) => {
                let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - prefix) };
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
        };
        Ok(IpNet { network, prefix })
    }

    pub fn is_ipv6(&self) -> bool {
        self.network.is_ipv6()
    }

    fn host_bits(&self) -> u32 {
        let width = if self.is_ipv6() { 128 } else { 32 };
        width - u32::from(self.prefix)
    }

    /// How many addresses at the start of the network are skipped.
    fn skip(&self) -> u64 {
        match (self.is_ipv6(), self.host_bits()) {
            (false, bits) if bits >= 2 => 1,
            (true, bits) if bits >= 1 => 1,
            _ => 0,
        }
    }

    pub fn host_count(&self) -> u64 {
        let bits = self.host_bits();
        if self.is_ipv6() {
            match bits {
                0 => 1,
                b if b > 32 => 1 << 32,
                b => (1u64 << b) - 1,
            }
        } else {
            match bits {
                0 | 1 => 1u64 << bits,
                b => (1u64 << b) - 2,
            }
        }
    }

    /// The `i`-th host, `i < host_count()`.
    pub fn host(&self, i: u64) -> IpAddr {
        debug_assert!(i < self.host_count());
        let off = i + self.skip();
        match self.network {
            IpAddr::V4(n) => IpAddr::V4(Ipv4Addr::from(u32::from(n).wrapping_add(off as u32))),
            IpAddr::V6(n) => IpAddr::V6(Ipv6Addr::from(u128::from(n).wrapping_add(u128::from(off)))),
        }
    }
}

impl FromStr for IpNet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| format!("network {s:?}: {addr:?} is not an IP address"))?;
        let prefix = match prefix {
            Some(p) => p.parse().map_err(|_| format!("network {s:?}: {p:?} is not a prefix length"))?,
            None if addr.is_ipv4() => 32,
            None => 128,
        };
        IpNet::new(addr, prefix).map_err(|e| format!("network {s:?}: {e}"))
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// An inclusive range of ports, `first-last` or a single port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn len(&self) -> u64 {
        u64::from(self.last - self.first) + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn nth(&self, i: u64) -> u16 {
        self.first + (i % self.len()) as u16
    }
}

impl FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parse = |p: &str| p.trim().parse::<u16>().map_err(|_| format!("port range {s:?}: {p:?} is not a port"));
        let (first, last) = match s.split_once('-') {
            Some((a, b)) => (parse(a)?, parse(b)?),
            None => {
                let p = parse(s)?;
                (p, p)
            }
        };
        if first > last {
            return Err(format!("port range {s:?}: first port is above the last"));
        }
        Ok(PortRange { first, last })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trip() {
        let m: MacAddr = "02:00:0a:ff:00:01".parse().unwrap();
        assert_eq!(m.0, [2, 0, 10, 255, 0, 1]);
        assert_eq!(m.to_string(), "02:00:0a:ff:00:01");
        assert!("02:00:00".parse::<MacAddr>().is_err());
        assert!("02:00:00:00:00:zz".parse::<MacAddr>().is_err());
    }

    #[test]
    fn ipv4_hosts_skip_network_and_broadcast() {
        let n: IpNet = "10.0.0.77/24".parse().unwrap();
        assert_eq!(n.to_string(), "10.0.0.0/24");
        assert_eq!(n.host_count(), 254);
        assert_eq!(n.host(0), "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(n.host(253), "10.0.0.254".parse::<IpAddr>().unwrap());
        let one: IpNet = "192.0.2.9".parse().unwrap();
        assert_eq!(one.host_count(), 1);
        assert_eq!(one.host(0), "192.0.2.9".parse::<IpAddr>().unwrap());
        let p2p: IpNet = "192.0.2.8/31".parse().unwrap();
        assert_eq!(p2p.host_count(), 2);
        assert_eq!(p2p.host(1), "192.0.2.9".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn ipv6_hosts() {
        let n: IpNet = "fd00:b::/120".parse().unwrap();
        assert!(n.is_ipv6());
        assert_eq!(n.host_count(), 255);
        assert_eq!(n.host(0), "fd00:b::1".parse::<IpAddr>().unwrap());
        let big: IpNet = "fd00:a::/64".parse().unwrap();
        assert_eq!(big.host_count(), 1 << 32);
        assert!("fd00::/129".parse::<IpNet>().is_err());
    }

    #[test]
    fn port_ranges() {
        let r: PortRange = "1024-1027".parse().unwrap();
        assert_eq!(r.len(), 4);
        assert_eq!(r.nth(5), 1025);
        assert_eq!("80".parse::<PortRange>().unwrap().len(), 1);
        assert!("9-1".parse::<PortRange>().is_err());
    }
}
