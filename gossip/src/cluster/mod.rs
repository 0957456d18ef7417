//! A read-only picture of the cluster taken from chitchat's state: who is a member,
//! which registrations each node advertises, and each node's verdicts. The daemon
//! reconciles its local view against it.
//!
//! Gossip is relayed, so any member can publish state under any node id. Two rules keep
//! such state from steering this node (SPEC S10):
//! - **this node's own row comes from this node**: an instance under this node's id
//!   that is not this process (a restart not yet forgotten, a second process with the
//!   same id, an impostor) never supplies a verdict or a member row for this id;
//! - **only attested instances count for adoption and eviction**: an instance is
//!   attested when the transport saw that node id at that address first-hand
//!   ([`crate::transport::PeerIdentities`]). Unattested live members are still listed,
//!   but they are never the adopter, their verdicts neither block nor make an eviction,
//!   their registrations do not count as advertised by a live member, and while one
//!   is still being checked ([`ClusterSnapshot::attestation_pending`]) the daemon
//!   postpones failure evictions rather than decide without it.

mod records;

use crate::model::{Drain, Registration, Status, Tombstone, WorkerId};
use crate::transport::Attestation;
use chitchat::{Chitchat, ChitchatId};
pub use records::{MAX_KEY_SHOWN, NodeRecords, Rejection};
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

/// Liveness of a member as the failure detector sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberState {
    /// Heartbeats arrive.
    Alive,
    /// Suspected dead; its state is kept until the grace period ends.
    Dead,
}

impl MemberState {
    fn cmp_alive_first(&self, other: &MemberState) -> std::cmp::Ordering {
        let rank = |s: &MemberState| u8::from(*s == MemberState::Alive);
        rank(self).cmp(&rank(other))
    }

    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Alive => "alive",
            MemberState::Dead => "dead",
        }
    }
}

/// One member of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its node id.
    pub node_id: String,
    /// Where peers gossip with it.
    pub gossip_addr: SocketAddr,
    /// Alive or dead.
    pub state: MemberState,
    /// Whether it is this node.
    pub is_self: bool,
    /// Registrations it advertises.
    pub workers_owned: usize,
    /// Its probemesh version, if published.
    pub version: Option<String>,
    /// Whether this instance was seen first-hand (always true for this node).
    pub attested: bool,
    /// Why it says it is degraded (SPEC S12), while it does.
    pub degraded: Option<String>,
}

/// A registration advertised by a node.
#[derive(Clone, Debug, PartialEq)]
pub struct Advertised {
    /// The registration, shared with the member's decoded records: a snapshot is
    /// taken on every change of cluster state, and copying every registration into
    /// each one made a burst of W changes cost W x W copies.
    pub reg: Arc<Registration>,
    /// The node advertising it.
    pub by: String,
}

/// One node's verdict on a worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The generation the verdict is about.
    pub generation: u64,
    /// The status.
    pub status: Status,
    /// When that node entered the status, in ms since the Unix epoch.
    pub since_ms: u64,
}

/// One live, attested member other than this node, with every instance of it seen
/// (a restart not yet forgotten shows two), oldest generation first.
#[derive(Clone, Debug)]
struct LivePeer {
    node_id: String,
    /// Whether its newest instance says it is degraded (SPEC S12).
    degraded: bool,
    instances: Vec<Arc<NodeRecords>>,
}

/// A live peer's verdict on one worker ([`ClusterSnapshot::peer_verdicts`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerVerdict<'a> {
    /// The peer's node id.
    pub node: &'a str,
    /// Its verdict (from its newest instance that has one).
    pub verdict: Verdict,
    /// Whether the peer says it is degraded: its verdicts then count for neither
    /// eviction nor fencing (SPEC S12).
    pub degraded: bool,
}

/// One member as copied under chitchat's lock.
#[derive(Debug)]
pub struct RawNode {
    id: ChitchatId,
    version: u64,
    is_self: bool,
    alive: bool,
    attestation: Attestation,
    /// The member's key-values, copied only when its version moved since the cache saw
    /// it.
    changed: Option<Vec<(String, String)>>,
}

/// How a member instance entered a snapshot.
#[derive(Clone, Copy, Debug)]
struct Seen {
    is_self: bool,
    alive: bool,
    attestation: Attestation,
}

impl Seen {
    /// A live peer that counts (attested).
    fn counts(self) -> bool {
        self.alive && !self.is_self && self.attestation == Attestation::Attested
    }
}

/// What a snapshot needs from chitchat, copied quickly under its lock.
#[derive(Debug, Default)]
pub struct RawState {
    nodes: Vec<RawNode>,
}

impl RawNode {
    /// One member instance as a dissemination model sees it (the deterministic
    /// simulator builds snapshots through the same decoder as chitchat's state).
    /// `key_values` is `None` when `cache` already holds this `version`
    /// ([`DecodeCache::holds`]).
    pub fn new(
        id: ChitchatId,
        version: u64,
        is_self: bool,
        alive: bool,
        key_values: Option<Vec<(String, String)>>,
    ) -> RawNode {
        RawNode {
            id,
            version,
            is_self,
            alive: is_self || alive,
            attestation: Attestation::Attested,
            changed: key_values,
        }
    }
}

impl RawState {
    /// A state made of `nodes` (see [`RawNode::new`]).
    pub fn from_nodes(nodes: Vec<RawNode>) -> RawState {
        RawState { nodes }
    }

    /// Copies membership and the key-values of members whose state changed since
    /// `cache` last saw them. Runs under chitchat's lock: copies, never decodes.
    pub fn collect(chitchat: &Chitchat, cache: &DecodeCache) -> RawState {
        let self_id = chitchat.self_chitchat_id().clone();
        let live: HashSet<&ChitchatId> = chitchat.live_nodes().collect();
        let nodes = chitchat
            .node_states()
            .iter()
            .map(|(cid, state)| {
                let version = state.max_version();
                let cached = cache.nodes.get(cid).is_some_and(|(v, _)| *v == version);
                let is_self = *cid == self_id;
                RawNode {
                    id: cid.clone(),
                    version,
                    is_self,
                    alive: is_self || live.contains(cid),
                    attestation: Attestation::Attested,
                    changed: (!cached).then(|| {
                        state
                            .key_values()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect()
                    }),
                }
            })
            .collect();
        RawState { nodes }
    }

    /// Asks `attest` whether each live peer instance was seen first-hand (outside
    /// chitchat's lock: it may queue a check). Without it every instance counts as
    /// attested, as in simulations over chitchat's in-memory transport.
    pub fn attest_with(&mut self, attest: impl Fn(&ChitchatId) -> Attestation) {
        for n in self.nodes.iter_mut().filter(|n| n.alive && !n.is_self) {
            n.attestation = attest(&n.id);
        }
    }
}

/// Decoded records per member and state version, reused while a member's state is
/// unchanged: a change on one member costs decoding that member, not the cluster.
#[derive(Debug, Default)]
pub struct DecodeCache {
    nodes: std::collections::HashMap<ChitchatId, (u64, Arc<NodeRecords>)>,
}

impl DecodeCache {
    /// Whether the records of `id` at `version` are decoded already (its key-values
    /// need not be copied again).
    pub fn holds(&self, id: &ChitchatId, version: u64) -> bool {
        self.nodes.get(id).is_some_and(|(v, _)| *v == version)
    }
}

/// Everything the daemon needs from the cluster state, decoded.
#[derive(Clone, Debug, Default)]
pub struct ClusterSnapshot {
    /// Every member, self included.
    pub members: Vec<Member>,
    /// Per worker, the highest-generation registration any member advertises.
    pub registrations: BTreeMap<WorkerId, Advertised>,
    /// Per worker advertised by at least one live member other than this node, the
    /// newest (generation, revision) those members advertise.
    pub advertised_by_live_peer: BTreeMap<WorkerId, (u64, u64)>,
    /// Per worker, the newest tombstone any member publishes.
    pub tombstones: BTreeMap<WorkerId, Tombstone>,
    /// Per worker, the drain of the highest generation any member publishes (of two
    /// drains of one generation, the one that ends first).
    pub drains: BTreeMap<WorkerId, Drain>,
    /// The live members other than this node, with their decoded records, in chitchat's
    /// order (node id, then generation). Verdicts stay per member instead of being
    /// merged into a worker x node matrix: a snapshot then costs O(members), not
    /// O(members x workers), and snapshots are taken on every change of cluster state.
    /// Only attested instances are kept, and none under this node's own id. Grouped by
    /// node id in [`ClusterSnapshot::finish`] into `peers`.
    live_peers: Vec<(String, Arc<NodeRecords>)>,
    /// The live, attested members other than this node, one per node id, in node id
    /// order: what the per-worker questions (eviction, fencing, views) walk, so each
    /// costs one lookup per member.
    peers: Vec<LivePeer>,
    /// This node's id.
    self_id: Option<String>,
    /// Whether a live peer instance is still being checked (neither attested nor
    /// refuted yet).
    attestation_pending: bool,
    /// Values that failed to decode or validate in this snapshot (dropped).
    pub malformed: u64,
    /// Members whose registrations or tombstones were dropped, with their records.
    rejected_by: Vec<(String, Arc<NodeRecords>)>,
    /// Members publishing records of a newer major format than this build reads
    /// (dropped, not misread; the daemon logs them).
    pub newer_format: std::collections::BTreeSet<String>,
}

impl ClusterSnapshot {
    /// Decodes chitchat's state. Must be called with chitchat's lock held, so keep the
    /// caller's critical section to this call.
    pub fn read(chitchat: &Chitchat) -> ClusterSnapshot {
        ClusterSnapshot::read_cached(chitchat, &mut DecodeCache::default())
    }

    /// Like [`ClusterSnapshot::read`], but decodes only the members whose state changed
    /// since the last call with the same `cache` (the others' records are reused).
    pub fn read_cached(chitchat: &Chitchat, cache: &mut DecodeCache) -> ClusterSnapshot {
        ClusterSnapshot::from_raw(RawState::collect(chitchat, cache), cache)
    }

    /// Builds the snapshot from what [`RawState::collect`] copied under chitchat's lock:
    /// decoding and merging happen outside the lock, so gossip is never held up by them.
    pub fn from_raw(raw: RawState, cache: &mut DecodeCache) -> ClusterSnapshot {
        let mut snap = ClusterSnapshot::default();
        let mut seen: HashSet<ChitchatId> = HashSet::new();
        for node in raw.nodes {
            seen.insert(node.id.clone());
            let records = match node.changed {
                None => match cache.nodes.get(&node.id) {
                    Some((_, r)) => Arc::clone(r),
                    None => continue,
                },
                Some(kvs) => {
                    let r = Arc::new(NodeRecords::decode(
                        kvs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                    ));
                    cache
                        .nodes
                        .insert(node.id.clone(), (node.version, Arc::clone(&r)));
                    r
                }
            };
            let how = Seen {
                is_self: node.is_self,
                alive: node.alive,
                attestation: node.attestation,
            };
            snap.merge(&node.id, &records, how);
        }
        cache.nodes.retain(|cid, _| seen.contains(cid));
        snap.finish();
        snap
    }

    /// Drops what must not count now that every member is merged, and picks one member
    /// row per node id.
    fn finish(&mut self) {
        if let Some(me) = self.self_id.as_deref() {
            // Another instance under this node's id never speaks for this node.
            self.live_peers.retain(|(node, _)| node != me);
        }
        // Instances of one node id are adjacent: chitchat orders them by node id, then
        // generation.
        for (node, records) in std::mem::take(&mut self.live_peers) {
            match self.peers.last_mut() {
                Some(last) if last.node_id == node => {
                    last.degraded = records.degraded.is_some();
                    last.instances.push(records);
                }
                _ => self.peers.push(LivePeer {
                    node_id: node,
                    degraded: records.degraded.is_some(),
                    instances: vec![records],
                }),
            }
        }
        // A restarted node appears twice (old and new generation) until the old state
        // is forgotten; show one member per node id: this node's own instance for its
        // id, else an alive one if any, an attested one first, the oldest generation
        // first (the members come in chitchat's order, and the sort is stable).
        self.members.sort_by(|a, b| {
            a.node_id
                .cmp(&b.node_id)
                .then(b.is_self.cmp(&a.is_self))
                .then(b.state.cmp_alive_first(&a.state))
                .then(b.attested.cmp(&a.attested))
        });
        self.members
            .dedup_by(|later, first| later.node_id == first.node_id);
    }

    fn merge(&mut self, cid: &ChitchatId, r: &Arc<NodeRecords>, how: Seen) {
        let Seen { is_self, alive, .. } = how;
        let by = cid.node_id.to_string();
        if is_self {
            self.self_id = Some(by.clone());
        }
        if alive && !is_self && how.attestation == Attestation::Pending {
            self.attestation_pending = true;
        }
        self.malformed += r.malformed;
        if !r.rejected.is_empty() {
            self.rejected_by.push((by.clone(), Arc::clone(r)));
        }
        if r.newer_format {
            self.newer_format.insert(by.clone());
        }
        for reg in &r.registrations {
            if how.counts() {
                let key = (reg.generation, reg.revision);
                let best = self
                    .advertised_by_live_peer
                    .entry(reg.id.clone())
                    .or_insert(key);
                *best = (*best).max(key);
            }
            // The newest record wins: by generation, then revision, then advertiser id,
            // so every node picks the same one.
            let newer = self.registrations.get(&reg.id).is_none_or(|a| {
                (a.reg.generation, a.reg.revision, a.by.as_str())
                    < (reg.generation, reg.revision, by.as_str())
            });
            if newer {
                self.registrations.insert(
                    reg.id.clone(),
                    Advertised {
                        reg: Arc::clone(reg),
                        by: by.clone(),
                    },
                );
            }
        }
        for t in &r.tombstones {
            if self
                .tombstones
                .get(&t.id)
                .is_none_or(|old| old.generation < t.generation)
            {
                self.tombstones.insert(t.id.clone(), t.clone());
            }
        }
        for d in &r.drains {
            let wins = self.drains.get(&d.id).is_none_or(|old| {
                (old.generation, std::cmp::Reverse(old.ends_at_ms))
                    < (d.generation, std::cmp::Reverse(d.ends_at_ms))
            });
            if wins {
                self.drains.insert(d.id.clone(), d.clone());
            }
        }
        if how.counts() {
            self.live_peers.push((by.clone(), Arc::clone(r)));
        }
        self.members.push(Member {
            node_id: by,
            gossip_addr: cid.gossip_advertise_addr,
            state: if alive {
                MemberState::Alive
            } else {
                MemberState::Dead
            },
            is_self,
            workers_owned: r.registrations.len(),
            version: r.version.clone(),
            attested: is_self || how.attestation == Attestation::Attested,
            degraded: r.degraded.clone(),
        });
    }

    /// The verdicts of the live, attested members other than this node on worker `id`,
    /// by node id. A node seen under two generations (a restart not yet forgotten)
    /// counts once, with the verdict of its newest instance that has one. Nothing under
    /// this node's own id is returned: its own verdict is its local status.
    pub fn verdicts_on(&self, id: &WorkerId) -> BTreeMap<&str, Verdict> {
        self.peer_verdicts(id)
            .map(|p| (p.node, p.verdict))
            .collect()
    }

    /// Like [`ClusterSnapshot::verdicts_on`], in node id order and with each peer's
    /// degraded flag, without building a map: the reconcile step asks this for every
    /// worker in every round.
    pub fn peer_verdicts<'a, 'b>(
        &'a self,
        id: &'b WorkerId,
    ) -> impl Iterator<Item = PeerVerdict<'a>> + use<'a, 'b> {
        self.peers.iter().filter_map(move |p| {
            let verdict = p.instances.iter().rev().find_map(|r| r.verdicts.get(id))?;
            Some(PeerVerdict {
                node: &p.node_id,
                verdict: *verdict,
                degraded: p.degraded,
            })
        })
    }

    /// Every registration and tombstone dropped in this snapshot, with the member that
    /// publishes it. The same records come back in every snapshot while the member
    /// publishes them; [`Rejection::fingerprint`] tells them apart.
    pub fn rejections(&self) -> impl Iterator<Item = (&str, &Rejection)> {
        self.rejected_by
            .iter()
            .flat_map(|(by, r)| r.rejected.iter().map(move |x| (by.as_str(), x)))
    }

    /// Node ids of the live, attested members other than this node (each once).
    pub fn live_peer_ids(&self) -> impl Iterator<Item = &str> {
        self.peers.iter().map(|p| p.node_id.as_str())
    }

    /// How many live, attested members other than this node are not degraded: the
    /// witnesses of the fencing rule (SPEC S12).
    pub fn healthy_peer_count(&self) -> usize {
        self.peers.iter().filter(|p| !p.degraded).count()
    }

    /// Node ids of the live members, self included.
    pub fn live_node_ids(&self) -> impl Iterator<Item = &str> {
        self.members
            .iter()
            .filter(|m| m.state == MemberState::Alive)
            .map(|m| m.node_id.as_str())
    }

    /// Node ids of the live members that were seen first-hand, self included: the
    /// candidates for adoption (SPEC S8). An id invented in relayed state (`"0"`,
    /// which would sort first and never adopt) is not among them.
    pub fn live_attested_node_ids(&self) -> impl Iterator<Item = &str> {
        self.members
            .iter()
            .filter(|m| m.state == MemberState::Alive && m.attested)
            .map(|m| m.node_id.as_str())
    }

    /// Whether a live peer instance is still being checked: decisions that need every
    /// live member's say (failure eviction, S6 b) wait until it is attested or refuted.
    pub fn attestation_pending(&self) -> bool {
        self.attestation_pending
    }
}

#[cfg(test)]
mod tests;
