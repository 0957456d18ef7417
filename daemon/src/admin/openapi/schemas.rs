//! Schemas the derive cannot write by itself: enums of the shared model crate (their
//! names come from the model's own lists, so a new status shows up here), and the
//! payloads of the event stream, which are built in `node/notes.rs` and described here
//! (the schemathesis test checks live events against them).

use probemesh_gossip::model::{ProbeKind, Status, WorkerType};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

fn string_enum(values: &[&str], description: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.iter().copied()))
        .description(Some(description))
        .build()
}

/// A worker status ([`Status::ALL`]).
pub fn status() -> Object {
    let names: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
    string_enum(
        &names,
        "A node's own status for a worker; only `ready` is routable",
    )
}

/// The name of a worker type, with an exhaustive match so that a new type in the model
/// does not compile until it is named here.
pub fn worker_type_name(t: WorkerType) -> &'static str {
    match t {
        WorkerType::Regular => "regular",
        WorkerType::Prefill => "prefill",
        WorkerType::Decode => "decode",
    }
}

/// Every worker type.
pub const WORKER_TYPES: [WorkerType; 3] =
    [WorkerType::Regular, WorkerType::Prefill, WorkerType::Decode];

/// A worker type (smg's roles).
pub fn worker_type() -> Object {
    let names: Vec<&str> = WORKER_TYPES.iter().map(|t| worker_type_name(*t)).collect();
    string_enum(
        &names,
        "Role of the worker, as in smg's worker API (default `regular`)",
    )
}

/// The probe kinds (SPEC S3).
pub const PROBE_KINDS: [ProbeKind; 3] = [ProbeKind::Http, ProbeKind::Models, ProbeKind::Grpc];

/// A probe kind.
pub fn probe_kind() -> Object {
    let names: Vec<&str> = PROBE_KINDS.iter().map(|k| k.as_str()).collect();
    string_enum(
        &names,
        "What a probe checks: `http` (GET url + path, any 2xx); `models` (GET url + /v1/models, a 2xx whose `data[].id` lists the worker's `model_id`, else `model_mismatch`; needs a `model_id`); `grpc` (`grpc.health.v1.Health/Check` on the worker's host and port, `SERVING`; the kind of every `grpc://` worker)",
    )
}

/// The origin of a worker in the local view.
pub fn origin() -> Object {
    string_enum(
        &["local", "peer"],
        "`local`: registered on this node; `peer`: learned from a peer",
    )
}

/// A member's state.
pub fn member_state() -> Object {
    string_enum(&["alive", "dead"], "Alive or dead, as this node sees it")
}

/// `/v1/ready`'s status.
pub fn ready_status() -> Object {
    string_enum(
        &["ready", "starting", "degraded", "refused"],
        "`ready` (200); else 503 with `starting` (a start-up step is not done: see `waiting_for`), `degraded` (the node cannot make changes durable), `refused` (another live process has this node's id)",
    )
}

/// A status or `null` (the `from` of a worker entering the view).
pub fn status_or_null() -> Object {
    let mut names: Vec<serde_json::Value> = Status::ALL
        .iter()
        .map(|s| serde_json::Value::from(s.as_str()))
        .collect();
    names.push(serde_json::Value::Null);
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::String,
            Type::Null,
        ]))
        .enum_values(Some(names))
        .description(Some(
            "The status before the change; `null` when the worker entered the view",
        ))
        .build()
}

/// Data of a `transition` event of `GET /v1/events`: one local status change, or a
/// worker entering the view (`from: null`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"worker_id": "5f0c3a9e1b2d4c6f", "url": "http://10.0.0.5:8000", "generation": 1, "from": "pending", "to": "ready", "at": "2026-11-28T14:06:57.112Z", "reason": "probes_succeeded"}))]
pub struct TransitionEvent {
    /// The worker's id.
    pub worker_id: String,
    /// The worker's URL.
    pub url: String,
    /// The generation the change is about.
    pub generation: u64,
    /// The status before.
    #[schema(schema_with = status_or_null)]
    pub from: Option<Status>,
    /// The status after.
    #[schema(schema_with = status)]
    pub to: Status,
    /// When the change happened.
    #[schema(format = DateTime)]
    pub at: String,
    /// Why (`registered`, `imported`, `probes_succeeded`, `probes_failed`, ...).
    pub reason: String,
}

/// Data of a `removed` event: a worker left the view (tombstoned or forgotten).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"worker_id": "5f0c3a9e1b2d4c6f", "url": "http://10.0.0.5:8000", "generation": 1, "last_status": "failed", "at": "2026-11-28T14:09:01.004Z", "reason": "tombstoned"}))]
pub struct RemovedEvent {
    /// The worker's id.
    pub worker_id: String,
    /// The worker's URL.
    pub url: String,
    /// The generation removed.
    pub generation: u64,
    /// Its status on this node when it was removed.
    #[schema(schema_with = status)]
    pub last_status: Status,
    /// When it was removed.
    #[schema(format = DateTime)]
    pub at: String,
    /// Why.
    pub reason: String,
}

/// Data of a `resync` event: the client missed events and must re-read
/// `GET /v1/workers`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResyncEvent {
    /// Why the events cannot be replayed.
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_type_names_are_the_model_serde_names() {
        for t in WORKER_TYPES {
            assert_eq!(
                serde_json::to_value(t).unwrap(),
                serde_json::Value::from(worker_type_name(t))
            );
        }
    }
}
