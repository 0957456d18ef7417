//! Seeded random schedules on the model (was daemon/tests/random_sim.rs, in real time,
//! where the seed did not reproduce a run). Each ends converged (same views, nothing
//! tombstoned alive: assertions of the schedule itself), and its trace shows that no
//! node made a worker ready without its own last probes of it passing. The same seed
//! gives the same trace, byte for byte.

mod support;

use probemesh_sim::trace::{Event, Line};
use probemesh_sim::{RunOptions, random};
use std::collections::BTreeMap;

fn options() -> RunOptions {
    RunOptions {
        trace_probes: true,
        ..Default::default()
    }
}

/// Every transition to ready on a node follows at least `threshold` successful probes
/// of that worker's address by that node, with no failure in between (the state
/// machine's thresholds; SPEC S2: only local probes promote).
fn ready_only_after_own_successes(lines: &[Line], threshold: usize) -> usize {
    // (node, host:port) -> results of its probes so far.
    let mut probes: BTreeMap<(String, String), Vec<bool>> = BTreeMap::new();
    let mut checked = 0;
    for l in lines {
        match &l.event {
            Event::Probe { worker, result } => probes
                .entry((l.node.clone(), worker.clone()))
                .or_default()
                .push(*result == "ok"),
            Event::Transition { url, to, .. } if to == "ready" => {
                let addr = url.trim_start_matches("http://").to_string();
                let h = probes
                    .get(&(l.node.clone(), addr))
                    .cloned()
                    .unwrap_or_default();
                let tail: Vec<bool> = h.iter().rev().take(threshold).copied().collect();
                assert!(
                    tail.len() == threshold && tail.iter().all(|ok| *ok),
                    "{} made {url} ready at {} ms with own probe history {h:?}",
                    l.node,
                    l.at_ms
                );
                checked += 1;
            }
            _ => {}
        }
    }
    checked
}

#[test]
fn random_schedules_keep_the_invariants() {
    for seed in [1u64, 2, 3] {
        let s = random::schedule(seed);
        let out = support::run_with(&s, &options());
        let lines = out.trace.lines();
        let readies = ready_only_after_own_successes(&lines, s.settings.success_threshold as usize);
        assert!(
            readies > 0,
            "seed {seed}: the schedule made nothing ready, so it checked nothing"
        );
    }
}

#[test]
fn a_seed_reproduces_its_schedule_byte_for_byte() {
    let s = random::schedule(7);
    let a = support::run_with(&s, &options()).trace.render();
    let b = support::run_with(&s, &options()).trace.render();
    assert!(
        a.lines().count() > 1000,
        "a trace worth comparing: {} lines",
        a.lines().count()
    );
    assert_eq!(a, b, "same schedule, same seed, different trace");
    println!(
        "seed 7: {} trace lines, {} bytes, identical in two runs",
        a.lines().count(),
        a.len()
    );
}
