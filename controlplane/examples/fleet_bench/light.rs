//! A light gateway: everything a fleet agent does *to etcd*, without
//! building or compiling a document. It registers under a lease (kept alive
//! every TTL/3), publishes its PUs signed, with identities from the fleet's
//! counter, watches the whole prefix, and after each burst of changes that
//! would change its document writes a signed status, as an agent does after
//! an apply (at once: it has nothing to compile). So etcd carries the whole
//! fleet's data, watchers and writes while only a few agents do the work.

use std::time::Duration;

use controlplane::fleet::agent::FIRST_IDENTITY;
use controlplane::fleet::etcd::{describe, take_numbers, MESSAGE_MAX};
use controlplane::fleet::layout::{KeyKind, Layout};
use controlplane::fleet::model::{FleetDocument, GatewayStatus, LocalPu, PuRecord, PublishedKey, Registration};
use controlplane::fleet::sign::{self, seal, OPERATOR};
use ed25519_dalek::{SigningKey, VerifyingKey};
use etcd_client::{Client, GetOptions, PutOptions, Txn, TxnOp, WatchOptions};
use tokio::sync::{mpsc, oneshot};

use super::gen;

/// What the agent uses too (docs/fleet.md).
const LEASE_TTL_S: i64 = 10;
const COALESCE: Duration = Duration::from_millis(20);
const TXN_OPS: usize = 100;

pub struct Light {
    pub index: usize,
    pub name: String,
    pub signer: SigningKey,
    layout: Layout,
    operator: VerifyingKey,
    client: Client,
    lease: i64,
    keeper: etcd_client::LeaseKeeper,
    acks: etcd_client::LeaseKeepAliveStream,
    pus: Vec<LocalPu>,
}

pub enum Cmd {
    /// Add a PU as the agent does when its file gains one: read its published
    /// PUs, take a number, write the record. Answers when written.
    AddPu(LocalPu, oneshot::Sender<Result<(), String>>),
    /// Revoke the lease (the registration goes) and end.
    Stop(oneshot::Sender<()>),
}

fn err(e: etcd_client::Error) -> String {
    describe(&e)
}

impl Light {
    /// Connects, registers under a lease and publishes `pus`.
    pub async fn publish(
        endpoints: &[String],
        layout: Layout,
        operator: VerifyingKey,
        index: usize,
        signer: SigningKey,
        pus: Vec<LocalPu>,
    ) -> Result<Light, String> {
        let name = gen::gateway_name(index);
        let mut client = Client::connect(endpoints, None).await.map_err(err)?;
        let key_id = take_numbers(&mut client, &layout.key_id_counter(), 1, 1, 0xffff).await? as u32;
        let x25519 = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::random_from_rng(rand_core::OsRng));
        let lease = client.lease_grant(LEASE_TTL_S, None).await.map_err(err)?.id();
        let reg = Registration {
            name: name.clone(),
            tags: vec!["site=bench".into()],
            keys: vec![PublishedKey {
                id: key_id,
                public_key: hex::encode(x25519.as_bytes()),
                not_before: None,
                not_after: None,
            }],
            networks: vec![gen::gateway_network(index)],
            api: String::new(),
            started_at: controlplane::fleet::agent::unix_now(),
        };
        let key = layout.registration(&name);
        let value = seal(&name, &signer, &key, &reg);
        client.put(key, value, Some(PutOptions::new().with_lease(lease))).await.map_err(err)?;
        let (keeper, acks) = client.lease_keep_alive(lease).await.map_err(err)?;
        let mut light = Light { index, name, signer, layout, operator, client, lease, keeper, acks, pus: Vec::new() };
        light.write_pus(pus).await?;
        Ok(light)
    }

    /// Writes new PU records (numbers from the fleet's counter), 100 to a transaction.
    async fn write_pus(&mut self, new: Vec<LocalPu>) -> Result<(), String> {
        if new.is_empty() {
            return Ok(());
        }
        let first = take_numbers(
            &mut self.client,
            &self.layout.identity_counter(),
            FIRST_IDENTITY,
            new.len() as u64,
            u32::MAX as u64,
        )
        .await?;
        let mut ops = Vec::with_capacity(new.len());
        for (i, pu) in new.iter().enumerate() {
            let rec = PuRecord {
                name: pu.name.clone(),
                tags: pu.tags.clone(),
                addresses: pu.addresses.clone(),
                identity: (first + i as u64) as u32,
            };
            let key = self.layout.pu(&self.name, &pu.name);
            let value = seal(&self.name, &self.signer, &key, &rec);
            ops.push(TxnOp::put(key, value, None));
        }
        while !ops.is_empty() {
            let chunk: Vec<TxnOp> = ops.drain(..ops.len().min(TXN_OPS)).collect();
            self.client.txn(Txn::new().and_then(chunk)).await.map_err(err)?;
        }
        self.pus.extend(new);
        Ok(())
    }

    /// What the agent's PU sync reads first: this gateway's published records.
    async fn add_pu(&mut self, pu: LocalPu) -> Result<(), String> {
        let prefix = self.layout.pus(&self.name);
        let resp = self.client.get(prefix, Some(GetOptions::new().with_prefix())).await.map_err(err)?;
        let own = self.signer.verifying_key();
        let published = resp
            .kvs()
            .iter()
            .filter(|kv| {
                let key = std::str::from_utf8(kv.key()).unwrap_or("");
                sign::open::<PuRecord>(kv.value(), key, &self.name, Some(&own)).is_ok()
            })
            .count();
        if published < self.pus.len() {
            return Err(format!("{}: {published} PU records in etcd, {} expected", self.name, self.pus.len()));
        }
        self.write_pus(vec![pu]).await
    }

    /// Watches the prefix from now on until stopped, answering commands.
    pub async fn run(mut self, mut cmds: mpsc::UnboundedReceiver<Cmd>) -> Result<(), String> {
        let mut stream = self
            .client
            .watch_client()
            .max_decoding_message_size(MESSAGE_MAX)
            .watch(self.layout.all(), Some(WatchOptions::new().with_prefix()))
            .await
            .map_err(err)?;
        let mut keepalive = tokio::time::interval(Duration::from_secs(LEASE_TTL_S as u64) / 3);
        let mut dirty = false;
        let mut fleet_version = 0;
        let mut document_version = 0;
        let mut revision = 0;
        loop {
            tokio::select! {
                msg = stream.message() => {
                    let msg = msg.map_err(err)?.ok_or("etcd closed the watch")?;
                    if msg.canceled() {
                        return Err(format!("{}: watch cancelled: {}", self.name, msg.cancel_reason()));
                    }
                    for ev in msg.events() {
                        let Some(kv) = ev.kv() else { continue };
                        let Ok(key) = std::str::from_utf8(kv.key()) else { continue };
                        revision = revision.max(kv.mod_revision());
                        match self.layout.classify(key) {
                            KeyKind::Status { .. } => {}
                            KeyKind::FleetDocument => {
                                if let Ok(d) = sign::open::<FleetDocument>(kv.value(), key, OPERATOR, Some(&self.operator)) {
                                    fleet_version = d.version;
                                }
                                dirty = true;
                            }
                            _ => dirty = true,
                        }
                    }
                }
                _ = tokio::time::sleep(COALESCE), if dirty => {
                    dirty = false;
                    document_version += 1;
                    self.write_status(fleet_version, document_version, revision).await?;
                }
                _ = keepalive.tick() => self.keeper.keep_alive().await.map_err(err)?,
                ack = self.acks.message() => {
                    let ack = ack.map_err(err)?.ok_or("etcd closed the lease keep-alive")?;
                    if ack.ttl() <= 0 {
                        return Err(format!("{}: the lease expired", self.name));
                    }
                }
                cmd = cmds.recv() => match cmd {
                    Some(Cmd::AddPu(pu, done)) => {
                        let r = self.add_pu(pu).await;
                        let _ = done.send(r);
                    }
                    Some(Cmd::Stop(done)) => {
                        let _ = self.client.lease_revoke(self.lease).await;
                        let _ = done.send(());
                        return Ok(());
                    }
                    None => return Ok(()),
                },
            }
        }
    }

    async fn write_status(&mut self, fleet_version: u64, document_version: u64, revision: i64) -> Result<(), String> {
        let st = GatewayStatus {
            name: self.name.clone(),
            fleet_version,
            etcd_revision: revision,
            result: "applied".into(),
            applied_fleet_version: fleet_version,
            document_version,
            profile: "bench".into(),
            problems: vec![],
            unverified_objects: 0,
            at_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        };
        let key = self.layout.status(&self.name);
        let value = seal(&self.name, &self.signer, &key, &st);
        self.client.put(key, value, None).await.map_err(err)?;
        Ok(())
    }
}
