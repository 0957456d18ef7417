//! One reconciliation between the local view and the cluster, as a pure function: the
//! local view, the stored tombstones, a cluster snapshot and `now` in; what to import,
//! what to evict and what to publish out, as values. The cluster sync applies them.
//!
//! The rules it combines:
//! - import (SPEC S2, S6, S7, S9): [`super::import::plan`];
//! - failure eviction (S6 b): [`super::eviction::agreed`] for every worker this node
//!   holds `failed`;
//! - adoption (S8): a registration no live member advertises is advertised by the
//!   adopter ([`super::import::is_adopter`]) once it has had no advertiser for
//!   [`ADOPT_AFTER`];
//! - draining (S14): peers' drains of a generation this node tracks are taken (the one
//!   that ends first wins), and a drain whose period has ended is tombstoned by
//!   whichever live node sees the end first;
//! - self-fencing (S12, S13): [`super::fencing`], fed by this node's results, the
//!   peers' verdicts and the local-fault signal; a degraded node evicts nothing;
//! - publication: this node's verdict on every worker it tracks, the registrations it
//!   owns, adopts or carries a newer PATCH of (S9), every tombstone it holds, and
//!   whether it is degraded.

use super::fencing::{self, Change, Fence, LocalResult};
use super::import::{self, ImportAction, LocalWorker};
use probemesh_gossip::cluster::{ClusterSnapshot, Verdict};
use probemesh_gossip::model::{Drain, Registration, Status, Tombstone, WorkerId, WorkerSpec};
use probemesh_gossip::publication::Publication;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// How long a registration must have had no live advertiser before the adopter takes
/// it over. Far below `--dead-node-grace-period` (the dead owner's own record stays
/// readable that long), far above a flapping failure detector's false alarms.
pub const ADOPT_AFTER: Duration = Duration::from_secs(5);

/// One worker in the local view, as the reconcile step needs it.
#[derive(Clone, Copy, Debug)]
pub struct Tracked<'a> {
    /// Its registration.
    pub reg: &'a Registration,
    /// Whether it was registered on this node (`false`: learned from a peer).
    pub registered_here: bool,
    /// This node's status for it.
    pub status: Status,
    /// When that status was entered, in ms since the Unix epoch.
    pub status_since_ms: u64,
    /// Whether this node's own probes of it are failing ([`fencing::is_failing`]).
    pub failing: bool,
}

/// Everything one round looks at.
pub struct Inputs<'a> {
    /// This node's id.
    pub self_id: &'a str,
    /// The monotonic time of the round (adoption waits).
    pub now: Instant,
    /// The time of day of the round, in ms since the Unix epoch (drain ends).
    pub now_ms: u64,
    /// The local view.
    pub local: &'a BTreeMap<WorkerId, Tracked<'a>>,
    /// The tombstones in this node's store.
    pub stored_tombstones: &'a BTreeMap<WorkerId, Tombstone>,
    /// The drains in this node's store.
    pub stored_drains: &'a BTreeMap<WorkerId, Drain>,
    /// The cluster as gossip shows it.
    pub snapshot: &'a ClusterSnapshot,
    /// `--remove-failed`.
    pub remove_failed: bool,
    /// Whether a worker may be probed here (`--allow-worker-cidr`).
    pub allowed: &'a dyn Fn(&WorkerSpec) -> bool,
    /// `--fence-ratio` (0: self-fencing off).
    pub fence_ratio: f64,
    /// Whether probes failed for lack of a local resource recently (S13).
    pub local_fault: bool,
}

/// What the reconcile step remembers between rounds.
#[derive(Debug, Default)]
pub struct Memory {
    /// Since when each registration has had no live advertiser.
    orphaned_since: BTreeMap<WorkerId, Instant>,
    /// The self-fencing state.
    fence: Fence,
}

impl Memory {
    /// Why this node is degraded, if it is.
    pub fn degraded(&self) -> Option<&fencing::Cause> {
        self.fence.degraded()
    }
}

/// What one round decided.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Registrations and tombstones to take from peers, in worker order.
    pub imports: Vec<ImportAction>,
    /// Failed generations the cluster agrees to evict (S6 b), in worker order.
    pub evictions: Vec<(WorkerId, u64)>,
    /// Drained generations whose period has ended: to tombstone (S14).
    pub drain_ends: Vec<(WorkerId, u64)>,
    /// What this node should publish.
    pub publication: Publication,
    /// Whether this node entered or left the degraded state in this round.
    pub fence_change: Option<Change>,
    /// This node's failing workers that most healthy peers reach (for the log).
    pub unreachable_here: Vec<WorkerId>,
    /// When a wait ends (an adoption's, or the fence's hysteresis): a round is due then
    /// even if nothing else changes.
    pub due: Option<Instant>,
}

/// Runs one round. Deterministic: the same inputs and memory give the same plan.
pub fn reconcile(input: &Inputs<'_>, memory: &mut Memory) -> Plan {
    let snap = input.snapshot;
    // The fence first: this round's evictions depend on whether this node is degraded.
    let assessment = fencing::assess(
        snap,
        input.local.iter().map(|(id, t)| LocalResult {
            id,
            generation: t.reg.generation,
            failing: t.failing,
        }),
    );
    let fence_change =
        memory
            .fence
            .step(input.now, input.fence_ratio, &assessment, input.local_fault);
    let degraded = memory.fence.degraded().map(fencing::Cause::reason);
    let for_import: BTreeMap<WorkerId, LocalWorker<'_>> = input
        .local
        .iter()
        .map(|(id, t)| {
            (
                id.clone(),
                LocalWorker {
                    generation: t.reg.generation,
                    revision: t.reg.revision,
                    spec: &t.reg.spec,
                },
            )
        })
        .collect();
    let mut imports = import::plan(
        input.self_id,
        &for_import,
        &snap.registrations,
        &snap.tombstones,
        |id| input.stored_tombstones.get(id).map(|t| t.generation),
        input.allowed,
        input.now_ms,
    );
    // Peers' drains of the generation this node tracks, when they end sooner than the
    // one stored here (or none is).
    for (id, d) in &snap.drains {
        let tracked = input
            .local
            .get(id)
            .is_some_and(|t| t.reg.generation == d.generation);
        let sooner = input
            .stored_drains
            .get(id)
            .is_none_or(|old| old.generation < d.generation || old.ends_at_ms > d.ends_at_ms);
        if tracked && sooner {
            imports.push(ImportAction::Drain(d.clone()));
        }
    }
    let drain_ends: Vec<(WorkerId, u64)> = input
        .stored_drains
        .iter()
        .filter(|(id, d)| {
            d.ends_at_ms <= input.now_ms
                && input
                    .local
                    .get(*id)
                    .is_some_and(|t| t.reg.generation == d.generation)
        })
        .map(|(id, d)| (id.clone(), d.generation))
        .collect();
    let next_drain_end = input
        .stored_drains
        .values()
        .filter(|d| d.ends_at_ms > input.now_ms)
        .map(|d| input.now + Duration::from_millis(d.ends_at_ms - input.now_ms))
        .min();
    let evictions = input
        .local
        .iter()
        .filter(|(id, t)| {
            t.status == Status::Failed
                && super::eviction::agreed(
                    snap,
                    input.remove_failed,
                    degraded.is_some(),
                    id,
                    t.reg.generation,
                    t.status,
                )
        })
        .map(|(id, t)| (id.clone(), t.reg.generation))
        .collect();

    // Only members seen first-hand can be the adopter: an id invented in relayed state
    // ("0", which sorts first) would otherwise be chosen and never adopt (S8).
    let adopter = import::is_adopter(input.self_id, snap.live_attested_node_ids());
    // Forget wait timers of registrations that have an advertiser again (or are gone).
    memory.orphaned_since.retain(|id, _| {
        !snap.advertised_by_live_peer.contains_key(id) && input.local.contains_key(id)
    });
    let mut publication = Publication::default();
    for (id, t) in input.local {
        publication.verdicts.insert(
            id.clone(),
            Verdict {
                generation: t.reg.generation,
                status: t.status,
                since_ms: t.status_since_ms,
            },
        );
        let peers_newest = snap.advertised_by_live_peer.get(id).copied();
        // Adopt a registration no live member advertises (its owner died, S8).
        let orphan = !t.registered_here && peers_newest.is_none();
        let adopts = orphan
            && adopter
            && memory
                .orphaned_since
                .get(id)
                .is_some_and(|since| input.now.duration_since(*since) >= ADOPT_AFTER);
        if orphan && !adopts {
            memory.orphaned_since.entry(id.clone()).or_insert(input.now);
        }
        // Carry a PATCH made here until the advertisers have taken it (S9).
        let newer_here = peers_newest.is_some_and(|best| best < (t.reg.generation, t.reg.revision));
        if t.registered_here || adopts || newer_here {
            publication.registrations.insert(id.clone(), t.reg.clone());
        }
    }
    publication.tombstones = input.stored_tombstones.clone();
    publication.degraded = degraded;
    publication.drains = input.stored_drains.clone();
    let due = memory
        .orphaned_since
        .values()
        .map(|since| *since + ADOPT_AFTER)
        .chain(memory.fence.due())
        .chain(next_drain_end)
        .filter(|due| *due > input.now)
        .min();
    Plan {
        imports,
        evictions,
        drain_ends,
        publication,
        fence_change,
        unreachable_here: assessment.failing,
        due,
    }
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;
