//! What a re-list costs: the agent's steps timed one by one, and a real
//! agent whose watch etcd refuses after a compaction.

use std::sync::Arc;
use std::time::{Duration, Instant};

use controlplane::fleet::build::{build, Me};
use controlplane::fleet::keys::KeyStore;
use controlplane::fleet::view::{FleetView, Raw};
use controlplane::store::{ApplyOptions, ConfigStore, Content, Discard, StoreOptions};
use etcd_client::CompactionOptions;

use super::{gen, say, Bench};

impl Bench<'_> {
    /// What a re-list costs. (1) The agent's steps one by one (list, verify,
    /// build, compare, compile+persist), cold (nothing verified yet, as after
    /// a restart) and warm (what a re-list after compaction does: only what
    /// changed is verified again). (2) A real agent whose watch is compacted:
    /// restarted, its first list taken, then a change and a compaction before
    /// it opens its watch, so that etcd refuses the watch and it lists again.
    pub(crate) async fn relist(&mut self) -> Result<(), String> {
        let f = &self.fulls[0];
        let keys = KeyStore::open(&f.state_dir.join("fleet"), self.layout.key_id_counter())?;
        let local = keys.local(&f.name).ok_or("the first full agent has no key")?;
        let me = Me { name: f.name.clone(), tags: self.base.tags.clone(), local };
        let probe_dir = self.root.join("relist-probe");
        std::fs::create_dir_all(&probe_dir).map_err(|e| e.to_string())?;
        let store = ConfigStore::open(
            StoreOptions { state_dir: self.o.persist.then_some(probe_dir), before_config: Default::default() },
            Box::new(Discard),
        )
        .map_err(|e| e.to_string())?;
        let mut view = FleetView::new(self.layout.clone(), self.operator_key.verifying_key());
        self.s.relist.cold = self.list_and_apply(&mut view, &me, &store, f.store.clone()).await?;
        self.round += 1;
        gen::change_one_rule(&mut self.doc, self.round);
        self.version = self.apply().await?;
        let v = self.version;
        self.tracker.wait(&self.running_slots(), self.o.timeout, |s| s.fleet_version >= v).await;
        let in_force = self.fulls[0].store.clone();
        self.s.relist.warm = self.list_and_apply(&mut view, &me, &store, in_force).await?;
        let total = |v: &[(String, f64)]| v.iter().map(|(_, s)| s).sum::<f64>();
        say(format!(
            "re-list, step by step: cold {:.2} s, warm {:.2} s",
            total(&self.s.relist.cold),
            total(&self.s.relist.warm)
        ));
        self.relist_real_agent().await
    }

    /// One list of the prefix, then the agent's steps; each timed (seconds).
    async fn list_and_apply(
        &mut self,
        view: &mut FleetView,
        me: &Me,
        store: &ConfigStore,
        in_force: Arc<ConfigStore>,
    ) -> Result<Vec<(String, f64)>, String> {
        let mut steps = Vec::new();
        let mut t = Instant::now();
        let mut lap = |what: &str, steps: &mut Vec<(String, f64)>| {
            steps.push((what.to_owned(), t.elapsed().as_secs_f64()));
            t = Instant::now();
        };
        let (kvs, rev) = controlplane::fleet::etcd::list(&mut self.client, self.layout.all().as_str()).await?;
        lap("list (etcd range, paged)", &mut steps);
        let keys = kvs.iter().filter_map(|kv| {
            let key = std::str::from_utf8(kv.key()).ok()?.to_owned();
            Some((
                key,
                Raw {
                    value: kv.value().to_vec(),
                    create_revision: kv.create_revision(),
                    mod_revision: kv.mod_revision(),
                },
            ))
        });
        view.reset(keys, rev);
        drop(kvs);
        lap("reset the view", &mut steps);
        let now = controlplane::fleet::agent::unix_now();
        view.refresh(now);
        lap("verify signatures and index (refresh)", &mut steps);
        let built = build(view, me, now).ok_or("no fleet document")?;
        let doc = built.document.map_err(|p| format!("the build was refused: {p:?}"))?;
        lap("build the document", &mut steps);
        let same = in_force.current().is_some_and(|c| controlplane::fleet::agent::same_document(&c.document, &doc));
        lap(&format!("compare with the document in force ({})", if same { "same" } else { "differs" }), &mut steps);
        let version = store.versions().document() + 1;
        let opts = ApplyOptions { replace: true, allow_empty: true, dry_run: false };
        store
            .apply_with(version, Content::Document(doc), opts)
            .map_err(|r| format!("apply refused: {:?}", r.problems))?;
        lap("apply: compile (+ persist)", &mut steps);
        Ok(steps)
    }

    async fn relist_real_agent(&mut self) -> Result<(), String> {
        let g = self.fulls[0].index;
        let t = self.o.timeout;
        let old = self.version;
        self.fulls[0].stop();
        self.tracker.drain();
        let t0 = Instant::now();
        self.fulls[0].start()?;
        // The new agent's report (nothing applied yet), then its first list.
        self.tracker.wait(&[g], t, |s| s.report_applied == 0 && !s.connected).await;
        if self.tracker.wait(&[g], Duration::from_secs(120), |s| s.connected).await[0].is_none() {
            return Err(format!("{} did not reconnect", gen::gateway_name(g)));
        }
        // Two changes: a compaction at revision R keeps R, so the history
        // the agent needs (from its list's revision + 1) must end before it.
        for _ in 0..2 {
            self.round += 1;
            gen::change_one_rule(&mut self.doc, self.round);
            self.version = self.apply().await?;
        }
        let v = self.version;
        let rev = self.client.get("/", None).await.map_err(|e| e.to_string())?.header().map_or(0, |h| h.revision());
        self.client.compact(rev, Some(CompactionOptions::new().with_physical())).await.map_err(|e| e.to_string())?;
        let cold = self.tracker.wait(&[g], Duration::from_secs(120), |s| s.report_applied >= old).await[0];
        self.s.relist.restart_cold_s = cold.map(|c| c.duration_since(t0).as_secs_f64());
        let relisted = self.tracker.wait(&[g], t, |s| s.relists >= 1).await[0];
        let applied = self.tracker.wait(&[g], t, |s| s.fleet_version >= v).await[0];
        match (relisted, applied) {
            (Some(a), Some(b)) if b >= a => {
                self.s.relist.after_compaction_s = Some(b.duration_since(a).as_secs_f64());
                self.s.relist.after_compaction_note = format!(
                    "watch refused (compacted at revision {rev}): list, verify what changed, build, compile, persist"
                );
            }
            _ => {
                self.s.relist.after_compaction_note =
                    "not triggered: the agent had opened its watch before the compaction (its first list was too quick); see the step-by-step figures".into();
            }
        }
        say(format!(
            "re-list after compaction, real agent: {}; restart to the first converge: {}",
            self.s
                .relist
                .after_compaction_s
                .map_or(self.s.relist.after_compaction_note.clone(), |s| format!("{s:.2} s")),
            self.s.relist.restart_cold_s.map_or("timed out".into(), |s| format!("{s:.2} s"))
        ));
        self.tracker.wait(&self.running_slots(), t, |s| s.fleet_version >= v).await;
        Ok(())
    }
}
