//! Fuzz target bodies for the wire layer, shared by `cargo fuzz` and by a unit
//! test that replays the seed corpus plus pseudo-random mutations.

use super::{parse_frame, peek, tcp, udp, Addr, L4Kind};

/// Parses `data` as a frame; on success checks that every offset the summary
/// reports lies inside the frame and walks the options it points at. Where
/// the fast path's [`peek::peek`] reads the frame, it must read what the
/// full parse reads.
pub fn parse(data: &[u8]) {
    let parsed = parse_frame(data);
    if let Some(p) = peek::peek(data) {
        let Ok(info) = parsed else { panic!("peek read a frame parse_frame rejects: {parsed:?}") };
        let addr = |a: Addr| match a {
            Addr::V4(b) => (0xffff_u128 << 32) | u128::from(u32::from_be_bytes(b)),
            Addr::V6(b) => u128::from_be_bytes(b),
            Addr::None => panic!("peek read a non-IP frame"),
        };
        assert!(!info.fragment && matches!(info.l4, L4Kind::Tcp | L4Kind::Udp) && info.udp_opts_len == 0);
        assert_eq!((p.src, p.dst, p.proto), (addr(info.src), addr(info.dst), info.proto));
        assert_eq!(p.family, if matches!(info.src, Addr::V4(_)) { 4 } else { 6 });
        assert_eq!(
            (p.src_port, p.dst_port, p.tcp_flags, p.seq),
            (info.src_port, info.dst_port, info.tcp_flags, info.seq)
        );
        assert_eq!((p.tcp_opts_offset, p.tcp_opts_len), (info.tcp_opts_offset, info.tcp_opts_len));
    }
    let Ok(info) = parsed else { return };
    let n = data.len();
    let ip_end = usize::from(info.ip_end);
    assert!(ip_end <= n);
    assert!(usize::from(info.l3_offset) <= n);
    if !info.is_ip() {
        return;
    }
    assert!(usize::from(info.l4_offset) <= ip_end);
    match info.l4 {
        L4Kind::Tcp => {
            let o = usize::from(info.tcp_opts_offset);
            let opts = &data[o..o + usize::from(info.tcp_opts_len)];
            assert!(usize::from(info.payload_offset) + usize::from(info.payload_len) == ip_end);
            for (_, opt) in tcp::options(opts).flatten() {
                let mut out = [0u8; 40];
                let len = opt.emit(&mut out).unwrap_or(0);
                assert_eq!(len, opt.buffer_len());
            }
        }
        L4Kind::Udp => {
            let o = usize::from(info.udp_opts_offset);
            let l = usize::from(info.udp_opts_len);
            if l > 0 {
                assert_eq!(o + l, ip_end);
                let udp_len = usize::from(info.udp_len);
                if let Ok((_, opts)) = udp::options_area(&data[o..o + l], udp_len) {
                    for _ in udp::options(opts) {}
                }
            }
        }
        _ => {}
    }
}

/// What every corpus replay test does with a fuzz target's body: runs it on
/// the seeds and on every file of `corpus` (the committed inputs), then on
/// `mutations` deterministic mutations of them (the seed of the generator is
/// derived from `name`, so a failure reproduces).
pub fn replay_corpus(
    name: &str,
    corpus: &std::path::Path,
    mut inputs: Vec<Vec<u8>>,
    mutations: usize,
    body: impl Fn(&[u8]),
) {
    if let Ok(rd) = std::fs::read_dir(corpus) {
        for e in rd.flatten() {
            inputs.push(std::fs::read(e.path()).expect("reading a corpus file"));
        }
    }
    for i in &inputs {
        body(i);
    }
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
    for _ in 0..mutations {
        let mut v = inputs[rng.below(inputs.len())].clone();
        rng.mutate(&mut v);
        body(&v);
    }
}

/// A tiny xorshift64* generator for deterministic mutation in tests.
#[derive(Debug, Clone)]
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// Mutates `v` in place: flips bits, overwrites bytes with interesting
    /// values, truncates or extends.
    pub fn mutate(&mut self, v: &mut Vec<u8>) {
        let rounds = 1 + self.below(4);
        for _ in 0..rounds {
            match self.below(6) {
                0 | 1 if !v.is_empty() => {
                    let i = self.below(v.len());
                    v[i] ^= 1 << self.below(8);
                }
                2 if !v.is_empty() => {
                    let i = self.below(v.len());
                    const INTERESTING: [u8; 8] = [0, 1, 2, 0x7f, 0x80, 0xff, 20, 40];
                    v[i] = INTERESTING[self.below(INTERESTING.len())];
                }
                3 if !v.is_empty() => {
                    let n = self.below(v.len());
                    v.truncate(n);
                }
                4 => {
                    let n = self.below(16);
                    for _ in 0..n {
                        v.push(self.next_u64() as u8);
                    }
                }
                _ if !v.is_empty() => {
                    let i = self.below(v.len());
                    v[i] = self.next_u64() as u8;
                }
                _ => {}
            }
        }
    }
}
