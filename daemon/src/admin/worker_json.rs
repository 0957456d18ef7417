//! The Worker JSON of the API: the spec with every default filled in, plus this node's
//! status and probe counters.

use crate::health_settings::HealthSettings;
use crate::registry::Entry;
use probemesh_gossip::model::{Status, WorkerType};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::SystemTime;
use utoipa::ToSchema;

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Duration in the API's human form (`5s`, `500ms`).
pub fn human(d: std::time::Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// One worker as the API shows it: the spec with every default filled in, plus this
/// node's status and probe counters.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Worker)]
pub struct WorkerJson<'a> {
    /// Derived from the normalized URL; the same on every node (16 hex digits).
    #[schema(pattern = "^[0-9a-f]{16}$", example = "5f0c3a9e1b2d4c6f")]
    id: &'a str,
    /// The normalized URL (scheme and host lower-cased, port explicit, no trailing
    /// slash).
    #[schema(example = "http://10.0.0.5:8000")]
    url: &'a str,
    /// The model the worker serves.
    model_id: Option<&'a str>,
    /// Role, as in smg's worker API.
    #[schema(schema_with = super::openapi::schemas::worker_type)]
    worker_type: WorkerType,
    /// Free-form labels.
    labels: &'a BTreeMap<String, String>,
    /// Routing priority (smg's default 50).
    priority: u32,
    /// Routing cost (smg's default 1.0).
    cost: f32,
    /// Bootstrap port of a prefill worker.
    bootstrap_port: Option<u16>,
    /// The health settings in force on this node (the worker's own, else this node's
    /// `--probe-*` defaults).
    health: HealthJson,
    /// This node's status for the worker.
    #[schema(schema_with = super::openapi::schemas::status)]
    status: Status,
    /// Whether this node routes to it: `status` is `ready`, nothing else (SPEC S4).
    routable: bool,
    /// `local` when registered on this node, `peer` when learned from a peer.
    #[schema(schema_with = super::openapi::schemas::origin)]
    origin: &'static str,
    /// Node id of the node that registered this generation.
    owner: &'a str,
    /// Generation of the registration (a new one after each eviction).
    #[schema(minimum = 1)]
    generation: u64,
    /// When this node entered `status` (RFC 3339, UTC, milliseconds).
    #[schema(format = DateTime)]
    status_since: String,
    /// This node's probe counters.
    probe: ProbeJson<'a>,
    /// Every live member's status for this generation (`GET /v1/workers/{id}`, and
    /// `GET /v1/workers?views=true`); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    views: Option<BTreeMap<String, ViewJson>>,
}

/// Health settings in force for a worker on this node.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WorkerHealth)]
struct HealthJson {
    /// Probe path.
    path: String,
    /// Probe interval (`5s`, `500ms`).
    interval: String,
    /// Probe timeout.
    timeout: String,
    /// Consecutive successes to become ready.
    #[schema(minimum = 1)]
    success_threshold: u32,
    /// Consecutive failures to leave ready.
    #[schema(minimum = 1)]
    failure_threshold: u32,
    /// Health checks disabled: the worker is ready without probes.
    disable: bool,
    /// What a probe checks (the worker's own kind, else this node's `--probe-kind`).
    #[schema(schema_with = super::openapi::schemas::probe_kind)]
    kind: &'static str,
}

/// This node's probe counters for a worker.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ProbeCounters)]
struct ProbeJson<'a> {
    /// Successes in a row.
    consecutive_successes: u32,
    /// Failures in a row.
    consecutive_failures: u32,
    /// Probes made while pending (a pending worker fails after 10 x failure_threshold).
    pending_probes: u32,
    /// Result class of the last probe (`ok`, `http_503`, `timeout`, `refused`, ...).
    last_result: Option<&'a str>,
    /// When the last probe finished.
    #[schema(format = DateTime)]
    last_probe_at: Option<String>,
    /// Latency of the last probe in milliseconds.
    last_latency_ms: Option<f64>,
}

/// One member's view of a worker (`views` of `GET /v1/workers/{id}`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = View)]
pub struct ViewJson {
    /// That member's status for the worker.
    #[schema(schema_with = super::openapi::schemas::status)]
    pub status: Status,
    /// When that member entered the status.
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl<'a> WorkerJson<'a> {
    /// Renders `e` with its effective health settings `h`.
    pub fn new(e: &'a Entry, h: HealthSettings) -> WorkerJson<'a> {
        let spec = &e.reg.spec;
        WorkerJson {
            id: e.reg.id.as_str(),
            url: spec.url.as_str(),
            model_id: spec.model_id.as_deref(),
            worker_type: spec.worker_type,
            labels: &spec.labels,
            priority: spec.priority,
            cost: spec.cost,
            bootstrap_port: spec.bootstrap_port,
            health: HealthJson {
                path: h.path,
                interval: human(h.interval),
                timeout: human(h.timeout),
                success_threshold: h.thresholds.success,
                failure_threshold: h.thresholds.failure,
                disable: h.disabled,
                kind: h.kind.as_str(),
            },
            status: e.status,
            routable: e.status == Status::Ready,
            origin: e.origin.as_str(),
            owner: &e.reg.owner,
            generation: e.reg.generation,
            status_since: rfc3339(e.status_since),
            probe: ProbeJson {
                consecutive_successes: e.counters.consecutive_successes,
                consecutive_failures: e.counters.consecutive_failures,
                pending_probes: e.counters.pending_probes,
                last_result: e.last_probe.as_ref().map(|p| p.result.as_str()),
                last_probe_at: e.last_probe.as_ref().map(|p| rfc3339(p.at)),
                last_latency_ms: e
                    .last_probe
                    .as_ref()
                    .map(|p| (p.latency.as_secs_f64() * 1e5).round() / 100.0),
            },
            views: None,
        }
    }

    /// Adds the per-member views.
    pub fn with_views(mut self, views: BTreeMap<String, ViewJson>) -> Self {
        self.views = Some(views);
        self
    }
}
