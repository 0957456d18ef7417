//! The bridge between the local view and gossip, run as one task.
//!
//! Level-triggered and idempotent: whenever the local view or a peer's keys change (and
//! at least every gossip interval, to see deletions and membership changes), it
//! - reads the cluster snapshot and hands it to the node (members, peers' verdicts);
//! - imports peers' registrations and tombstones (rules in `lifecycle::import`);
//! - publishes this node's keys: the registrations it owns or has adopted, its verdict
//!   on every worker it tracks, and every tombstone it holds; only differences from
//!   what it published last are written.

use crate::identity_watch::{IdentityWatch, REPEAT_LOG, Step};
use crate::lifecycle::import::{self, ImportAction, LocalWorker};
use crate::node::Node;
use crate::registry::Origin;
use crate::reported::ReportedOnce;
use probemesh_gossip::cluster::ClusterSnapshot;
use probemesh_gossip::keys;
use probemesh_gossip::model::WorkerId;
use probemesh_gossip::node::GossipHandle;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Runs until `stop`. With `identity`, nothing is imported or published before the
/// node has joined (no other live process has its id), and a refused node stops syncing
/// and repeats its refusal in the log until `stop`.
pub async fn run(
    node: Arc<Node>,
    gossip: Arc<GossipHandle>,
    interval: Duration,
    mut identity: Option<IdentityWatch>,
    stop: CancellationToken,
) {
    let mut index_rx = node.registry().subscribe();
    let mut state = SyncState::default();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = index_rx.changed() => {}
            () = gossip.changed() => {}
            _ = tick.tick() => {}
        }
        let step = match identity.as_mut() {
            Some(watch) => watch.check(&gossip, node.metrics()).await,
            None => Step::Sync,
        };
        match step {
            Step::Wait => continue,
            Step::Sync => sync_once(&node, &gossip, &mut state).await,
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

/// Cluster fingerprint (see `GossipHandle::fingerprint`), view index, tombstone count.
type Observed = (Vec<(String, u64, u64, bool)>, u64, usize);

/// What the sync loop remembers between rounds.
#[derive(Debug, Default)]
pub struct SyncState {
    /// The keys this node published last, with their values.
    published: HashMap<String, String>,
    /// Peers already warned about for a newer record format.
    warned_newer: std::collections::HashSet<String>,
    /// Dropped peer records and refused owner claims already counted and logged:
    /// each is reported once, not in every round that still sees it.
    reported: ReportedOnce,
    /// Cluster fingerprint, view index and tombstone count after the last full round:
    /// when none changed there is nothing to import or publish.
    last: Option<Observed>,
    /// Since when each registration has had no live advertiser (adoption waits
    /// [`ADOPT_AFTER`] so that a missed heartbeat does not move keys back and forth).
    orphaned_since: HashMap<WorkerId, tokio::time::Instant>,
    /// When the first pending adoption's wait ends: a full round is due then even if
    /// nothing else changed.
    adopt_due: Option<tokio::time::Instant>,
}

/// How long a registration must have had no live advertiser before the adopter takes
/// it over. Far below `--dead-node-grace-period` (the dead owner's own record stays
/// readable that long), far above a flapping failure detector's false alarms.
pub const ADOPT_AFTER: Duration = Duration::from_secs(5);

/// One reconciliation in both directions; skipped when neither the cluster state nor
/// the local view changed since the last one (the common case, which keeps a node with
/// 10,000 workers from decoding and re-encoding them every gossip round).
pub async fn sync_once(node: &Arc<Node>, gossip: &GossipHandle, state: &mut SyncState) {
    let fingerprint = gossip.fingerprint().await;
    let now = (
        fingerprint,
        node.registry().read().index,
        node.tombstone_count(),
    );
    let adoption_due = state
        .adopt_due
        .is_some_and(|due| tokio::time::Instant::now() >= due);
    if state.last.as_ref() == Some(&now) && !adoption_due {
        return;
    }
    // A round that changed something (imports, published keys) is followed by another
    // full one, which sees the result; only a round with nothing to do is remembered.
    // A pending adoption needs one more full round when its wait ends, not a full round
    // every tick until then: with a flapping failure detector one is nearly always
    // pending, and rounds on every tick kept a loaded cluster loaded.
    if tracing::enabled!(tracing::Level::TRACE)
        && let Some((before, _, _)) = &state.last
    {
        let moved: Vec<_> = now.0.iter().filter(|m| !before.contains(m)).collect();
        tracing::trace!(?moved, "cluster sync: members whose state moved");
    }
    node.metrics().sync_round();
    let changed = full_sync(node, gossip, state).await;
    state.adopt_due = state
        .orphaned_since
        .values()
        .map(|since| *since + ADOPT_AFTER)
        .filter(|due| *due > tokio::time::Instant::now())
        .min();
    // A member still being checked (attestation) is not in the fingerprint: keep
    // taking full rounds until the check ends, or an eviction waiting on it would wait
    // for the next unrelated change.
    let pending = node.cluster().attestation_pending();
    state.last = if changed || pending { None } else { Some(now) };
}

/// Returns whether it changed anything.
async fn full_sync(node: &Arc<Node>, gossip: &GossipHandle, state: &mut SyncState) -> bool {
    let SyncState {
        published,
        warned_newer,
        orphaned_since,
        reported,
        ..
    } = state;
    let snap = gossip.snapshot().await;
    node.metrics().gossip_malformed(snap.malformed);
    report_rejections(node, &snap, reported);
    for peer in &snap.newer_format {
        if warned_newer.insert(peer.clone()) {
            tracing::warn!(peer = %peer, "ignoring records in a newer format than this build reads; upgrade this node");
        }
    }
    let alive = snap.live_node_ids().count();
    node.metrics().members(alive, snap.members.len() - alive);
    let actions = {
        let view = node.registry().read();
        let local: BTreeMap<WorkerId, LocalWorker<'_>> = view
            .workers
            .iter()
            .map(|(id, e)| {
                (
                    id.clone(),
                    LocalWorker {
                        generation: e.reg.generation,
                        revision: e.reg.revision,
                        spec: &e.reg.spec,
                    },
                )
            })
            .collect();
        import::plan(
            node.node_id(),
            &local,
            &snap.registrations,
            &snap.tombstones,
            |id| node.stored_tombstone_generation(id),
            |spec| node.allowed(spec),
        )
    };
    report_owner_claims(node, &snap, &actions, reported);
    // Only members seen first-hand can be the adopter: an id invented in relayed state
    // ("0", which sorts first) would otherwise be chosen and never adopt (S8).
    let adopter = import::is_adopter(node.node_id(), snap.live_attested_node_ids());
    let advertised_by_live_peers = snap.advertised_by_live_peer.clone();
    node.set_cluster(snap);
    let imported = !actions.is_empty();
    // One commit (one fsync) for the whole round.
    if let Err(e) = node.apply_imports(actions).await {
        tracing::warn!(error = %e, "could not apply the changes learned from peers; will retry");
    }

    // A failed worker is evicted once every live member tracking it holds it failed
    // (S6 b); the last verdict to arrive may be a peer's, so re-check on every sync.
    for (id, generation) in node.failed_workers() {
        if node.eviction_agreed(&id, generation)
            && let Err(e) = node.evict_failed(&id, generation).await
        {
            tracing::warn!(id = %id, error = %e, "could not evict a failed worker; will retry");
        }
    }

    // Forget wait timers of registrations that have an advertiser again (or are gone).
    orphaned_since.retain(|id, _| {
        !advertised_by_live_peers.contains_key(id) && node.registry().get(id).is_some()
    });

    // What this node should be publishing now.
    let mut desired: HashMap<String, String> = HashMap::new();
    {
        let view = node.registry().read();
        for (id, e) in &view.workers {
            desired.insert(
                keys::status_key(id),
                keys::encode_status(
                    e.reg.generation,
                    e.status,
                    crate::node::unix_ms(e.status_since),
                ),
            );
            let owns = e.origin == Origin::Local;
            let peers_newest = advertised_by_live_peers.get(id).copied();
            // Adopt a registration no live member advertises (its owner died, S8).
            let orphan = e.origin == Origin::Peer && peers_newest.is_none();
            let adopts = orphan
                && adopter
                && orphaned_since
                    .get(id)
                    .is_some_and(|since| since.elapsed() >= ADOPT_AFTER);
            if orphan && !adopts {
                orphaned_since
                    .entry(id.clone())
                    .or_insert_with(tokio::time::Instant::now);
            }
            // Carry a PATCH made here until the advertisers have taken it (S9).
            let newer_here =
                peers_newest.is_some_and(|best| best < (e.reg.generation, e.reg.revision));
            if (owns || adopts || newer_here)
                && let Ok(v) = keys::encode_registration(&e.reg)
            {
                desired.insert(keys::reg_key(id), v);
            }
        }
    }
    for t in node.stored_tombstones() {
        if let Ok(v) = keys::encode_tombstone(&t) {
            desired.insert(keys::tomb_key(&t.id), v);
        }
    }
    let mut changes = Vec::new();
    for (k, v) in &desired {
        if published.get(k) != Some(v) {
            changes.push((k.clone(), Some(v.clone())));
        }
    }
    for k in published.keys() {
        if !desired.contains_key(k) {
            changes.push((k.clone(), None));
        }
    }
    let changed = imported || !changes.is_empty();
    tracing::trace!(imported, published = changes.len(), sample = ?changes.iter().take(3).collect::<Vec<_>>(), "cluster sync round");
    gossip.update_keys(changes).await;
    *published = desired;
    changed
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
