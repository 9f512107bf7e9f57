//! Shared helpers for the benchmarks (and the control plane's `api_bench`).

use dataplane::policy::model::{
    Action, ExternalNetwork, IdentityEntry, Peer, PeerKey, PolicyDocument, PortSpec, ProcessingUnit, Protocol, Rule,
    Ruleset,
};

pub const IDENTITIES: u32 = 100_000;
pub const RULESETS: u32 = 1_000;
pub const RULES_PER_DIRECTION: u32 = 5; // 1000 × (5 + 5) = 10k rules
pub const PUS: u32 = 200;
pub const APPS: u32 = 2_000;

/// The scale document of issue 5's apply-time target (10k rules over 100k
/// identities), deterministic: 200 local PUs, 100k remote identities (each with
/// a unique `instance` tag, so no two share a tag set), 1000 rulesets of 10
/// rules, 100 external networks.
pub fn policy_10k_rules_100k_identities() -> PolicyDocument {
    let mut doc = PolicyDocument::default();
    doc.peers.push(Peer {
        name: "west".into(),
        keys: vec![PeerKey { id: 1, public_key: "11".repeat(32), not_before: None, not_after: None }],
        networks: vec![],
        option_version: None,
    });
    for i in 0..PUS {
        doc.processing_units.push(ProcessingUnit {
            name: format!("pu-{i}"),
            tags: vec![
                format!("app=svc{}", i % 50),
                format!("env={}", ["prod", "dev"][(i % 2) as usize]),
                format!("team=t{}", i % 10),
            ],
            addresses: vec![format!("10.1.{}.{}", i / 256, i % 256)],
            identity: 1 + i,
        });
    }
    for i in 0..IDENTITIES {
        doc.identities.push(IdentityEntry {
            identity: 1_000_000 + i,
            name: None,
            tags: vec![
                format!("app=app{}", i % APPS),
                format!("env={}", ["prod", "stage", "dev"][(i % 3) as usize]),
                format!("team=t{}", i % 40),
                format!("instance=i{i}"),
            ],
            peer: "west".into(),
        });
    }
    doc.external_networks = external_networks(100);
    let mut n = 0u32;
    let mut rule = |dir: &str, k: u32| {
        n += 1;
        rule(dir, k, n)
    };
    for r in 0..RULESETS {
        let incoming = (0..RULES_PER_DIRECTION).map(|k| rule("in", k)).collect();
        let outgoing = (0..RULES_PER_DIRECTION).map(|k| rule("out", k)).collect();
        doc.rulesets.push(Ruleset {
            name: format!("rs-{r}"),
            subject: format!("app == svc{} && env in {{prod, dev}}", r % 50),
            incoming,
            outgoing,
        });
    }
    doc
}

/// `count` external networks tagged `ext=e{i % 20}`, `zone=z{i % 5}`, each a /16.
pub fn external_networks(count: u32) -> Vec<ExternalNetwork> {
    (0..count)
        .map(|i| ExternalNetwork {
            name: format!("ext-{i}"),
            tags: vec![format!("ext=e{}", i % 20), format!("zone=z{}", i % 5)],
            cidrs: vec![format!("{}.{}.0.0/16", 100 + i / 50, i % 50)],
            protocols: vec![Protocol::Any],
            ports: vec![],
            fqdns: vec![],
        })
        .collect()
}

/// The `n`th rule of the scale documents, of kind `k` (0..5): selectors on
/// `app`, `team`, `env` and `ext`, every 7th a reject, every 11th observe-only.
pub fn rule(dir: &str, k: u32, n: u32) -> Rule {
    let a = (n * 7919) % APPS;
    let object = match k {
        0 => format!("app == app{a} && env == prod"),
        1 => format!("app in {{app{a}, app{}, app{}}}", (a + 1) % APPS, (a + 2) % APPS),
        2 => format!("team == t{} && env != dev", n % 40),
        3 => format!("ext == e{} || app == app{a}", n % 20),
        _ => format!("app == app{a} && has(team)"),
    };
    Rule {
        name: format!("{dir}-{k}"),
        action: if n.is_multiple_of(7) { Action::Reject } else { Action::Allow },
        object,
        protocols: vec![if k == 3 { Protocol::Any } else { Protocol::Tcp }],
        ports: match k {
            0 => vec![PortSpec::Number(443)],
            1 => vec![PortSpec::Text("8000-8100".into()), PortSpec::Number(9090)],
            _ => vec![],
        },
        observe: n.is_multiple_of(11),
    }
}

/// This thread's on-CPU time in ns from `/proc/thread-self/schedstat`
/// (updated at scheduler ticks, so only long runs are precise); 0 where it
/// cannot be read.
pub fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// On a machine shared with other work, wall-clock times include the time the
/// benchmark thread sat descheduled. This runs `f` for about two seconds and
/// prints on-CPU ns per iteration beside wall ns (tick granularity: ±0.5 %).
pub fn cpu_report(name: &str, mut f: impl FnMut()) {
    let c0 = thread_cpu_ns();
    if c0 == 0 {
        return;
    }
    let t0 = std::time::Instant::now();
    let mut n: u64 = 0;
    while t0.elapsed() < std::time::Duration::from_secs(2) {
        for _ in 0..10_000 {
            f();
        }
        n += 10_000;
    }
    let wall = t0.elapsed().as_nanos() as f64 / n as f64;
    let cpu = thread_cpu_ns().saturating_sub(c0) as f64 / n as f64;
    println!("{name:<36} on-CPU {cpu:8.1} ns/iter   wall {wall:8.1} ns/iter   ({n} iters)");
}

/// The median of `v` (sorted in place; the upper one of an even count).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}
