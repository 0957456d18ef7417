//! The node's side of clustering: the latest cluster snapshot, the peers' verdicts,
//! the allowlist, and applying imported registrations and tombstones.

use super::{Node, NodeError};
use crate::lifecycle::import::ImportAction;
use crate::registry::Origin;
use crate::store::Mutation;
use probemesh_gossip::cluster::ClusterSnapshot;
use probemesh_gossip::model::{Registration, Tombstone, WorkerId, WorkerSpec};
use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

impl Node {
    /// The cluster as last read from gossip.
    pub fn cluster(&self) -> Arc<ClusterSnapshot> {
        Arc::clone(&self.cluster.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Replaces the cluster snapshot (by the cluster sync task).
    pub fn set_cluster(&self, snap: ClusterSnapshot) {
        *self.cluster.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snap);
    }

    /// Whether `spec` may be registered and probed here (`--allow-worker-cidr`). With an
    /// allowlist, the host must be an IP address inside it: a DNS name could resolve
    /// anywhere, so it is refused.
    pub fn allowed(&self, spec: &WorkerSpec) -> bool {
        if self.settings.allow.is_empty() {
            return true;
        }
        let host = spec
            .url
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        host.parse::<IpAddr>()
            .is_ok_and(|ip| self.settings.allow.iter().any(|net| net.contains(&ip)))
    }

    /// The generation up to which `id` is tombstoned in the store, if any.
    pub fn stored_tombstone_generation(&self, id: &WorkerId) -> Option<u64> {
        self.durable().tombstones.get(id).map(|t| t.generation)
    }

    /// Every stored tombstone.
    pub fn stored_tombstones(&self) -> Vec<Tombstone> {
        self.durable().tombstones.values().cloned().collect()
    }

    /// Applies one planned import action.
    pub async fn apply_import(&self, action: ImportAction) -> Result<(), NodeError> {
        self.apply_imports(vec![action]).await.map(|_| ())
    }

    /// Applies one sync round's import actions under one gate, with one append and one
    /// fsync for all of them: a node joining a cluster of 16 x 1,000 workers no longer
    /// spends one fsync per imported registration in a row (issue 13). All or none: if
    /// the disk refuses the batch, nothing of it is applied and the next round tries
    /// again. Two actions on the same worker go into separate commits, so that each is
    /// checked against the effect of the one before. Returns how many took effect.
    pub async fn apply_imports(&self, actions: Vec<ImportAction>) -> Result<usize, NodeError> {
        let _gate = self.gate.lock().await;
        let mut applied = 0;
        let mut batch: Vec<(Mutation, ImportAction)> = Vec::new();
        let mut ids: HashSet<WorkerId> = HashSet::new();
        for action in actions {
            if !ids.insert(action_id(&action).clone()) {
                applied += self.commit_imports(std::mem::take(&mut batch)).await?;
                ids.clear();
                ids.insert(action_id(&action).clone());
            }
            if let Some(m) = self.import_mutation(&action) {
                batch.push((m, action));
            }
        }
        applied += self.commit_imports(batch).await?;
        Ok(applied)
    }

    /// Makes a batch durable, then applies it to the view. Caller holds the gate.
    async fn commit_imports(
        &self,
        batch: Vec<(Mutation, ImportAction)>,
    ) -> Result<usize, NodeError> {
        if batch.is_empty() {
            return Ok(0);
        }
        let (mutations, actions): (Vec<Mutation>, Vec<ImportAction>) = batch.into_iter().unzip();
        self.commit_all(mutations).await?;
        let n = actions.len();
        for action in actions {
            self.apply_import_effect(action);
        }
        Ok(n)
    }

    /// What `action` must write to disk, or `None` when it no longer applies to the
    /// view (it changed since the plan). Caller holds the gate.
    fn import_mutation(&self, action: &ImportAction) -> Option<Mutation> {
        match action {
            ImportAction::Insert(reg) => (self.registry.get(&reg.id).is_none()
                && !self.is_dead(reg)
                && self.allowed(&reg.spec))
            // Every node keeps every registration on disk, so a registration survives
            // even when its owner is gone for good and the others restart (S8).
            .then(|| Mutation::PutRegistration(reg.clone())),
            ImportAction::Replace(reg) => (self
                .registry
                .get(&reg.id)
                .is_some_and(|e| e.reg.generation < reg.generation)
                && !self.is_dead(reg))
            // The newer generation replaces the older one on disk too, so a restart
            // does not bring the old generation back.
            .then(|| Mutation::PutRegistration(reg.clone())),
            ImportAction::UpdateSpec(reg) => {
                let current = self.registry.get(&reg.id)?;
                if current.reg.generation != reg.generation || current.reg.revision >= reg.revision
                {
                    return None;
                }
                // A PATCH made on another node: keep it on disk. The owner stays
                // unchanged, so an owner advertises the patched spec from now on.
                let mut patched = reg.clone();
                patched.owner = current.reg.owner;
                Some(Mutation::PutRegistration(patched))
            }
            ImportAction::Tombstone(t) => self
                .stored_tombstone_generation(&t.id)
                .is_none_or(|g| g < t.generation)
                .then(|| Mutation::PutTombstone(t.clone())),
            ImportAction::Drain(d) => {
                let tracked = self
                    .registry
                    .get(&d.id)
                    .is_some_and(|e| e.reg.generation == d.generation);
                let sooner = self.durable().drains.get(&d.id).is_none_or(|old| {
                    old.generation < d.generation || old.ends_at_ms > d.ends_at_ms
                });
                (tracked && sooner).then(|| Mutation::PutDrain(d.clone()))
            }
        }
    }

    /// Applies a durable import action to the view. Caller holds the gate.
    fn apply_import_effect(&self, action: ImportAction) {
        match action {
            ImportAction::Insert(reg) | ImportAction::Replace(reg) => self.import(reg),
            ImportAction::UpdateSpec(reg) => {
                let Some(current) = self.registry.get(&reg.id) else {
                    return;
                };
                let interval_before = self.health(&current.reg.spec).interval;
                if let Some((entry, transition)) = self.registry.update_spec(
                    &reg.id,
                    reg.spec,
                    reg.revision,
                    self.settings.clock.now(),
                ) {
                    if let Some(t) = &transition {
                        self.note_transition(t, &entry);
                    }
                    if entry.reg.spec.health.disable {
                        self.send(crate::probe::Command::Cancel { id: reg.id.clone() });
                    } else if current.reg.spec.health.disable
                        || interval_before != self.health(&entry.reg.spec).interval
                    {
                        self.schedule_first(&entry);
                    }
                }
            }
            ImportAction::Drain(d) => {
                if let Some((entry, t)) =
                    self.registry
                        .start_drain(&d.id, d.generation, self.settings.clock.now())
                {
                    self.note_transition(&t, &entry);
                    tracing::info!(worker = %d.url, id = %d.id, generation = d.generation, writer = %d.writer, ends_at_ms = d.ends_at_ms, "worker draining (a peer's drain): no longer routable here");
                }
            }
            ImportAction::Tombstone(t) => {
                if let Some(removed) = self.registry.remove(&t.id, t.generation) {
                    self.note_removed(&removed, t.reason.as_str());
                    self.send(crate::probe::Command::Cancel { id: t.id.clone() });
                    tracing::info!(worker = %t.url, id = %t.id, generation = t.generation, writer = %t.writer, reason = t.reason.as_str(), status = %removed.status, "worker evicted by a peer's tombstone");
                }
            }
        }
    }

    fn is_dead(&self, reg: &Registration) -> bool {
        self.stored_tombstone_generation(&reg.id)
            .is_some_and(|g| g >= reg.generation)
    }

    /// Enters a peer's registration as `pending` (or `ready` with checks disabled) and
    /// schedules its first probe at once.
    fn import(&self, reg: Registration) {
        let allowed = self.allowed(&reg.spec);
        if !allowed {
            return;
        }
        // An import is never this node's own registration, whatever its owner field
        // says (the import rules re-attribute a claim of this node's id): only
        // `register` makes a `Local` worker, which this node advertises as its own.
        let origin = Origin::Peer;
        if let Some(old) = self.registry.get(&reg.id) {
            // A newer generation replaces it.
            self.note_removed(&old, "superseded");
        }
        let entry = self.registry.insert(reg, origin, self.settings.clock.now());
        self.note_added(&entry, "imported");
        tracing::info!(worker = %entry.reg.spec.url, id = %entry.reg.id, generation = entry.reg.generation, owner = %entry.reg.owner, status = %entry.status, "worker imported from a peer");
        self.schedule_first(&entry);
    }
}

/// The worker an import action is about.
fn action_id(action: &ImportAction) -> &WorkerId {
    match action {
        ImportAction::Insert(reg) | ImportAction::Replace(reg) | ImportAction::UpdateSpec(reg) => {
            &reg.id
        }
        ImportAction::Tombstone(t) => &t.id,
        ImportAction::Drain(d) => &d.id,
    }
}
