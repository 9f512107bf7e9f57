//! Identity in the UDP options area (RFC 9868 surplus area).
//!
//! Insertion requires a datagram without a surplus area and appends
//! `[0x00 if the UDP length is odd] OCS(2) identity option(45)`; the UDP length
//! and checksum are untouched (they do not cover the surplus), the IP length
//! grows (IPv4 header checksum updated incrementally). The MAC binds the flow,
//! the message type and both nonces, which the UDP handshake (request →
//! response/reject, `engine::udp`) relies on. It does not bind the UDP payload.

use subtle::ConstantTimeEq;

use super::keys::{KeyId, KeyRing, MacKey, PeerId};
use super::mac::{self, Flow};
use super::option::{self, udp_field, EXID, UDP_KIND, UDP_LEN, UDP_MAC_LEN, VERSION};
use super::tcp::{locate, set_ip_len, Loc};
use super::{RewriteError, VerifyError};
use crate::buf::PacketBuf;
use crate::wire::udp::{self as wudp, UdpOption};
use crate::wire::{ip_proto, FrameInfo, L4Kind, Malformed};

/// The handshake message a UDP identity option carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum UdpMsg {
    /// Initiator → responder: "here is my identity, nonce N_i".
    Request = 1,
    /// Responder → initiator: identity, nonce N_r, echo N_i.
    Response = 2,
    /// Responder → initiator: refused by policy (signed, echo N_i).
    Reject = 3,
    /// Identity on an ordinary datagram.
    Data = 4,
}

impl UdpMsg {
    pub const fn from_u8(v: u8) -> Option<UdpMsg> {
        match v {
            1 => Some(UdpMsg::Request),
            2 => Some(UdpMsg::Response),
            3 => Some(UdpMsg::Reject),
            4 => Some(UdpMsg::Data),
            _ => None,
        }
    }
}

/// What the sender puts in a UDP identity option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpIdentity {
    pub msg: UdpMsg,
    pub identity: u32,
    /// The sender's fresh nonce.
    pub nonce: [u8; 8],
    /// The peer's nonce being answered (zero in a request).
    pub echo: [u8; 8],
}

/// A verified UDP identity option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedUdp {
    pub key_id: KeyId,
    pub peer: PeerId,
    pub identity: u32,
    pub msg: UdpMsg,
    pub nonce: [u8; 8],
    pub echo: [u8; 8],
}

/// Bytes added by [`insert_udp`] for a given UDP length.
pub const fn added_len(udp_len: usize) -> usize {
    wudp::ocs_pad(udp_len) + 2 + UDP_LEN
}

struct UdpLoc {
    loc: Loc,
    udp_end: usize,
}

fn locate_udp(frame: &[u8], info: &FrameInfo) -> Result<UdpLoc, super::tcp::LocError> {
    let loc = locate(frame, info, L4Kind::Udp)?;
    let m = super::tcp::LocError::Malformed;
    let h = frame.get(loc.l4..loc.l4 + wudp::HEADER_LEN).ok_or(m(Malformed::UdpTruncated))?;
    let ul = usize::from(u16::from_be_bytes([h[4], h[5]]));
    if ul < wudp::HEADER_LEN || loc.l4 + ul > loc.ip_end {
        return Err(m(Malformed::UdpBadLength));
    }
    Ok(UdpLoc { loc, udp_end: loc.l4 + ul })
}

fn flow(info: &FrameInfo, frame: &[u8], l4: usize) -> Flow {
    let p = |i: usize| frame.get(l4 + i..l4 + i + 2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
    Flow { src: info.src, dst: info.dst, src_port: p(0), dst_port: p(2), proto: ip_proto::UDP }
}

/// Appends a signed identity option in the UDP options area.
pub fn insert_udp<B: PacketBuf>(
    buf: &mut B,
    info: &FrameInfo,
    key: &MacKey,
    id: &UdpIdentity,
) -> Result<(), RewriteError> {
    let frame = buf.data();
    let u = locate_udp(frame, info)?;
    let loc = u.loc;
    if u.udp_end != loc.ip_end {
        return Err(RewriteError::SurplusPresent);
    }
    let pad = wudp::ocs_pad(u.udp_end - loc.l4);
    let add = pad + 2 + UDP_LEN;
    if loc.ip_end - loc.l3 + add > usize::from(u16::MAX) {
        return Err(RewriteError::NoRoom);
    }
    let mut opt = [0u8; UDP_LEN];
    opt[udp_field::KIND] = UDP_KIND;
    opt[udp_field::LEN] = UDP_LEN as u8;
    opt[udp_field::EXID].copy_from_slice(&EXID.to_be_bytes());
    opt[udp_field::VER_FLAGS] = option::ver_flags();
    opt[udp_field::MSG] = id.msg as u8;
    option::put_u24(&mut opt[udp_field::KEY_ID], key.key_id().get());
    opt[udp_field::IDENTITY].copy_from_slice(&id.identity.to_be_bytes());
    opt[udp_field::NONCE].copy_from_slice(&id.nonce);
    opt[udp_field::ECHO].copy_from_slice(&id.echo);
    let mut bound = [0u8; 25];
    bound.copy_from_slice(&opt[udp_field::BOUND]);
    let m = key.mac(&mac::udp_input(&bound, &flow(info, frame, loc.l4)));
    opt[udp_field::MAC].copy_from_slice(&m[..UDP_MAC_LEN]);

    let extra = frame.len() - loc.ip_end;
    if buf.tailroom() + extra < add {
        return Err(RewriteError::BufferFull);
    }
    let r = if extra >= add { buf.trim(extra - add) } else { buf.append(add - extra) };
    r.map_err(|_| RewriteError::BufferFull)?;
    let frame = buf.data_mut();
    let area = &mut frame[loc.ip_end..loc.ip_end + add];
    area[..pad].fill(0);
    let (ocs, rest) = area[pad..].split_at_mut(2);
    ocs.copy_from_slice(&[0, 0]);
    rest.copy_from_slice(&opt);
    let c = wudp::compute_ocs(&area[pad..]);
    area[pad..pad + 2].copy_from_slice(&c.to_be_bytes());
    set_ip_len(frame, &loc, loc.ip_end + add);
    Ok(())
}

/// Where our option is: (frame offset of the options after the OCS, option
/// offset, option length, whether any other non-padding option exists).
type Found = (usize, usize, usize, bool);

/// Finds our option.
fn find(frame: &[u8], u: &UdpLoc) -> Result<Option<Found>, Malformed> {
    let surplus = &frame[u.udp_end..u.loc.ip_end];
    if surplus.is_empty() {
        return Ok(None);
    }
    let (area, opts) = wudp::options_area(surplus, u.udp_end - u.loc.l4)?;
    let opts_at = u.udp_end + area.pad + 2;
    let mut ours = None;
    let mut others = false;
    for r in wudp::options(opts) {
        let (off, o) = r?;
        match o {
            UdpOption::Nop | UdpOption::EndOfList => {}
            UdpOption::Experimental { kind: UDP_KIND, exid: EXID, data } if ours.is_none() => {
                ours = Some((off, data.len() + 4));
            }
            _ => others = true,
        }
    }
    Ok(ours.map(|(off, len)| (opts_at, opts_at + off, len, others)))
}

fn verify_inner(
    frame: &[u8],
    info: &FrameInfo,
    ring: &KeyRing,
    now: u64,
) -> Result<(VerifiedUdp, UdpLoc, Found), VerifyError> {
    let u = locate_udp(frame, info)?;
    let found = find(frame, &u)?.ok_or(VerifyError::NoIdentity)?;
    let (_, at, len, _) = found;
    let opt = frame.get(at..at + len).ok_or(Malformed::UdpOptionsTruncated)?;
    let ver = opt.get(udp_field::VER_FLAGS).ok_or(Malformed::UdpOptionBadLength)? >> 4;
    if ver != VERSION {
        return Err(VerifyError::BadVersion);
    }
    if len != UDP_LEN {
        return Err(Malformed::UdpOptionBadLength.into());
    }
    let msg = UdpMsg::from_u8(opt[udp_field::MSG]).ok_or(VerifyError::BadVersion)?;
    let key_id = KeyId::new(option::get_u24(&opt[udp_field::KEY_ID])).ok_or(VerifyError::UnknownKey)?;
    let key = ring.rx_key(key_id).ok_or(VerifyError::UnknownKey)?;
    if !key.is_valid_at(now) {
        return Err(VerifyError::ExpiredKey);
    }
    let mut bound = [0u8; 25];
    bound.copy_from_slice(&opt[udp_field::BOUND]);
    let m = key.mac(&mac::udp_input(&bound, &flow(info, frame, u.loc.l4)));
    if !bool::from(m[..UDP_MAC_LEN].ct_eq(&opt[udp_field::MAC])) {
        return Err(VerifyError::BadMac);
    }
    let mut nonce = [0u8; 8];
    let mut echo = [0u8; 8];
    nonce.copy_from_slice(&opt[udp_field::NONCE]);
    echo.copy_from_slice(&opt[udp_field::ECHO]);
    let identity = u32::from_be_bytes([opt[9], opt[10], opt[11], opt[12]]);
    Ok((VerifiedUdp { key_id, peer: key.peer(), identity, msg, nonce, echo }, u, found))
}

/// Verifies the UDP identity option without changing the packet.
pub fn verify_udp(frame: &[u8], info: &FrameInfo, ring: &KeyRing, now: u64) -> Result<VerifiedUdp, VerifyError> {
    verify_inner(frame, info, ring, now).map(|(v, _, _)| v)
}

/// Verifies the UDP identity option and, only if it verifies, removes it.
pub fn verify_and_strip_udp<B: PacketBuf>(
    buf: &mut B,
    info: &FrameInfo,
    ring: &KeyRing,
    now: u64,
) -> Result<VerifiedUdp, VerifyError> {
    let (v, u, found) = verify_inner(buf.data(), info, ring, now)?;
    strip_at(buf, &u, found);
    Ok(v)
}

/// Removes the UDP identity option without verifying it. Returns whether there
/// was one. When it was the only option the whole surplus area goes.
pub fn strip_udp<B: PacketBuf>(buf: &mut B, info: &FrameInfo) -> Result<bool, RewriteError> {
    let u = locate_udp(buf.data(), info)?;
    let Some(found) = find(buf.data(), &u)? else {
        return Ok(false);
    };
    strip_at(buf, &u, found);
    Ok(true)
}

fn strip_at<B: PacketBuf>(buf: &mut B, u: &UdpLoc, found: Found) {
    let (opts_at, at, len, others) = found;
    let loc = u.loc;
    let new_end = if others {
        let ocs_at = opts_at - 2;
        let frame = buf.data_mut();
        frame.copy_within(at + len..loc.ip_end, at);
        let new_end = loc.ip_end - len;
        let had_ocs = frame[ocs_at] != 0 || frame[ocs_at + 1] != 0;
        if had_ocs {
            frame[ocs_at..ocs_at + 2].copy_from_slice(&[0, 0]);
            let c = wudp::compute_ocs(&frame[ocs_at..new_end]);
            frame[ocs_at..ocs_at + 2].copy_from_slice(&c.to_be_bytes());
        }
        new_end
    } else {
        u.udp_end
    };
    // cannot fail: new_end <= ip_end <= len
    let _ = buf.trim(buf.len() - new_end);
    set_ip_len(buf.data_mut(), &loc, new_end);
}
