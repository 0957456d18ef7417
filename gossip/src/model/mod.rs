//! Records shared by every node: worker identity, specs, registrations, tombstones, and
//! the one validator every record passes (`validate`).

mod legacy;
mod record;
mod spec;
mod status;
pub mod validate;
mod worker_url;

pub use legacy::RegistrationV0;
pub use record::{Drain, EvictionReason, MAX_DRAIN_MS, Registration, Tombstone};
pub use spec::{HealthOverrides, ProbeKind, WorkerSpec, WorkerType};
pub use status::Status;
pub use validate::{Field, InvalidField};
pub use worker_url::{ProbeUrlError, UrlError, WorkerId, WorkerUrl};
