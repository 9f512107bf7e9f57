//! ARP (RFC 826): recognised and passed through, never rewritten.

use super::Malformed;

/// Ethernet/IPv4 ARP packet length.
pub const ETH_IPV4_LEN: usize = 28;

/// A view over an ARP packet; `new_checked` only checks the fixed 8-byte
/// prefix and that the addresses it announces fit.
#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Malformed> {
        let b = buffer.as_ref();
        if b.len() < 8 {
            return Err(Malformed::ArpTruncated);
        }
        let need = 8 + 2 * (usize::from(b[4]) + usize::from(b[5]));
        if b.len() < need {
            return Err(Malformed::ArpTruncated);
        }
        Ok(Packet { buffer })
    }
    #[inline]
    pub fn hardware_type(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[0], b[1]])
    }
    #[inline]
    pub fn protocol_type(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[2], b[3]])
    }
    /// 1 = request, 2 = reply.
    #[inline]
    pub fn operation(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[6], b[7]])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn arp() {
        let mut b = [0u8; 28];
        b[..8].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!((p.hardware_type(), p.protocol_type(), p.operation()), (1, 0x800, 1));
        assert_eq!(Packet::new_checked(&b[..27]).err(), Some(Malformed::ArpTruncated));
    }
}
