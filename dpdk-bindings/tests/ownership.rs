//! The safe layer on the real EAL: frames round-trip through a net_ring
//! device and an SPSC hand-off ring, and every path (sent, not sent, dropped
//! burst, dropped drain, ring teardown) returns each mbuf to its pool exactly
//! once. One EAL per process, so this binary has one test.

use std::sync::Arc;

use dpdk_bindings::burst::{Burst, MAX_BURST};
use dpdk_bindings::port::{port_id, PortConfig};
use dpdk_bindings::ring::mbuf_ring;
use dpdk_bindings::{Eal, Mempool, Port};

fn frame(i: u8, len: usize) -> Vec<u8> {
    (0..len).map(|b| i ^ (b as u8)).collect()
}

fn fill(pool: &Mempool, burst: &mut Burst, n: usize, len: usize) -> Vec<Vec<u8>> {
    let mut sent = Vec::new();
    for i in 0..n {
        let mut m = pool.alloc().expect("pool has mbufs");
        assert!(m.append(len), "room for {len} bytes");
        let f = frame(i as u8, len);
        m.data_mut().copy_from_slice(&f);
        burst.push(m).map_err(|_| "burst full").unwrap();
        sent.push(f);
    }
    sent
}

#[test]
fn mbufs_round_trip_and_are_freed_exactly_once() {
    let eal = Eal::init([
        "--no-huge",
        "-m",
        "64",
        "--no-pci",
        "--lcores",
        "0@0",
        "--file-prefix",
        &format!("own{}", std::process::id()),
        "--log-level",
        "*:warning",
        "--vdev",
        "net_ring0",
    ])
    .expect("EAL init on net_ring0");
    assert!(matches!(Eal::init(["--no-huge"]), Err(dpdk_bindings::Error::EalAlreadyInitialised)));
    assert!(port_id("net_nonexistent9").is_err());

    let pool = Arc::new(Mempool::new("own_pool", 1023, 0, 2048 + 128, -1).expect("pool"));
    let total = pool.available();
    {
        let mut port = Port::configure("net_ring0", &PortConfig::default(), pool.clone()).expect("configure");
        port.start().expect("start");

        // TX into the ring device loops back to its RX.
        let mut tx = Burst::new();
        let sent = fill(&pool, &mut tx, 20, 60);
        assert_eq!(pool.in_use(), 20);
        let o = tx.tx(port.id(), 0);
        assert_eq!((o.sent, o.dropped, o.sent_bytes), (20, 0, 1200));
        assert!(tx.is_empty());
        let mut rx = Burst::new();
        assert_eq!(rx.rx(port.id(), 0, MAX_BURST), 20);
        // `ahead(k)` is the frame k places after the next one yielded, and
        // nothing past the end.
        let mut got = Vec::new();
        let mut frames = rx.drain();
        assert_eq!(frames.ahead(3), Some(&sent[3][..]));
        while let Some(m) = frames.next() {
            let i = got.len();
            for k in 0..4 {
                assert_eq!(frames.ahead(k), sent.get(i + 1 + k).map(|f| &f[..]), "frame {i}, ahead({k})");
            }
            got.push(m.data().to_vec());
        }
        drop(frames);
        assert_eq!(got, sent, "frames come back byte for byte, in order");
        assert_eq!(pool.in_use(), 0, "drained mbufs were freed when dropped");

        // A dropped burst and a half-consumed drain free what they hold.
        let mut b = Burst::new();
        fill(&pool, &mut b, 10, 100);
        drop(b);
        assert_eq!(pool.in_use(), 0);
        let mut b = Burst::new();
        fill(&pool, &mut b, 10, 100);
        let first: Vec<_> = b.drain().take(3).collect();
        assert_eq!(pool.in_use(), 3, "the 7 not taken were freed by the drain");
        drop(first);
        assert_eq!(pool.in_use(), 0);

        // Hand-off ring: order kept, leftovers stay with the caller, teardown frees.
        let (mut prod, mut cons) = mbuf_ring("own_ring", 64, -1).expect("ring");
        let mut b = Burst::new();
        let sent = fill(&pool, &mut b, 50, 64);
        assert_eq!(prod.enqueue(&mut b), 50);
        let mut b2 = Burst::new();
        fill(&pool, &mut b2, 20, 64);
        assert_eq!(prod.enqueue(&mut b2), 13, "a 64-slot ring holds 63");
        assert_eq!(b2.len(), 7, "the rest stayed in the caller's burst");
        drop(b2);
        let mut out = Burst::new();
        assert_eq!(cons.dequeue(&mut out), 63);
        let got: Vec<Vec<u8>> = out.drain().take(50).map(|m| m.data().to_vec()).collect();
        assert_eq!(got, sent);
        assert_eq!(pool.in_use(), 0);
        let mut b = Burst::new();
        fill(&pool, &mut b, 5, 64);
        prod.enqueue(&mut b);
        drop(prod);
        drop(cons);
        assert_eq!(pool.in_use(), 0, "ring teardown freed what it held");

        // Headroom/tailroom edits are bounded.
        let mut m = pool.alloc().unwrap();
        let head = m.headroom();
        assert!(m.prepend(head));
        assert!(!m.prepend(1));
        assert!(m.adj(head));
        assert!(!m.adj(1));
        assert!(!m.trim(1));
        assert!(!m.append(usize::from(u16::MAX) + 1));
        drop(m);
        port.stop().expect("stop");
    }
    assert_eq!(pool.available(), total, "every mbuf is back in the pool");
    drop(pool);
    drop(eal);
}
