//! The scuttlebutt reconciliation of chitchat 0.11 (`lib.rs::process_message`,
//! `state.rs::compute_partial_delta_respecting_mtu`), on one node's [`View`]: digests
//! (per member: heartbeat, last GC version, max version), heartbeats reported from
//! digests, and deltas of what is newer than the peer's digest, most stale member
//! first, each member's writes in version order, cut at the message size limit.
//!
//! Sizes are chitchat's serialized sizes **without compression**: chitchat compresses
//! the delta stream with zstd in blocks of 16 KiB, which the model does not (it would
//! cost more CPU than the rest of the model). So the model's bytes are an upper bound
//! of chitchat's, and a delta cut at the limit carries fewer writes than chitchat's
//! would when the values compress (docs/decisions.md).

use super::Mid;
use super::bymid::ByMid;
use super::detector::Detector;
use super::replica::{KvChange, Replica};
use chitchat::ChitchatId;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use tokio::time::Instant;

/// The envelope of every chitchat message: magic number (2), protocol version (1),
/// message type (1).
pub const ENVELOPE: usize = 4;
/// Block header of chitchat's compressed stream (type 1, length 2).
const BLOCK_META: usize = 3;
/// Block size of chitchat's compressed stream.
const BLOCK: usize = 16_384;
/// How many garbage-collected members a node remembers (chitchat's
/// `GARBAGE_COLLECTED_NODE_HISTORY_SIZE`).
const FORGOTTEN_MEMORY: usize = 5_000;

/// One node's picture of the cluster: every member instance's replica (its own
/// included), its failure detector and the members it forgot. Members are named by
/// their [`Mid`] (the model's index of the instance), which compares far faster than
/// a [`ChitchatId`]; where chitchat's order shows (snapshots), the caller sorts by id.
#[derive(Debug)]
pub struct View {
    /// This instance.
    pub me: Mid,
    /// Every known member instance, this one included.
    pub states: ByMid<Replica>,
    /// The failure detector.
    pub detector: Detector,
    /// Forgotten members and their last heartbeat, with the order they were forgotten
    /// in (oldest dropped past [`FORGOTTEN_MEMORY`]).
    forgotten: ByMid<(u64, u64)>,
    forget_counter: u64,
    /// Seed addresses.
    pub seeds: BTreeSet<SocketAddr>,
}

/// A digest entry: heartbeat, last GC version, max version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DigestEntry {
    /// The member's heartbeat.
    pub heartbeat: u64,
    /// Its last GC version.
    pub last_gc_version: u64,
    /// Its max version.
    pub max_version: u64,
}

/// A digest, in member order.
pub type Digest = ByMid<DigestEntry>;

/// One member's part of a delta.
#[derive(Debug)]
pub struct NodeDelta {
    /// The member.
    pub id: Mid,
    /// Writes after this version are included (up to `max`).
    pub from: u64,
    /// The sender's last GC version for the member.
    pub gc: u64,
    /// Highest version covered.
    pub max: u64,
    /// The writes, in version order.
    pub kvs: Vec<KvChange>,
}

/// A member with writes the peer lacks: its id, its replica, the peer's floor.
type Stale<'a> = (Mid, &'a Replica, u64);

/// A delta and its serialized size.
#[derive(Debug, Default)]
pub struct Delta {
    /// Per member.
    pub nodes: Vec<NodeDelta>,
    /// Serialized size (uncompressed).
    pub len: usize,
    /// Key-value writes carried.
    pub writes: usize,
}

/// Serialized size of a chitchat id: node id (2 + len), generation (8), address.
pub fn id_len(id: &ChitchatId) -> usize {
    let addr = match id.gossip_advertise_addr {
        SocketAddr::V4(_) => 1 + 4 + 2,
        SocketAddr::V6(_) => 1 + 16 + 2,
    };
    2 + id.node_id.len() + 8 + addr
}

/// Serialized size of a digest: count (2), then per member its id and three u64.
/// `id_lens[m]` is [`id_len`] of member `m`.
pub fn digest_len(d: &Digest, id_lens: &[usize]) -> usize {
    2 + d.keys().map(|m| id_lens[m] + 24).sum::<usize>()
}

fn kv_len(kv: &KvChange) -> usize {
    // tag, key, value, version, deletion status
    1 + 2 + kv.key.len() + 2 + kv.write.value.as_deref().map_or(0, str::len) + 8 + 1
}

/// Chitchat's size check of the next operation, on uncompressed blocks.
struct Budget {
    mtu: usize,
    bytes: usize,
}

impl Budget {
    fn framed(bytes: usize) -> usize {
        bytes + BLOCK_META * bytes.div_ceil(BLOCK).max(1) + 1
    }

    fn try_add(&mut self, op: usize) -> bool {
        if Budget::framed(self.bytes + op) > self.mtu {
            return false;
        }
        self.bytes += op;
        true
    }
}

impl View {
    /// A node that knows only itself, with `initial` keys set (chitchat sets them, and
    /// one heartbeat, at start).
    pub fn new(
        me: Mid,
        detector: Detector,
        seeds: BTreeSet<SocketAddr>,
        initial: &[(String, String)],
        now: Instant,
    ) -> View {
        let mut own = Replica::default();
        own.heartbeat = 1;
        for (k, v) in initial {
            own.set_own(k.as_str().into(), v.as_str().into(), now);
        }
        let mut states = ByMid::default();
        states.insert(me, own);
        View {
            me,
            states,
            detector,
            forgotten: ByMid::default(),
            forget_counter: 0,
            seeds,
        }
    }

    /// This node's own replica.
    pub fn own_mut(&mut self) -> &mut Replica {
        self.states.entry_or_default(self.me)
    }

    /// One more heartbeat of this node.
    pub fn beat(&mut self) {
        self.own_mut().heartbeat += 1;
    }

    /// The digest this node sends.
    pub fn digest(&self, now: Instant) -> Digest {
        let hidden = self.detector.scheduled_for_deletion(now);
        let mut d = ByMid::with_room(self.states.room());
        for (id, r) in self.states.iter() {
            if !hidden.contains(id) {
                d.insert(
                    id,
                    DigestEntry {
                        heartbeat: r.heartbeat,
                        last_gc_version: r.last_gc_version,
                        max_version: r.max_version,
                    },
                );
            }
        }
        d
    }

    /// Learns members and heartbeats from a peer's digest (chitchat's
    /// `report_heartbeats_in_digest`): unknown members get an empty state, unless they
    /// were forgotten with a heartbeat at least as high.
    pub fn report_heartbeats(&mut self, digest: &Digest, now: Instant) {
        for (id, entry) in digest.iter() {
            if id == self.me {
                continue;
            }
            let init = self
                .forgotten
                .get(id)
                .is_none_or(|(hb, _)| *hb < entry.heartbeat);
            let r = if init {
                if !self.states.contains(id) {
                    self.forgotten.remove(id);
                }
                self.states.entry_or_default(id)
            } else if let Some(r) = self.states.get_mut(id) {
                r
            } else {
                continue;
            };
            let advanced = if r.heartbeat == 0 {
                r.heartbeat = entry.heartbeat;
                false
            } else if entry.heartbeat > r.heartbeat {
                r.heartbeat = entry.heartbeat;
                true
            } else {
                false
            };
            if advanced {
                self.detector.report(id, now);
            }
        }
    }

    /// What this node has that `digest` lacks, within `mtu` bytes.
    pub fn delta(
        &self,
        digest: &Digest,
        mtu: usize,
        id_lens: &[usize],
        rng: &mut StdRng,
        now: Instant,
    ) -> Delta {
        let hidden = self.detector.scheduled_for_deletion(now);
        // (unknown to the peer, priority) → members; iterated highest first.
        let mut buckets: BTreeMap<(bool, u64), Vec<Stale<'_>>> = BTreeMap::new();
        for (id, r) in self.states.iter() {
            if hidden.contains(id) {
                continue;
            }
            let (d_gc, d_max) = digest
                .get(id)
                .map_or((0, 0), |e| (e.last_gc_version, e.max_version));
            if r.max_version <= d_max {
                continue;
            }
            let reset = d_gc < r.last_gc_version && d_max < r.last_gc_version;
            let floor = if reset { 0 } else { d_max };
            if r.max_version <= floor {
                continue;
            }
            // Unknown members first, the lowest max version first; then the member
            // with the most stale writes (chitchat's `Staleness` order).
            let key = if floor == 0 {
                (true, u64::MAX - r.max_version)
            } else {
                (false, r.stale_count(floor) as u64)
            };
            buckets.entry(key).or_default().push((id, r, floor));
        }
        let mut budget = Budget { mtu, bytes: 0 };
        let mut delta = Delta::default();
        'members: for bucket in buckets.values_mut().rev() {
            bucket.shuffle(rng);
            for (id, r, floor) in bucket.iter() {
                if !budget.try_add(1 + id_lens[*id] + 8 + 8) {
                    break 'members;
                }
                let mut nd = NodeDelta {
                    id: *id,
                    from: *floor,
                    gc: r.last_gc_version,
                    max: 0,
                    kvs: Vec::new(),
                };
                let mut full = false;
                for kv in r.stale_since(*floor) {
                    if !budget.try_add(kv_len(&kv)) {
                        full = true;
                        break;
                    }
                    nd.max = kv.write.version;
                    nd.kvs.push(kv);
                }
                if nd.kvs.is_empty() && !full && budget.try_add(1 + 8) {
                    nd.max = r.max_version;
                }
                delta.writes += nd.kvs.len();
                delta.nodes.push(nd);
                if full {
                    break 'members;
                }
            }
        }
        delta.len = Budget::framed(budget.bytes);
        delta
    }

    /// Applies a peer's delta to the members this node knows; returns whether a live
    /// key changed (chitchat's key-change listeners fire then).
    pub fn apply(&mut self, delta: Delta, now: Instant) -> bool {
        let mut changed = false;
        for nd in delta.nodes {
            if let Some(r) = self.states.get_mut(nd.id) {
                let (_, live) = r.apply_delta(nd.from, nd.gc, nd.max, nd.kvs, now);
                changed |= live;
            }
        }
        changed
    }

    /// Re-evaluates every member's liveness and forgets those dead past the grace
    /// period (chitchat's `update_nodes_liveness`). Returns the forgotten instances.
    pub fn update_liveness(&mut self, now: Instant) -> Vec<Mid> {
        let others: Vec<Mid> = self.states.keys().filter(|id| *id != self.me).collect();
        for id in others {
            self.detector.update(id, now);
        }
        let gone = self.detector.garbage_collect(now);
        for id in &gone {
            if *id == self.me {
                continue;
            }
            if let Some(r) = self.states.remove(*id) {
                self.forget_counter += 1;
                self.forgotten
                    .insert(*id, (r.heartbeat, self.forget_counter));
                if self.forgotten.len() > FORGOTTEN_MEMORY
                    && let Some(oldest) = self
                        .forgotten
                        .iter()
                        .min_by_key(|(_, (_, n))| *n)
                        .map(|(id, _)| id)
                {
                    self.forgotten.remove(oldest);
                }
            }
        }
        gone
    }
}
