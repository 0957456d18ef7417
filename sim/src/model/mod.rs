//! A seeded model of chitchat's scuttlebutt, in virtual time.
//!
//! - [`replica`]: one member's versioned key-values as one node holds them;
//! - [`detector`]: the phi-accrual failure detector, configured as the daemon does;
//! - [`exchange`]: digests, heartbeats, deltas cut at the message size limit;
//! - [`source`]: a node's [`probemesh_gossip::source::ClusterSource`] over the model.
//!
//! One task (the driver, [`Network::run`]) fires each running instance's gossip round
//! every interval, from the instant it joined, in (time, instance) order. A round does
//! what chitchat's `gossip_multiple` does: pick up to 3 live peers (any known peer
//! while none is live), maybe a dead one and a seed, with one seeded `StdRng`; beat;
//! forget old deletions; run a SYN / SYN-ACK / ACK exchange with each pick; update
//! liveness. An exchange is atomic (the in-memory transport delivers in microseconds,
//! far below a round). Peers are picked among the members the node knows, as chitchat
//! does; a cut link drops the messages (the SYN is still counted as sent, as chitchat's
//! `ChannelTransport` counts it).

pub mod bymid;
pub mod detector;
pub mod exchange;
pub mod replica;
pub mod source;

use chitchat::{ChitchatId, FailureDetectorConfig};
use exchange::{ENVELOPE, View, digest_len};
use rand::Rng;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::IteratorRandom;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use source::ModelSource;

/// A member instance, by its index in the model (every instance that ever joined).
pub type Mid = usize;

/// chitchat's message size limit (`MAX_UDP_DATAGRAM_PAYLOAD_SIZE`).
pub const MTU: usize = 65_507;
/// Peers picked per round (chitchat's `GOSSIP_COUNT`).
pub const FANOUT: usize = 3;

/// The model's settings.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    /// Gossip round interval.
    pub interval: Duration,
    /// How long a dead member's state is kept.
    pub dead_node_grace: Duration,
    /// Largest message.
    pub mtu: usize,
    /// Peers per round.
    pub fanout: usize,
    /// Cluster id (its length is part of every SYN).
    pub cluster_id: String,
}

impl ModelConfig {
    /// The daemon's settings for `interval` and `grace`.
    pub fn new(interval: Duration, dead_node_grace: Duration) -> ModelConfig {
        ModelConfig {
            interval,
            dead_node_grace,
            mtu: MTU,
            fanout: FANOUT,
            cluster_id: "sim".into(),
        }
    }

    fn detector(&self) -> FailureDetectorConfig {
        probemesh_gossip::node::failure_detector(self.interval, self.dead_node_grace)
    }

    /// How long deleted keys are remembered (as `gossip::node::spawn_gossip` sets it).
    fn deletion_grace(&self) -> Duration {
        self.dead_node_grace.max(Duration::from_secs(60))
    }
}

/// Bytes and messages of one node (all its instances).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Bytes sent.
    pub sent: u64,
    /// Bytes received.
    pub received: u64,
    /// Messages sent.
    pub messages: u64,
    /// Of the bytes sent, those of digests.
    pub digest: u64,
    /// Of the bytes sent, those of deltas.
    pub delta: u64,
    /// Key-value writes sent in deltas.
    pub writes: u64,
}

/// What the model holds, for memory accounting.
#[derive(Clone, Copy, Debug, Default)]
pub struct Footprint {
    /// Member replicas over all running instances.
    pub replicas: usize,
    /// Key entries (deleted ones included) over all replicas.
    pub entries: usize,
}

struct Instance {
    view: View,
    running: bool,
    next_tick: Instant,
    changed: Arc<Notify>,
}

/// Everything the model holds, behind one lock.
pub(crate) struct World {
    config: ModelConfig,
    rng: StdRng,
    /// By [`Mid`].
    instances: Vec<Instance>,
    /// Each instance's chitchat id, by [`Mid`].
    ids: Vec<ChitchatId>,
    /// Each id's serialized size ([`exchange::id_len`]), by [`Mid`].
    id_lens: Vec<usize>,
    /// The running instance listening on each address.
    by_addr: BTreeMap<SocketAddr, usize>,
    /// Cut links, as (lower, higher) address pairs.
    cut: BTreeSet<(SocketAddr, SocketAddr)>,
    /// By [`Mid`].
    traffic: Vec<Traffic>,
}

/// The model's shared handle.
#[derive(Clone)]
pub struct Network {
    world: Arc<Mutex<World>>,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network").finish_non_exhaustive()
    }
}

fn pair(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    if a <= b { (a, b) } else { (b, a) }
}

impl Network {
    /// An empty network whose choices come from `seed`.
    pub fn new(config: ModelConfig, seed: u64) -> Network {
        Network {
            world: Arc::new(Mutex::new(World {
                config,
                rng: StdRng::seed_from_u64(seed),
                instances: Vec::new(),
                ids: Vec::new(),
                id_lens: Vec::new(),
                by_addr: BTreeMap::new(),
                cut: BTreeSet::new(),
                traffic: Vec::new(),
            })),
            wake: Arc::new(Notify::new()),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts an instance `id` with `seeds` and `initial` keys; its first round is at
    /// once, as chitchat's first tick (it knows only its seeds then).
    pub fn join(
        &self,
        id: ChitchatId,
        seeds: Vec<SocketAddr>,
        initial: &[(String, String)],
        verdict_hold: std::time::Duration,
    ) -> ModelSource {
        let now = Instant::now();
        let mut w = self.lock();
        let seeds: BTreeSet<SocketAddr> = seeds
            .into_iter()
            .filter(|a| *a != id.gossip_advertise_addr)
            .collect();
        let index = w.instances.len();
        let view = View::new(
            index,
            detector::Detector::new(w.config.detector()),
            seeds,
            initial,
            now,
        );
        let changed = Arc::new(Notify::new());
        w.ids.push(id.clone());
        w.traffic.push(Traffic::default());
        w.id_lens.push(exchange::id_len(&id));
        w.instances.push(Instance {
            view,
            running: true,
            next_tick: now,
            changed: Arc::clone(&changed),
        });
        w.by_addr.insert(id.gossip_advertise_addr, index);
        drop(w);
        self.wake.notify_one();
        ModelSource::new(self.clone(), index, id, changed, verdict_hold)
    }

    /// The instance listening on `addr` stops, as a crash (no goodbye).
    pub fn crash(&self, addr: SocketAddr) {
        let mut w = self.lock();
        if let Some(i) = w.by_addr.remove(&addr) {
            w.instances[i].running = false;
        }
    }

    /// Cuts the link between `a` and `b`, both ways.
    pub fn cut(&self, a: SocketAddr, b: SocketAddr) {
        self.lock().cut.insert(pair(a, b));
    }

    /// Restores the link between `a` and `b`.
    pub fn heal(&self, a: SocketAddr, b: SocketAddr) {
        self.lock().cut.remove(&pair(a, b));
    }

    /// Bytes and messages per node id (all its instances).
    pub fn traffic(&self) -> BTreeMap<String, Traffic> {
        let w = self.lock();
        let mut out: BTreeMap<String, Traffic> = BTreeMap::new();
        for (id, t) in w.ids.iter().zip(&w.traffic) {
            let sum = out.entry(id.node_id.to_string()).or_default();
            sum.sent += t.sent;
            sum.received += t.received;
            sum.messages += t.messages;
            sum.digest += t.digest;
            sum.delta += t.delta;
            sum.writes += t.writes;
        }
        out
    }

    /// What the running instances hold.
    pub fn footprint(&self) -> Footprint {
        let w = self.lock();
        let mut f = Footprint::default();
        for inst in w.instances.iter().filter(|i| i.running) {
            f.replicas += inst.view.states.len();
            f.entries += inst
                .view
                .states
                .values()
                .map(|r| r.entries())
                .sum::<usize>();
        }
        f
    }

    /// Runs the gossip rounds until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        loop {
            let next = self.lock().next_due();
            tokio::select! {
                biased;
                () = stop.cancelled() => return,
                () = self.wake.notified() => {}
                () = sleep_until(next) => {
                    let now = Instant::now();
                    self.lock().tick_due(now);
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl World {
    fn next_due(&self) -> Option<Instant> {
        self.instances
            .iter()
            .filter(|i| i.running)
            .map(|i| i.next_tick)
            .min()
    }

    fn tick_due(&mut self, now: Instant) {
        let mut due: Vec<(Instant, usize)> = self
            .instances
            .iter()
            .enumerate()
            .filter(|(_, i)| i.running && i.next_tick <= now)
            .map(|(n, i)| (i.next_tick, n))
            .collect();
        due.sort();
        for (_, i) in due {
            // A peer's round earlier in this batch may not stop this one.
            if !self.instances[i].running {
                continue;
            }
            self.round(i, now);
            let interval = self.config.interval;
            let inst = &mut self.instances[i];
            while inst.next_tick <= now {
                inst.next_tick += interval;
            }
        }
    }

    fn traffic_of(&mut self, i: usize) -> &mut Traffic {
        &mut self.traffic[i]
    }

    /// One gossip round of instance `i` (chitchat's `gossip_multiple`).
    fn round(&mut self, i: usize, now: Instant) {
        let view = &self.instances[i].view;
        let me = view.me;
        let ids = &self.ids;
        let addr_of = |m: Mid| ids[m].gossip_advertise_addr;
        let peers: BTreeSet<SocketAddr> = view
            .states
            .keys()
            .filter(|id| *id != me)
            .map(addr_of)
            .collect();
        let live: BTreeSet<SocketAddr> = view.detector.live().map(addr_of).collect();
        let dead: BTreeSet<SocketAddr> = view.detector.dead().map(addr_of).collect();
        let seeds = view.seeds.clone();
        let pool = if live.is_empty() { &peers } else { &live };
        let fanout = self.config.fanout;
        let mut targets: Vec<SocketAddr> =
            pool.iter().copied().choose_multiple(&mut self.rng, fanout);
        targets.sort();
        let with_seed = targets.iter().any(|a| seeds.contains(a));
        let p_dead = dead.len() as f64 / (live.len() + 1) as f64;
        if p_dead > self.rng.random::<f64>()
            && let Some(d) = dead.iter().copied().choose(&mut self.rng)
        {
            targets.push(d);
        }
        if !with_seed || live.len() < seeds.len() {
            let p_seed = seeds.len() as f64 / (live.len() + dead.len()).max(1) as f64;
            if (live.is_empty() || self.rng.random::<f64>() <= p_seed)
                && let Some(s) = seeds.iter().copied().choose(&mut self.rng)
            {
                targets.push(s);
            }
        }
        let grace = self.config.deletion_grace();
        let view = &mut self.instances[i].view;
        view.beat();
        for r in view.states.values_mut() {
            r.gc_deleted(grace, now);
        }
        for to in targets {
            self.exchange(i, to, now);
        }
        self.instances[i].view.update_liveness(now);
    }

    /// One SYN / SYN-ACK / ACK exchange from instance `a` to whoever listens on `to`.
    fn exchange(&mut self, a: usize, to: SocketAddr, now: Instant) {
        let digest_a = self.instances[a].view.digest(now);
        let da_len = digest_len(&digest_a, &self.id_lens);
        let syn = ENVELOPE + da_len + 2 + self.config.cluster_id.len();
        let from = self.ids[a].gossip_advertise_addr;
        let t = self.traffic_of(a);
        t.sent += syn as u64;
        t.digest += da_len as u64;
        t.messages += 1;
        let Some(&b) = self.by_addr.get(&to) else {
            return;
        };
        if b == a || self.cut.contains(&pair(from, to)) {
            return;
        }
        self.traffic_of(b).received += syn as u64;
        let mtu = self.config.mtu;
        let World {
            instances,
            id_lens: lens,
            rng,
            ..
        } = self;
        let (va, vb) = two_views(instances, a, b);
        // B answers the SYN.
        vb.beat();
        vb.report_heartbeats(&digest_a, now);
        let digest_b = vb.digest(now);
        let db_len = digest_len(&digest_b, lens);
        let delta_ba = vb.delta(&digest_a, mtu - 1 - db_len, lens, rng, now);
        let synack = ENVELOPE + db_len + delta_ba.len;
        let (ba_len, ba_writes) = (delta_ba.len, delta_ba.writes);
        // A takes the SYN-ACK and answers with an ACK.
        va.beat();
        va.report_heartbeats(&digest_b, now);
        let a_changed = va.apply(delta_ba, now);
        let delta_ab = va.delta(&digest_b, mtu - 1, lens, rng, now);
        let ack = ENVELOPE + delta_ab.len;
        let (ab_len, ab_writes) = (delta_ab.len, delta_ab.writes);
        // B takes the ACK.
        vb.beat();
        let b_changed = vb.apply(delta_ab, now);
        if a_changed {
            self.instances[a].changed.notify_one();
        }
        if b_changed {
            self.instances[b].changed.notify_one();
        }
        let tb = self.traffic_of(b);
        tb.sent += synack as u64;
        tb.messages += 1;
        tb.digest += db_len as u64;
        tb.delta += ba_len as u64;
        tb.writes += ba_writes as u64;
        tb.received += ack as u64;
        let ta = self.traffic_of(a);
        ta.received += synack as u64;
        ta.sent += ack as u64;
        ta.messages += 1;
        ta.delta += ab_len as u64;
        ta.writes += ab_writes as u64;
    }
}

fn two_views(instances: &mut [Instance], a: usize, b: usize) -> (&mut View, &mut View) {
    if a < b {
        let (l, r) = instances.split_at_mut(b);
        (&mut l[a].view, &mut r[0].view)
    } else {
        let (l, r) = instances.split_at_mut(a);
        (&mut r[0].view, &mut l[b].view)
    }
}
