//! The Worker JSON of the API: the spec with every default filled in, plus this node's
//! status and probe counters.

use crate::health_settings::HealthSettings;
use crate::registry::Entry;
use probemesh_gossip::model::{Status, WorkerType};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::SystemTime;

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Duration in the API's human form (`5s`, `500ms`).
pub fn human(d: std::time::Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// One worker as the API shows it.
#[derive(Debug, Serialize)]
pub struct WorkerJson<'a> {
    id: &'a str,
    url: &'a str,
    model_id: Option<&'a str>,
    worker_type: WorkerType,
    labels: &'a BTreeMap<String, String>,
    priority: u32,
    cost: f32,
    bootstrap_port: Option<u16>,
    health: HealthJson,
    status: Status,
    routable: bool,
    origin: &'static str,
    owner: &'a str,
    generation: u64,
    status_since: String,
    probe: ProbeJson<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    views: Option<BTreeMap<String, ViewJson>>,
}

#[derive(Debug, Serialize)]
struct HealthJson {
    path: String,
    interval: String,
    timeout: String,
    success_threshold: u32,
    failure_threshold: u32,
    disable: bool,
}

#[derive(Debug, Serialize)]
struct ProbeJson<'a> {
    consecutive_successes: u32,
    consecutive_failures: u32,
    pending_probes: u32,
    last_result: Option<&'a str>,
    last_probe_at: Option<String>,
    last_latency_ms: Option<f64>,
}

/// One member's view of a worker (`views` of `GET /v1/workers/{id}`).
#[derive(Debug, Serialize)]
pub struct ViewJson {
    /// That member's status for the worker.
    pub status: Status,
    /// When that member entered the status.
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
