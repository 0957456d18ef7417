//! Random schedules on an in-process cluster (seeded, so a failure is reproducible):
//! registrations, deletions, PATCHes, probe outcomes and link cuts in random order, then
//! heal and check the invariants of SPEC S2, S6 and S8:
//! - no resurrection: no node holds a generation that some node has tombstoned;
//! - no worker is ready on a node whose own probes did not pass;
//! - every registration that was not deleted is known, in the same generation, to every
//!   live node.

mod sim;

use probemesh::probe::check::ProbeResult;
use probemesh_gossip::model::{Status, WorkerId};
use rand::{Rng, SeedableRng};
use sim::{Sim, SimOptions, spec};
use std::collections::HashMap;
use std::time::Duration;

const NODES: usize = 8;
const URLS: usize = 6;
const STEPS: usize = 120;

async fn run_schedule(seed: u64) {
    let sim = Sim::start(NODES, |_| SimOptions::default()).await;
    sim.until_all(Duration::from_secs(20), "membership", |n| {
        n.node.cluster().live_node_ids().count() == NODES
    })
    .await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let urls: Vec<String> = (0..URLS)
        .map(|i| format!("http://10.50.0.{}:8000", i + 1))
        .collect();
    // (node, id, generation) -> the last two outcomes fed to that node's state machine.
    let mut fed: HashMap<(usize, WorkerId, u64), Vec<bool>> = HashMap::new();
    let mut cut: Vec<(usize, usize)> = Vec::new();
    for _ in 0..STEPS {
        let n = rng.random_range(0..NODES);
        let url = &urls[rng.random_range(0..URLS)];
        let id = probemesh_gossip::model::WorkerUrl::parse(url).unwrap().id();
        match rng.random_range(0..100) {
            0..25 => {
                let _ = sim.nodes[n].node.register(spec(url)).await;
            }
            25..35 => {
                let _ = sim.nodes[n].node.delete(&id).await;
            }
            35..45 => {
                let _ = sim.nodes[n]
                    .node
                    .update(&id, |s| {
                        let mut s = s.clone();
                        s.priority = s.priority.wrapping_add(1);
                        Ok(s)
                    })
                    .await;
            }
            45..85 => {
                if let Some(e) = sim.nodes[n].node.registry().get(&id) {
                    let ok = rng.random_bool(0.6);
                    let k = rng.random_range(1..4);
                    sim.nodes[n].probe(
                        &id,
                        if ok {
                            ProbeResult::Ok(200)
                        } else {
                            ProbeResult::Refused
                        },
                        k,
                    );
                    let v = fed.entry((n, id.clone(), e.reg.generation)).or_default();
                    v.extend(std::iter::repeat_n(ok, k));
                }
            }
            85..93 => {
                let m = (n + 1 + rng.random_range(0..NODES - 1)) % NODES;
                sim.cut(n, m).await;
                cut.push((n, m));
            }
            _ => {
                if let Some((a, b)) = cut.pop() {
                    sim.heal(a, b).await;
                }
            }
        }
        // Invariant at every step: ready only where this node's own probes passed: it saw
        // two successes in a row for this generation, and has not failed three times in
        // a row since (the state machine's thresholds).
        for (i, node) in sim.nodes.iter().enumerate() {
            for e in node.node.registry().read().workers.values() {
                if e.status == Status::Ready {
                    let h = fed
                        .get(&(i, e.reg.id.clone(), e.reg.generation))
                        .cloned()
                        .unwrap_or_default();
                    let verified = h.windows(2).any(|w| w == [true, true]);
                    let trailing_failures = h.iter().rev().take_while(|ok| !**ok).count();
                    assert!(
                        verified && trailing_failures < 3,
                        "seed {seed}: {} ready on node {i} with own probe history {h:?}",
                        e.reg.spec.url
                    );
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..30))).await;
    }
    for (a, b) in cut.drain(..) {
        sim.heal(a, b).await;
    }
    // Converge: every node agrees on (id -> generation), with nothing tombstoned alive.
    let end = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let views: Vec<HashMap<WorkerId, u64>> = sim
            .nodes
            .iter()
            .map(|n| {
                n.node
                    .registry()
                    .read()
                    .workers
                    .values()
                    .map(|e| (e.reg.id.clone(), e.reg.generation))
                    .collect()
            })
            .collect();
        let agree = views.iter().all(|v| *v == views[0]);
        if agree || tokio::time::Instant::now() > end {
            assert!(
                agree,
                "seed {seed}: nodes disagree after healing: {views:?}"
            );
            for n in &sim.nodes {
                for (id, generation) in &views[0] {
                    let dead = sim
                        .nodes
                        .iter()
                        .filter_map(|m| m.node.stored_tombstone_generation(id))
                        .max();
                    assert!(
                        dead.is_none_or(|g| g < *generation),
                        "seed {seed}: {id} generation {generation} resurrected (tombstone up to {dead:?}) on {}",
                        n.name
                    );
                }
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_schedules_keep_the_invariants() {
    for seed in [1u64, 2, 3] {
        run_schedule(seed).await;
    }
}
