//! The local view: every worker this node knows, with this node's own status for it.
//!
//! Pure in-memory state behind one lock. Every change bumps the view's `index` and
//! publishes it on a watch channel, which blocking queries and the event stream follow.
//! Durable changes reach the registry only after the store has made them durable.

use crate::lifecycle::state_machine::{self, Counters, Outcome, Thresholds};
use probemesh_gossip::model::{Registration, Status, WorkerId, WorkerSpec};
use std::collections::BTreeMap;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// Where this node learned a worker from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Registered on this node (API, `--worker` or config).
    Local,
    /// Learned from a peer.
    Peer,
}

impl Origin {
    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Local => "local",
            Origin::Peer => "peer",
        }
    }
}

/// What the last probe of a worker found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastProbe {
    /// Short machine-readable result (`ok`, `http_503`, `timeout`, `refused`, …).
    pub result: String,
    /// When the probe finished.
    pub at: SystemTime,
    /// How long it took.
    pub latency: Duration,
}

/// One worker in the local view.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The registration (spec, generation, owner).
    pub reg: Registration,
    /// How this node learned it.
    pub origin: Origin,
    /// This node's status for it.
    pub status: Status,
    /// When `status` was entered.
    pub status_since: SystemTime,
    /// State-machine counters.
    pub counters: Counters,
    /// The last probe, if any.
    pub last_probe: Option<LastProbe>,
    /// Local failures retried so far (SPEC S6b); reset when the worker becomes ready.
    pub retry_attempts: u32,
}

/// A status change, as reported to logs, metrics and (later) the event stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The worker.
    pub id: WorkerId,
    /// Its generation.
    pub generation: u64,
    /// Status before.
    pub from: Status,
    /// Status after.
    pub to: Status,
    /// Why (`probe`, `health_disabled`, `retry`).
    pub reason: &'static str,
}

/// The workers and the change index.
#[derive(Debug, Default)]
pub struct View {
    /// Every known worker, in id order (so that every walk over the view, and what
    /// follows from it, is the same in every run).
    pub workers: BTreeMap<WorkerId, Entry>,
    /// Grows by one with every change.
    pub index: u64,
}

/// The local view behind a lock, plus the index watch.
#[derive(Debug)]
pub struct Registry {
    view: RwLock<View>,
    index_tx: watch::Sender<u64>,
}

impl Registry {
    /// An empty view whose index starts at `start_index`.
    pub fn new(start_index: u64) -> Registry {
        let (index_tx, _) = watch::channel(start_index);
        Registry {
            view: RwLock::new(View {
                workers: BTreeMap::new(),
                index: start_index,
            }),
            index_tx,
        }
    }

    /// Read access to the view.
    pub fn read(&self) -> RwLockReadGuard<'_, View> {
        // A panic while holding the lock leaves the map consistent (every mutation
        // below is a single insert or field update), so a poisoned lock is still usable.
        self.view.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, View> {
        self.view.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Follows the index.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.index_tx.subscribe()
    }

    /// A copy of one entry.
    pub fn get(&self, id: &WorkerId) -> Option<Entry> {
        self.read().workers.get(id).cloned()
    }

    fn changed(&self, view: &mut View) {
        view.index += 1;
        self.index_tx.send_replace(view.index);
    }

    /// Adds a worker (or replaces an older generation) with its initial status.
    pub fn insert(&self, reg: Registration, origin: Origin, now: SystemTime) -> Entry {
        let entry = Entry {
            status: state_machine::initial_status(reg.spec.health.disable),
            reg,
            origin,
            status_since: now,
            counters: Counters::default(),
            last_probe: None,
            retry_attempts: 0,
        };
        let mut view = self.write();
        view.workers.insert(entry.reg.id.clone(), entry.clone());
        self.changed(&mut view);
        entry
    }

    /// Replaces a worker's spec and revision, keeping its status (SPEC S9) except as
    /// [`state_machine::on_spec_change`] says. Returns the new entry and any transition.
    pub fn update_spec(
        &self,
        id: &WorkerId,
        spec: WorkerSpec,
        revision: u64,
        now: SystemTime,
    ) -> Option<(Entry, Option<Transition>)> {
        let mut view = self.write();
        let entry = view.workers.get_mut(id)?;
        let was_disabled = entry.reg.spec.health.disable;
        entry.reg.spec = spec;
        entry.reg.revision = revision;
        let transition = state_machine::on_spec_change(
            entry.status,
            was_disabled,
            entry.reg.spec.health.disable,
        )
        .map(|(to, reason)| set_status(entry, to, reason, now));
        let out = entry.clone();
        self.changed(&mut view);
        Some((out, transition))
    }

    /// Removes a worker if it is still at `generation` or older.
    pub fn remove(&self, id: &WorkerId, generation: u64) -> Option<Entry> {
        let mut view = self.write();
        if view.workers.get(id)?.reg.generation > generation {
            return None;
        }
        let removed = view.workers.remove(id);
        self.changed(&mut view);
        removed
    }

    /// Applies one probe result to `generation` of `id`. Returns `None` when the worker
    /// is gone or has moved on to another generation (the result is stale), else the
    /// entry after the probe and the transition, if any. `thresholds` reads them off
    /// the worker's spec, under the same lock, so a probe costs one lookup.
    pub fn apply_probe(
        &self,
        id: &WorkerId,
        generation: u64,
        outcome: Outcome,
        probe: LastProbe,
        thresholds: impl FnOnce(&WorkerSpec) -> Thresholds,
    ) -> Option<(Entry, Option<Transition>)> {
        let mut view = self.write();
        let entry = view.workers.get_mut(id)?;
        if entry.reg.generation != generation || entry.reg.spec.health.disable {
            return None;
        }
        let now = probe.at;
        entry.last_probe = Some(probe);
        let t = thresholds(&entry.reg.spec);
        let step = state_machine::apply(entry.status, entry.counters, outcome, t);
        entry.counters = step.counters;
        let transition = step.transition.map(|(_, to)| {
            if to == Status::Ready {
                entry.retry_attempts = 0;
            }
            set_status(entry, to, "probe", now)
        });
        let out = entry.clone();
        // Probe counters change on every probe; only a status change is a change of
        // the view that waiters (blocking queries, gossip) care about.
        if transition.is_some() {
            self.changed(&mut view);
        }
        Some((out, transition))
    }

    /// Puts `generation` of `id` into `draining` (SPEC S14). Returns the entry and the
    /// transition, or `None` when the worker is gone, at another generation or draining
    /// already.
    pub fn start_drain(
        &self,
        id: &WorkerId,
        generation: u64,
        now: SystemTime,
    ) -> Option<(Entry, Transition)> {
        let mut view = self.write();
        let entry = view.workers.get_mut(id)?;
        if entry.reg.generation != generation || entry.status == Status::Draining {
            return None;
        }
        let t = set_status(entry, Status::Draining, "drain", now);
        let out = entry.clone();
        self.changed(&mut view);
        Some((out, t))
    }

    /// Starts a fresh pending cycle for a locally failed worker (SPEC S6b). Returns the
    /// transition, or `None` when the worker is gone, changed generation or is no
    /// longer failed.
    pub fn retry_failed(
        &self,
        id: &WorkerId,
        generation: u64,
        now: SystemTime,
    ) -> Option<Transition> {
        let mut view = self.write();
        let entry = view.workers.get_mut(id)?;
        if entry.reg.generation != generation || entry.status != Status::Failed {
            return None;
        }
        entry.retry_attempts = entry.retry_attempts.saturating_add(1);
        entry.counters = Counters::default();
        let t = set_status(entry, Status::Pending, "retry", now);
        self.changed(&mut view);
        Some(t)
    }
}

fn set_status(entry: &mut Entry, to: Status, reason: &'static str, now: SystemTime) -> Transition {
    let from = entry.status;
    entry.status = to;
    entry.status_since = now;
    entry.counters = Counters::default();
    Transition {
        id: entry.reg.id.clone(),
        generation: entry.reg.generation,
        from,
        to,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use probemesh_gossip::model::WorkerUrl;

    const T: Thresholds = Thresholds {
        success: 2,
        failure: 3,
    };

    fn reg(generation: u64, disable: bool) -> Registration {
        let url = WorkerUrl::parse("http://10.0.0.9:8000").unwrap();
        let mut spec = WorkerSpec::new(url.clone());
        spec.health.disable = disable;
        Registration {
            id: url.id(),
            generation,
            owner: "n".into(),
            registered_at_ms: 0,
            revision: 0,
            spec,
        }
    }

    fn probe(result: &str) -> LastProbe {
        LastProbe {
            result: result.into(),
            at: SystemTime::UNIX_EPOCH,
            latency: Duration::from_millis(1),
        }
    }

    #[test]
    fn changes_bump_the_index_and_wake_watchers_but_plain_probes_do_not() {
        let r = Registry::new(100);
        let mut rx = r.subscribe();
        let e = r.insert(reg(1, false), Origin::Local, SystemTime::now());
        assert_eq!(e.status, Status::Pending);
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), 101);
        r.apply_probe(&e.reg.id, 1, Outcome::Success, probe("ok"), |_| T)
            .unwrap();
        assert_eq!(
            r.read().index,
            101,
            "a probe without a status change is not a change"
        );
        assert!(!rx.has_changed().unwrap());
        r.apply_probe(&e.reg.id, 1, Outcome::Success, probe("ok"), |_| T)
            .unwrap();
        assert_eq!(r.read().index, 102, "pending -> ready is");
    }

    #[test]
    fn stale_probe_results_are_ignored() {
        let r = Registry::new(0);
        let e = r.insert(reg(2, false), Origin::Local, SystemTime::now());
        assert!(
            r.apply_probe(&e.reg.id, 1, Outcome::Success, probe("ok"), |_| T)
                .is_none()
        );
        r.remove(&e.reg.id, 2).unwrap();
        assert!(
            r.apply_probe(&e.reg.id, 2, Outcome::Success, probe("ok"), |_| T)
                .is_none()
        );
    }

    #[test]
    fn probes_drive_the_state_machine_and_record_the_result() {
        let r = Registry::new(0);
        let id = r
            .insert(reg(1, false), Origin::Peer, SystemTime::now())
            .reg
            .id;
        let (e, t) = r
            .apply_probe(&id, 1, Outcome::Success, probe("ok"), |_| T)
            .unwrap();
        assert!(t.is_none());
        assert_eq!(e.counters.consecutive_successes, 1);
        let (e, t) = r
            .apply_probe(&id, 1, Outcome::Success, probe("ok"), |_| T)
            .unwrap();
        assert_eq!(t.unwrap().to, Status::Ready);
        assert_eq!(e.status, Status::Ready);
        let (e, _) = r
            .apply_probe(&id, 1, Outcome::Failure, probe("timeout"), |_| T)
            .unwrap();
        assert_eq!(e.last_probe.unwrap().result, "timeout");
    }

    #[test]
    fn disabling_health_checks_makes_ready_and_other_updates_keep_status() {
        let r = Registry::new(0);
        let e = r.insert(reg(1, false), Origin::Local, SystemTime::now());
        let mut spec = e.reg.spec.clone();
        spec.priority = 7;
        let (e2, t) = r
            .update_spec(&e.reg.id, spec.clone(), 1, SystemTime::now())
            .unwrap();
        assert_eq!((e2.status, t), (Status::Pending, None));
        spec.health.disable = true;
        let (e3, t) = r
            .update_spec(&e.reg.id, spec, 1, SystemTime::now())
            .unwrap();
        assert_eq!(e3.status, Status::Ready);
        assert_eq!(t.unwrap().reason, "health_disabled");
        assert!(
            r.apply_probe(&e.reg.id, 1, Outcome::Failure, probe("x"), |_| T)
                .is_none()
        );
        assert_eq!(
            r.insert(reg(2, true), Origin::Local, SystemTime::now())
                .status,
            Status::Ready
        );
    }

    #[test]
    fn retry_only_applies_to_failed_workers_of_the_same_generation() {
        let r = Registry::new(0);
        let id = r
            .insert(reg(1, false), Origin::Local, SystemTime::now())
            .reg
            .id;
        assert!(r.retry_failed(&id, 1, SystemTime::now()).is_none());
        for _ in 0..30 {
            r.apply_probe(&id, 1, Outcome::Failure, probe("refused"), |_| T);
        }
        assert_eq!(r.get(&id).unwrap().status, Status::Failed);
        assert!(r.retry_failed(&id, 2, SystemTime::now()).is_none());
        let t = r.retry_failed(&id, 1, SystemTime::now()).unwrap();
        assert_eq!((t.from, t.to), (Status::Failed, Status::Pending));
        assert_eq!(r.get(&id).unwrap().retry_attempts, 1);
    }

    #[test]
    fn remove_spares_newer_generations() {
        let r = Registry::new(0);
        let id = r
            .insert(reg(3, false), Origin::Local, SystemTime::now())
            .reg
            .id;
        assert!(r.remove(&id, 2).is_none());
        assert!(r.remove(&id, 3).is_some());
        assert!(r.get(&id).is_none());
    }
}
