//! The I/O layer's side of [`PacketBuf`]: an mbuf is a packet buffer.

use dpdk_bindings::Mbuf;

use crate::buf::{NoRoom, PacketBuf};

impl PacketBuf for Mbuf {
    #[inline(always)]
    fn data(&self) -> &[u8] {
        Mbuf::data(self)
    }
    #[inline(always)]
    fn data_mut(&mut self) -> &mut [u8] {
        Mbuf::data_mut(self)
    }
    #[inline(always)]
    fn headroom(&self) -> usize {
        Mbuf::headroom(self)
    }
    #[inline(always)]
    fn tailroom(&self) -> usize {
        Mbuf::tailroom(self)
    }
    #[inline]
    fn prepend(&mut self, n: usize) -> Result<(), NoRoom> {
        Mbuf::prepend(self, n).then_some(()).ok_or(NoRoom)
    }
    #[inline]
    fn append(&mut self, n: usize) -> Result<(), NoRoom> {
        // Growing the tail of a chained mbuf would extend its last segment,
        // which `data()` does not show: refuse rather than corrupt.
        if self.is_chained() {
            return Err(NoRoom);
        }
        Mbuf::append(self, n).then_some(()).ok_or(NoRoom)
    }
    #[inline]
    fn adj(&mut self, n: usize) -> Result<(), NoRoom> {
        Mbuf::adj(self, n).then_some(()).ok_or(NoRoom)
    }
    #[inline]
    fn trim(&mut self, n: usize) -> Result<(), NoRoom> {
        if self.is_chained() {
            return Err(NoRoom);
        }
        Mbuf::trim(self, n).then_some(()).ok_or(NoRoom)
    }
}
