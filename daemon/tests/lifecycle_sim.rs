//! Cluster-wide lifecycle (SPEC S6, S6b, S7, S8, S9) on 20 nodes in one process over an
//! in-memory transport with scripted probe outcomes and link cuts.

mod sim;

use probemesh::probe::check::ProbeResult;
use probemesh_gossip::cluster::MemberState;
use probemesh_gossip::model::{Status, WorkerId};
use sim::{Sim, SimNode, SimOptions, spec};
use std::time::Duration;

const N: usize = 20;
const PATIENCE: Duration = Duration::from_secs(20);
const OK: ProbeResult = ProbeResult::Ok(200);
const DOWN: ProbeResult = ProbeResult::Refused;

async fn cluster(n: usize, opts: impl Fn(usize) -> SimOptions) -> Sim {
    let sim = Sim::start(n, opts).await;
    sim.until_all(PATIENCE, "membership", |x| {
        x.node.cluster().live_node_ids().count() == n
    })
    .await;
    sim
}

async fn registered_everywhere(sim: &Sim, on: usize, url: &str) -> WorkerId {
    let (w, _) = sim.nodes[on].node.register(spec(url)).await.unwrap();
    let id = w.reg.id.clone();
    sim.until_all(PATIENCE, "import", |n| n.status(&id).is_some())
        .await;
    id
}

/// Drives a node through pending → failed (30 failed probes while pending).
fn fail(n: &SimNode, id: &WorkerId) {
    n.probe(id, DOWN, 30);
    assert_eq!(n.status(id), Some(Status::Failed), "{}", n.name);
}

fn gone_or(n: &SimNode, id: &WorkerId, s: Status) -> bool {
    n.status(id).is_none_or(|x| x == s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_worker_is_evicted_everywhere() {
    let sim = cluster(N, |_| SimOptions::default()).await;
    let id = registered_everywhere(&sim, 0, "http://10.0.0.1:8000").await;
    for n in &sim.nodes {
        fail(n, &id);
    }
    sim.until_all(PATIENCE, "eviction", |n| n.status(&id).is_none())
        .await;
    for n in &sim.nodes {
        assert_eq!(
            n.node.stored_tombstone_generation(&id),
            Some(1),
            "{} holds the tombstone",
            n.name
        );
    }
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_reachability_never_evicts_and_ready_only_where_reachable() {
    let sim = cluster(N, |_| SimOptions::default()).await;
    let id = registered_everywhere(&sim, 0, "http://10.0.0.2:8000").await;
    for (i, n) in sim.nodes.iter().enumerate() {
        if i < N / 2 {
            n.probe(&id, OK, 2);
        } else {
            fail(n, &id);
        }
    }
    // Let every verdict propagate, then check nothing was evicted.
    sim.until_all(PATIENCE, "verdicts seen", |n| {
        n.node.cluster().verdicts_on(&id).len() == N - 1
    })
    .await;
    tokio::time::sleep(sim::INTERVAL * 10).await;
    for (i, n) in sim.nodes.iter().enumerate() {
        let want = if i < N / 2 {
            Status::Ready
        } else {
            Status::Failed
        };
        assert_eq!(n.status(&id), Some(want), "{}", n.name);
        assert_eq!(n.node.stored_tombstone_generation(&id), None);
    }
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sick_node_evicts_nothing() {
    let sim = cluster(N, |_| SimOptions::default()).await;
    let id = registered_everywhere(&sim, 0, "http://10.0.0.3:8000").await;
    for (i, n) in sim.nodes.iter().enumerate() {
        if i == 5 {
            fail(n, &id);
        } else {
            n.probe(&id, OK, 2);
        }
    }
    tokio::time::sleep(sim::INTERVAL * 20).await;
    for (i, n) in sim.nodes.iter().enumerate() {
        assert_eq!(
            n.status(&id),
            Some(if i == 5 {
                Status::Failed
            } else {
                Status::Ready
            })
        );
    }
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_death_past_the_grace_period_keeps_the_registration_for_newcomers() {
    let grace = Duration::from_secs(5);
    let mut sim = cluster(N, |_| SimOptions {
        grace: Some(grace),
        ..Default::default()
    })
    .await;
    let id = registered_everywhere(&sim, 0, "http://10.0.0.4:8000").await;
    sim.kill(0).await;
    // node-01 is now the smallest live id: it adopts. Wait for the owner to be declared
    // dead and for its grace period to pass.
    sim.until_all(PATIENCE, "owner declared dead", |n| {
        n.node
            .cluster()
            .members
            .iter()
            .any(|m| m.node_id == "node-00" && m.state == MemberState::Dead)
    })
    .await;
    sim.until_all(
        PATIENCE,
        "dead member forgotten after the grace period",
        |n| {
            n.node
                .cluster()
                .members
                .iter()
                .all(|m| m.state == MemberState::Alive)
        },
    )
    .await;
    sim.until_all(PATIENCE, "registration still advertised", |n| {
        n.node
            .cluster()
            .registrations
            .get(&id)
            .is_some_and(|a| a.by == "node-01")
    })
    .await;
    let newcomer = sim
        .add(SimOptions {
            grace: Some(grace),
            seed: Some(5),
            ..Default::default()
        })
        .await;
    sim.until_all(PATIENCE, "newcomer learns it", |n| n.status(&id).is_some())
        .await;
    assert_eq!(sim.nodes[newcomer].status(&id), Some(Status::Pending));
    assert_eq!(
        sim.nodes[newcomer]
            .node
            .registry()
            .get(&id)
            .unwrap()
            .reg
            .owner,
        "node-00"
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_to_adopt_costs_one_round_when_due_not_a_round_every_tick() {
    let mut sim = cluster(3, |_| SimOptions::default()).await;
    let id = registered_everywhere(&sim, 0, "http://10.0.0.9:8000").await;
    sim.kill(0).await;
    let dead_seen = |n: &SimNode| {
        n.node
            .cluster()
            .members
            .iter()
            .any(|m| m.node_id == "node-00" && m.state == MemberState::Dead)
    };
    sim.until_all(PATIENCE, "owner declared dead", dead_seen)
        .await;
    let adopter = &sim.nodes[1].node;
    let before = adopter.metrics().sync_rounds();
    let waiting_since = std::time::Instant::now();
    sim.until_all(PATIENCE, "adopted by node-01", |n| {
        n.node
            .cluster()
            .registrations
            .get(&id)
            .is_some_and(|a| a.by == "node-01")
    })
    .await;
    let waited = waiting_since.elapsed();
    let rounds = adopter.metrics().sync_rounds() - before;
    // The wait is ADOPT_AFTER (5 s) from when the owner was last seen alive: about 100
    // gossip ticks of 50 ms. A round per tick was the old behaviour; the rounds left are
    // the one that adopts and those that follow real changes (the adoption itself).
    let ticks = (waited.as_millis() / sim::INTERVAL.as_millis()) as u64;
    assert!(
        waited >= Duration::from_secs(2) && rounds * 4 < ticks,
        "{rounds} full rounds in {waited:?} ({ticks} ticks)"
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tombstone_outlives_its_writer() {
    let grace = Duration::from_secs(5);
    let mut sim = cluster(N, |_| SimOptions {
        grace: Some(grace),
        ..Default::default()
    })
    .await;
    let id = registered_everywhere(&sim, 0, "http://10.0.0.5:8000").await;
    sim.nodes[3].node.delete(&id).await.unwrap();
    sim.until_all(PATIENCE, "deleted everywhere", |n| n.status(&id).is_none())
        .await;
    sim.kill(3).await;
    sim.until_all(PATIENCE, "writer declared dead", |n| {
        n.node
            .cluster()
            .members
            .iter()
            .any(|m| m.node_id == "node-03" && m.state == MemberState::Dead)
    })
    .await;
    sim.until_all(
        PATIENCE,
        "dead member forgotten after the grace period",
        |n| {
            n.node
                .cluster()
                .members
                .iter()
                .all(|m| m.state == MemberState::Alive)
        },
    )
    .await;
    let newcomer = sim
        .add(SimOptions {
            grace: Some(grace),
            seed: Some(7),
            ..Default::default()
        })
        .await;
    sim.until_all(PATIENCE, "newcomer learns the tombstone", |n| {
        n.node.stored_tombstone_generation(&id) == Some(1)
    })
    .await;
    tokio::time::sleep(sim::INTERVAL * 10).await;
    for n in sim.live() {
        assert!(n.status(&id).is_none(), "{} resurrected the worker", n.name);
    }
    assert!(sim.nodes[newcomer].status(&id).is_none());
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_delete_and_patch_on_different_nodes_end_deleted() {
    let sim = cluster(N, |_| SimOptions::default()).await;
    let id = registered_everywhere(&sim, 0, "http://10.0.0.6:8000").await;
    let patch = sim.nodes[4].node.update(&id, |s| {
        let mut s = s.clone();
        s.priority = 7;
        Ok(s)
    });
    let delete = sim.nodes[9].node.delete(&id);
    let (p, d) = tokio::join!(patch, delete);
    p.unwrap();
    d.unwrap();
    sim.until_all(PATIENCE, "deleted everywhere", |n| n.status(&id).is_none())
        .await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_on_any_node_reaches_every_node_and_keeps_status() {
    let sim = cluster(N, |_| SimOptions::default()).await;
    let id = registered_everywhere(&sim, 0, "http://10.0.0.7:8000").await;
    for n in &sim.nodes[..5] {
        n.probe(&id, OK, 2);
    }
    sim.nodes[12]
        .node
        .update(&id, |s| {
            let mut s = s.clone();
            s.labels.insert("zone".into(), "b".into());
            Ok(s)
        })
        .await
        .unwrap();
    sim.until_all(PATIENCE, "patch everywhere", |n| {
        n.node
            .registry()
            .get(&id)
            .is_some_and(|e| e.reg.spec.labels.get("zone").map(String::as_str) == Some("b"))
    })
    .await;
    for (i, n) in sim.nodes.iter().enumerate() {
        let want = if i < 5 {
            Status::Ready
        } else {
            Status::Pending
        };
        assert_eq!(n.status(&id), Some(want), "{} lost its status", n.name);
        assert_eq!(n.node.registry().get(&id).unwrap().reg.generation, 1);
    }
    // The owner advertises the patched spec itself from now on.
    sim.until_all(PATIENCE, "owner advertises the patch", |n| {
        n.node
            .cluster()
            .registrations
            .get(&id)
            .is_some_and(|a| a.by == "node-00" && a.reg.spec.labels.contains_key("zone"))
            || n.name == "node-00"
    })
    .await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_registration_racing_a_tombstone_never_resurrects_the_old_generation() {
    let sim = cluster(N, |_| SimOptions::default()).await;
    let url = "http://10.0.0.8:8000";
    let id = registered_everywhere(&sim, 0, url).await;
    let delete = sim.nodes[2].node.delete(&id);
    let again = sim.nodes[15].node.register(spec(url));
    let (d, r) = tokio::join!(delete, again);
    d.unwrap();
    let (_, created) = r.unwrap();
    // Wait until every node agrees, then check the invariants: generation 1 is gone
    // everywhere; a surviving registration is a newer generation known everywhere.
    tokio::time::sleep(sim::INTERVAL * 20).await;
    sim.until_all(PATIENCE, "agreement", |n| {
        n.node.stored_tombstone_generation(&id) == Some(1)
    })
    .await;
    let survivor = sim.nodes.iter().find_map(|n| n.node.registry().get(&id));
    match survivor {
        Some(e) => {
            assert!(
                created,
                "a survivor exists only if node 15 registered a new generation"
            );
            assert!(e.reg.generation >= 2);
            sim.until_all(PATIENCE, "new generation everywhere", |n| {
                n.node
                    .registry()
                    .get(&id)
                    .is_some_and(|x| x.reg.generation == e.reg.generation)
            })
            .await;
        }
        None => {
            sim.until_all(PATIENCE, "gone everywhere", |n| n.status(&id).is_none())
                .await;
        }
    }
    for n in &sim.nodes {
        assert!(
            n.node
                .registry()
                .get(&id)
                .is_none_or(|e| e.reg.generation > 1)
        );
    }
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_node_keeps_its_verdicts_and_catches_up_after_healing() {
    let mut sim = cluster(6, |_| SimOptions::default()).await;
    let id = registered_everywhere(&sim, 0, "http://10.0.0.9:8000").await;
    for i in 0..5 {
        sim.cut(5, i).await;
    }
    // While cut off, node 5 verifies the worker itself; the others delete it.
    sim.nodes[5].probe(&id, OK, 2);
    sim.nodes[1].node.delete(&id).await.unwrap();
    tokio::time::sleep(sim::INTERVAL * 10).await;
    assert_eq!(
        sim.nodes[5].status(&id),
        Some(Status::Ready),
        "no peer can change a local verdict"
    );
    for i in 0..5 {
        sim.heal(5, i).await;
    }
    sim.until_all(PATIENCE, "deletion reaches the healed node", |n| {
        n.status(&id).is_none()
    })
    .await;
    let _ = gone_or(&sim.nodes[5], &id, Status::Ready);
    sim.kill(5).await;
    sim.stop().await;
}
