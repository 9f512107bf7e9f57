//! The identity option's MAC against its alternatives, on the 55-byte TCP MAC
//! input (docs/identity-option.md), each keyed once outside the loop as the
//! key ring keys it once per pairwise key:
//!
//! - `hmac-sha256/engine`: what the engine runs ([`MacKey::mac`]): the HMAC's
//!   inner and outer pad states precomputed, so two SHA-256 compressions; the
//!   `sha2` crate picks SHA-NI at run time when the CPU has it (`sha_ni` in
//!   /proc/cpuinfo), which `sha256-compress-1-block` isolates;
//! - `one-block/engine`: the option version 2 MAC ([`MacKey::mac_one_block`]):
//!   SHA-256 over the 64-byte key block and the input, the block's chaining
//!   value precomputed, so one compression;
//! - `hmac-sha256/ring`: ring's HMAC with a prepared key (its own pad states);
//! - `aes128-cmac/cmac-crate`: AES-CMAC (RFC 4493) with the `aes` crate, which
//!   uses AES-NI at run time: 4 AES blocks for 55 bytes, chained.
//!
//! Run: `cargo bench -p gw-benches --bench mac` (on a loaded machine read the
//! `on-CPU` lines it prints first, not only criterion's wall-clock times).

use std::hint::black_box;

use aes::cipher::KeyInit;
use cmac::{Cmac, Mac};
use criterion::{criterion_group, criterion_main, Criterion};
use dataplane::identity::{keys, mac::TCP_INPUT_LEN, GatewayKeyPair};
use gw_benches::cpu_report;

fn bench(c: &mut Criterion) {
    let a = GatewayKeyPair::from_secret_bytes(1, [1; 32]);
    let b = GatewayKeyPair::from_secret_bytes(2, [2; 32]);
    let (tx, _) = keys::derive_pair(&a, &b.peer_public(2), 0, u64::MAX).unwrap();
    let msg = [0x5au8; TCP_INPUT_LEN];
    let secret = [7u8; 32];
    let ring_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
    let cmac_key = <Cmac<aes::Aes128> as KeyInit>::new_from_slice(&secret[..16]).unwrap();
    let block = sha2::digest::generic_array::GenericArray::from([0x5au8; 64]);

    println!(
        "sha_ni in /proc/cpuinfo: {}",
        std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|s| s.contains(" sha_ni"))
    );
    let engine = || black_box(tx.mac(black_box(&msg)));
    let one_block = || black_box(tx.mac_one_block(black_box(&msg)));
    let ring_mac = || black_box(ring::hmac::sign(&ring_key, black_box(&msg)));
    let cmac = || {
        let mut m = cmac_key.clone();
        m.update(black_box(&msg));
        black_box(m.finalize().into_bytes())
    };
    let compress = || {
        let mut s = [0u32; 8];
        sha2::compress256(&mut s, core::slice::from_ref(black_box(&block)));
        black_box(s)
    };
    cpu_report("mac/hmac-sha256/engine", || {
        engine();
    });
    cpu_report("mac/one-block/engine", || {
        one_block();
    });
    cpu_report("mac/hmac-sha256/ring", || {
        ring_mac();
    });
    cpu_report("mac/aes128-cmac/cmac-crate", || {
        cmac();
    });
    cpu_report("mac/sha256-compress-1-block", || {
        compress();
    });

    let mut g = c.benchmark_group("mac");
    g.bench_function("hmac-sha256/engine", |bn| bn.iter(engine));
    g.bench_function("one-block/engine", |bn| bn.iter(one_block));
    g.bench_function("hmac-sha256/ring", |bn| bn.iter(ring_mac));
    g.bench_function("aes128-cmac/cmac-crate", |bn| bn.iter(cmac));
    g.bench_function("sha256-compress-1-block", |bn| bn.iter(compress));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
