//! Registrations and tombstones: the durable facts about workers.

use super::{WorkerId, WorkerSpec, WorkerUrl};
use serde::{Deserialize, Serialize};

/// One generation of a worker registration.
///
/// A URL that is evicted and registered again gets a higher `generation`, so a
/// tombstone for the old generation never removes the new one (SPEC S7).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    /// Derived from `spec.url`; stored to avoid rehashing on every lookup.
    pub id: WorkerId,
    /// Generation of this registration, starting at 1.
    pub generation: u64,
    /// Node that registered this generation.
    pub owner: String,
    /// When it was registered, in milliseconds since the Unix epoch.
    pub registered_at_ms: u64,
    /// When the spec was last changed (registration or PATCH on any node), in
    /// milliseconds since the Unix epoch. Among records of one generation, the highest
    /// revision wins, so a PATCH made on any node reaches every node (SPEC S9).
    pub revision: u64,
    /// The worker's description.
    pub spec: WorkerSpec,
}

/// Why a generation was evicted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvictionReason {
    /// `DELETE /v1/workers/{id}` (SPEC S6 a).
    Deleted,
    /// Every live member that tracks it reported `failed` (SPEC S6 b).
    Failed,
}

impl EvictionReason {
    /// The snake_case name used in logs, events and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            EvictionReason::Deleted => "deleted",
            EvictionReason::Failed => "failed",
        }
    }
}

/// A drain of one generation (SPEC S14): from `started_at_ms` it is `draining` on every
/// node (not routable, still listed); at `ends_at_ms` whichever live node sees the end
/// first tombstones it. Every node that learns a drain stores it and republishes it, so
/// the drain ends even when the node that started it is gone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drain {
    /// The worker.
    pub id: WorkerId,
    /// Its URL, kept for operators reading the state.
    pub url: WorkerUrl,
    /// The generation being drained.
    pub generation: u64,
    /// Node that started the drain.
    pub writer: String,
    /// When it started, in milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    /// When it ends, in milliseconds since the Unix epoch.
    pub ends_at_ms: u64,
}

/// The longest drain period (SPEC S14).
pub const MAX_DRAIN_MS: u64 = 3_600_000;

/// Proof that one generation of a worker was evicted; it keeps the generation from
/// coming back until it expires.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    /// The evicted worker.
    pub id: WorkerId,
    /// Its URL, kept for operators reading the state.
    pub url: WorkerUrl,
    /// The evicted generation; every generation up to it is dead.
    pub generation: u64,
    /// Why it was evicted.
    pub reason: EvictionReason,
    /// Node that wrote the tombstone.
    pub writer: String,
    /// When it was written, in milliseconds since the Unix epoch.
    pub deleted_at_ms: u64,
    /// When it may be forgotten, in milliseconds since the Unix epoch.
    pub expires_at_ms: u64,
}
