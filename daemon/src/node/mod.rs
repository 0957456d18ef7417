//! The node: the local view, the durable store and the probe schedule, and the
//! operations that keep them consistent.
//!
//! Every mutation runs under one async gate: check the view, make the change durable
//! (append + fsync on a blocking thread), then apply it to the view and tell the probe
//! engine. So a 2xx from the admin API always means "on disk", and the view never shows
//! a change the disk does not have.

use crate::config::ProbeDefaults;
use crate::events::EventLog;
use crate::health_settings::HealthSettings;
use crate::lifecycle::eviction;
use crate::local_faults::LocalFaults;
use crate::metrics::Metrics;
use crate::probe::check::{LocalResource, ProbeReport, ProbeResult};
use crate::probe::{Command as ProbeCommand, schedule::Task};
use crate::registry::{Entry, LastProbe, Origin, Registry};
use crate::store::{Mutation, Store, StoreError, StoreHealth};
use probemesh_gossip::cluster::ClusterSnapshot;
use probemesh_gossip::model::{
    EvictionReason, Registration, Status, Tombstone, WorkerId, WorkerSpec,
};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
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
}

/// What the probe engine should do after a probe result was applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextStep {
    /// Probe again after the worker's interval.
    Probe(Duration),
    /// Retry a local failure after this backoff (SPEC S6b).
    Retry(Duration),
    /// Tombstone the worker for failure (SPEC S6 b).
    Evict,
    /// Nothing: the worker is gone, changed generation or has checks disabled.
    Stop,
}

mod notes;
mod peers;

/// The node's state and operations. Shared as `Arc<Node>` by the admin API, the probe
/// engine and the background tasks.
#[derive(Debug)]
pub struct Node {
    settings: NodeSettings,
    registry: Registry,
    store: Arc<Mutex<Store>>,
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
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
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
        let start_index = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 2));
        let registry = Registry::new(start_index);
        let now = SystemTime::now();
        for reg in store.state().registrations.values() {
            let origin = if reg.owner == settings.node_id {
                Origin::Local
            } else {
                Origin::Peer
            };
            registry.insert(reg.clone(), origin, now);
        }
        Node {
            settings,
            registry,
            store_health: store.health(),
            store: Arc::new(Mutex::new(store)),
            gate: tokio::sync::Mutex::new(()),
            probe_tx,
            metrics,
            cluster: std::sync::RwLock::new(Arc::new(ClusterSnapshot::default())),
            events: EventLog::new(),
            local_faults: LocalFaults::default(),
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
        HealthSettings::resolve(&spec.health, &self.settings.probe)
    }

    /// Number of tombstones held.
    pub fn tombstone_count(&self) -> usize {
        self.lock_store().state().tombstones.len()
    }

    fn lock_store(&self) -> std::sync::MutexGuard<'_, Store> {
        // The store is only mutated through `commit`, which leaves it consistent even if
        // a panic interrupts it (the append either happened or not).
        self.store.lock().unwrap_or_else(|e| e.into_inner())
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
    /// none. A failed compaction after it is logged and counted, never returned: the
    /// change itself is safe (SPEC S13).
    async fn commit_all(&self, ms: Vec<Mutation>) -> Result<(), NodeError> {
        let store = Arc::clone(&self.store);
        let start = Instant::now();
        let res = tokio::task::spawn_blocking(move || {
            let mut s = store.lock().unwrap_or_else(|e| e.into_inner());
            s.commit_all(&ms)
        })
        .await;
        let res = match res {
            Ok(Ok(done)) => {
                if done.compacted {
                    self.metrics
                        .store_compaction(done.compaction_error.is_none());
                }
                if let Some(e) = &done.compaction_error {
                    tracing::warn!(error = %e, "could not compact the data directory; the change is safe in the log, and compaction is tried again later");
                }
                Ok(())
            }
            Ok(Err(e)) => {
                self.metrics.store_write_failed(e.kind());
                Err(NodeError::from(e))
            }
            Err(e) => Err(NodeError::Internal(format!("store task failed: {e}"))),
        };
        self.metrics.store_commit(res.is_ok(), start.elapsed());
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
        let Some(generation) = self.lock_store().state().next_generation(&id) else {
            return Err(NodeError::GenerationsExhausted(spec.url.to_string()));
        };
        let now = SystemTime::now();
        let reg = Registration {
            id,
            generation,
            owner: self.settings.node_id.clone(),
            registered_at_ms: unix_ms(now),
            revision: unix_ms(now),
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
        let now = SystemTime::now();
        let mut reg = existing.reg.clone();
        reg.spec = spec.clone();
        // Later than any revision seen, so this PATCH wins everywhere (S9).
        reg.revision = unix_ms(now).max(existing.reg.revision + 1);
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
        let now = SystemTime::now();
        let ttl_ms = u64::try_from(self.settings.tombstone_ttl.as_millis()).unwrap_or(u64::MAX);
        let t = Tombstone {
            id: entry.reg.id.clone(),
            url: entry.reg.spec.url.clone(),
            generation: entry.reg.generation,
            reason,
            writer: self.settings.node_id.clone(),
            deleted_at_ms: unix_ms(now),
            expires_at_ms: unix_ms(now).saturating_add(ttl_ms),
        };
        self.commit(Mutation::PutTombstone(t.clone())).await?;
        if let Some(removed) = self.registry.remove(&t.id, t.generation) {
            self.note_removed(&removed, reason.as_str());
        }
        self.send(ProbeCommand::Cancel { id: t.id.clone() });
        self.metrics.eviction(reason.as_str());
        tracing::info!(worker = %t.url, id = %t.id, generation = t.generation, reason = reason.as_str(), "worker evicted; tombstone written");
        Ok(t)
    }

    /// Forgets tombstones whose TTL has passed. Returns how many.
    pub async fn expire_tombstones(&self) -> Result<usize, NodeError> {
        let _gate = self.gate.lock().await;
        let now = unix_ms(SystemTime::now());
        let expired: Vec<(WorkerId, u64)> = self
            .lock_store()
            .state()
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

    /// What to probe for `generation` of `id`: the URL and timeout, or `None` when the
    /// worker is gone, changed generation, is failed or has checks disabled.
    pub fn probe_target(&self, id: &WorkerId, generation: u64) -> Option<(String, Duration)> {
        let view = self.registry.read();
        let e = view.workers.get(id)?;
        if e.reg.generation != generation
            || e.reg.spec.health.disable
            || e.status == Status::Failed
            || !self.allowed(&e.reg.spec)
        {
            return None;
        }
        let h = self.health(&e.reg.spec);
        Some((e.reg.spec.url.with_path(&h.path), h.timeout))
    }

    /// Applies a probe result and says what comes next.
    pub fn record_probe(&self, id: &WorkerId, generation: u64, report: ProbeReport) -> NextStep {
        self.metrics.probe(report.result.class(), report.latency);
        if let ProbeResult::Local(resource) = report.result {
            return self.record_local_fault(id, generation, resource);
        }
        let probe = LastProbe {
            result: report.result.describe(),
            at: SystemTime::now(),
            latency: report.latency,
        };
        let outcome = if report.result.is_success() {
            crate::lifecycle::state_machine::Outcome::Success
        } else {
            crate::lifecycle::state_machine::Outcome::Failure
        };
        let Some((entry, transition)) =
            self.registry
                .apply_probe(id, generation, outcome, probe, |spec| {
                    self.health(spec).thresholds
                })
        else {
            return NextStep::Stop;
        };
        if let Some(t) = &transition {
            self.note_transition(t, &entry);
        }
        if entry.status != Status::Failed {
            return NextStep::Probe(self.health(&entry.reg.spec).interval);
        }
        // Every other live member that tracks this generation must hold it failed too
        // (S6 b): one sick node never evicts a worker for everyone.
        if self.eviction_agreed(id, generation) {
            NextStep::Evict
        } else {
            NextStep::Retry(eviction::backoff(entry.retry_attempts))
        }
    }

    /// A probe that this node could not even make: the worker's status and counters
    /// stay as they are, and the probe is tried again after the worker's interval.
    fn record_local_fault(
        &self,
        id: &WorkerId,
        generation: u64,
        resource: LocalResource,
    ) -> NextStep {
        self.metrics.probe_local_error(resource.as_str());
        if let Some(n) = self.local_faults.record(unix_ms(SystemTime::now())) {
            tracing::warn!(
                resource = resource.as_str(),
                faults = n,
                worker = %id,
                "probes fail for lack of a local resource; this is the node's fault, no worker status changes (check ulimit -n, sockets, memory)"
            );
        }
        let view = self.registry.read();
        match view.workers.get(id) {
            Some(e) if e.reg.generation == generation && e.status != Status::Failed => {
                NextStep::Probe(self.health(&e.reg.spec).interval)
            }
            _ => NextStep::Stop,
        }
    }

    /// Whether probes failed for lack of a local resource within the last
    /// [`crate::local_faults::ACTIVE_FOR_MS`]: input to the degraded rule (SPEC S12).
    pub fn local_fault_active(&self) -> bool {
        self.local_faults.active(unix_ms(SystemTime::now()))
    }

    /// Starts a fresh pending cycle for a locally failed worker (SPEC S6b); returns the
    /// probe interval when it did.
    pub fn retry(&self, id: &WorkerId, generation: u64) -> Option<Duration> {
        let t = self
            .registry
            .retry_failed(id, generation, SystemTime::now())?;
        let entry = self.registry.get(id)?;
        self.note_transition(&t, &entry);
        Some(self.health(&entry.reg.spec).interval)
    }

    /// The event log.
    pub fn events(&self) -> &EventLog {
        &self.events
    }

    /// Tells the probe engine about a task (used by the engine itself for follow-ups).
    pub fn schedule(&self, id: WorkerId, generation: u64, task: Task, after: Duration) {
        self.send(ProbeCommand::At {
            id,
            generation,
            task,
            after,
        });
    }
}

impl Node {
    /// Writes a snapshot and empties the log (at shutdown, for a fast next start).
    pub fn compact(&self) -> Result<(), StoreError> {
        self.lock_store().compact()
    }
}
