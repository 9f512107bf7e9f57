#!/usr/bin/env python3
"""Regenerates the hand-written SYN frames (Windows, macOS) and fixes the
checksums of the frames captured on Linux loopback. See README.md."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b)//2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff

def fix(frame):
    f = bytearray(frame)
    et = f[12:14]
    if et == b'\x08\x00':
        ihl = (f[14] & 15) * 4
        f[24:26] = b'\0\0'; f[24:26] = struct.pack('!H', csum(bytes(f[14:14+ihl])))
        l4 = 14 + ihl; tl = struct.unpack('!H', f[16:18])[0]; end = 14 + tl
        ph = bytes(f[26:30]) + bytes(f[30:34]) + struct.pack('!BBH', 0, 6, end - l4)
    else:
        l4 = 54; end = 54 + struct.unpack('!H', f[18:20])[0] - 0
        end = 14 + 40 + struct.unpack('!H', f[18:20])[0]
        ph = bytes(f[22:38]) + bytes(f[38:54]) + struct.pack('!IxxxB', end - l4, 6)
    f[l4+16:l4+18] = b'\0\0'
    f[l4+16:l4+18] = struct.pack('!H', csum(ph + bytes(f[l4:end])))
    return bytes(f)

def syn_v4(opts, src='c0a80a0b', dst='c0a80a01', sport=50123, dport=443, seq=0x5eed1234, win=64240):
    eth = bytes.fromhex('020000000001020000000002') + b'\x08\x00'
    tcp = struct.pack('!HHIIBBHHH', sport, dport, seq, 0, (5 + len(opts)//4) << 4, 0x02, win, 0, 0) + opts
    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(tcp), 0x1234, 0x4000, 128, 6, 0,
                     bytes.fromhex(src), bytes.fromhex(dst))
    return fix(eth + ip + tcp)

def syn_v6(opts, sport=50123, dport=443, seq=0x5eed1234, win=65535):
    eth = bytes.fromhex('020000000001020000000002') + b'\x86\xdd'
    tcp = struct.pack('!HHIIBBHHH', sport, dport, seq, 0, (5 + len(opts)//4) << 4, 0x02, win, 0, 0) + opts
    ip = struct.pack('!IHBB', 0x60000000, len(tcp), 6, 64) + bytes.fromhex('20010db8000000000000000000000011') + bytes.fromhex('20010db8000000000000000000000001')
    return fix(eth + ip + tcp)

MSS = lambda m: struct.pack('!BBH', 2, 4, m)
WS = lambda s: bytes([3, 3, s])
NOP = b'\x01'; EOL = b'\x00'; SACKP = b'\x04\x02'
TS = lambda v, e=0: struct.pack('!BBII', 8, 10, v, e)

files = {
    # Windows 10/11 default SYN (timestamps off): MSS, NOP, WS, NOP, NOP, SACK_PERM (12 bytes)
    'windows_syn_v4.hex': syn_v4(MSS(1460) + NOP + WS(8) + NOP + NOP + SACKP),
    # Windows with RFC 1323 timestamps enabled: MSS, NOP, WS, SACK_PERM, TS (20 bytes)
    'windows_syn_ts_v4.hex': syn_v4(MSS(1460) + NOP + WS(8) + SACKP + TS(0x0001e240)),
    # macOS SYN: MSS, NOP, WS, NOP, NOP, TS, SACK_PERM, EOL, EOL (24 bytes)
    'macos_syn_v4.hex': syn_v4(MSS(1460) + NOP + WS(6) + NOP + NOP + TS(0x6e1c8a3f) + SACKP + EOL + EOL, win=65535),
    'macos_syn_v6.hex': syn_v6(MSS(1440) + NOP + WS(6) + NOP + NOP + TS(0x6e1c8a3f) + SACKP + EOL + EOL),
}
captured = {
    'linux_syn_v4.hex': '00000000000000000000000008004500003c14554000400628657f0000017f000001913eb26eaab1c89a00000000a002ffd7fe3000000204ffd70402080a089e748e000000000103030a',
    'linux_synack_v4.hex': '00000000000000000000000008004500003c0000400040063cba7f0000017f000001b26e913e3426f3c1aab1c89ba012ffcbfe3000000204ffd70402080a77a6c089089e748e0103030a',
    'linux_syn_v6.hex': '00000000000000000000000086dd600f25c3002806400000000000000000000000000000000100000000000000000000000000000001a75eb26f1535d86e00000000a002ffc4003000000204ffc40402080a3665cb96000000000103030a',
    'linux_synack_v6.hex': '00000000000000000000000086dd6006f6ad002806400000000000000000000000000000000100000000000000000000000000000001b26fa75e7c2c10401535d86fa012ffb8003000000204ffc40402080a4d998aee3665cb960103030a',
}
for k, v in captured.items():
    files[k] = fix(bytes.fromhex(v))
for k, v in files.items():
    open(os.path.join(HERE, k), 'w').write(v.hex() + '\n')
