//! Faults on purpose, against the real gatewayd binary (EAL on net_null
//! ports, no namespaces) and its state directory on real filesystems:
//! - `kill -9` during the apply of a big document, at delays spread over the
//!   apply: after the restart the policy is the old version or the new one,
//!   whole, never a mix or a torn file; an acknowledged apply is never lost;
//! - a full disk under `state_dir` (a 256 KiB tmpfs mounted for the test):
//!   the apply is refused naming the state directory, the old policy stays;
//! - a corrupted state file: gatewayd refuses to start with a message naming
//!   the file and what to do (docs/operations.md), never a panic.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A gatewayd config: two net_null ports that receive nothing, one worker,
/// `[control]` with its socket and state directory under `dir`.
fn config(dir: &Path, state_dir: &Path) -> (PathBuf, PathBuf) {
    let sock = dir.join("gw.sock");
    let toml = format!(
        "[eal]\nargs = [\"--lcores\", \"0@0,1@1\", \"--no-pci\", \"--no-huge\", \"-m\", \"256\", \
         \"--file-prefix\", \"faults{}\", \"--log-level\", \"*:warning\", \
         \"--vdev\", \"net_null0,no-rx=1\", \"--vdev\", \"net_null1,no-rx=1\"]\n\
         [ports]\ninside = \"net_null0\"\noutside = \"net_null1\"\n[[workers]]\nlcore = 1\n\
         [tuning]\nidle_backoff_us = 200\n\
         [control]\nsocket = \"{}\"\nreadonly_socket = \"\"\nstate_dir = \"{}\"\n",
        std::process::id(),
        sock.display(),
        state_dir.display()
    );
    let cfg = dir.join("gatewayd.toml");
    std::fs::write(&cfg, toml).unwrap();
    (cfg, sock)
}

fn gwctl(sock: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gwctl")).arg("--socket").arg(sock).args(args).output().expect("gwctl runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn status(sock: &Path) -> serde_json::Value {
    let o = gwctl(sock, &["status", "-o", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// A policy of `pus` PUs, `ids` remote identities and `pus / 4` rulesets,
/// every entry marked with its version (`gen=V`), so that a mix of two
/// versions shows.
fn document(v: u64, pus: usize, ids: usize) -> String {
    let mut d = format!(
        "revision: gen-{v}\nlocal:\n  gateway: gw-f\n  key_id: 2\n  private_key: \"{}\"\n\
         peers:\n  - name: gw-p\n    keys: [{{id: 1, public_key: \"f77ff4b10788bfdca62ca0bb160d427cf5762d85f2b5cad6807ec9c3febbde09\"}}]\n\
         processing_units:\n",
        "0b".repeat(32)
    );
    for i in 0..pus {
        d += &format!(
            "  - {{name: pu-{i}, tags: [app=a{}, gen={v}], addresses: [10.{}.{}.{}], identity: {}}}\n",
            i % 64,
            i / 65536,
            (i / 256) % 256,
            i % 256,
            1000 + i
        );
    }
    d += "identities:\n";
    for i in 0..ids {
        d += &format!("  - {{identity: {}, tags: [team=t{}, gen={v}], peer: gw-p}}\n", 1_000_000 + i, i % 50);
    }
    d += "rulesets:\n";
    for r in 0..(pus / 4).max(1) {
        d += &format!(
            "  - name: rs-{r}\n    subject: app == a{}\n    incoming:\n      - {{name: in-{r}-gen-{v}, action: allow, object: gen == \"{v}\" && team == t{}, protocols: [tcp], ports: [{}]}}\n",
            r % 64,
            r % 50,
            1 + r % 60000
        );
    }
    d
}

/// The state file as gatewayd left it: it must parse, and every part of it
/// must be of one version. Returns that version.
fn check_state_file(path: &Path) -> u64 {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let state: serde_json::Value = serde_json::from_slice(&text)
        .unwrap_or_else(|e| panic!("{} is not whole JSON ({} bytes): {e}", path.display(), text.len()));
    let v = state["versions"]["processing_units"].as_u64().unwrap();
    let doc = &state["document"];
    assert_eq!(doc["revision"], format!("gen-{v}"), "revision and versions agree");
    let gen = format!("gen={v}");
    for pu in doc["processing_units"].as_array().unwrap() {
        assert!(pu["tags"].as_array().unwrap().iter().any(|t| t == &gen), "a PU of another version: {pu}");
    }
    for id in doc["identities"].as_array().unwrap() {
        assert!(id["tags"].as_array().unwrap().iter().any(|t| t == &gen), "an identity of another version: {id}");
    }
    let suffix = format!("-gen-{v}");
    for rs in doc["rulesets"].as_array().unwrap() {
        assert!(rs["incoming"][0]["name"].as_str().unwrap().ends_with(&suffix), "a rule of another version: {rs}");
    }
    v
}

#[test]
fn kill_9_during_an_apply_leaves_the_old_or_the_new_version() {
    require(&[]);
    let dir = scratch("faults-kill");
    let state_dir = dir.join("state");
    let (cfg, sock) = config(&dir, &state_dir);
    let state_file = state_dir.join("policy.json");
    let (pus, ids) = (2000, 30_000);
    let mut gw = Gatewayd::start(None, &cfg, &[]);
    let file = |v: u64| {
        let f = dir.join(format!("v{v}.yaml"));
        std::fs::write(&f, document(v, pus, ids)).unwrap();
        f
    };
    let f1 = file(1);
    eprintln!("document: {} KB", std::fs::metadata(&f1).unwrap().len() / 1024);
    let t0 = Instant::now();
    let o = gwctl(&sock, &["apply", "-f", f1.to_str().unwrap(), "--version", "1"]);
    let apply_time = t0.elapsed();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(check_state_file(&state_file), 1);
    eprintln!("one apply end to end: {apply_time:?}");
    let mut in_force = 1;
    let (mut old, mut new, mut torn_rounds) = (0, 0, 0);
    // Kills spread from the start of the apply to past its end.
    for (round, pct) in [0u32, 15, 30, 45, 60, 75, 90, 100, 105, 110, 120, 140, 170].into_iter().enumerate() {
        let v = in_force + 1;
        let f = file(v);
        let apply = Command::new(env!("CARGO_BIN_EXE_gwctl"))
            .arg("--socket")
            .arg(&sock)
            .args(["apply", "-f", f.to_str().unwrap(), "--version", &v.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("gwctl runs");
        std::thread::sleep(apply_time * pct / 100);
        let before = gw.kill9();
        // A temp file left behind: the kill fell while the state was being written.
        let torn = state_dir.join("policy.json.tmp").exists();
        torn_rounds += torn as u32;
        let o = apply.wait_with_output().unwrap();
        let acked = o.status.code() == Some(0);
        let found = check_state_file(&state_file);
        assert!(found == in_force || found == v, "round {round}: version {found}, expected {in_force} or {v}");
        if acked {
            assert_eq!(found, v, "round {round}: the apply was acknowledged, then lost:\n{}\n{before}", text(&o));
        }
        gw = Gatewayd::start(None, &cfg, &[]);
        let restored = format!("gatewayd: policy from persisted state of version {found} restored from");
        assert!(gw.output().contains(&restored), "round {round}:\n{}", gw.output());
        let st = status(&sock);
        assert_eq!(st["versions"]["document"], found, "{st}");
        assert_eq!(st["revision"], format!("gen-{found}"), "{st}");
        assert_eq!(st["state"], "enforcing", "{st}");
        assert_eq!(st["processing_units"], pus as u64, "{st}");
        assert!(!state_dir.join("policy.json.tmp").exists(), "the torn temp file is removed at start");
        eprintln!(
            "round {round}: killed at {pct}% of an apply{}: version {found} ({})",
            if torn { ", a temp file left" } else { "" },
            if found == v { "new" } else { "old" }
        );
        if found == v {
            new += 1;
        } else {
            old += 1;
        }
        in_force = found;
    }
    eprintln!("{old} rounds kept the old version, {new} the new one; {torn_rounds} left a temp file");
    assert!(old > 0 && new > 0, "the kills fell both before and after the commit ({old} old, {new} new)");
    let _ = gw.stop();
}

/// Unmounts at the end of the test, even a failed one.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let o = run("umount", &[self.0.to_str().unwrap()]);
        if !o.status.success() {
            eprintln!("umount {}: {}", self.0.display(), String::from_utf8_lossy(&o.stderr));
        }
    }
}

#[test]
fn a_full_disk_under_state_dir_refuses_the_apply_and_keeps_the_old_policy() {
    require(&["mount", "umount"]);
    let dir = scratch("faults-disk");
    let state_dir = dir.join("state");
    std::fs::create_dir_all(&state_dir).unwrap();
    let o = run("mount", &["-t", "tmpfs", "-o", "size=256k,mode=0700", "gwt-faults", state_dir.to_str().unwrap()]);
    assert!(o.status.success(), "mount: {}", String::from_utf8_lossy(&o.stderr));
    let _mount = Mount(state_dir.clone());
    let (cfg, sock) = config(&dir, &state_dir);
    let gw = Gatewayd::start(None, &cfg, &[]);
    let f = |v: u64| {
        let f = dir.join(format!("v{v}.yaml"));
        std::fs::write(&f, document(v, 40, 100)).unwrap();
        f
    };
    let (f1, f2) = (f(1), f(2));
    let o = gwctl(&sock, &["apply", "-f", f1.to_str().unwrap(), "--version", "1"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let on_disk = std::fs::read(state_dir.join("policy.json")).unwrap();
    // Fill the disk.
    {
        use std::io::Write;
        let mut filler = std::fs::File::create(state_dir.join("filler")).unwrap();
        let block = vec![0x5a; 4096];
        loop {
            match filler.write_all(&block).and_then(|()| filler.sync_data()) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
    }
    let o = gwctl(&sock, &["apply", "-f", f2.to_str().unwrap(), "--version", "2"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("refused version 2: 1 problem; version 1 stays in force"), "{t}");
    assert!(t.contains(&format!("cannot persist the policy under {}", state_dir.display())), "{t}");
    assert!(t.contains("No space left on device"), "{t}");
    let st = status(&sock);
    assert_eq!((st["versions"]["document"].as_u64(), st["revision"].as_str()), (Some(1), Some("gen-1")), "{st}");
    assert_eq!(st["last_refused"]["errors"][0]["resource"], "state", "{st}");
    assert_eq!(std::fs::read(state_dir.join("policy.json")).unwrap(), on_disk, "the state file is untouched");
    assert!(!state_dir.join("policy.json.tmp").exists(), "the partial temp file is removed");
    // Space again: the same apply goes through.
    std::fs::remove_file(state_dir.join("filler")).unwrap();
    let o = gwctl(&sock, &["apply", "-f", f2.to_str().unwrap(), "--version", "2"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(check_state_file(&state_dir.join("policy.json")), 2);
    let _ = gw.stop();
}

/// Runs gatewayd expecting it to refuse to start: (exit code, output).
fn start_refused(cfg: &Path) -> (Option<i32>, String) {
    let mut child = Command::new(gatewayd_bin())
        .arg("--config")
        .arg(cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning gatewayd");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!("gatewayd started on a corrupted state file:\n{}", text(&o));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = child.wait_with_output().unwrap();
    (o.status.code(), text(&o))
}

#[test]
fn a_corrupted_state_file_stops_the_start_with_a_clear_message() {
    require(&[]);
    let dir = scratch("faults-corrupt");
    let state_dir = dir.join("state");
    let state_file = state_dir.join("policy.json");
    let (cfg, sock) = config(&dir, &state_dir);
    let gw = Gatewayd::start(None, &cfg, &[]);
    let f1 = dir.join("v1.yaml");
    std::fs::write(&f1, document(1, 8, 8)).unwrap();
    let o = gwctl(&sock, &["apply", "-f", f1.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let _ = gw.stop();
    let good = std::fs::read(&state_file).unwrap();
    let good_text = String::from_utf8(good.clone()).unwrap();
    let mut junk: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    junk[0] = 0xff; // not UTF-8
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "is not a valid state file"),
        ("binary junk", junk, "is not a valid state file"),
        ("cut in half", good[..good.len() / 2].to_vec(), "is not a valid state file"),
        ("another format", good_text.replacen("\"format\":1", "\"format\":7", 1).into_bytes(), "format 7"),
        (
            "an identity out of range",
            good_text.replacen("\"identity\":1000}", "\"identity\":1099511627776}", 1).into_bytes(),
            "1099511627776 is out of range (0..=4294967295)",
        ),
        (
            "a selector that does not compile",
            good_text.replacen("\"subject\":\"app == a0\"", "\"subject\":\"app == (\"", 1).into_bytes(),
            "does not compile any more",
        ),
    ];
    for (what, bytes, says) in cases {
        assert!(bytes != good, "{what}: the corruption changed nothing");
        std::fs::write(&state_file, &bytes).unwrap();
        let (code, out) = start_refused(&cfg);
        assert_eq!(code, Some(2), "{what}: gatewayd exits 2 (a configuration problem):\n{out}");
        assert!(
            out.contains(&format!("gatewayd: control: {}", state_file.display()))
                || out.contains(&format!("persisted in {}", state_file.display())),
            "{what}: the message names the file:\n{out}"
        );
        assert!(out.contains(says), "{what}: {says:?}:\n{out}");
        assert!(!out.contains("panicked"), "{what}: never a panic:\n{out}");
        assert!(!out.contains("gatewayd: running"), "{what}:\n{out}");
        eprintln!("{what}: {}", out.lines().find(|l| l.contains("control:")).unwrap_or(""));
    }
    // Moved away, as the message says: gatewayd starts without a config, failing closed.
    std::fs::rename(&state_file, dir.join("policy.json.corrupt")).unwrap();
    let gw = Gatewayd::start(None, &cfg, &[]);
    assert!(gw.output().contains("gatewayd: policy: none: failing closed"), "{}", gw.output());
    assert_eq!(status(&sock)["state"], "no_config_fail_closed");
    let _ = gw.stop();
}
