//! Unit tests of the cluster snapshot.

use super::*;
use crate::keys;

fn id(node: &str, generation: u64) -> ChitchatId {
    ChitchatId::new(
        node.to_string(),
        generation,
        "127.0.0.1:7800".parse().unwrap(),
    )
}

fn peer(alive: bool) -> Seen {
    Seen {
        is_self: false,
        alive,
        attestation: Attestation::Attested,
    }
}

fn me() -> Seen {
    Seen {
        is_self: true,
        alive: true,
        attestation: Attestation::Attested,
    }
}

fn unattested(attestation: Attestation) -> Seen {
    Seen {
        is_self: false,
        alive: true,
        attestation,
    }
}

fn id_at(node: &str, generation: u64, addr: &str) -> ChitchatId {
    ChitchatId::new(node.to_string(), generation, addr.parse().unwrap())
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
    let decode = |v: &str| NodeRecords::decode([(key.as_str(), v), ("tomb:zz", "!!")].into_iter());
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
    snap.merge(&id("rogue", 1), &Arc::new(r), peer(true));
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
    snap.merge(&id("a", 1), &records(&[(&w, Status::Ready)]), me());
    snap.merge(&id("b", 1), &records(&[(&w, Status::Failed)]), peer(true));
    snap.merge(&id("b", 2), &records(&[(&w, Status::Ready)]), peer(true));
    snap.merge(&id("c", 1), &records(&[(&w, Status::Pending)]), peer(false));
    snap.merge(&id("d", 1), &records(&[(&w, Status::NotReady)]), peer(true));
    snap.merge(
        &id("e", 1),
        &records(&[(&other, Status::Ready)]),
        peer(true),
    );
    snap.finish();
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

#[test]
fn nothing_under_this_nodes_id_speaks_for_it() {
    let w = WorkerId::parse("00000000000000aa").unwrap();
    let mut snap = ClusterSnapshot::default();
    // An impostor (or a second process) under this node's id, at another address and
    // with an older generation than this one, publishing a verdict of its own.
    snap.merge(
        &id_at("alpha", 1, "10.0.0.9:7800"),
        &records(&[(&w, Status::Failed)]),
        peer(true),
    );
    snap.merge(
        &id_at("alpha", 5, "10.0.0.1:7800"),
        &records(&[(&w, Status::Ready)]),
        me(),
    );
    snap.merge(&id("beta", 1), &records(&[(&w, Status::Ready)]), peer(true));
    snap.finish();
    let seen: Vec<&str> = snap.verdicts_on(&w).into_keys().collect();
    assert_eq!(seen, ["beta"], "no verdict under this node's own id");
    let alpha: Vec<&Member> = snap
        .members
        .iter()
        .filter(|m| m.node_id == "alpha")
        .collect();
    assert_eq!(alpha.len(), 1);
    assert!(alpha[0].is_self, "this node's own row is its own");
    assert_eq!(alpha[0].gossip_addr, "10.0.0.1:7800".parse().unwrap());
}

#[test]
fn unattested_members_never_adopt_nor_count_for_eviction() {
    let w = WorkerId::parse("00000000000000aa").unwrap();
    let url = crate::model::WorkerUrl::parse("http://10.0.0.1:8000").unwrap();
    let reg = Registration {
        id: url.id(),
        generation: 1,
        owner: "gone".into(),
        registered_at_ms: 0,
        revision: 0,
        spec: crate::model::WorkerSpec::new(url),
    };
    let mut advertising = NodeRecords {
        registrations: vec![Arc::new(reg.clone())],
        ..NodeRecords::default()
    };
    advertising.verdicts.insert(
        w.clone(),
        Verdict {
            generation: 1,
            status: Status::Pending,
            since_ms: 5,
        },
    );
    let advertising = Arc::new(advertising);
    let mut snap = ClusterSnapshot::default();
    snap.merge(&id("b", 1), &records(&[]), me());
    // "0" was invented in a relayed delta: it would sort first and never adopt, and its
    // pending verdict would block every eviction.
    snap.merge(&id("0", 1), &advertising, unattested(Attestation::Refuted));
    snap.merge(&id("c", 1), &records(&[(&w, Status::Failed)]), peer(true));
    snap.finish();
    assert_eq!(snap.live_node_ids().collect::<Vec<_>>(), ["0", "b", "c"]);
    assert_eq!(
        snap.live_attested_node_ids().collect::<Vec<_>>(),
        ["b", "c"]
    );
    assert_eq!(snap.verdicts_on(&w).into_keys().collect::<Vec<_>>(), ["c"]);
    assert!(
        !snap.advertised_by_live_peer.contains_key(&reg.id),
        "an unattested advertiser does not keep a registration from adoption"
    );
    assert!(snap.registrations.contains_key(&reg.id), "still listed");
    assert!(!snap.attestation_pending());
    // While an instance is still being checked, evictions wait.
    snap.merge(&id("d", 1), &records(&[]), unattested(Attestation::Pending));
    assert!(snap.attestation_pending());
}

#[test]
fn verdicts_decode_from_buckets_and_the_old_layout_newest_first() {
    let a = crate::model::WorkerUrl::parse("http://10.9.0.1:8000")
        .unwrap()
        .id();
    let mut bucket = String::new();
    keys::push_verdict(&mut bucket, &a, 2, Status::Ready, 50);
    let other = crate::model::WorkerUrl::parse("http://10.9.0.2:8000")
        .unwrap()
        .id();
    // An entry filed under a bucket it does not belong to is dropped and counted.
    let wrong = if other.as_str().starts_with('0') {
        "1"
    } else {
        "0"
    };
    let mut stray = String::new();
    keys::push_verdict(&mut stray, &other, 1, Status::Failed, 1);
    let kvs = [
        (keys::verdict_bucket_key(&a.as_str()[..1]), bucket),
        // The old single-verdict layout, older than the bucket's: the bucket wins.
        (
            keys::status_key(&a),
            keys::encode_status(2, Status::Failed, 40),
        ),
        (keys::verdict_bucket_key(wrong), stray),
    ];
    let r = NodeRecords::decode(kvs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let v = r.verdicts.get(&a).unwrap();
    assert_eq!((v.generation, v.status, v.since_ms), (2, Status::Ready, 50));
    assert_eq!(r.malformed, 1, "the stray entry is counted");
    assert_eq!(r.verdicts.len(), 1, "and not taken");
}

#[test]
fn peer_verdicts_carry_the_newest_instances_degraded_flag() {
    let w = WorkerId::parse("00000000000000aa").unwrap();
    let degraded = |status| {
        let plain = records(&[(&w, status)]);
        Arc::new(NodeRecords {
            verdicts: plain.verdicts.clone(),
            degraded: Some("cut off".into()),
            ..NodeRecords::default()
        })
    };
    let mut snap = ClusterSnapshot::default();
    snap.merge(&id("a", 1), &records(&[]), me());
    // b restarted: its old instance was degraded, its new one is not.
    snap.merge(&id("b", 1), &degraded(Status::Failed), peer(true));
    snap.merge(&id("b", 2), &records(&[(&w, Status::Ready)]), peer(true));
    snap.merge(&id("c", 1), &degraded(Status::Failed), peer(true));
    snap.finish();
    let seen: Vec<_> = snap
        .peer_verdicts(&w)
        .map(|p| (p.node, p.verdict.status, p.degraded))
        .collect();
    assert_eq!(
        seen,
        [("b", Status::Ready, false), ("c", Status::Failed, true)]
    );
    assert_eq!(snap.healthy_peer_count(), 1);
    assert_eq!(snap.live_peer_ids().collect::<Vec<_>>(), ["b", "c"]);
}
