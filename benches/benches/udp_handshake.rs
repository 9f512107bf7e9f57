//! UDP identity handshake cost per worker (issue 6), two engines in process:
//! A (initiator: hold the first datagram, build and sign the request; then
//! verify the response, decide, release) and B (responder: verify the
//! request, decide, build and sign the answer in place).
//!
//! Prints handshakes per second per worker for each role, and the gateway
//! time the first datagram spends in A and B (excluding the wire RTT).
//!
//!   cargo bench -p gw-benches --bench udp_handshake [-- FLOWS]

use std::sync::Arc;
use std::time::Instant;

use dataplane::buf::VecBuf;
use dataplane::engine::udp::Effect;
use dataplane::engine::{Action, Engine, EngineConfig};
use dataplane::identity::GatewayKeyPair;
use dataplane::policy::Side;
use dataplane::stats::WorkerStats;
use dataplane::wire::builder::{build, Spec};

fn hex(b: [u8; 32]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
fn public(s: u8) -> String {
    hex(GatewayKeyPair::from_secret_bytes(0, [s; 32]).public())
}

/// One side of the two-gateway setup: its name, key id and secret seed.
struct Gw<'a> {
    name: &'a str,
    id: u32,
    secret: u8,
    /// The network of its PU.
    net: &'a str,
}

fn policy(me: &Gw, peer: &Gw, rules: &str) -> String {
    let (local, id, mine) = (me.name, me.id, me.net);
    let (peer_name, peer_id, theirs) = (peer.name, peer.id, peer.net);
    format!(
        r#"
local: {{gateway: {local}, key_id: {id}, private_key: "{sk}"}}
processing_units:
  - {{name: pu, tags: [app={local}], addresses: ["{mine}"], identity: {id}000}}
identities:
  - {{identity: {peer_id}000, name: remote, tags: [app={peer_name}], peer: {peer_name}}}
peers:
  - {{name: {peer_name}, keys: [{{id: {peer_id}, public_key: "{pk}"}}], networks: ["{theirs}"]}}
rulesets:
  - name: r
    subject: all()
{rules}
enforcer_profile:
  managed_udp_networks: ["{theirs}"]
"#,
        sk = hex([me.secret; 32]),
        pk = public(peer.secret)
    )
}

fn main() {
    let flows: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(200_000);
    let gw_a = Gw { name: "gw-a", id: 1, secret: 1, net: "10.1.0.0/16" };
    let gw_b = Gw { name: "gw-b", id: 2, secret: 2, net: "10.2.0.0/16" };
    let a_doc =
        policy(&gw_a, &gw_b, "    outgoing: [{name: out, action: allow, object: app == gw-b, protocols: [udp]}]");
    let b_doc =
        policy(&gw_b, &gw_a, "    incoming: [{name: in, action: allow, object: app == gw-a, protocols: [udp]}]");
    let ca = EngineConfig::from_yaml(&a_doc).expect("A's policy");
    let cb = EngineConfig::from_yaml(&b_doc).expect("B's policy");
    let cap = (flows * 2).max(1024);
    let mut a = Engine::new(cap, 1, Arc::new(WorkerStats::default()), None);
    let mut b = Engine::new(cap, 2, Arc::new(WorkerStats::default()), None);
    // Prebuilt first datagrams (64-byte frames), one per flow.
    let frames: Vec<Vec<u8>> = (0..flows)
        .map(|i| {
            let mut src = [0u8; 16];
            src[..4].copy_from_slice(&[10, 1, (i >> 16) as u8, (i >> 8) as u8]);
            let mut dst = [0u8; 16];
            dst[..4].copy_from_slice(&[10, 2, 0, 20]);
            build(&Spec {
                proto: 17,
                src,
                dst,
                sport: 1024 + (i & 0xff) as u16 * 200 + 7,
                dport: 53,
                payload: &[0u8; 18],
                ..Spec::default()
            })
        })
        .collect();
    let now = 2_000_000_000_000u64;
    let (mut ta_start, mut tb, mut ta_done) = (0u128, 0u128, 0u128);
    let mut released = 0usize;
    let mut per_first = Vec::with_capacity(flows);
    let mut req = VecBuf::from_frame(&[0u8; 64]);
    for f in &frames {
        let mut buf = VecBuf::from_frame(f);
        // A: first datagram → held, request generated.
        let t0 = Instant::now();
        let act = a.process(&ca, Side::Inside, &mut buf, now);
        let frame = match a.effects().first() {
            Some(Effect::Send { frame, .. }) => *frame,
            _ => panic!("no request: {act:?}"),
        };
        req.reset(a.effect_frame(frame), 128).unwrap();
        a.clear_effects();
        let t1 = Instant::now();
        // B: request → response, in place.
        let act = b.process(&cb, Side::Outside, &mut req, now);
        assert_eq!(act, Action::Answer);
        let t2 = Instant::now();
        // A: response → decided, release.
        let act = a.process(&ca, Side::Outside, &mut req, now);
        released += a.effects().iter().filter(|e| matches!(e, Effect::Release { .. })).count();
        a.clear_effects();
        let t3 = Instant::now();
        assert_eq!(act, Action::Consume);
        ta_start += (t1 - t0).as_nanos();
        tb += (t2 - t1).as_nanos();
        ta_done += (t3 - t2).as_nanos();
        per_first.push((t1 - t0) + (t2 - t1) + (t3 - t2));
    }
    assert_eq!(released, flows, "every handshake released its datagram");
    let n = flows as f64;
    let a_ns = (ta_start + ta_done) as f64 / n;
    let b_ns = tb as f64 / n;
    per_first.sort();
    let pct = |p: f64| per_first[((per_first.len() - 1) as f64 * p) as usize].as_nanos() as f64 / 1000.0;
    println!("udp handshake, {flows} flows, one core each role (no I/O):");
    println!("  initiator A: {:.0} ns/handshake (hold+request {:.0} ns, response+release {:.0} ns) = {:.0} handshakes/s/worker",
        a_ns, ta_start as f64 / n, ta_done as f64 / n, 1e9 / a_ns);
    println!("  responder B: {:.0} ns/handshake = {:.0} handshakes/s/worker", b_ns, 1e9 / b_ns);
    println!("  gateway time added to the first datagram (A + B + A): median {:.2} us, p99 {:.2} us, max {:.2} us (+ 1 RTT on the wire)",
        pct(0.5), pct(0.99), pct(1.0));
}
