//! A packet buffer with headroom and tailroom.
//!
//! Rewrites (inserting or stripping an identity option) change a frame's length.
//! An mbuf has room before and after its data; so does [`VecBuf`], the plain-memory
//! stand-in used by tests, fuzzers and benchmarks. Code that rewrites frames is
//! generic over [`PacketBuf`] and so never sees DPDK.

use core::fmt;

/// The buffer has not enough headroom or tailroom for the requested growth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoRoom;

impl fmt::Display for NoRoom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no room in packet buffer")
    }
}

impl std::error::Error for NoRoom {}

/// A contiguous frame with spare room on both sides.
pub trait PacketBuf {
    /// The frame's bytes.
    fn data(&self) -> &[u8];
    /// The frame's bytes, writable.
    fn data_mut(&mut self) -> &mut [u8];
    /// Bytes free before the frame.
    fn headroom(&self) -> usize;
    /// Bytes free after the frame.
    fn tailroom(&self) -> usize;
    /// Grows the frame by `n` bytes at the front; the new bytes are unspecified.
    fn prepend(&mut self, n: usize) -> Result<(), NoRoom>;
    /// Grows the frame by `n` bytes at the end; the new bytes are unspecified.
    fn append(&mut self, n: usize) -> Result<(), NoRoom>;
    /// Removes `n` bytes from the front. Fails (changing nothing) if `n > len`.
    fn adj(&mut self, n: usize) -> Result<(), NoRoom>;
    /// Removes `n` bytes from the end. Fails (changing nothing) if `n > len`.
    fn trim(&mut self, n: usize) -> Result<(), NoRoom>;

    fn len(&self) -> usize {
        self.data().len()
    }

    fn is_empty(&self) -> bool {
        self.data().is_empty()
    }

    /// Makes the frame `bytes` (grown or trimmed at the end to their length,
    /// then overwritten). Fails, changing nothing, if there is no room.
    fn replace(&mut self, bytes: &[u8]) -> Result<(), NoRoom> {
        let (n, len) = (bytes.len(), self.len());
        if n <= len {
            self.trim(len - n)?;
        } else {
            self.append(n - len)?;
        }
        self.data_mut().copy_from_slice(bytes);
        Ok(())
    }
}

/// A [`PacketBuf`] in ordinary memory: `[headroom | data | tailroom]`.
#[derive(Clone, PartialEq, Eq)]
pub struct VecBuf {
    mem: Vec<u8>,
    start: usize,
    end: usize,
}

impl VecBuf {
    /// The headroom an mbuf has by default (`RTE_PKTMBUF_HEADROOM`).
    pub const DEFAULT_HEADROOM: usize = 128;

    /// A buffer holding `frame` with the given room around it.
    pub fn with_room(frame: &[u8], headroom: usize, tailroom: usize) -> Self {
        let mut mem = vec![0u8; headroom + frame.len() + tailroom];
        mem[headroom..headroom + frame.len()].copy_from_slice(frame);
        VecBuf { mem, start: headroom, end: headroom + frame.len() }
    }

    /// A buffer laid out like a default 2 KiB mbuf (128 bytes of headroom).
    pub fn from_frame(frame: &[u8]) -> Self {
        let tail = 2048usize.saturating_sub(frame.len());
        Self::with_room(frame, Self::DEFAULT_HEADROOM, tail)
    }

    /// Replaces the frame in place, keeping the buffer's capacity (no allocation
    /// when it fits): used by benchmarks to reset a buffer between iterations.
    pub fn reset(&mut self, frame: &[u8], headroom: usize) -> Result<(), NoRoom> {
        if headroom + frame.len() > self.mem.len() {
            return Err(NoRoom);
        }
        self.start = headroom;
        self.end = headroom + frame.len();
        self.mem[self.start..self.end].copy_from_slice(frame);
        Ok(())
    }
}

impl fmt::Debug for VecBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VecBuf")
            .field("headroom", &self.start)
            .field("len", &(self.end - self.start))
            .field("tailroom", &(self.mem.len() - self.end))
            .finish()
    }
}

// Inlined as the mbuf's are (`worker/io.rs`): the in-process benches then
// measure the engine as gatewayd runs it, not a call per access.
impl PacketBuf for VecBuf {
    #[inline]
    fn data(&self) -> &[u8] {
        &self.mem[self.start..self.end]
    }
    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.mem[self.start..self.end]
    }
    #[inline]
    fn headroom(&self) -> usize {
        self.start
    }
    #[inline]
    fn tailroom(&self) -> usize {
        self.mem.len() - self.end
    }
    fn prepend(&mut self, n: usize) -> Result<(), NoRoom> {
        if n > self.start {
            return Err(NoRoom);
        }
        self.start -= n;
        Ok(())
    }
    fn append(&mut self, n: usize) -> Result<(), NoRoom> {
        if n > self.tailroom() {
            return Err(NoRoom);
        }
        self.end += n;
        Ok(())
    }
    fn adj(&mut self, n: usize) -> Result<(), NoRoom> {
        if n > self.len() {
            return Err(NoRoom);
        }
        self.start += n;
        Ok(())
    }
    fn trim(&mut self, n: usize) -> Result<(), NoRoom> {
        if n > self.len() {
            return Err(NoRoom);
        }
        self.end -= n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grow_and_shrink_respect_room() {
        let mut b = VecBuf::with_room(&[1, 2, 3], 2, 1);
        assert_eq!(b.prepend(3), Err(NoRoom));
        b.prepend(2).unwrap();
        assert_eq!(b.len(), 5);
        assert_eq!(&b.data()[2..], &[1, 2, 3]);
        assert_eq!(b.append(2), Err(NoRoom));
        b.append(1).unwrap();
        assert_eq!(b.tailroom(), 0);
        assert_eq!(b.adj(7), Err(NoRoom));
        b.adj(2).unwrap();
        b.trim(1).unwrap();
        assert_eq!(b.data(), &[1, 2, 3]);
        assert_eq!(b.trim(4), Err(NoRoom));
        assert_eq!(b.data(), &[1, 2, 3]);
    }

    #[test]
    fn reset_reuses_memory() {
        let mut b = VecBuf::with_room(&[9; 10], 4, 4);
        b.reset(&[1, 2], 6).unwrap();
        assert_eq!(b.data(), &[1, 2]);
        assert_eq!(b.headroom(), 6);
        assert_eq!(b.reset(&[0; 20], 0), Err(NoRoom));
    }
}
