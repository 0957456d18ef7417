//! Members that hold a valid certificate and misbehave, against honest nodes on
//! loopback over the real QUIC transport (SPEC S10): a node gossiping under another
//! node's id, an invented member, many connections under one name, and a message
//! flood. Memory under bombs and stream floods is measured in `hostile_memory.rs`, a
//! test binary of its own so that no other test shares its process.

mod support;

use probemesh_gossip::cluster::MemberState;
use probemesh_gossip::transport::craft;
use probemesh_gossip::transport::quic::conns::MAX_CONNS_PER_NAME;
use probemesh_gossip::transport::scan::WireId;
use probemesh_gossip::transport::{Bound, QuicSettings};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_gossiping_under_another_id_is_refused_and_the_real_one_stays_listed() {
    let dir = ca();
    let (aa, ca_, sa) = (free_udp_addr(), free_udp_addr(), free_udp_addr());
    let (alpha, am) = node(
        material(dir.path(), "alpha"),
        "alpha",
        aa,
        &[],
        QuicSettings::default(),
    )
    .await;
    let (gamma, gm) = node(
        material(dir.path(), "gamma"),
        "gamma",
        ca_,
        &[aa],
        QuicSettings::default(),
    )
    .await;
    assert!(
        eventually(Duration::from_secs(10), async || alive_ids(&gamma)
            .await
            .len()
            == 2)
        .await,
        "honest nodes did not converge"
    );
    // The impostor holds a certificate for beta and runs chitchat as alpha, seeded
    // with both honest nodes.
    let (_impostor, _) = node(
        material(dir.path(), "beta"),
        "alpha",
        sa,
        &[aa, ca_],
        QuicSettings::default(),
    )
    .await;
    assert!(
        eventually(Duration::from_secs(10), async || gm
            .snapshot()
            .identity_refused_total()
            > 0
            && am.snapshot().identity_refused_total() > 0)
        .await,
        "the impostor's gossip was not refused"
    );
    // Give it many rounds to try.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (who, h) in [("alpha", &alpha), ("gamma", &gamma)] {
        let snap = h.snapshot().await;
        assert!(
            snap.members.iter().all(|m| m.gossip_addr != sa),
            "{who} took in the impostor: {:?}",
            snap.members
        );
        let a: Vec<_> = snap
            .members
            .iter()
            .filter(|m| m.node_id == "alpha")
            .collect();
        assert_eq!(a.len(), 1, "{who}: {:?}", snap.members);
        assert_eq!(a[0].gossip_addr, aa, "{who} lists the real alpha");
        assert_eq!(a[0].state, MemberState::Alive);
        assert!(a[0].attested);
    }
    let s = gm.snapshot();
    eprintln!(
        "gamma refused {:?} (no_name, no_own_entry, kept_alive, unlisted, too_many_others)",
        s.identity_refused
    );
    assert!(s.identity_refused[1] > 0, "counted as no_own_entry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invented_member_is_listed_but_never_attested() {
    let dir = ca();
    let va = free_udp_addr();
    let (victim, _) = node(
        material(dir.path(), "victim"),
        "victim",
        va,
        &[],
        QuicSettings::default(),
    )
    .await;
    let mallory = RawPeer::connect(&material(dir.path(), "mallory"), va).await;
    let own = WireId {
        node_id: "mallory".into(),
        generation: 1,
        addr: mallory.addr(),
    };
    // "0" sorts before every real id: as the adopter it would never adopt (S8).
    let invented = WireId {
        node_id: "0".into(),
        generation: 1,
        addr: free_udp_addr(),
    };
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut hb = 1;
    let mut seen = None;
    while Instant::now() < deadline {
        hb += 1;
        mallory
            .send(&craft::syn(
                "test",
                &[(own.clone(), hb), (invented.clone(), hb)],
            ))
            .await;
        tokio::time::sleep(INTERVAL).await;
        let snap = victim.snapshot().await;
        let zero = snap.members.iter().find(|m| m.node_id == "0").cloned();
        if let Some(z) = zero
            && z.state == MemberState::Alive
            && !z.attested
            && !snap.attestation_pending()
        {
            seen = Some(snap);
            break;
        }
    }
    let snap = seen.expect("the invented member was never refuted");
    let candidates: Vec<&str> = snap.live_attested_node_ids().collect();
    assert!(!candidates.contains(&"0"), "{candidates:?}");
    assert!(candidates.contains(&"mallory") && candidates.contains(&"victim"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_name_holds_a_bounded_number_of_connections() {
    let dir = ca();
    let va = free_udp_addr();
    let (_victim, vm) = node(
        material(dir.path(), "victim"),
        "victim",
        va,
        &[],
        QuicSettings::default(),
    )
    .await;
    let tls = material(dir.path(), "mallory");
    let mut peers = Vec::new();
    for _ in 0..(MAX_CONNS_PER_NAME * 4) {
        peers.push(RawPeer::connect(&tls, va).await);
    }
    assert!(
        eventually(Duration::from_secs(5), async || {
            let s = vm.snapshot();
            s.connections_open <= MAX_CONNS_PER_NAME as u64
                && s.bound(Bound::ConnectionsPerName) >= (MAX_CONNS_PER_NAME * 3) as u64
        })
        .await,
        "{:?}",
        vm.snapshot()
    );
    // The oldest ones were closed by the victim, the newest still work.
    let closed = peers
        .iter()
        .filter(|p| p.conn.close_reason().is_some())
        .count();
    assert!(closed >= MAX_CONNS_PER_NAME * 3, "{closed} closed");
    assert!(peers.last().unwrap().conn.close_reason().is_none());
}

/// The longest time, over the sampling, that `node`'s heartbeat as seen by `h` stood
/// still, and whether it was ever seen dead.
#[derive(Default, Debug)]
struct Watch {
    last: HashMap<String, (u64, Instant)>,
    max_gap: HashMap<String, Duration>,
    dead: HashMap<String, u32>,
}

impl Watch {
    async fn sample(&mut self, h: &probemesh_gossip::node::GossipHandle, names: &[&str]) {
        let now = Instant::now();
        for (id, _, hb, alive) in h.heartbeats().await {
            if !names.contains(&id.as_str()) {
                continue;
            }
            if !alive {
                *self.dead.entry(id.clone()).or_default() += 1;
            }
            let e = self.last.entry(id.clone()).or_insert((hb, now));
            if hb > e.0 {
                *e = (hb, now);
            }
            let gap = now - e.1;
            let m = self.max_gap.entry(id).or_default();
            *m = (*m).max(gap);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_member_does_not_starve_the_others_heartbeats() {
    let s = flood(QuicSettings::for_gossip_interval(INTERVAL)).await;
    assert!(
        s.0.bound(Bound::PeerRate) > s.1 / 2,
        "the flood was not rate-limited"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_peer_queues_alone_keep_heartbeats_flowing() {
    // No rate limit to speak of: only the round-robin queues stand between the flood
    // and chitchat.
    let settings = QuicSettings {
        peer_rate: 1_000_000,
        peer_burst: 1_000_000,
        ..QuicSettings::for_gossip_interval(INTERVAL)
    };
    let (s, _) = flood(settings).await;
    assert!(
        s.bound(Bound::PeerQueue) > 0,
        "the flood never filled its queue"
    );
}

/// Runs the flood against node `a` of three honest nodes; asserts that `b` and `c`
/// never look dead to `a` and that their heartbeats never stand still for a second.
/// Returns `a`'s transport counters and the messages sent.
async fn flood(settings: QuicSettings) -> (probemesh_gossip::transport::TransportStats, u64) {
    let dir = ca();
    let (aa, ba, ca_) = (free_udp_addr(), free_udp_addr(), free_udp_addr());
    let (a, am) = node(material(dir.path(), "a"), "a", aa, &[], settings.clone()).await;
    let (_b, _) = node(material(dir.path(), "b"), "b", ba, &[aa], settings.clone()).await;
    let (_c, _) = node(material(dir.path(), "c"), "c", ca_, &[aa], settings).await;
    assert!(
        eventually(Duration::from_secs(10), async || alive_ids(&a).await.len()
            == 3)
        .await,
        "honest nodes did not converge"
    );
    // Baseline: how far apart heartbeats arrive without a flood.
    let mut quiet = Watch::default();
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        quiet.sample(&a, &["b", "c"]).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Four connections under one certificate, each sending a burst of four Syns every
    // millisecond (about 160 times the rate a member needs), for six seconds. One Syn
    // a millisecond no longer always outran the receiving node once it reused its zstd
    // contexts: the queue bound was then sometimes never reached.
    let tls = material(dir.path(), "flood");
    let stop = Instant::now() + Duration::from_secs(6);
    let mut floods = Vec::new();
    for _ in 0..4 {
        let peer = RawPeer::connect(&tls, aa).await;
        floods.push(tokio::spawn(async move {
            let own = WireId {
                node_id: "flood".into(),
                generation: 1,
                addr: peer.addr(),
            };
            let mut sent = 0u64;
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            while Instant::now() < stop {
                tick.tick().await;
                for _ in 0..4 {
                    if peer
                        .send(&craft::syn("test", &[(own.clone(), sent + 1)]))
                        .await
                    {
                        sent += 1;
                    }
                }
            }
            sent
        }));
    }
    let mut flooded = Watch::default();
    while Instant::now() < stop {
        flooded.sample(&a, &["b", "c"]).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut sent = 0;
    for f in floods {
        sent += f.await.unwrap();
    }
    let s = am.snapshot();
    eprintln!(
        "flood: {sent} messages sent in 6 s; a dropped {} over the rate, {} over the queue; heartbeat gaps quiet {:?}, flooded {:?}; dead samples {:?}",
        s.bound(Bound::PeerRate),
        s.bound(Bound::PeerQueue),
        quiet.max_gap,
        flooded.max_gap,
        flooded.dead
    );
    assert!(
        flooded.dead.is_empty(),
        "a member flapped: {:?}",
        flooded.dead
    );
    for n in ["b", "c"] {
        let gap = flooded.max_gap.get(n).copied().unwrap_or_default();
        assert!(
            gap < Duration::from_secs(1),
            "{n}'s heartbeat stood still {gap:?}"
        );
    }
    (s, sent)
}
