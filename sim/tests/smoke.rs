use probemesh_sim::{RunOptions, run, scenario};
use std::path::Path;

#[test]
fn smoke() {
    let s = scenario::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/dead_worker_evicted.toml"),
    )
    .unwrap();
    let t0 = std::time::Instant::now();
    let out = run(&s, &RunOptions::default());
    println!("wall {:?} virtual {} ms", t0.elapsed(), out.virtual_ms);
    for h in &out.held {
        println!("{h:?}");
    }
    println!("{}", out.trace.tail(30));
}
