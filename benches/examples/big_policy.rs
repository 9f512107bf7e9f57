//! Writes (to stdout, YAML) a policy document: BASE (a gateway's own policy,
//! e.g. docs/examples/bench-gw-a.yaml) plus the 10k-rule/100k-identity load
//! of `policy_10k_rules_100k_identities`, with that load's PU addresses moved
//! to 10.200.0.0/16 so that they do not overlap BASE's. The rules BASE's
//! traffic meets are BASE's own: applying this document and BASE in turn
//! re-decides every flow without changing a verdict (benches/swap.sh).
//!
//! Run: `cargo run --release -p gw-benches --example big_policy -- BASE.yaml > big.yaml`

fn main() {
    let Some(base) = std::env::args().nth(1) else {
        eprintln!("usage: big_policy BASE.yaml > OUT.yaml");
        std::process::exit(2);
    };
    let text = std::fs::read_to_string(&base).unwrap_or_else(|e| panic!("{base}: {e}"));
    let mut doc = dataplane::policy::PolicyDocument::from_yaml(&text).unwrap_or_else(|e| panic!("{base}: {e}"));
    let mut load = gw_benches::policy_10k_rules_100k_identities();
    for (i, pu) in load.processing_units.iter_mut().enumerate() {
        pu.addresses = vec![format!("10.200.{}.{}", i / 256, i % 256)];
    }
    // Its peer's key ids must not collide with BASE's (local and peers).
    for (i, k) in load.peers.iter_mut().flat_map(|p| p.keys.iter_mut()).enumerate() {
        k.id = 1000 + i as u32;
    }
    doc.revision = Some(format!("{}+10k-rules-100k-identities", doc.revision.unwrap_or_default()));
    doc.processing_units.extend(load.processing_units);
    doc.identities.extend(load.identities);
    doc.peers.extend(load.peers);
    doc.rulesets.extend(load.rulesets);
    doc.external_networks.extend(load.external_networks);
    print!("{}", doc.to_yaml().expect("serializable"));
}
