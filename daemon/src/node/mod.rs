//! The node: the local view, the durable store and the probe schedule, and the
//! operations that keep them consistent.
//!
//! Every mutation runs under one async gate: check the view, make the change durable
//! (append + fsync on a blocking thread), then apply it to the view and tell the probe
//! engine. So a 2xx from the admin API always means "on disk", and the view never shows
//! a change the disk does not have.
//!
//! The store itself is only ever locked on the blocking thread that writes it; readers
//! use a copy of its state (`durable`), updated under the gate after each commit, so an
//! fsync never holds up a runtime thread. The time of day comes from the injected
//! [`Clock`].

use crate::clock::Clock;
use crate::config::ProbeDefaults;
use crate::events::EventLog;
use crate::health_settings::HealthSettings;
use crate::local_faults::LocalFaults;
use crate::metrics::Metrics;
use crate::probe::Command as ProbeCommand;
use crate::registry::{Entry, Origin, Registry};
use crate::store::{DurableState, Mutation, Store, StoreError, StoreHealth};
use probemesh_gossip::cluster::ClusterSnapshot;
use probemesh_gossip::model::{
    Drain, EvictionReason, Registration, Status, Tombstone, WorkerId, WorkerSpec,
};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// Why a worker operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// No worker with that id in the local view.
    #[error("no worker with id `{0}` is known to this node")]
    UnknownWorker(String),
    /// The URL is registered with a different spec.
    #[error(
        "worker `{url}` is already registered (id {id}) with a different spec; PATCH /v1/workers/{id} to change it, or DELETE it first"
    )]
    Conflict {
        /// Id of the registered worker.
        id: WorkerId,
        /// Its URL.
        url: String,
    },
    /// The request is well-formed but not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// The change could not be made durable; nothing changed.
    #[error("the change could not be saved, nothing was changed: {0}")]
    Store(#[from] StoreError),
    /// Every generation of this worker URL was used up.
    #[error(
        "worker `{0}` cannot be registered again: every generation of its URL was used (a tombstone at generation {max} covers them all, which only a forged record can cause); register the worker under another URL, for example with an explicit port or host name",
        max = u64::MAX
    )]
    GenerationsExhausted(String),
    /// A blocking task failed (a bug).
    #[error("internal error: {0}")]
    Internal(String),
}

/// Node-wide settings the operations need.
#[derive(Clone, Debug)]
pub struct NodeSettings {
    /// This node's id.
    pub node_id: String,
    /// Health-check defaults.
    pub probe: ProbeDefaults,
    /// `--remove-failed`.
    pub remove_failed: bool,
    /// `--tombstone-ttl`.
    pub tombstone_ttl: Duration,
    /// `--allow-worker-cidr`; empty allows every worker.
    pub allow: Vec<ipnet::IpNet>,
    /// Where the time of day comes from.
    pub clock: Clock,
    /// `--fence-ratio` (SPEC S12; 0 turns self-fencing off).
    pub fence_ratio: f64,
}

mod fence;
mod notes;
mod peers;
mod probing;

/// The node's state and operations. Shared as `Arc<Node>` by the admin API, the probe
/// engine and the background tasks.
#[derive(Debug)]
pub struct Node {
    settings: NodeSettings,
    registry: Registry,
    /// Locked only by the blocking thread that commits (and at shutdown's compaction).
    store: Arc<Mutex<Store>>,
    /// A copy of the store's state for readers, updated after every commit under the
    /// gate: reads never wait for an fsync.
    durable: RwLock<DurableState>,
    /// Whether commits run on a blocking thread (a real disk) or inline (a
    /// simulation's disk that never syncs).
    commit_on_blocking_thread: bool,
    /// Whether the store still takes writes, readable without its lock.
    store_health: StoreHealth,
    gate: tokio::sync::Mutex<()>,
    probe_tx: UnboundedSender<ProbeCommand>,
    metrics: Arc<Metrics>,
    /// The cluster as last read from gossip (members, verdicts); empty when alone.
    cluster: std::sync::RwLock<Arc<ClusterSnapshot>>,
    /// Status changes and removals, for `/v1/events`.
    events: EventLog,
    /// Probes that failed for lack of a local resource (SPEC S13).
    local_faults: LocalFaults,
    /// Why this node is degraded (SPEC S12), while it is; set by the cluster sync.
    degraded: RwLock<Option<String>>,
}

impl Node {
    /// Builds the node from an opened store: every stored registration enters the view.
    /// Probing starts with [`Node::schedule_all`].
    pub fn new(
        settings: NodeSettings,
        store: Store,
        metrics: Arc<Metrics>,
        probe_tx: UnboundedSender<ProbeCommand>,
    ) -> Node {
        // Start the index at the wall clock in microseconds: it grows by one per change,
        // so it cannot fall behind a previous run's index unless that run made more than
        // a million changes a second (docs/decisions.md).
        let start_index = settings.clock.now_us();
        let registry = Registry::new(start_index);
        let now = settings.clock.now();
        for reg in store.state().registrations.values() {
            let origin = if reg.owner == settings.node_id {
                Origin::Local
            } else {
                Origin::Peer
            };
            registry.insert(reg.clone(), origin, now);
        }
        // A drain survives a restart: its worker is draining again at once.
        for d in store.state().drains.values() {
            registry.start_drain(&d.id, d.generation, now);
        }
        let events = EventLog::starting_at(settings.clock.now_us());
        Node {
            settings,
            registry,
            store_health: store.health(),
            durable: RwLock::new(store.state().clone()),
            commit_on_blocking_thread: store.may_block(),
            store: Arc::new(Mutex::new(store)),
            gate: tokio::sync::Mutex::new(()),
            probe_tx,
            metrics,
            cluster: std::sync::RwLock::new(Arc::new(ClusterSnapshot::default())),
            events,
            local_faults: LocalFaults::default(),
            degraded: RwLock::new(None),
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.settings.node_id
    }

    /// The local view.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Effective health settings of a worker on this node.
    pub fn health(&self, spec: &WorkerSpec) -> HealthSettings {
        HealthSettings::for_spec(spec, &self.settings.probe)
    }

    /// The time of day, from the injected clock.
    pub fn clock(&self) -> &Clock {
        &self.settings.clock
    }

    /// `--remove-failed`.
    pub fn remove_failed(&self) -> bool {
        self.settings.remove_failed
    }

    /// Number of tombstones held.
    pub fn tombstone_count(&self) -> usize {
        self.durable().tombstones.len()
    }

    /// What the store holds (a copy kept in step with it; never waits for a write).
    pub fn durable(&self) -> RwLockReadGuard<'_, DurableState> {
        // Only `commit_all` writes it, one whole mutation at a time, so a poisoned lock
        // still holds a consistent state.
        self.durable.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Schedules the first probe of every worker in the view (at start-up).
    pub fn schedule_all(&self) {
        let view = self.registry.read();
        for e in view.workers.values() {
            self.schedule_first(e);
        }
    }

    fn schedule_first(&self, e: &Entry) {
        if !e.reg.spec.health.disable && e.status != Status::Failed {
            self.send(ProbeCommand::First {
                id: e.reg.id.clone(),
                generation: e.reg.generation,
                interval: self.health(&e.reg.spec).interval,
            });
        }
    }

    fn send(&self, cmd: ProbeCommand) {
        // The engine only stops at shutdown; a command lost then does not matter.
        let _ = self.probe_tx.send(cmd);
    }

    async fn commit(&self, m: Mutation) -> Result<(), NodeError> {
        self.commit_all(vec![m]).await
    }

    /// Makes `ms` durable with one append and one fsync (on a blocking thread), all or
    /// none, then applies them to the readers' copy. Caller holds the gate. A failed
    /// compaction after it is logged and counted, never returned: the change itself is
    /// safe (SPEC S13).
    async fn commit_all(&self, ms: Vec<Mutation>) -> Result<(), NodeError> {
        let start = Instant::now();
        let (res, ms) = if self.commit_on_blocking_thread {
            let store = Arc::clone(&self.store);
            match tokio::task::spawn_blocking(move || {
                let res = lock(&store).commit_all(&ms);
                (res, ms)
            })
            .await
            {
                Ok((res, ms)) => (Ok(res), ms),
                Err(e) => (Err(e), Vec::new()),
            }
        } else {
            (Ok(lock(&self.store).commit_all(&ms)), ms)
        };
        let res = match res {
            Ok(Ok(done)) => {
                let mut durable = self.durable.write().unwrap_or_else(|e| e.into_inner());
                for m in &ms {
                    durable.apply(m);
                }
                drop(durable);
                if done.compacted {
                    self.metrics
                        .store()
                        .compaction(done.compaction_error.is_none());
                }
                if let Some(e) = &done.compaction_error {
                    tracing::warn!(error = %e, "could not compact the data directory; the change is safe in the log, and compaction is tried again later");
                }
                Ok(())
            }
            Ok(Err(e)) => {
                self.metrics.store().write_failed(e.kind());
                Err(NodeError::from(e))
            }
            Err(e) => Err(NodeError::Internal(format!("store task failed: {e}"))),
        };
        self.metrics.store().commit(res.is_ok(), start.elapsed());
        if let Err(e) = &res {
            tracing::error!(error = %e, "could not persist a change");
        }
        res
    }

    /// Why the data directory takes no more writes, if it does not (for `/v1/ready`).
    pub fn store_stopped(&self) -> Option<String> {
        self.store_health.stopped().map(str::to_string)
    }

    /// Registers a worker owned by this node (SPEC S1). Returns the entry and whether
    /// it was created (`false`: the same spec was already registered).
    pub async fn register(&self, spec: WorkerSpec) -> Result<(Entry, bool), NodeError> {
        if !self.allowed(&spec) {
            return Err(NodeError::Invalid(format!(
                "url: the host of {} is not in an allowed network (--allow-worker-cidr); workers must be IP addresses inside those networks",
                spec.url
            )));
        }
        let id = spec.url.id();
        let _gate = self.gate.lock().await;
        if let Some(existing) = self.registry.get(&id) {
            if existing.reg.spec == spec {
                return Ok((existing, false));
            }
            return Err(NodeError::Conflict {
                id,
                url: spec.url.to_string(),
            });
        }
        let Some(generation) = self.durable().next_generation(&id) else {
            return Err(NodeError::GenerationsExhausted(spec.url.to_string()));
        };
        let now = self.settings.clock.now();
        let reg = Registration {
            id,
            generation,
            owner: self.settings.node_id.clone(),
            registered_at_ms: crate::clock::unix_ms(now),
            revision: crate::clock::unix_ms(now),
            spec,
        };
        self.commit(Mutation::PutRegistration(reg.clone())).await?;
        let entry = self.registry.insert(reg, Origin::Local, now);
        self.note_added(&entry, "registered");
        tracing::info!(worker = %entry.reg.spec.url, id = %entry.reg.id, generation, status = %entry.status, "worker registered");
        self.schedule_first(&entry);
        Ok((entry, true))
    }

    /// Changes a worker's spec with `patch`, keeping its status and generation (SPEC S9).
    pub async fn update(
        &self,
        id: &WorkerId,
        patch: impl FnOnce(&WorkerSpec) -> Result<WorkerSpec, NodeError>,
    ) -> Result<Entry, NodeError> {
        let _gate = self.gate.lock().await;
        let existing = self
            .registry
            .get(id)
            .ok_or_else(|| NodeError::UnknownWorker(id.to_string()))?;
        let spec = patch(&existing.reg.spec)?;
        if spec.url != existing.reg.spec.url {
            return Err(NodeError::Invalid(
                "the url of a worker cannot change: a different URL is a different worker; register it with POST /v1/workers".into(),
            ));
        }
        if spec == existing.reg.spec {
            return Ok(existing);
        }
        let now = self.settings.clock.now();
        let mut reg = existing.reg.clone();
        reg.spec = spec.clone();
        // Later than any revision seen, so this PATCH wins everywhere (S9).
        reg.revision = crate::clock::unix_ms(now).max(existing.reg.revision + 1);
        let revision = reg.revision;
        self.commit(Mutation::PutRegistration(reg)).await?;
        let Some((entry, transition)) = self.registry.update_spec(id, spec, revision, now) else {
            return Err(NodeError::UnknownWorker(id.to_string()));
        };
        if let Some(t) = &transition {
            self.note_transition(t, &entry);
        }
        let was_disabled = existing.reg.spec.health.disable;
        let now_disabled = entry.reg.spec.health.disable;
        if now_disabled {
            self.send(ProbeCommand::Cancel { id: id.clone() });
        } else if was_disabled
            || self.health(&existing.reg.spec).interval != self.health(&entry.reg.spec).interval
        {
            // Checks were re-enabled or the interval changed: reschedule from now.
            self.schedule_first(&entry);
        }
        tracing::info!(worker = %entry.reg.spec.url, id = %id, "worker updated");
        Ok(entry)
    }

    /// Evicts a worker at once (SPEC S6 a): writes a tombstone for its generation.
    pub async fn delete(&self, id: &WorkerId) -> Result<Tombstone, NodeError> {
        let _gate = self.gate.lock().await;
        let entry = self
            .registry
            .get(id)
            .ok_or_else(|| NodeError::UnknownWorker(id.to_string()))?;
        self.tombstone(&entry, EvictionReason::Deleted).await
    }

    /// Starts draining a worker for `period` (SPEC S14): durable and gossiped; the worker
    /// is `draining` (not routable) on every node until it is tombstoned when the
    /// period ends. A drain that ends sooner is kept. A period of zero is a plain
    /// [`Node::delete`], which the caller makes.
    pub async fn drain(&self, id: &WorkerId, period: Duration) -> Result<Drain, NodeError> {
        let _gate = self.gate.lock().await;
        let entry = self
            .registry
            .get(id)
            .ok_or_else(|| NodeError::UnknownWorker(id.to_string()))?;
        let now_ms = self.settings.clock.now_ms();
        let period_ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX);
        let d = Drain {
            id: id.clone(),
            url: entry.reg.spec.url.clone(),
            generation: entry.reg.generation,
            writer: self.settings.node_id.clone(),
            started_at_ms: now_ms,
            ends_at_ms: now_ms.saturating_add(period_ms),
        };
        if let Some(old) = self.durable().drains.get(id)
            && old.generation == d.generation
            && old.ends_at_ms <= d.ends_at_ms
        {
            return Ok(old.clone());
        }
        self.commit(Mutation::PutDrain(d.clone())).await?;
        if let Some((e, t)) = self
            .registry
            .start_drain(id, d.generation, self.settings.clock.now())
        {
            self.note_transition(&t, &e);
        }
        tracing::info!(worker = %d.url, id = %id, generation = d.generation, period = %humantime::format_duration(period), "worker draining: no longer routable; tombstoned when the period ends");
        Ok(d)
    }

    /// Tombstones a drained generation whose period has ended (SPEC S14), if it is
    /// still there and draining.
    pub async fn end_drain(&self, id: &WorkerId, generation: u64) -> Result<(), NodeError> {
        let _gate = self.gate.lock().await;
        let ended = self.durable().drains.get(id).is_some_and(|d| {
            d.generation == generation && d.ends_at_ms <= self.settings.clock.now_ms()
        });
        match self.registry.get(id) {
            Some(e) if ended && e.reg.generation == generation && e.status == Status::Draining => {
                self.tombstone_noting(&e, EvictionReason::Deleted, "drained")
                    .await
                    .map(|_| ())
            }
            _ => Ok(()),
        }
    }

    /// Evicts a generation that failed (SPEC S6 b), if it is still there and failed.
    pub async fn evict_failed(
        &self,
        id: &WorkerId,
        generation: u64,
    ) -> Result<Option<Tombstone>, NodeError> {
        let _gate = self.gate.lock().await;
        match self.registry.get(id) {
            Some(e) if e.reg.generation == generation && e.status == Status::Failed => {
                self.tombstone(&e, EvictionReason::Failed).await.map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Writes the tombstone and removes the worker. Caller holds the gate.
    async fn tombstone(
        &self,
        entry: &Entry,
        reason: EvictionReason,
    ) -> Result<Tombstone, NodeError> {
        self.tombstone_noting(entry, reason, reason.as_str()).await
    }

    /// [`Node::tombstone`], with `note` as the reason of the `removed` event.
    async fn tombstone_noting(
        &self,
        entry: &Entry,
        reason: EvictionReason,
        note: &'static str,
    ) -> Result<Tombstone, NodeError> {
        let now = self.settings.clock.now();
        let ttl_ms = u64::try_from(self.settings.tombstone_ttl.as_millis()).unwrap_or(u64::MAX);
        let t = Tombstone {
            id: entry.reg.id.clone(),
            url: entry.reg.spec.url.clone(),
            generation: entry.reg.generation,
            reason,
            writer: self.settings.node_id.clone(),
            deleted_at_ms: crate::clock::unix_ms(now),
            expires_at_ms: crate::clock::unix_ms(now).saturating_add(ttl_ms),
        };
        self.commit(Mutation::PutTombstone(t.clone())).await?;
        if let Some(removed) = self.registry.remove(&t.id, t.generation) {
            self.note_removed(&removed, note);
        }
        self.send(ProbeCommand::Cancel { id: t.id.clone() });
        self.metrics.eviction(note);
        tracing::info!(worker = %t.url, id = %t.id, generation = t.generation, reason = reason.as_str(), "worker evicted; tombstone written");
        Ok(t)
    }

    /// Forgets tombstones whose TTL has passed. Returns how many.
    pub async fn expire_tombstones(&self) -> Result<usize, NodeError> {
        let _gate = self.gate.lock().await;
        let now = self.settings.clock.now_ms();
        let expired: Vec<(WorkerId, u64)> = self
            .durable()
            .tombstones
            .values()
            .filter(|t| t.expires_at_ms <= now)
            .map(|t| (t.id.clone(), t.generation))
            .collect();
        if expired.is_empty() {
            return Ok(0);
        }
        // One append and one fsync for all of them, so the gate is held for one write.
        let drops = expired
            .iter()
            .map(|(id, generation)| Mutation::DropTombstone {
                id: id.clone(),
                generation: *generation,
            })
            .collect();
        self.commit_all(drops).await?;
        self.metrics.tombstones_expired(expired.len() as u64);
        Ok(expired.len())
    }

    /// The event log.
    pub fn events(&self) -> &EventLog {
        &self.events
    }
}

impl Node {
    /// Writes a snapshot and empties the log (at shutdown, for a fast next start).
    /// Blocks on the disk: call it from a blocking thread.
    pub fn compact(&self) -> Result<(), StoreError> {
        lock(&self.store).compact()
    }
}

/// Locks the store. It is only mutated through `commit_all`, which leaves it consistent
/// even if a panic interrupts it (the append either happened or not), so a poisoned
/// lock is still usable.
fn lock(store: &Mutex<Store>) -> std::sync::MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(|e| e.into_inner())
}
