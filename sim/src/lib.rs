//! A deterministic simulator for probemesh (issue 13): N in-process nodes with the real
//! rules (`probemesh::node::Node`, `cluster_sync`, `tombstone_expiry`) and the real probe
//! engine, in paused tokio time, disseminating their state either through a seeded
//! model of chitchat's scuttlebutt or through real chitchat over its in-memory
//! transport. Scenarios are data (`sim/scenarios/*.toml`); the same seed gives the
//! same trace, byte for byte, on the model.
//!
//! Reading order: [`scenario`] (what a file says) → [`runner`] (runs its steps) →
//! [`cluster`] (the nodes and their tasks) → [`model`] (the dissemination), with
//! [`check`] (simulated probes), [`disk`] (a data dir that never syncs),
//! [`conditions`] (what an assertion checks) and [`trace`] (what happened).

#![warn(missing_docs)]

pub mod check;
pub mod cluster;
pub mod conditions;
pub mod disk;
pub mod model;
pub mod random;
pub mod runner;
pub mod scenario;
pub mod trace;

pub use cluster::Backend;
pub use runner::{Outcome, RunOptions, run};
