//! What the MAC binds.
//!
//! The TCP MAC input is exactly 55 bytes: with the HMAC's inner pad already
//! absorbed (see [`super::keys::MacKey`]), 55 bytes plus SHA-256 padding fill one
//! block, so a TCP MAC costs two compressions (inner, outer).
//!
//! ```text
//! TCP (55 bytes)                           UDP (64 bytes)
//!  0      context: 1 = SYN  (client→server)  0      context: 3 = UDP
//!                  2 = SYN-ACK (server→client)
//!  1..9   option bytes 4..12                 1..26  option bytes 4..29
//!         (ver/flags, key id, identity)             (ver/flags, msg, key id,
//!                                                    identity, nonce, echo)
//!  9      address family (4 or 6)            26     address family
//! 10..26  source address (v4: 4 bytes, 0s)   27..43 source address
//! 26..42  destination address                43..59 destination address
//! 42..44  source port                        59..61 source port
//! 44..46  destination port                   61..63 destination port
//! 46      protocol (6)                       63     protocol (17)
//! 47..51  sequence number
//! 51..55  acknowledgment number (SYN: 0)
//! ```
//!
//! A SYN-ACK's acknowledgment number is the SYN's sequence number plus one, so
//! a SYN-ACK's MAC also binds the SYN it answers.

use crate::wire::Addr;

/// Domain-separation contexts (first byte of the MAC input). 4 and 5 are the
/// layer-4 records' ([`super::l4::context`]).
pub mod context {
    pub const TCP_SYN: u8 = 1;
    pub const TCP_SYN_ACK: u8 = 2;
    pub const UDP: u8 = 3;
}

pub const TCP_INPUT_LEN: usize = 55;
pub const UDP_INPUT_LEN: usize = 64;

/// The flow fields both MAC inputs bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub src: Addr,
    pub dst: Addr,
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
}

fn put_addrs(out: &mut [u8], src: &Addr, dst: &Addr) {
    // out: af(1) src(16) dst(16)
    let af = match src {
        Addr::V4(_) => 4,
        Addr::V6(_) => 6,
        Addr::None => 0,
    };
    out[0] = af;
    for (a, range) in [(src, 1..17), (dst, 17..33)] {
        let o = &mut out[range];
        o.fill(0);
        match a {
            Addr::V4(v) => o[..4].copy_from_slice(v),
            Addr::V6(v) => o.copy_from_slice(v),
            Addr::None => {}
        }
    }
}

/// Builds the TCP MAC input. `bound` is option bytes 4..12.
pub fn tcp_input(ctx: u8, bound: &[u8; 8], flow: &Flow, seq: u32, ack: u32) -> [u8; TCP_INPUT_LEN] {
    let mut m = [0u8; TCP_INPUT_LEN];
    m[0] = ctx;
    m[1..9].copy_from_slice(bound);
    put_addrs(&mut m[9..42], &flow.src, &flow.dst);
    m[42..44].copy_from_slice(&flow.src_port.to_be_bytes());
    m[44..46].copy_from_slice(&flow.dst_port.to_be_bytes());
    m[46] = flow.proto;
    m[47..51].copy_from_slice(&seq.to_be_bytes());
    m[51..55].copy_from_slice(&ack.to_be_bytes());
    m
}

/// Builds the UDP MAC input. `bound` is option bytes 4..29.
pub fn udp_input(bound: &[u8; 25], flow: &Flow) -> [u8; UDP_INPUT_LEN] {
    let mut m = [0u8; UDP_INPUT_LEN];
    m[0] = context::UDP;
    m[1..26].copy_from_slice(bound);
    put_addrs(&mut m[26..59], &flow.src, &flow.dst);
    m[59..61].copy_from_slice(&flow.src_port.to_be_bytes());
    m[61..63].copy_from_slice(&flow.dst_port.to_be_bytes());
    m[63] = flow.proto;
    m
}
