//! The rule engine: pure functions that decide what happens to a worker on a node.
//!
//! Nothing here does I/O, reads a clock or draws random numbers; callers pass those
//! in. That keeps every rule testable in a table and usable by in-process simulations.
//!
//! - [`state_machine`]: one probe outcome in, the next status out (SPEC S3).
//! - [`eviction`]: when a failed worker is tombstoned, and when a local failure is
//!   retried (SPEC S6, S6b, S7).
//! - [`import`]: which peers' registrations and tombstones a node takes (S2, S6-S9),
//!   and who adopts an orphan (S8).
//! - [`fencing`]: when a node takes itself out of rotation (S12, S13).
//! - [`reconcile`]: one round against the cluster, combining the above into a plan of
//!   imports, evictions and what to publish.

pub mod eviction;
pub mod fencing;
pub mod import;
pub mod reconcile;
pub mod state_machine;
