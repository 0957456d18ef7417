//! One live process per node id (SPEC S10): telling a second process with this node's
//! id from an earlier incarnation of this node, and deciding which one steps back.
//!
//! chitchat keys state by (node id, generation, gossip address), so a second process
//! with the same id shows up as another instance under this node's id. So does the
//! state of this node's previous run, until it is forgotten. The two differ in one
//! observable way: a dead process's heartbeat stands still, a live one's advances with
//! every gossip round. The rules ([`IdentityGuard`]):
//!
//! - An instance at this node's own gossip address is an earlier run of this node (two
//!   live processes cannot share one address), never a rival.
//! - An instance elsewhere whose heartbeat this node saw advance [`RIVAL_ADVANCES`]
//!   times is a **rival**: a live process with this node's id (two hosts with the same
//!   host name as their default id, or someone holding this node's certificate).
//! - Until it has **joined**, a node publishes nothing of its own (no registrations,
//!   verdicts or tombstones): it has heard from a peer and then watched
//!   [`SETTLE_ROUNDS`] gossip rounds go by, or it has no seeds, or no peer answered in
//!   [`ALONE_ROUNDS`] rounds. Until [`JOIN_WINDOW`] after joining, a rival that started
//!   earlier (smaller generation, then smaller address) makes this node **refuse**
//!   itself: it reports not ready with the reason, keeps heartbeating for
//!   [`REFUSED_LINGER_ROUNDS`] rounds so that the rival sees and reports it, and
//!   leaves gossip. A rival that
//!   started later is left to refuse itself.
//! - After the join window a node is **established** and never steps back: a rival is
//!   logged as an error while it lasts, whatever generation it claims (an impostor can
//!   claim any), so an impostor cannot push an established node out.
//!
//! The rules need no agreement between the two processes; each decides from what it
//! sees, and the generations (start times) break ties the same way on both sides.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Heartbeat advances that make another instance under this node's id a live rival.
pub const RIVAL_ADVANCES: u32 = 2;
/// Gossip rounds a node watches after first hearing from a peer before it joins.
pub const SETTLE_ROUNDS: u32 = 8;
/// Gossip rounds a seeded node waits for a first peer before it joins alone.
pub const ALONE_ROUNDS: u32 = 20;
/// How long after joining a node still steps back for a rival that started earlier.
pub const JOIN_WINDOW: Duration = Duration::from_secs(30);
/// Gossip rounds a refused node keeps heartbeating (publishing nothing) before it
/// leaves gossip, so that the process it stepped back for sees its heartbeat advance
/// [`RIVAL_ADVANCES`] times and reports it: two processes with one id are an
/// operator's problem on both hosts, not only on the one that stepped back.
pub const REFUSED_LINGER_ROUNDS: u32 = 10;

/// Another chitchat instance under this node's id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sighting {
    /// Its generation (start time).
    pub generation: u64,
    /// Its gossip address.
    pub addr: SocketAddr,
    /// Its heartbeat as this node knows it.
    pub heartbeat: u64,
}

/// Where a node stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Watching the cluster before publishing anything.
    Checking,
    /// Publishing; still steps back for an earlier rival.
    Joined,
    /// Publishing; never steps back.
    Established,
    /// Stepped back: another process has this node's id.
    Refused(String),
}

/// The guard of one node. Pure: the caller supplies the time and what chitchat shows.
#[derive(Debug)]
pub struct IdentityGuard {
    node_id: String,
    generation: u64,
    addr: SocketAddr,
    interval: Duration,
    seeded: bool,
    started: Instant,
    first_peer: Option<Instant>,
    joined_at: Option<Instant>,
    /// Other instances: last heartbeat seen and how often it advanced.
    seen: HashMap<(u64, SocketAddr), (u64, u32)>,
    phase: Phase,
}

impl IdentityGuard {
    /// A guard for this node (`generation`, gossip `addr`), gossiping every `interval`,
    /// with seeds or not, started at `now`.
    pub fn new(
        node_id: &str,
        generation: u64,
        addr: SocketAddr,
        interval: Duration,
        seeded: bool,
        now: Instant,
    ) -> IdentityGuard {
        IdentityGuard {
            node_id: node_id.to_string(),
            generation,
            addr,
            interval,
            seeded,
            started: now,
            first_peer: None,
            joined_at: None,
            seen: HashMap::new(),
            phase: Phase::Checking,
        }
    }

    /// How long a refused node keeps heartbeating before it leaves gossip
    /// ([`REFUSED_LINGER_ROUNDS`] rounds).
    pub fn refused_linger(&self) -> Duration {
        self.interval * REFUSED_LINGER_ROUNDS
    }

    /// The current phase.
    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// Whether this node may publish its own state.
    pub fn may_publish(&self) -> bool {
        matches!(self.phase, Phase::Joined | Phase::Established)
    }

    /// Takes in what chitchat shows now: how many other node ids it knows and the other
    /// instances under this node's id. Returns the live rivals seen (for the log).
    pub fn observe(&mut self, now: Instant, peers: usize, others: &[Sighting]) -> Vec<Sighting> {
        if matches!(self.phase, Phase::Refused(_)) {
            return Vec::new();
        }
        let mut present = Vec::with_capacity(others.len());
        let mut rivals = Vec::new();
        for o in others.iter().filter(|o| o.addr != self.addr) {
            let key = (o.generation, o.addr);
            present.push(key);
            let entry = self.seen.entry(key).or_insert((o.heartbeat, 0));
            if o.heartbeat > entry.0 {
                entry.0 = o.heartbeat;
                entry.1 += 1;
            }
            if entry.1 >= RIVAL_ADVANCES {
                rivals.push(o.clone());
            }
        }
        self.seen.retain(|k, _| present.contains(k));
        if peers > 0 && self.first_peer.is_none() {
            self.first_peer = Some(now);
        }
        let may_step_back = matches!(self.phase, Phase::Checking | Phase::Joined);
        if may_step_back
            && let Some(r) = rivals
                .iter()
                .filter(|r| (r.generation, r.addr) < (self.generation, self.addr))
                .min_by_key(|r| (r.generation, r.addr))
        {
            self.phase = Phase::Refused(format!(
                "another process is live in the cluster with this node id `{}` (gossip address {}, generation {}, started before this one; its heartbeat keeps advancing). This process does not join: two hosts share the node id (give each its own --node-id and certificate), or another party holds this node's certificate",
                self.node_id, r.addr, r.generation
            ));
            return rivals;
        }
        let rounds = |n: u32| self.interval * n;
        if self.phase == Phase::Checking {
            let settled = !self.seeded
                || self
                    .first_peer
                    .is_some_and(|t| now >= t + rounds(SETTLE_ROUNDS))
                || now >= self.started + rounds(ALONE_ROUNDS);
            if settled {
                self.phase = Phase::Joined;
                self.joined_at = Some(now);
            }
        }
        if self.phase == Phase::Joined && self.joined_at.is_some_and(|t| now >= t + JOIN_WINDOW) {
            self.phase = Phase::Established;
        }
        rivals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const I: Duration = Duration::from_millis(100);

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn guard(generation: u64, now: Instant) -> IdentityGuard {
        IdentityGuard::new("alpha", generation, addr("10.0.0.2:7800"), I, true, now)
    }

    fn other(generation: u64, a: &str, heartbeat: u64) -> Sighting {
        Sighting {
            generation,
            addr: addr(a),
            heartbeat,
        }
    }

    /// Runs `rounds` observations, the other instance's heartbeat moving by `step`.
    fn run(g: &mut IdentityGuard, t0: Instant, rounds: u32, o: &Sighting, step: u64) -> Instant {
        let mut now = t0;
        for r in 0..rounds {
            now = t0 + I * r;
            let seen = Sighting {
                heartbeat: o.heartbeat + step * u64::from(r),
                ..o.clone()
            };
            g.observe(now, 2, &[seen]);
        }
        now
    }

    #[test]
    fn a_newcomer_steps_back_for_a_live_process_with_its_id() {
        let t0 = Instant::now();
        let mut g = guard(2_000, t0);
        assert!(!g.may_publish());
        run(&mut g, t0, 4, &other(1_000, "10.0.0.1:7800", 50), 3);
        let Phase::Refused(reason) = g.phase() else {
            panic!("{:?}", g.phase())
        };
        assert!(
            reason.contains("10.0.0.1:7800") && reason.contains("`alpha`"),
            "{reason}"
        );
        assert!(!g.may_publish(), "it never published");
    }

    #[test]
    fn an_earlier_run_of_this_node_is_no_rival() {
        let t0 = Instant::now();
        // The previous run at the same address, even with a moving heartbeat (peers
        // still relaying its last values).
        let mut g = guard(2_000, t0);
        let end = run(&mut g, t0, 12, &other(1_000, "10.0.0.2:7800", 50), 1);
        assert_eq!(g.phase(), &Phase::Joined, "joined after settling");
        // A previous run at another address (a pod moved): its heartbeat stands still.
        let mut g = guard(2_000, t0);
        run(&mut g, t0, 12, &other(1_000, "10.0.0.7:7800", 50), 0);
        assert_eq!(g.phase(), &Phase::Joined);
        // After the join window the node is established.
        g.observe(end + JOIN_WINDOW + I * 12, 2, &[]);
        assert_eq!(g.phase(), &Phase::Established);
    }

    #[test]
    fn the_earlier_process_keeps_its_place() {
        let t0 = Instant::now();
        // The first process sees a later one with its id: it does not step back, in the
        // join window or after.
        let mut g = guard(1_000, t0);
        run(&mut g, t0, 12, &other(2_000, "10.0.0.1:7800", 5), 3);
        assert_eq!(g.phase(), &Phase::Joined);
        // Established, it ignores even a rival that claims an earlier start.
        g.observe(t0 + JOIN_WINDOW + I * 20, 2, &[]);
        assert_eq!(g.phase(), &Phase::Established);
        let t1 = t0 + JOIN_WINDOW + I * 21;
        let rivals = {
            let impostor = other(1, "10.0.0.66:7800", 7);
            run(&mut g, t1, 5, &impostor, 4);
            g.observe(t1 + I * 6, 2, &[other(1, "10.0.0.66:7800", 100)])
        };
        assert_eq!(rivals.len(), 1, "reported");
        assert_eq!(g.phase(), &Phase::Established);
    }

    #[test]
    fn joining_waits_for_peers_or_gives_up_alone() {
        let t0 = Instant::now();
        let mut g = guard(1, t0);
        g.observe(t0 + I * 19, 0, &[]);
        assert_eq!(g.phase(), &Phase::Checking);
        g.observe(t0 + I * 20, 0, &[]);
        assert_eq!(g.phase(), &Phase::Joined, "no peer answered: alone");
        let mut g = guard(1, t0);
        g.observe(t0 + I, 3, &[]);
        g.observe(t0 + I * 8, 3, &[]);
        assert_eq!(g.phase(), &Phase::Checking);
        g.observe(t0 + I * 9, 3, &[]);
        assert_eq!(g.phase(), &Phase::Joined, "settled after a peer");
        let unseeded = IdentityGuard::new("a", 1, addr("10.0.0.2:7800"), I, false, t0);
        let mut unseeded = unseeded;
        unseeded.observe(t0, 0, &[]);
        assert!(unseeded.may_publish(), "no seeds: nothing to wait for");
    }
}
