//! Records shared by every node: worker identity, specs, registrations, tombstones.

mod record;
mod spec;
mod status;
mod worker_url;

pub use record::{EvictionReason, Registration, Tombstone};
pub use spec::{HealthOverrides, WorkerSpec, WorkerType};
pub use status::Status;
pub use worker_url::{UrlError, WorkerId, WorkerUrl};
