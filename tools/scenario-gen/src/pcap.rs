//! The classic libpcap file format: a 24-byte global header, then per frame
//! a 16-byte record header and the bytes. Little-endian, microsecond
//! timestamps (magic 0xa1b2c3d4), LINKTYPE_ETHERNET. This is what DPDK's
//! `net_pcap` (`rx_pcap=`) and pktgen's `-s P:file.pcap` read.

use std::io::{self, Write};

pub const MAGIC_USEC: u32 = 0xA1B2_C3D4;
pub const VERSION_MAJOR: u16 = 2;
pub const VERSION_MINOR: u16 = 4;
pub const LINKTYPE_ETHERNET: u32 = 1;
pub const SNAPLEN: u32 = 65535;
pub const GLOBAL_HEADER_LEN: usize = 24;
pub const RECORD_HEADER_LEN: usize = 16;

pub struct PcapWriter<W: Write> {
    out: W,
    frames: u64,
    bytes: u64,
}

impl<W: Write> PcapWriter<W> {
    pub fn new(mut out: W) -> io::Result<Self> {
        let mut h = [0u8; GLOBAL_HEADER_LEN];
        h[0..4].copy_from_slice(&MAGIC_USEC.to_le_bytes());
        h[4..6].copy_from_slice(&VERSION_MAJOR.to_le_bytes());
        h[6..8].copy_from_slice(&VERSION_MINOR.to_le_bytes());
        // thiszone and sigfigs stay zero
        h[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
        h[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        out.write_all(&h)?;
        Ok(PcapWriter { out, frames: 0, bytes: 0 })
    }

    /// Writes one frame (without FCS) stamped `ts_usec` microseconds after
    /// the Unix epoch.
    pub fn write_frame(&mut self, ts_usec: u64, frame: &[u8]) -> io::Result<()> {
        let len = u32::try_from(frame.len())
            .ok()
            .filter(|&l| l <= SNAPLEN)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame longer than the snap length"))?;
        let mut r = [0u8; RECORD_HEADER_LEN];
        r[0..4].copy_from_slice(&((ts_usec / 1_000_000) as u32).to_le_bytes());
        r[4..8].copy_from_slice(&((ts_usec % 1_000_000) as u32).to_le_bytes());
        r[8..12].copy_from_slice(&len.to_le_bytes()); // captured length
        r[12..16].copy_from_slice(&len.to_le_bytes()); // original length
        self.out.write_all(&r)?;
        self.out.write_all(frame)?;
        self.frames += 1;
        self.bytes += u64::from(len);
        Ok(())
    }

    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Frame bytes written (record payloads, not the file size).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}
