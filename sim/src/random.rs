//! Seeded random schedules (was `daemon/tests/random_sim.rs`, in real time, where a
//! seed did not reproduce a run): registrations, deletions, PATCHes, reachability
//! changes and link cuts at random nodes and random moments, then everything healed,
//! ending with the invariants of SPEC S2, S6 and S8 as assertions. On the model the
//! same seed reproduces the same run, trace and all.

use crate::check::Failure;
use crate::scenario::compile::Expect;
use crate::scenario::{Cond, Scenario, Sel, Settings, Step};
use probemesh_gossip::model::WorkerUrl;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::time::Duration;

/// Nodes in a random schedule.
pub const NODES: usize = 8;
/// Worker URLs it draws from.
pub const URLS: usize = 6;
/// Random steps.
pub const STEPS: usize = 120;

/// The worker URLs of random schedules.
pub fn urls() -> Vec<WorkerUrl> {
    (0..URLS)
        .filter_map(|i| WorkerUrl::parse(&format!("http://10.50.0.{}:8000", i + 1)).ok())
        .collect()
}

/// The schedule of `seed` (the run uses the same seed).
pub fn schedule(seed: u64) -> Scenario {
    let mut rng = StdRng::seed_from_u64(seed);
    let urls = urls();
    let settings = Settings {
        gossip_interval: Duration::from_millis(50),
        probe_interval: Duration::from_millis(500),
        probe_timeout: Duration::from_millis(200),
        ..Settings::default()
    };
    let all: Vec<usize> = (0..NODES).collect();
    let mut steps = vec![
        Step::Start {
            count: NODES,
            seed_node: 0,
            allow: Vec::new(),
        },
        Step::AssertWithin(Duration::from_secs(10), Cond::MembersAlive(NODES, Sel::All)),
    ];
    let mut cut: Vec<(usize, usize)> = Vec::new();
    for _ in 0..STEPS {
        let n = rng.random_range(0..NODES);
        let url = urls[rng.random_range(0..urls.len())].clone();
        steps.push(match rng.random_range(0..100) {
            0..25 => Step::Register {
                on: n,
                url,
                disable_checks: false,
                expect: Expect::Any,
            },
            25..35 => Step::Delete {
                on: n,
                worker: url,
                expect: Expect::Any,
            },
            35..45 => Step::Patch {
                on: n,
                worker: url,
                labels: BTreeMap::from([("step".into(), rng.random_range(0..1000).to_string())]),
                priority: None,
                disable_checks: None,
                expect: Expect::Any,
            },
            45..65 => Step::Unreachable {
                worker: url,
                from: Sel::Nodes(vec![n]),
                how: if rng.random_bool(0.5) {
                    Failure::Refused
                } else {
                    Failure::Timeout
                },
            },
            65..85 => Step::Reachable {
                worker: url,
                from: Sel::Nodes(vec![n]),
            },
            85..93 => {
                let m = (n + 1 + rng.random_range(0..NODES - 1)) % NODES;
                cut.push((n, m));
                Step::Cut {
                    a: vec![n],
                    b: vec![m],
                }
            }
            _ => match cut.pop() {
                Some((a, b)) => Step::Heal {
                    a: vec![a],
                    b: vec![b],
                },
                None => Step::Advance(Duration::from_millis(10)),
            },
        });
        steps.push(Step::Advance(Duration::from_millis(
            rng.random_range(0..300),
        )));
    }
    steps.push(Step::Heal {
        a: all.clone(),
        b: all,
    });
    for url in &urls {
        steps.push(Step::Reachable {
            worker: url.clone(),
            from: Sel::All,
        });
    }
    // Converged: every node holds the same (worker, generation) pairs, none of them
    // tombstoned anywhere.
    let converged = Cond::All(vec![Cond::Agree(Sel::All), Cond::NoResurrection]);
    steps.push(Step::AssertWithin(
        Duration::from_secs(60),
        converged.clone(),
    ));
    steps.push(Step::AssertFor(Duration::from_secs(5), converged));
    Scenario {
        name: format!("random schedule {seed}"),
        file: format!("<probemesh_sim::random::schedule({seed})>"),
        seed,
        settings,
        steps,
    }
}
