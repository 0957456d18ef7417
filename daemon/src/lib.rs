//! The probemesh daemon as a library, so that integration tests and simulations can
//! build nodes in one process. The binary (`main.rs`) only parses and dispatches.
//!
//! A request's path through the code: `admin/` (HTTP) → `node` (operations, under one
//! gate) → `store/` (durable) and `registry` (local view) → `probe/` (engine and checks,
//! which calls the node only through `probe::ProbeHost`). The cluster rules are pure
//! functions in `lifecycle/`; `cluster_sync` feeds them a gossip snapshot
//! (`lifecycle::reconcile`) and applies their plan. Time comes from `clock`.

pub mod admin;
pub mod advertise;
pub mod app;
pub mod cli;
pub mod client;
pub mod clock;
pub mod cluster_sync;
pub mod config;
pub mod declarative;
pub mod duration;
pub mod events;
pub mod gateway;
pub mod health_settings;
pub mod identity_watch;
pub mod lifecycle;
pub mod local_faults;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod node;
pub mod probe;
pub mod readiness;
pub mod registry;
pub mod reported;
pub mod shutdown;
pub mod store;
pub mod tls_commands;
pub mod tombstone_expiry;
pub mod transport_metrics;
pub mod version;

/// Installs `ring` as the process-wide rustls provider (see docs/decisions.md).
/// Idempotent: a second call, or a provider installed earlier, is left as it is.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
