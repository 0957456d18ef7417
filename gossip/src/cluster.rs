//! A read-only picture of the cluster taken from chitchat's state: who is a member,
//! which registrations each node advertises, and each node's verdicts. The daemon
//! reconciles its local view against it.

use crate::keys::{self, REG_PREFIX, STATUS_PREFIX, TOMB_PREFIX, VERSION_KEY};
use crate::model::{Registration, Status, Tombstone, WorkerId};
use chitchat::{Chitchat, ChitchatId};
use std::collections::{BTreeMap, HashMap, HashSet};
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

/// A registration or tombstone a member publishes that was dropped: it does not
/// decode, or fails validation (SPEC S11). Kept so the daemon can count and log each
/// one once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The chitchat key, cut to [`MAX_KEY_SHOWN`] characters.
    pub key: String,
    /// A hash of the key and the value: a new value under the same key is a new record.
    pub fingerprint: u64,
    /// A bounded label for metrics ([`keys::ValueError::reason`]).
    pub reason: &'static str,
    /// Why, for the log (bounded; input in it is escaped).
    pub error: String,
}

/// Longest key quoted in a [`Rejection`].
pub const MAX_KEY_SHOWN: usize = 64;

impl Rejection {
    fn new(key: &str, value: &str, e: &keys::ValueError) -> Rejection {
        use std::hash::{Hash, Hasher};
        // DefaultHasher::new() has fixed keys: the same record hashes the same in every
        // snapshot, which is all the daemon's "already reported" set needs.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        value.hash(&mut h);
        Rejection {
            key: key
                .chars()
                .take(MAX_KEY_SHOWN)
                .flat_map(char::escape_debug)
                .collect(),
            fingerprint: h.finish(),
            reason: e.reason(),
            error: e.to_string(),
        }
    }
}

/// One member's records, decoded once per version of its state.
#[derive(Debug, Default)]
pub struct NodeRecords {
    registrations: Vec<Registration>,
    tombstones: Vec<Tombstone>,
    verdicts: HashMap<WorkerId, Verdict>,
    malformed: u64,
    rejected: Vec<Rejection>,
    newer_format: bool,
    version: Option<String>,
}

impl NodeRecords {
    fn decode<'a>(key_values: impl Iterator<Item = (&'a str, &'a str)>) -> NodeRecords {
        let mut r = NodeRecords::default();
        for (key, value) in key_values {
            if key == VERSION_KEY {
                r.version = Some(value.to_string());
                continue;
            }
            if let Some(id) = key.strip_prefix(REG_PREFIX) {
                match keys::decode_registration(id, value) {
                    Ok(reg) => r.registrations.push(reg),
                    Err(e) => r.note_bad(key, value, &e),
                }
            } else if let Some(id) = key.strip_prefix(TOMB_PREFIX) {
                match keys::decode_tombstone(id, value) {
                    Ok(t) => r.tombstones.push(t),
                    Err(e) => r.note_bad(key, value, &e),
                }
            } else if let Some(id) = key.strip_prefix(STATUS_PREFIX) {
                match (WorkerId::parse(id), keys::decode_status(value)) {
                    (Some(wid), Ok((generation, status, since_ms))) => {
                        r.verdicts.insert(
                            wid,
                            Verdict {
                                generation,
                                status,
                                since_ms,
                            },
                        );
                    }
                    _ => r.malformed += 1,
                }
            }
        }
        r
    }

    fn note_bad(&mut self, key: &str, value: &str, e: &keys::ValueError) {
        self.malformed += 1;
        self.rejected.push(Rejection::new(key, value, e));
        if matches!(
            e,
            keys::ValueError::Codec(crate::codec::CodecError::NewerMajor { .. })
        ) {
            self.newer_format = true;
        }
    }
}

/// One member as copied under chitchat's lock.
#[derive(Debug)]
pub struct RawNode {
    id: ChitchatId,
    version: u64,
    is_self: bool,
    alive: bool,
    /// The member's key-values, copied only when its version moved since the cache saw
    /// it.
    changed: Option<Vec<(String, String)>>,
}

/// What a snapshot needs from chitchat, copied quickly under its lock.
#[derive(Debug, Default)]
pub struct RawState {
    nodes: Vec<RawNode>,
}

impl RawState {
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
}

/// Decoded records per member and state version, reused while a member's state is
/// unchanged: a change on one member costs decoding that member, not the cluster.
#[derive(Debug, Default)]
pub struct DecodeCache {
    nodes: std::collections::HashMap<ChitchatId, (u64, Arc<NodeRecords>)>,
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
    /// The live members other than this node, with their decoded records, in chitchat's
    /// order (node id, then generation). Verdicts stay per member instead of being
    /// merged into a worker x node matrix: a snapshot then costs O(members), not
    /// O(members x workers), and snapshots are taken on every change of cluster state.
    live_peers: Vec<(String, Arc<NodeRecords>)>,
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
            snap.merge(&node.id, &records, node.is_self, node.alive);
        }
        cache.nodes.retain(|cid, _| seen.contains(cid));
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

    fn merge(&mut self, cid: &ChitchatId, r: &Arc<NodeRecords>, is_self: bool, alive: bool) {
        let by = cid.node_id.to_string();
        self.malformed += r.malformed;
        if !r.rejected.is_empty() {
            self.rejected_by.push((by.clone(), Arc::clone(r)));
        }
        if r.newer_format {
            self.newer_format.insert(by.clone());
        }
        for reg in &r.registrations {
            if alive && !is_self {
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
                        reg: reg.clone(),
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
        if alive && !is_self {
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
        });
    }

    /// The verdicts of the live members other than this node on worker `id`, by node
    /// id. A node seen under two generations (a restart not yet forgotten) counts once,
    /// with the verdict of its newest instance that has one.
    pub fn verdicts_on(&self, id: &WorkerId) -> BTreeMap<&str, Verdict> {
        let mut by_node = BTreeMap::new();
        for (node, records) in &self.live_peers {
            if let Some(v) = records.verdicts.get(id) {
                by_node.insert(node.as_str(), *v);
            }
        }
        by_node
    }

    /// Every registration and tombstone dropped in this snapshot, with the member that
    /// publishes it. The same records come back in every snapshot while the member
    /// publishes them; [`Rejection::fingerprint`] tells them apart.
    pub fn rejections(&self) -> impl Iterator<Item = (&str, &Rejection)> {
        self.rejected_by
            .iter()
            .flat_map(|(by, r)| r.rejected.iter().map(move |x| (by.as_str(), x)))
    }

    /// Node ids of the live members, self included.
    pub fn live_node_ids(&self) -> impl Iterator<Item = &str> {
        self.members
            .iter()
            .filter(|m| m.state == MemberState::Alive)
            .map(|m| m.node_id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(node: &str, generation: u64) -> ChitchatId {
        ChitchatId::new(
            node.to_string(),
            generation,
            "127.0.0.1:7800".parse().unwrap(),
        )
    }

    fn records(verdicts: &[(&WorkerId, Status)]) -> Arc<NodeRecords> {
        Arc::new(NodeRecords {
            verdicts: verdicts
                .iter()
                .map(|(w, status)| {
                    (
                        (*w).clone(),
                        Verdict {
                            generation: 1,
                            status: *status,
                            since_ms: 5,
                        },
                    )
                })
                .collect(),
            ..NodeRecords::default()
        })
    }

    #[test]
    fn invalid_records_are_dropped_and_reported_with_a_stable_fingerprint() {
        use crate::model::{WorkerSpec, WorkerUrl};
        let url = WorkerUrl::parse("http://10.0.0.1:8000").unwrap();
        let mut reg = Registration {
            id: url.id(),
            generation: 1,
            owner: "rogue".into(),
            registered_at_ms: 0,
            revision: 0,
            spec: WorkerSpec::new(url),
        };
        let good = keys::encode_registration(&reg).unwrap();
        reg.spec.health.interval_ms = Some(0);
        let bad = keys::encode_registration(&reg).unwrap();
        let key = keys::reg_key(&reg.id);
        let decode =
            |v: &str| NodeRecords::decode([(key.as_str(), v), ("tomb:zz", "!!")].into_iter());
        let ok = decode(&good);
        assert_eq!(ok.registrations.len(), 1);
        assert_eq!(ok.rejected.len(), 1, "the broken tombstone");
        let r = decode(&bad);
        assert!(r.registrations.is_empty(), "an invalid record is dropped");
        assert_eq!(r.malformed, 2);
        let reasons: Vec<&str> = r.rejected.iter().map(|x| x.reason).collect();
        assert_eq!(reasons, ["health_interval", "base64"]);
        assert_eq!(
            decode(&bad).rejected,
            r.rejected,
            "same record, same fingerprint"
        );
        assert_ne!(r.rejected[0].fingerprint, ok.rejected[0].fingerprint);
        let mut snap = ClusterSnapshot::default();
        snap.merge(&id("rogue", 1), &Arc::new(r), false, true);
        assert!(snap.registrations.is_empty());
        let seen: Vec<(&str, &str)> = snap.rejections().map(|(by, x)| (by, x.reason)).collect();
        assert_eq!(seen, [("rogue", "health_interval"), ("rogue", "base64")]);
    }

    #[test]
    fn verdicts_come_from_live_peers_only_one_per_node() {
        let w = WorkerId::parse("00000000000000aa").unwrap();
        let other = WorkerId::parse("00000000000000bb").unwrap();
        let mut snap = ClusterSnapshot::default();
        // Self and dead members do not count; a restarted node (two generations) counts
        // once, with its newest instance's verdict when that one has one.
        snap.merge(&id("a", 1), &records(&[(&w, Status::Ready)]), true, true);
        snap.merge(&id("b", 1), &records(&[(&w, Status::Failed)]), false, true);
        snap.merge(&id("b", 2), &records(&[(&w, Status::Ready)]), false, true);
        snap.merge(
            &id("c", 1),
            &records(&[(&w, Status::Pending)]),
            false,
            false,
        );
        snap.merge(
            &id("d", 1),
            &records(&[(&w, Status::NotReady)]),
            false,
            true,
        );
        snap.merge(
            &id("e", 1),
            &records(&[(&other, Status::Ready)]),
            false,
            true,
        );
        let seen: Vec<(&str, Status)> = snap
            .verdicts_on(&w)
            .into_iter()
            .map(|(node, v)| (node, v.status))
            .collect();
        assert_eq!(seen, [("b", Status::Ready), ("d", Status::NotReady)]);
        assert!(
            snap.verdicts_on(&WorkerId::parse("00000000000000cc").unwrap())
                .is_empty()
        );
    }
}
