//! Packet engine micro-benchmarks: ns per packet for parse, insert+MAC and
//! verify+strip, IPv4 and IPv6 (Linux SYN options), with the option's
//! version 1 (HMAC, two compressions) and version 2 (`-v2`: one compression). One buffer is reused
//! (`VecBuf::reset`), so the measured loop allocates nothing.
//!
//! Run: `CARGO_TARGET_DIR=target-pe cargo bench -p gw-benches --bench packet`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use dataplane::buf::{PacketBuf, VecBuf};
use dataplane::identity::{insert_tcp, keys, verify_and_strip_tcp, GatewayKeyPair, KeyRing, MacKey, TcpVersion};
use dataplane::wire::builder::{build, Spec};
use dataplane::wire::parse_frame;
use gw_benches::cpu_report;

// Linux SYN options: MSS, SACK_PERM, TS, NOP, WS (20 bytes)
const LINUX_OPTS: [u8; 20] = [2, 4, 5, 180, 4, 2, 8, 10, 0, 1, 2, 3, 0, 0, 0, 0, 1, 3, 3, 7];
const NOW: u64 = 1_000;

fn frames() -> [(&'static str, Vec<u8>); 2] {
    let s = Spec { tcp_options: &LINUX_OPTS, ..Spec::default() };
    [("ipv4", build(&s)), ("ipv6", build(&s.clone().with_v6()))]
}

fn keys() -> (MacKey, KeyRing) {
    let a = GatewayKeyPair::from_secret_bytes(1, [1; 32]);
    let b = GatewayKeyPair::from_secret_bytes(2, [2; 32]);
    let (tx, _) = keys::derive_pair(&a, &b.peer_public(2), 0, u64::MAX).unwrap();
    let mut ring = KeyRing::new();
    ring.add_peer(&b, &a.peer_public(1), 0, u64::MAX).unwrap();
    (tx, ring)
}

/// The transmit key signing each option version, with its bench name suffix.
fn versions(tx: &MacKey) -> [(&'static str, MacKey); 2] {
    [("", tx.clone()), ("-v2", tx.clone().sending(TcpVersion::OneBlock))]
}

fn bench(c: &mut Criterion) {
    let (tx, ring) = keys();

    // the MAC alone: clone of the keyed state + 55-byte message (2 compressions)
    let msg = [0x5au8; dataplane::identity::mac::TCP_INPUT_LEN];
    c.bench_function("packet/hmac-sha256-55B", |bn| bn.iter(|| black_box(tx.mac(black_box(&msg)))));
    c.bench_function("packet/one-block-mac-55B", |bn| bn.iter(|| black_box(tx.mac_one_block(black_box(&msg)))));

    for (name, f) in frames() {
        let mut g = c.benchmark_group(format!("packet/{name}"));
        // The summary is black-boxed by reference: it must exist in memory, as
        // the engine has it (it passes `&FrameInfo` on). By value, black_box
        // stored a second copy, field by field: about 50 of ~250 instructions.
        g.bench_function("parse", |bn| bn.iter(|| black_box(&parse_frame(black_box(&f))).is_ok()));

        let mut buf = VecBuf::from_frame(&f);
        let mut signed = Vec::new();
        for (v, tx) in versions(&tx) {
            g.bench_function(format!("insert+mac{v}"), |bn| {
                bn.iter(|| {
                    buf.reset(&f, VecBuf::DEFAULT_HEADROOM).unwrap();
                    let info = parse_frame(buf.data()).unwrap();
                    black_box(insert_tcp(&mut buf, &info, &tx, 42))
                })
            });

            let mut s = VecBuf::from_frame(&f);
            let info = parse_frame(&f).unwrap();
            insert_tcp(&mut s, &info, &tx, 42).unwrap();
            signed = s.data().to_vec();
            g.bench_function(format!("verify+strip{v}"), |bn| {
                bn.iter(|| {
                    buf.reset(&signed, VecBuf::DEFAULT_HEADROOM).unwrap();
                    let info = parse_frame(buf.data()).unwrap();
                    black_box(verify_and_strip_tcp(&mut buf, &info, &ring, NOW)).unwrap();
                })
            });
        }
        // the reset copy alone, to subtract from the two above
        g.bench_function("reset-only", |bn| {
            bn.iter(|| {
                buf.reset(black_box(&signed), VecBuf::DEFAULT_HEADROOM).unwrap();
            })
        });
        g.finish();
    }
}

/// The same operations timed by on-CPU time (printed after criterion's report).
fn cpu_times(_: &mut Criterion) {
    let (tx, ring) = keys();
    let msg = [0x5au8; dataplane::identity::mac::TCP_INPUT_LEN];
    cpu_report("packet/hmac-sha256-55B", || {
        black_box(tx.mac(black_box(&msg)));
    });
    cpu_report("packet/one-block-mac-55B", || {
        black_box(tx.mac_one_block(black_box(&msg)));
    });
    for (name, f) in frames() {
        let mut buf = VecBuf::from_frame(&f);
        cpu_report(&format!("packet/{name}/parse"), || {
            let _ = black_box(&parse_frame(black_box(&f)));
        });
        let mut signed = Vec::new();
        for (v, tx) in versions(&tx) {
            cpu_report(&format!("packet/{name}/insert+mac{v}"), || {
                buf.reset(&f, VecBuf::DEFAULT_HEADROOM).unwrap();
                let info = parse_frame(buf.data()).unwrap();
                let _ = black_box(insert_tcp(&mut buf, &info, &tx, 42));
            });
            signed = buf.data().to_vec();
            cpu_report(&format!("packet/{name}/verify+strip{v}"), || {
                buf.reset(&signed, VecBuf::DEFAULT_HEADROOM).unwrap();
                let info = parse_frame(buf.data()).unwrap();
                black_box(verify_and_strip_tcp(&mut buf, &info, &ring, NOW)).unwrap();
            });
        }
        cpu_report(&format!("packet/{name}/reset-only"), || {
            buf.reset(black_box(&signed), VecBuf::DEFAULT_HEADROOM).unwrap();
        });
    }
}

criterion_group!(benches, bench, cpu_times);
criterion_main!(benches);
