//! A read-only picture of the cluster taken from chitchat's state: who is a member,
//! which registrations each node advertises, and each node's verdicts. The daemon
//! reconciles its local view against it.

use crate::keys::{self, REG_PREFIX, STATUS_PREFIX, TOMB_PREFIX, VERSION_KEY};
use crate::model::{Registration, Status, Tombstone, WorkerId};
use chitchat::{Chitchat, ChitchatId};
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;

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
}

/// A registration advertised by a node.
#[derive(Clone, Debug, PartialEq)]
pub struct Advertised {
    /// The registration.
    pub reg: Registration,
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
    /// Per worker, per live member (self excluded), its verdict.
    pub verdicts: BTreeMap<WorkerId, BTreeMap<String, Verdict>>,
    /// Values that failed to decode in this snapshot (dropped).
    pub malformed: u64,
    /// Members publishing records of a newer major format than this build reads
    /// (dropped, not misread; the daemon logs them).
    pub newer_format: std::collections::BTreeSet<String>,
}

impl ClusterSnapshot {
    fn note_bad(&mut self, e: &keys::ValueError, node: &str) {
        self.malformed += 1;
        if matches!(
            e,
            keys::ValueError::Codec(crate::codec::CodecError::NewerMajor { .. })
        ) {
            self.newer_format.insert(node.to_string());
        }
    }

    /// Decodes chitchat's state. Must be called with chitchat's lock held, so keep the
    /// caller's critical section to this call.
    pub fn read(chitchat: &Chitchat) -> ClusterSnapshot {
        let self_id = chitchat.self_chitchat_id().clone();
        let live: HashSet<&ChitchatId> = chitchat.live_nodes().collect();
        let mut snap = ClusterSnapshot::default();
        for (cid, state) in chitchat.node_states() {
            let is_self = *cid == self_id;
            let alive = is_self || live.contains(cid);
            let mut owned = 0;
            for (key, value) in state.key_values() {
                if let Some(id) = key.strip_prefix(REG_PREFIX) {
                    match keys::decode_registration(id, value) {
                        Ok(reg) => {
                            owned += 1;
                            if alive && !is_self {
                                let key = (reg.generation, reg.revision);
                                let best = snap
                                    .advertised_by_live_peer
                                    .entry(reg.id.clone())
                                    .or_insert(key);
                                *best = (*best).max(key);
                            }
                            // The newest record wins: by generation, then revision, then
                            // advertiser id, so every node picks the same one.
                            let rank = |r: &Registration, by: &str| {
                                (r.generation, r.revision, by.to_string())
                            };
                            let newer = snap
                                .registrations
                                .get(&reg.id)
                                .is_none_or(|a| rank(&a.reg, &a.by) < rank(&reg, &cid.node_id));
                            if newer {
                                snap.registrations.insert(
                                    reg.id.clone(),
                                    Advertised {
                                        reg,
                                        by: cid.node_id.to_string(),
                                    },
                                );
                            }
                        }
                        Err(e) => snap.note_bad(&e, &cid.node_id),
                    }
                } else if let Some(id) = key.strip_prefix(TOMB_PREFIX) {
                    match keys::decode_tombstone(id, value) {
                        Ok(t) => {
                            if snap
                                .tombstones
                                .get(&t.id)
                                .is_none_or(|old| old.generation < t.generation)
                            {
                                snap.tombstones.insert(t.id.clone(), t);
                            }
                        }
                        Err(e) => snap.note_bad(&e, &cid.node_id),
                    }
                } else if let Some(id) = key.strip_prefix(STATUS_PREFIX) {
                    if is_self || !alive {
                        continue;
                    }
                    match (WorkerId::parse(id), keys::decode_status(value)) {
                        (Some(wid), Ok((generation, status, since_ms))) => {
                            snap.verdicts.entry(wid).or_default().insert(
                                cid.node_id.to_string(),
                                Verdict {
                                    generation,
                                    status,
                                    since_ms,
                                },
                            );
                        }
                        _ => snap.malformed += 1,
                    }
                }
            }
            snap.members.push(Member {
                node_id: cid.node_id.to_string(),
                gossip_addr: cid.gossip_advertise_addr,
                state: if alive {
                    MemberState::Alive
                } else {
                    MemberState::Dead
                },
                is_self,
                workers_owned: owned,
                version: state.get(VERSION_KEY).map(str::to_string),
            });
        }
        // A restarted node appears twice (old and new generation) until the old state
        // is forgotten; show one member per node id, alive if any instance is.
        snap.members.sort_by(|a, b| {
            a.node_id
                .cmp(&b.node_id)
                .then(b.state.cmp_alive_first(&a.state))
        });
        snap.members
            .dedup_by(|later, first| later.node_id == first.node_id);
        snap
    }

    /// Node ids of the live members, self included.
    pub fn live_node_ids(&self) -> impl Iterator<Item = &str> {
        self.members
            .iter()
            .filter(|m| m.state == MemberState::Alive)
            .map(|m| m.node_id.as_str())
    }
}
