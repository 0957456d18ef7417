//! Shared by the simulator's test files: load a scenario by file name, run it, print
//! how long it took in wall time and in virtual time.

#![allow(dead_code)]

use probemesh_sim::scenario::{self, Scenario};
use probemesh_sim::{Backend, Outcome, RunOptions, run};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// `sim/scenarios`.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

/// The scenario in `sim/scenarios/<file>.toml`.
pub fn load(file: &str) -> Scenario {
    let path = dir().join(format!("{file}.toml"));
    match scenario::load(&path) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

/// Runs it with `opts`, printing wall and virtual time.
pub fn run_with(s: &Scenario, opts: &RunOptions) -> Outcome {
    let t0 = Instant::now();
    let out = run(s, opts);
    println!(
        "{} [{:?}, seed {}]: {} ms virtual in {} ms wall",
        s.name,
        opts.backend,
        out.seed,
        out.virtual_ms,
        t0.elapsed().as_millis()
    );
    out
}

/// Runs scenario `file` on `backend`.
pub fn run_file(file: &str, backend: Backend) -> Outcome {
    run_with(
        &load(file),
        &RunOptions {
            backend,
            ..Default::default()
        },
    )
}
