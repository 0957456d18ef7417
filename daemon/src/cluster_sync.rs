//! The bridge between the local view and gossip, run as one task.
//!
//! Level-triggered and idempotent: whenever the local view or a peer's keys change (and
//! at least every gossip interval, to see deletions and membership changes), it reads
//! the cluster snapshot, hands it to the node (members, peers' verdicts), runs the pure
//! reconcile step ([`crate::lifecycle::reconcile`]) and applies its plan: imports in one
//! commit, agreed evictions, and the publication (the gossip crate writes only what
//! changed). It works over any [`ClusterSource`]: chitchat in the agent, the seeded
//! dissemination model in the simulator.

use crate::identity_watch::{IdentityWatch, REPEAT_LOG, Step};
use crate::lifecycle::fencing;
use crate::lifecycle::import::{self, ImportAction};
use crate::lifecycle::reconcile::{self, Inputs, Memory, Tracked};
use crate::node::Node;
use crate::registry::Origin;
use crate::reported::ReportedOnce;
use probemesh_gossip::cluster::ClusterSnapshot;
use probemesh_gossip::model::WorkerId;
use probemesh_gossip::source::{ClusterSource, Fingerprint};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub use crate::lifecycle::reconcile::ADOPT_AFTER;

/// Runs until `stop`. With `identity`, nothing is imported or published before the
/// node has joined (no other live process has its id), and a refused node stops syncing
/// and repeats its refusal in the log until `stop`.
pub async fn run<S: ClusterSource>(
    node: Arc<Node>,
    source: Arc<S>,
    interval: Duration,
    mut identity: Option<IdentityWatch>,
    stop: CancellationToken,
) {
    let mut index_rx = node.registry().subscribe();
    let mut state = SyncState::default();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Biased: the same order of wake-ups gives the same rounds, which keeps a
        // paused-time simulation reproducible.
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            _ = index_rx.changed() => {}
            () = source.changed() => {}
            _ = tick.tick() => {}
        }
        let step = match identity.as_mut() {
            Some(watch) => watch.check(node.metrics()).await,
            None => Step::Sync,
        };
        match step {
            Step::Wait => continue,
            Step::Sync => sync_once(&node, source.as_ref(), &mut state).await,
            Step::Refused => break,
        }
    }
    let reason = identity.and_then(|w| w.refused()).unwrap_or_default();
    let mut repeat = tokio::time::interval(REPEAT_LOG);
    repeat.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = repeat.tick() => tracing::error!(reason = %reason, "still refused: this process is not part of the cluster; stop it or give it its own node id"),
        }
    }
}

/// Cluster fingerprint, view index, tombstone count, whether local faults are current.
type Observed = (Fingerprint, u64, usize, bool);

/// What the sync loop remembers between rounds.
#[derive(Debug, Default)]
pub struct SyncState {
    /// Peers already warned about for a newer record format.
    warned_newer: std::collections::HashSet<String>,
    /// Dropped peer records and refused owner claims already counted and logged:
    /// each is reported once, not in every round that still sees it.
    reported: ReportedOnce,
    /// Cluster fingerprint, view index and tombstone count after the last full round:
    /// when none changed there is nothing to import or publish.
    last: Option<Observed>,
    /// The reconcile step's memory (adoption timers).
    memory: Memory,
    /// When the first pending wait (an adoption's, the fence's) ends: a full round is
    /// due then even if nothing else changed.
    due: Option<tokio::time::Instant>,
}

/// One reconciliation in both directions; skipped when neither the cluster state nor
/// the local view changed since the last one (the common case, which keeps a node with
/// 10,000 workers from decoding and re-encoding them every gossip round).
pub async fn sync_once<S: ClusterSource>(node: &Arc<Node>, source: &S, state: &mut SyncState) {
    let fingerprint = source.fingerprint().await;
    let now = (
        fingerprint,
        node.registry().read().index,
        node.tombstone_count(),
        node.local_fault_active(),
    );
    let wait_over = state
        .due
        .is_some_and(|due| tokio::time::Instant::now() >= due);
    if state.last.as_ref() == Some(&now) && !wait_over {
        return;
    }
    // A round that changed something (imports, published keys) is followed by another
    // full one, which sees the result; only a round with nothing to do is remembered.
    // A pending adoption needs one more full round when its wait ends, not a full round
    // every tick until then: with a flapping failure detector one is nearly always
    // pending, and rounds on every tick kept a loaded cluster loaded.
    if tracing::enabled!(tracing::Level::TRACE)
        && let Some((before, ..)) = &state.last
    {
        let moved: Vec<_> = now.0.iter().filter(|m| !before.contains(m)).collect();
        tracing::trace!(?moved, "cluster sync: members whose state moved");
    }
    node.metrics().sync_round();
    let changed = full_sync(node, source, state).await;
    // A member still being checked (attestation) is not in the fingerprint: keep
    // taking full rounds until the check ends, or an eviction waiting on it would wait
    // for the next unrelated change.
    let pending = node.cluster().attestation_pending();
    state.last = if changed || pending { None } else { Some(now) };
}

/// Returns whether it changed anything.
async fn full_sync<S: ClusterSource>(node: &Arc<Node>, source: &S, state: &mut SyncState) -> bool {
    let snap = source.snapshot().await;
    node.metrics().gossip_malformed(snap.malformed);
    report_rejections(node, &snap, &mut state.reported);
    for peer in &snap.newer_format {
        if state.warned_newer.insert(peer.clone()) {
            tracing::warn!(peer = %peer, "ignoring records in a newer format than this build reads; upgrade this node");
        }
    }
    let alive = snap.live_node_ids().count();
    node.metrics().members(alive, snap.members.len() - alive);
    let plan = {
        let view = node.registry().read();
        let durable = node.durable();
        let local: BTreeMap<WorkerId, Tracked<'_>> = view
            .workers
            .iter()
            .map(|(id, e)| {
                (
                    id.clone(),
                    Tracked {
                        reg: &e.reg,
                        registered_here: e.origin == Origin::Local,
                        status: e.status,
                        status_since_ms: crate::clock::unix_ms(e.status_since),
                        failing: fencing::is_failing(e.status, e.counters.consecutive_failures),
                    },
                )
            })
            .collect();
        let allowed = |spec: &_| node.allowed(spec);
        reconcile::reconcile(
            &Inputs {
                self_id: node.node_id(),
                now: tokio::time::Instant::now(),
                now_ms: node.clock().now_ms(),
                local: &local,
                stored_tombstones: &durable.tombstones,
                stored_drains: &durable.drains,
                snapshot: &snap,
                remove_failed: node.remove_failed(),
                allowed: &allowed,
                fence_ratio: node.fence_ratio(),
                local_fault: node.local_fault_active(),
            },
            &mut state.memory,
        )
    };
    state.due = plan.due;
    node.metrics()
        .fence()
        .members_degraded(snap.live_peer_ids().count() - snap.healthy_peer_count());
    node.set_fence(
        plan.fence_change.as_ref(),
        plan.publication.degraded.clone(),
        &plan.unreachable_here,
    );
    report_owner_claims(node, &snap, &plan.imports, &mut state.reported);
    node.set_cluster(snap);
    let imported = !plan.imports.is_empty();
    // One commit (one fsync) for the whole round.
    if let Err(e) = node.apply_imports(plan.imports).await {
        tracing::warn!(error = %e, "could not apply the changes learned from peers; will retry");
    }
    // A failed worker is evicted once every live member tracking it holds it failed
    // (S6 b); the last verdict to arrive may be a peer's or this node's own, and this
    // is the one place that decides.
    for (id, generation) in &plan.evictions {
        if let Err(e) = node.evict_failed(id, *generation).await {
            tracing::warn!(id = %id, error = %e, "could not evict a failed worker; will retry");
        }
    }
    // A drain whose period ended is tombstoned by whichever live node sees it first (S14).
    for (id, generation) in &plan.drain_ends {
        if let Err(e) = node.end_drain(id, *generation).await {
            tracing::warn!(id = %id, error = %e, "could not end a drain; will retry");
        }
    }
    let published = source.publish(&plan.publication).await;
    node.metrics().verdict_buckets_held(published.held);
    // A verdict bucket held back is written by a full round once its hold ends, even
    // if nothing else changes by then.
    state.due = match (state.due, published.held_until) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    tracing::trace!(
        imported,
        evicted = plan.evictions.len(),
        published = published.changed,
        held = published.held,
        "cluster sync round"
    );
    imported
        || !plan.evictions.is_empty()
        || !plan.drain_ends.is_empty()
        || published.changed > 0
        || plan.fence_change.is_some()
}

/// Counts and logs each peer record the snapshot dropped (SPEC S11), once per record:
/// the same records come back in every snapshot while their member publishes them.
fn report_rejections(node: &Node, snap: &ClusterSnapshot, reported: &mut ReportedOnce) {
    for (by, r) in snap.rejections() {
        if reported.first_time(("rejected", by, r.fingerprint)) {
            node.metrics().gossip_record_rejected(r.reason);
            tracing::warn!(peer = %by, key = %r.key, reason = r.reason, error = %r.error, "dropped a record published by a peer: it fails validation, so it is never imported, probed or shown");
        }
    }
}

/// Counts and logs each registration a peer advertises as this node's own that this
/// node never registered; the import rules have attributed it to the advertiser.
fn report_owner_claims(
    node: &Node,
    snap: &ClusterSnapshot,
    actions: &[ImportAction],
    reported: &mut ReportedOnce,
) {
    for action in actions {
        let (ImportAction::Insert(reg) | ImportAction::Replace(reg)) = action else {
            continue;
        };
        let Some(adv) = snap.registrations.get(&reg.id) else {
            continue;
        };
        if import::claims_self(node.node_id(), &adv.reg)
            && reported.first_time(("owner", &adv.by, reg.id.as_str(), reg.generation))
        {
            node.metrics().gossip_owner_claim_refused();
            tracing::warn!(peer = %adv.by, worker = %reg.spec.url, id = %reg.id, generation = reg.generation, "a peer advertises a registration in this node's name that this node never made; imported as the peer's, never advertised as this node's own");
        }
    }
}
