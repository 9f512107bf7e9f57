//! The measured changes: steady state, one-rule changes, new PUs (published
//! directly and through a PU file), the same with one agent alone, and with
//! every gateway full.

use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::full::Full;
use super::light::Cmd;
use super::probe::{self, Window};
use super::report::{Latency, Load};
use super::{gen, mem_available, ms, say, Bench};

impl Bench<'_> {
    pub(crate) async fn steady_state(&mut self) -> Result<Load, String> {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let a = self.probe.sample()?;
        tokio::time::sleep(Duration::from_secs_f64(self.o.steady_s)).await;
        let b = self.probe.sample()?;
        let l = Load::of(Window::between(&a, &b), self.o.gateways, 0, None);
        say(format!("steady state: {:.2} requests/s per gateway", l.requests_per_s_per_gateway));
        Ok(l)
    }

    /// Rounds of `gwctl fleet apply` of a one-rule change, timed until every
    /// agent of `slots` enforces it: per round (the slowest), per agent, and
    /// until each one's status in etcd says so.
    async fn rule_rounds(&mut self, slots: &[usize], rounds: usize, label: &str) -> Result<RuleRounds, String> {
        let mut out = RuleRounds::default();
        let t = self.o.timeout;
        for r in 1..=rounds {
            self.tracker.drain();
            self.round += 1;
            gen::change_one_rule(&mut self.doc, self.round);
            let t0 = Instant::now();
            let v = self.apply().await?;
            self.version = v;
            let when = self.tracker.wait(slots, t, |s| s.fleet_version >= v).await;
            out.per_agent.extend(when.iter().map(|w| w.map(|w| w.duration_since(t0))));
            out.rounds.push(slowest(&when, t0));
            let when = self.tracker.wait(slots, t, |s| s.acked_version >= v).await;
            out.acked.push(slowest(&when, t0));
            say(format!(
                "{label} {r}: fleet version {v} enforced by {} full agent(s) in {}",
                slots.len(),
                out.rounds.last().copied().flatten().map_or("(timed out)".into(), |d| format!("{:.0} ms", ms(d)))
            ));
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Ok(out)
    }

    /// Rounds of a new PU published directly by a light gateway (what the
    /// agent writes for a new line in its file: read its PUs, take a number,
    /// write the record), until every agent of `slots` enforces its identity.
    async fn pu_rounds(&mut self, slots: &[usize], rounds: usize) -> Result<Vec<Option<Duration>>, String> {
        let mut out = Vec::new();
        for r in 0..if self.lights.is_empty() { 0 } else { rounds } {
            self.tracker.drain();
            self.round += 1;
            let li = r % self.lights.len();
            let g = self.lights[li].index;
            let pu = gen::pu(g, self.pus[g].len(), 1_000_000 + self.round);
            let base: Vec<usize> = slots.iter().map(|&s| self.tracker.seen[s].identities).collect();
            let t0 = Instant::now();
            let (done, written) = oneshot::channel();
            let gone = || format!("{} is gone", gen::gateway_name(g));
            self.lights[li].cmds.send(Cmd::AddPu(pu.clone(), done)).map_err(|_| gone())?;
            written.await.map_err(|_| gone())??;
            self.pus[g].push(pu);
            let when = self.wait_identities(slots, &base, self.o.timeout).await;
            out.push(slowest(&when, t0));
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Ok(out)
    }

    /// The one-rule change and the new PU with all K full agents, etcd's load meanwhile.
    pub(crate) async fn changes(&mut self, steady: &Load) -> Result<(), String> {
        let slots = self.running_slots();
        let t = self.o.timeout;
        let a = self.probe.sample()?;
        let rr = self.rule_rounds(&slots, self.o.rounds, "rule change").await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let b = self.probe.sample()?;
        let w = Window::between(&a, &b);
        let changes = self.o.rounds;
        self.s.cpu_ms_per_change = w.bench_cpu_s * 1e3 / changes as f64;
        // Until the agent-alone rounds say better: all of it, shared by K.
        self.s.agent_cpu_ms_per_change = self.s.cpu_ms_per_change / slots.len() as f64;
        self.s.rule_changes = Load::of(w, self.o.gateways, changes, Some(steady));
        self.s.rule_change_enforced = Latency::of(&rr.rounds, t, Some(1000.0));
        self.s.rule_change_enforced_per_agent = Latency::of(&rr.per_agent, t, None);
        self.s.rule_change_acked_in_etcd = Latency::of(&rr.acked, t, None);
        let mut hist: Vec<f64> = Vec::new();
        for f in &self.fulls {
            let h = f.store.compile_histogram();
            hist.push(h.value_at_quantile(0.5) as f64 / 1e3);
            self.s.compile_ms_max = self.s.compile_ms_max.max(h.max() as f64 / 1e3);
        }
        hist.sort_by(f64::total_cmp);
        self.s.compile_ms_median = hist.get(hist.len() / 2).copied().unwrap_or(0.0);

        let a = self.probe.sample()?;
        let direct = self.pu_rounds(&slots, self.o.rounds).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let b = self.probe.sample()?;
        if !direct.is_empty() {
            self.s.new_pus = Load::of(Window::between(&a, &b), self.o.gateways, direct.len(), Some(steady));
        }
        self.s.new_pu_direct = Latency::of(&direct, t, Some(1000.0));
        say(format!(
            "new PU, published directly: median {:.0} ms, max {:.0} ms",
            self.s.new_pu_direct.median_ms, self.s.new_pu_direct.max_ms
        ));
        self.pu_file_rounds(&slots).await
    }

    /// A new PU appended to a full agent's PU file (the agent polls it every
    /// second), until every other full agent enforces its identity.
    async fn pu_file_rounds(&mut self, slots: &[usize]) -> Result<(), String> {
        let t = self.o.timeout;
        let mut file = Vec::new();
        for r in 0..if slots.len() < 2 { 0 } else { self.o.rounds } {
            self.tracker.drain();
            self.round += 1;
            let fi = r % self.fulls.len();
            let g = self.fulls[fi].index;
            let others: Vec<usize> = slots.iter().copied().filter(|&s| s != g).collect();
            let pu = gen::pu(g, self.pus[g].len(), 2_000_000 + self.round);
            let base: Vec<usize> = others.iter().map(|&s| self.tracker.seen[s].identities).collect();
            let t0 = Instant::now();
            self.fulls[fi].append_pu(pu.clone())?;
            self.pus[g].push(pu);
            let when = self.wait_identities(&others, &base, t).await;
            file.push(slowest(&when, t0));
            // Its own agent applies it too; let it finish before the next round.
            let own = self.pus[g].len();
            self.tracker.wait(&[g], t, |s| s.pus == own).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        self.s.new_pu_file = Latency::of(&file, t, Some(1000.0));
        say(format!(
            "new PU, through a PU file: median {:.0} ms, max {:.0} ms",
            self.s.new_pu_file.median_ms, self.s.new_pu_file.max_ms
        ));
        Ok(())
    }

    /// The same changes with one full agent alone (the others stopped): what
    /// one gateway sees when no other agent competes for this machine's cores.
    pub(crate) async fn alone(&mut self) -> Result<(), String> {
        if self.fulls.len() < 2 {
            self.s.notes.push("one full agent: the main figures are those of an agent alone".into());
            self.s.cpu_ms_per_change_alone = self.s.cpu_ms_per_change;
            return Ok(());
        }
        for f in &mut self.fulls[1..] {
            f.stop();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let slot = [self.fulls[0].index];
        let t = self.o.timeout;
        let a = self.probe.sample()?;
        let rr = self.rule_rounds(&slot, self.o.rounds, "rule change, one agent alone").await?;
        let b = self.probe.sample()?;
        let k = self.fulls.len() as f64;
        self.s.cpu_ms_per_change_alone = Window::between(&a, &b).bench_cpu_s * 1e3 / self.o.rounds as f64;
        self.s.agent_cpu_ms_per_change = (self.s.cpu_ms_per_change - self.s.cpu_ms_per_change_alone) / (k - 1.0);
        self.s.alone_rule_change = Latency::of(&rr.rounds, t, Some(1000.0));
        let direct = self.pu_rounds(&slot, self.o.rounds).await?;
        self.s.alone_new_pu_direct = Latency::of(&direct, t, Some(1000.0));
        say(format!(
            "one agent alone: rule change median {:.0} ms, new PU median {:.0} ms",
            self.s.alone_rule_change.median_ms, self.s.alone_new_pu_direct.median_ms
        ));
        Ok(())
    }

    async fn wait_identities(&mut self, slots: &[usize], base: &[usize], t: Duration) -> Vec<Option<Instant>> {
        // Each slot has its own base: wait for them one predicate at a time.
        let mut out = Vec::with_capacity(slots.len());
        for (&s, &b) in slots.iter().zip(base) {
            out.push(self.tracker.wait(&[s], t, |seen| seen.identities > b).await[0]);
        }
        out
    }

    /// Every light gateway becomes a full agent (same key, same PUs) when the
    /// estimated memory fits; then a few one-rule changes.
    pub(crate) async fn all_full(&mut self) -> Result<(), String> {
        let need = self.s.memory_per_agent_mb * 1e6 * self.o.light() as f64;
        let avail = mem_available();
        self.s.all_full.estimated_round_s =
            self.o.gateways as f64 * self.s.agent_cpu_ms_per_change / 1e3 / self.s.cores.max(1) as f64;
        if self.o.all_full_rounds == 0 || self.lights.is_empty() {
            self.s.all_full.why_not = "not asked (--all-full-rounds 0) or no light gateway".into();
            return Ok(());
        }
        if need > avail as f64 * 0.6 {
            self.s.all_full.why_not = format!(
                "{} more full agents need about {:.1} GB; {:.1} GB available (runs only under 60% of it)",
                self.o.light(),
                need / 1e9,
                avail as f64 / 1e9
            );
            say(format!("all gateways full: skipped: {}", self.s.all_full.why_not));
            return Ok(());
        }
        let before = probe::rss_bytes();
        for l in std::mem::take(&mut self.lights) {
            let (done, stopped) = oneshot::channel();
            let _ = l.cmds.send(Cmd::Stop(done));
            let _ = stopped.await;
            let _ = l.task.await;
            let key = hex::encode(l.signer.to_bytes());
            let f =
                Full::prepare(&self.root, l.index, &self.base, self.pus[l.index].clone(), Some(&key), self.o.persist)?;
            f.observe(&self.stamps, f.index, self.events.clone());
            self.fulls.push(f);
        }
        let t0 = Instant::now();
        for f in &mut self.fulls {
            if f.agent.is_none() {
                f.start()?;
            }
        }
        let slots = self.full_slots();
        let v = self.version;
        let want: Vec<usize> = slots.iter().map(|&g| self.expected_identities(g)).collect();
        for (&g, &n) in slots.iter().zip(&want) {
            if self.tracker.wait(&[g], Duration::from_secs(1800), |s| s.fleet_version >= v && s.identities == n).await
                [0]
            .is_none()
            {
                return Err(format!("{} did not converge with every gateway full", gen::gateway_name(g)));
            }
        }
        self.s.all_full.cold_start_s = t0.elapsed().as_secs_f64();
        self.s.all_full.memory_mb = probe::rss_bytes().saturating_sub(before) as f64 / 1e6;
        say(format!("all {} gateways full, converged in {:.1} s", slots.len(), self.s.all_full.cold_start_s));
        let mut rounds = Vec::new();
        for r in 1..=self.o.all_full_rounds {
            tokio::time::sleep(Duration::from_secs(1)).await;
            self.tracker.drain();
            self.round += 1;
            gen::change_one_rule(&mut self.doc, self.round);
            let t0 = Instant::now();
            let v = self.apply().await?;
            self.version = v;
            let when = self.tracker.wait(&slots, Duration::from_secs(600), |s| s.fleet_version >= v).await;
            rounds.push(slowest(&when, t0));
            say(format!("all full, rule change {r}: {:?}", rounds.last().copied().flatten()));
        }
        self.s.all_full.ran = true;
        self.s.all_full.rule_change_enforced = Latency::of(&rounds, Duration::from_secs(600), Some(1000.0));
        Ok(())
    }
}

/// The time from `t0` until the last of `when`; `None` if one never came.
fn slowest(when: &[Option<Instant>], t0: Instant) -> Option<Duration> {
    when.iter().try_fold(Duration::ZERO, |m, w| w.map(|w| m.max(w.duration_since(t0))))
}

#[derive(Default)]
struct RuleRounds {
    rounds: Vec<Option<Duration>>,
    per_agent: Vec<Option<Duration>>,
    acked: Vec<Option<Duration>>,
}
