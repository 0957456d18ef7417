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
//! - publication: this node's verdict on every worker it tracks, the registrations it
//!   owns, adopts or carries a newer PATCH of (S9), and every tombstone it holds.

use super::import::{self, ImportAction, LocalWorker};
use probemesh_gossip::cluster::{ClusterSnapshot, Verdict};
use probemesh_gossip::model::{Registration, Status, Tombstone, WorkerId, WorkerSpec};
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
}

/// Everything one round looks at.
pub struct Inputs<'a> {
    /// This node's id.
    pub self_id: &'a str,
    /// The monotonic time of the round (adoption waits).
    pub now: Instant,
    /// The local view.
    pub local: &'a BTreeMap<WorkerId, Tracked<'a>>,
    /// The tombstones in this node's store.
    pub stored_tombstones: &'a BTreeMap<WorkerId, Tombstone>,
    /// The cluster as gossip shows it.
    pub snapshot: &'a ClusterSnapshot,
    /// `--remove-failed`.
    pub remove_failed: bool,
    /// Whether a worker may be probed here (`--allow-worker-cidr`).
    pub allowed: &'a dyn Fn(&WorkerSpec) -> bool,
}

/// What the reconcile step remembers between rounds.
#[derive(Debug, Default)]
pub struct Memory {
    /// Since when each registration has had no live advertiser.
    orphaned_since: BTreeMap<WorkerId, Instant>,
}

/// What one round decided.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Registrations and tombstones to take from peers, in worker order.
    pub imports: Vec<ImportAction>,
    /// Failed generations the cluster agrees to evict (S6 b), in worker order.
    pub evictions: Vec<(WorkerId, u64)>,
    /// What this node should publish.
    pub publication: Publication,
    /// When a pending adoption's wait ends: a round is due then even if nothing else
    /// changes.
    pub adoption_due: Option<Instant>,
}

/// Runs one round. Deterministic: the same inputs and memory give the same plan.
pub fn reconcile(input: &Inputs<'_>, memory: &mut Memory) -> Plan {
    let snap = input.snapshot;
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
    let imports = import::plan(
        input.self_id,
        &for_import,
        &snap.registrations,
        &snap.tombstones,
        |id| input.stored_tombstones.get(id).map(|t| t.generation),
        input.allowed,
    );
    let evictions = input
        .local
        .iter()
        .filter(|(id, t)| {
            t.status == Status::Failed
                && super::eviction::agreed(
                    snap,
                    input.remove_failed,
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
    let adoption_due = memory
        .orphaned_since
        .values()
        .map(|since| *since + ADOPT_AFTER)
        .filter(|due| *due > input.now)
        .min();
    Plan {
        imports,
        evictions,
        publication,
        adoption_due,
    }
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;
