//! Ethernet II frames and 802.1Q / 802.1ad VLAN tags.
//!
//! ```text
//! | dst (6) | src (6) | [TPID 0x8100/0x88a8 (2) | TCI (2)] x0..2 | ethertype (2) | payload
//! ```

use super::Malformed;

/// Well-known ethertypes.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const VLAN: u16 = 0x8100;
    pub const QINQ: u16 = 0x88a8;
    pub const IPV6: u16 = 0x86dd;
}

mod field {
    use core::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const PAYLOAD: usize = 14;
}

/// Length of an Ethernet header without tags.
pub const HEADER_LEN: usize = field::PAYLOAD;
/// Length of one VLAN tag (TPID + TCI).
pub const VLAN_TAG_LEN: usize = 4;
/// The most VLAN tags a frame may carry (802.1ad outer + 802.1Q inner).
pub const MAX_VLAN_TAGS: usize = 2;

/// A view over an Ethernet II frame.
#[derive(Debug, Clone, Copy)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Frame { buffer }
    }

    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Malformed> {
        let f = Self::new_unchecked(buffer);
        f.check_len()?;
        Ok(f)
    }

    #[inline]
    pub fn check_len(&self) -> Result<(), Malformed> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Malformed::EthernetTruncated)
        } else {
            Ok(())
        }
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn dst(&self) -> [u8; 6] {
        let mut a = [0; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST]);
        a
    }

    #[inline]
    pub fn src(&self) -> [u8; 6] {
        let mut a = [0; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC]);
        a
    }

    /// The outer ethertype (a TPID when the frame is tagged).
    #[inline]
    pub fn ethertype(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[field::ETHERTYPE.start], b[field::ETHERTYPE.start + 1]])
    }

    /// Walks the VLAN tags: returns (tag count, inner ethertype, payload offset).
    #[inline]
    pub fn walk_tags(&self) -> Result<(u8, u16, usize), Malformed> {
        let b = self.buffer.as_ref();
        let mut et = self.ethertype();
        let mut off = field::PAYLOAD;
        let mut tags = 0u8;
        while et == ethertype::VLAN || et == ethertype::QINQ {
            if usize::from(tags) == MAX_VLAN_TAGS {
                return Err(Malformed::TooManyVlanTags);
            }
            match b.get(off + 2..off + 4) {
                Some(t) => et = u16::from_be_bytes([t[0], t[1]]),
                None => return Err(Malformed::VlanTruncated),
            }
            off += VLAN_TAG_LEN;
            tags += 1;
        }
        Ok((tags, et, off))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    #[inline]
    pub fn set_dst(&mut self, a: [u8; 6]) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a);
    }
    #[inline]
    pub fn set_src(&mut self, a: [u8; 6]) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a);
    }
    /// The outer ethertype (a TPID when tags follow).
    #[inline]
    pub fn set_ethertype(&mut self, v: u16) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&v.to_be_bytes());
    }
    /// Exchanges the source and destination addresses (a frame sent back).
    #[inline]
    pub fn swap_addresses(&mut self) {
        let (dst, src) = (self.dst(), self.src());
        self.set_dst(src);
        self.set_src(dst);
    }
}

/// An Ethernet header to write: addresses, up to [`MAX_VLAN_TAGS`] tags
/// (outermost first; with two, the outer is 802.1ad) and the payload's
/// ethertype.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr<'a> {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    /// The tags' TCI values (priority, DEI and VLAN id), outermost first.
    pub vlans: &'a [u16],
    pub ethertype: u16,
}

impl Repr<'_> {
    /// The header's length: 14 bytes and 4 per tag.
    #[inline]
    pub fn header_len(&self) -> usize {
        HEADER_LEN + VLAN_TAG_LEN * self.vlans.len()
    }

    /// Writes the header into the first [`Self::header_len`] bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) {
        let mut f = Frame::new_unchecked(&mut *buf);
        f.set_dst(self.dst);
        f.set_src(self.src);
        // Each ethertype field names what follows it: the next tag's TPID, or the payload.
        let mut at = field::ETHERTYPE.start;
        for (i, &tci) in self.vlans.iter().enumerate() {
            let tpid = if i == 0 && self.vlans.len() == MAX_VLAN_TAGS { ethertype::QINQ } else { ethertype::VLAN };
            let mut tag = VlanTag::new_unchecked(&mut buf[at..at + VLAN_TAG_LEN]);
            tag.set_tpid(tpid);
            tag.set_tci(tci);
            at += VLAN_TAG_LEN;
        }
        buf[at..at + 2].copy_from_slice(&self.ethertype.to_be_bytes());
    }
}

/// A view over one VLAN tag (the 4 bytes TPID + TCI).
#[derive(Debug, Clone, Copy)]
pub struct VlanTag<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanTag<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        VlanTag { buffer }
    }
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Malformed> {
        if buffer.as_ref().len() < VLAN_TAG_LEN {
            return Err(Malformed::VlanTruncated);
        }
        Ok(VlanTag { buffer })
    }
    #[inline]
    pub fn tpid(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[0], b[1]])
    }
    /// Priority code point (3 bits).
    #[inline]
    pub fn pcp(&self) -> u8 {
        self.buffer.as_ref()[2] >> 5
    }
    /// VLAN identifier (12 bits).
    #[inline]
    pub fn vid(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[2], b[3]]) & 0x0fff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanTag<T> {
    #[inline]
    pub fn set_tpid(&mut self, v: u16) {
        self.buffer.as_mut()[0..2].copy_from_slice(&v.to_be_bytes());
    }
    /// Priority, DEI and VLAN id in one word.
    #[inline]
    pub fn set_tci(&mut self, v: u16) {
        self.buffer.as_mut()[2..4].copy_from_slice(&v.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        let mut f = [0u8; 22];
        f[12..14].copy_from_slice(&[0x88, 0xa8]);
        f[14..16].copy_from_slice(&[0x20, 0x0a]);
        f[16..18].copy_from_slice(&[0x81, 0x00]);
        f[18..20].copy_from_slice(&[0x00, 0x14]);
        f[20..22].copy_from_slice(&[0x08, 0x00]);
        let fr = Frame::new_checked(&f[..]).unwrap();
        assert_eq!(fr.walk_tags(), Ok((2, ethertype::IPV4, 22)));
        let t = VlanTag::new_checked(&f[16..20]).unwrap();
        assert_eq!((t.tpid(), t.vid(), t.pcp()), (0x8100, 20, 0));
        assert_eq!(Frame::new_checked(&f[..20]).unwrap().walk_tags(), Err(Malformed::VlanTruncated));
        f[20..22].copy_from_slice(&[0x81, 0x00]);
        assert_eq!(Frame::new_checked(&f[..]).unwrap().walk_tags(), Err(Malformed::TooManyVlanTags));
        assert_eq!(Frame::new_checked(&f[..13]).err(), Some(Malformed::EthernetTruncated));
    }
}
