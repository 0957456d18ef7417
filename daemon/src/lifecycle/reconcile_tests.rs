//! Table tests of the reconcile step, over snapshots built the way the simulator builds
//! them (raw key-values through the gossip crate's decoder).

use super::*;
use chitchat::ChitchatId;
use probemesh_gossip::cluster::{DecodeCache, RawNode, RawState};
use probemesh_gossip::keys;
use probemesh_gossip::model::{Drain, EvictionReason, WorkerUrl};

const ME: &str = "node-b";

fn reg(port: u16, owner: &str) -> Registration {
    let url = WorkerUrl::parse(&format!("http://10.0.0.1:{port}")).unwrap();
    Registration {
        id: url.id(),
        generation: 1,
        owner: owner.into(),
        registered_at_ms: 1,
        revision: 1,
        spec: probemesh_gossip::model::WorkerSpec::new(url),
    }
}

/// A peer's published keys.
#[derive(Default)]
struct Peer {
    name: &'static str,
    alive: bool,
    keys: Vec<(String, String)>,
}

impl Peer {
    fn new(name: &'static str) -> Peer {
        Peer {
            name,
            alive: true,
            keys: Vec::new(),
        }
    }
    fn dead(mut self) -> Peer {
        self.alive = false;
        self
    }
    fn advertises(mut self, r: &Registration) -> Peer {
        self.keys
            .push((keys::reg_key(&r.id), keys::encode_registration(r).unwrap()));
        self
    }
    fn verdict(mut self, r: &Registration, s: Status) -> Peer {
        self.keys
            .push(keys::single_verdict(&r.id, r.generation, s, 7));
        self
    }
    fn drain(mut self, d: &Drain) -> Peer {
        self.keys
            .push((keys::drain_key(&d.id), keys::encode_drain(d).unwrap()));
        self
    }
    fn tombstone(mut self, t: &Tombstone) -> Peer {
        self.keys
            .push((keys::tomb_key(&t.id), keys::encode_tombstone(t).unwrap()));
        self
    }
}

fn snapshot(peers: Vec<Peer>) -> ClusterSnapshot {
    let addr = |i: usize| std::net::SocketAddr::from(([127, 0, 0, 1], 7000 + i as u16));
    let mut nodes = vec![RawNode::new(
        ChitchatId::new(ME.to_string(), 1, addr(0)),
        1,
        true,
        true,
        Some(vec![]),
    )];
    for (i, p) in peers.into_iter().enumerate() {
        nodes.push(RawNode::new(
            ChitchatId::new(p.name.to_string(), 1, addr(i + 1)),
            1,
            false,
            p.alive,
            Some(p.keys),
        ));
    }
    ClusterSnapshot::from_raw(RawState::from_nodes(nodes), &mut DecodeCache::default())
}

fn tracked(r: &Registration, here: bool, status: Status) -> Tracked<'_> {
    Tracked {
        reg: r,
        registered_here: here,
        status,
        status_since_ms: 3,
        failing: matches!(status, Status::NotReady | Status::Failed),
    }
}

fn round(
    local: &[Tracked<'_>],
    tombs: &[Tombstone],
    snap: &ClusterSnapshot,
    now: Instant,
    memory: &mut Memory,
) -> Plan {
    round_with_drains(local, tombs, &[], snap, now, memory)
}

/// The time of day of every round, in ms.
const NOW_MS: u64 = 1_000_000;

fn round_with_drains(
    local: &[Tracked<'_>],
    tombs: &[Tombstone],
    drains: &[Drain],
    snap: &ClusterSnapshot,
    now: Instant,
    memory: &mut Memory,
) -> Plan {
    let drains: BTreeMap<WorkerId, Drain> =
        drains.iter().map(|d| (d.id.clone(), d.clone())).collect();
    let local: BTreeMap<WorkerId, Tracked<'_>> =
        local.iter().map(|t| (t.reg.id.clone(), *t)).collect();
    let tombs: BTreeMap<WorkerId, Tombstone> =
        tombs.iter().map(|t| (t.id.clone(), t.clone())).collect();
    reconcile(
        &Inputs {
            self_id: ME,
            now,
            now_ms: NOW_MS,
            local: &local,
            stored_tombstones: &tombs,
            stored_drains: &drains,
            snapshot: snap,
            remove_failed: true,
            allowed: &|_| true,
            fence_ratio: 0.8,
            local_fault: false,
        },
        memory,
    )
}

#[test]
fn unknown_peer_workers_are_imported_and_own_state_is_published() {
    let mine = reg(1, ME);
    let theirs = reg(2, "node-c");
    let snap = snapshot(vec![Peer::new("node-c").advertises(&theirs)]);
    let t = Tombstone {
        id: reg(3, ME).id,
        url: reg(3, ME).spec.url,
        generation: 1,
        reason: EvictionReason::Deleted,
        writer: ME.into(),
        deleted_at_ms: 1,
        expires_at_ms: 9,
    };
    let plan = round(
        &[tracked(&mine, true, Status::Ready)],
        std::slice::from_ref(&t),
        &snap,
        Instant::now(),
        &mut Memory::default(),
    );
    assert_eq!(plan.imports, vec![ImportAction::Insert(theirs)]);
    assert!(plan.evictions.is_empty());
    assert_eq!(
        plan.publication.verdicts[&mine.id],
        Verdict {
            generation: 1,
            status: Status::Ready,
            since_ms: 3
        }
    );
    assert_eq!(plan.publication.registrations.len(), 1, "only its own");
    assert_eq!(plan.publication.registrations[&mine.id], mine);
    assert_eq!(plan.publication.tombstones[&t.id], t);
    assert_eq!(plan.due, None);
}

#[test]
fn a_failed_worker_is_evicted_only_when_every_live_peer_tracking_it_agrees() {
    let w = reg(1, "node-c");
    let failed = [tracked(&w, false, Status::Failed)];
    let table: Vec<(&str, Vec<Peer>, bool)> = vec![
        ("alone", vec![], true),
        (
            "every peer failed",
            vec![
                Peer::new("node-c")
                    .advertises(&w)
                    .verdict(&w, Status::Failed),
                Peer::new("node-d").verdict(&w, Status::Failed),
            ],
            true,
        ),
        (
            "one peer still reaches it",
            vec![
                Peer::new("node-c")
                    .advertises(&w)
                    .verdict(&w, Status::Failed),
                Peer::new("node-d").verdict(&w, Status::Ready),
            ],
            false,
        ),
        (
            "a pending peer has not decided",
            vec![Peer::new("node-d").verdict(&w, Status::Pending)],
            false,
        ),
        (
            "a dead peer's verdict does not block",
            vec![Peer::new("node-d").dead().verdict(&w, Status::Ready)],
            true,
        ),
        (
            "a peer that does not track it does not block",
            vec![Peer::new("node-d")],
            true,
        ),
    ];
    for (case, peers, evict) in table {
        let plan = round(
            &failed,
            &[],
            &snapshot(peers),
            Instant::now(),
            &mut Memory::default(),
        );
        assert_eq!(!plan.evictions.is_empty(), evict, "{case}");
    }
    let ready = [tracked(&w, false, Status::Ready)];
    let plan = round(
        &ready,
        &[],
        &snapshot(vec![]),
        Instant::now(),
        &mut Memory::default(),
    );
    assert!(plan.evictions.is_empty(), "not failed here: never evicted");
}

#[test]
fn an_orphan_is_adopted_by_the_smallest_live_id_after_the_wait() {
    let w = reg(1, "node-x");
    let local = [tracked(&w, false, Status::Ready)];
    // node-x (the owner) is gone; node-c is alive and sorts after node-b: node-b adopts.
    let snap = snapshot(vec![Peer::new("node-c")]);
    let t0 = Instant::now();
    let mut memory = Memory::default();
    let first = round(&local, &[], &snap, t0, &mut memory);
    assert!(first.publication.registrations.is_empty(), "not at once");
    assert_eq!(first.due, Some(t0 + ADOPT_AFTER));
    let early = round(&local, &[], &snap, t0 + ADOPT_AFTER / 2, &mut memory);
    assert!(early.publication.registrations.is_empty());
    let late = round(&local, &[], &snap, t0 + ADOPT_AFTER, &mut memory);
    assert_eq!(late.publication.registrations[&w.id], w, "adopted");
    assert_eq!(late.due, None);

    // node-a is alive and sorts first: it adopts, node-b never does.
    let other = snapshot(vec![Peer::new("node-a")]);
    let mut memory = Memory::default();
    for secs in [0, 10, 100] {
        let plan = round(
            &local,
            &[],
            &other,
            t0 + Duration::from_secs(secs),
            &mut memory,
        );
        assert!(plan.publication.registrations.is_empty(), "{secs}s");
    }
}

#[test]
fn an_advertiser_coming_back_resets_the_adoption_wait() {
    let w = reg(1, "node-x");
    let local = [tracked(&w, false, Status::Ready)];
    let orphaned = snapshot(vec![]);
    let advertised = snapshot(vec![Peer::new("node-x").advertises(&w)]);
    let t0 = Instant::now();
    let mut memory = Memory::default();
    round(&local, &[], &orphaned, t0, &mut memory);
    let back = round(&local, &[], &advertised, t0 + ADOPT_AFTER / 2, &mut memory);
    assert_eq!(back.due, None, "timer forgotten");
    let again = round(&local, &[], &orphaned, t0 + ADOPT_AFTER, &mut memory);
    assert!(
        again.publication.registrations.is_empty(),
        "the wait starts over"
    );
    assert_eq!(again.due, Some(t0 + ADOPT_AFTER * 2));
}

#[test]
fn a_patch_made_here_is_carried_until_the_advertisers_have_it() {
    let w = reg(1, "node-c");
    let mut patched = w.clone();
    patched.revision = 9;
    patched.spec.priority = 7;
    let local = [tracked(&patched, false, Status::Ready)];
    let behind = snapshot(vec![Peer::new("node-c").advertises(&w)]);
    let plan = round(&local, &[], &behind, Instant::now(), &mut Memory::default());
    assert_eq!(plan.publication.registrations[&w.id], patched);
    let caught_up = snapshot(vec![Peer::new("node-c").advertises(&patched)]);
    let plan = round(
        &local,
        &[],
        &caught_up,
        Instant::now(),
        &mut Memory::default(),
    );
    assert!(plan.publication.registrations.is_empty());
}

#[test]
fn a_peers_tombstone_is_imported_and_the_same_inputs_give_the_same_plan() {
    let w = reg(1, "node-c");
    let t = Tombstone {
        id: w.id.clone(),
        url: w.spec.url.clone(),
        generation: 1,
        reason: EvictionReason::Failed,
        writer: "node-c".into(),
        deleted_at_ms: 1,
        expires_at_ms: u64::MAX,
    };
    let local = [tracked(&w, false, Status::Ready)];
    let snap = snapshot(vec![Peer::new("node-c").tombstone(&t)]);
    let now = Instant::now();
    let a = round(&local, &[], &snap, now, &mut Memory::default());
    assert_eq!(a.imports, vec![ImportAction::Tombstone(t.clone())]);
    let b = round(&local, &[], &snap, now, &mut Memory::default());
    assert_eq!(a, b);
    // Once stored, it is not imported again.
    let c = round(&local, &[t], &snap, now, &mut Memory::default());
    assert!(c.imports.is_empty());
}

fn drain_of(r: &Registration, ends_at_ms: u64) -> Drain {
    Drain {
        id: r.id.clone(),
        url: r.spec.url.clone(),
        generation: r.generation,
        writer: "node-c".into(),
        started_at_ms: ends_at_ms.saturating_sub(30_000),
        ends_at_ms,
    }
}

#[test]
fn a_peers_drain_is_taken_the_sooner_end_wins_and_an_ended_drain_is_tombstoned() {
    let w = reg(1, "node-c");
    let local = [tracked(&w, false, Status::Ready)];
    let now = Instant::now();
    let later = drain_of(&w, NOW_MS + 30_000);
    let sooner = drain_of(&w, NOW_MS + 10_000);
    let snap = snapshot(vec![Peer::new("node-c").advertises(&w).drain(&later)]);
    let plan = round(&local, &[], &snap, now, &mut Memory::default());
    assert_eq!(plan.imports, vec![ImportAction::Drain(later.clone())]);
    assert!(plan.drain_ends.is_empty());
    // Stored already, or a sooner one stored: not taken again.
    for stored in [&later, &sooner] {
        let plan = round_with_drains(
            &local,
            &[],
            std::slice::from_ref(stored),
            &snap,
            now,
            &mut Memory::default(),
        );
        assert!(plan.imports.is_empty(), "{stored:?}");
    }
    // A peer's sooner end replaces a later one.
    let sooner_snap = snapshot(vec![Peer::new("node-d").drain(&sooner)]);
    let plan = round_with_drains(
        &local,
        &[],
        std::slice::from_ref(&later),
        &sooner_snap,
        now,
        &mut Memory::default(),
    );
    assert_eq!(plan.imports, vec![ImportAction::Drain(sooner.clone())]);
    // A stored drain is published, and a round is due when it ends (registered here,
    // so no adoption wait is pending).
    let mine = [tracked(&w, true, Status::Draining)];
    let plan = round_with_drains(
        &mine,
        &[],
        std::slice::from_ref(&sooner),
        &snapshot(vec![]),
        now,
        &mut Memory::default(),
    );
    assert_eq!(plan.publication.drains[&w.id], sooner);
    assert_eq!(plan.due, Some(now + Duration::from_millis(10_000)));
    assert!(plan.drain_ends.is_empty());
    // Once it has ended, whoever sees it tombstones it: the owner need not be alive.
    let ended = drain_of(&w, NOW_MS);
    let plan = round_with_drains(
        &local,
        &[],
        &[ended],
        &snapshot(vec![]),
        now,
        &mut Memory::default(),
    );
    assert_eq!(plan.drain_ends, vec![(w.id.clone(), 1)]);
    // A drain of a generation this node does not track is not taken.
    let mut newer = w.clone();
    newer.generation = 2;
    let other = snapshot(vec![
        Peer::new("node-c").drain(&drain_of(&newer, NOW_MS + 5)),
    ]);
    assert!(
        round(&local, &[], &other, now, &mut Memory::default())
            .imports
            .is_empty()
    );
}
