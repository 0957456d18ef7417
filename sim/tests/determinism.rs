//! The simulator's promise: one scenario and one seed give one trace, byte for byte;
//! another seed gives another run (the model's peer choices and the probe engine's
//! jitter come from the seed).

mod support;

use probemesh_sim::RunOptions;

fn traced(seed: u64) -> RunOptions {
    RunOptions {
        seed: Some(seed),
        trace_probes: true,
        ..Default::default()
    }
}

#[test]
fn the_same_seed_gives_the_same_trace_and_another_seed_another() {
    // Kills a node, waits out the grace period, adopts, and starts a newcomer: every
    // kind of event the trace records.
    let s = support::load("adoption_after_owner_dies");
    let a = support::run_with(&s, &traced(42)).trace.render();
    let b = support::run_with(&s, &traced(42)).trace.render();
    let lines = a.lines().count();
    assert!(lines > 500, "a trace worth comparing: {lines} lines");
    for kind in [
        "member node-00 dead",
        "member node-00 forgotten",
        "probe ",
        " -> ready",
        "kill node-00",
    ] {
        assert!(a.contains(kind), "the trace records `{kind}`");
    }
    assert_eq!(a, b, "seed 42 twice gave two traces");
    let c = support::run_with(&s, &traced(43)).trace.render();
    assert_ne!(a, c, "seeds 42 and 43 gave the same trace");
    println!(
        "seed 42: {lines} lines ({} bytes) identical twice; seed 43: {} lines, first difference at line {}",
        a.len(),
        c.lines().count(),
        a.lines()
            .zip(c.lines())
            .position(|(x, y)| x != y)
            .unwrap_or(lines)
    );
}
