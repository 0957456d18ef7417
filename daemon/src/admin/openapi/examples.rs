//! Examples of the document, shaped like real answers of a three-node cluster
//! (`node-a`, `node-b`, `node-c`). A unit test checks the Worker example against the
//! fields the Worker schema lists, so an example cannot lose or invent a field.

use serde_json::{Value, json};

/// A worker id of the examples.
pub const ID: &str = "5f0c3a9e1b2d4c6f";

/// An error body.
pub fn error(code: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message}})
}

/// A Worker as `node-a` shows it; with `views`, as `GET /v1/workers/{id}` does.
pub fn worker(views: bool) -> Value {
    let mut w = json!({
        "id": ID,
        "url": "http://10.0.0.5:8000",
        "model_id": "llama-3-8b",
        "worker_type": "regular",
        "labels": {"zone": "a"},
        "priority": 50,
        "cost": 1.0,
        "bootstrap_port": null,
        "health": {"path": "/health", "interval": "5s", "timeout": "2s", "success_threshold": 2, "failure_threshold": 3, "disable": false},
        "status": "ready",
        "routable": true,
        "origin": "local",
        "owner": "node-a",
        "generation": 1,
        "status_since": "2026-11-28T14:06:57.112Z",
        "probe": {"consecutive_successes": 14, "consecutive_failures": 0, "pending_probes": 0, "last_result": "ok", "last_probe_at": "2026-11-28T14:08:02.431Z", "last_latency_ms": 1.27}
    });
    if views {
        w["views"] = json!({
            "node-a": {"status": "ready", "updated_at": "2026-11-28T14:06:57.112Z"},
            "node-b": {"status": "ready", "updated_at": "2026-11-28T14:06:57.530Z"},
            "node-c": {"status": "not_ready", "updated_at": "2026-11-28T14:07:41.008Z"}
        });
    }
    w
}

/// `GET /v1/workers`.
pub fn list() -> Value {
    json!({"node_id": "node-a", "index": 1_764_338_816_009_000u64, "workers": [worker(false)]})
}

/// `GET /v1/workers?views=true`.
pub fn list_with_views() -> Value {
    json!({"node_id": "node-a", "index": 1_764_338_816_009_000u64, "workers": [worker(true)]})
}

/// A WorkerSpec with every field.
pub fn spec() -> Value {
    json!({
        "url": "http://10.0.0.5:8000",
        "model_id": "llama-3-8b",
        "worker_type": "regular",
        "labels": {"zone": "a"},
        "priority": 50,
        "cost": 1.0,
        "bootstrap_port": null,
        "health": {"path": "/health", "interval": "5s", "timeout": "2s", "success_threshold": 2, "failure_threshold": 3, "disable": false}
    })
}

/// A PATCH body.
pub fn patch() -> Value {
    json!({"labels": {"zone": "b"}, "priority": 10, "health": {"interval": null}})
}

/// `DELETE /v1/workers/{id}`.
pub fn deleted() -> Value {
    json!({"id": ID, "generation": 1, "tombstoned": true})
}

/// `GET /v1/members`.
pub fn members() -> Value {
    json!({"node_id": "node-a", "members": [
        {"node_id": "node-a", "gossip_addr": "10.0.1.1:7800", "state": "alive", "is_self": true, "workers_owned": 1, "version": "0.1.0", "degraded": false, "degraded_reason": null},
        {"node_id": "node-b", "gossip_addr": "10.0.1.2:7800", "state": "alive", "is_self": false, "workers_owned": 0, "version": "0.1.0", "degraded": true, "degraded_reason": "this node fails 4 of the 4 workers that most of its 2 healthy peers reach (…): its own network path is the likely fault"},
        {"node_id": "node-c", "gossip_addr": "10.0.1.3:7800", "state": "dead", "is_self": false, "workers_owned": 0, "version": "0.1.0", "degraded": false, "degraded_reason": null}
    ]})
}

/// An excerpt of `GET /v1/events`.
pub const EVENTS: &str = "id: 17\nevent: transition\ndata: {\"at\":\"2026-11-28T14:06:57.112Z\",\"from\":\"pending\",\"generation\":1,\"reason\":\"probes_succeeded\",\"to\":\"ready\",\"url\":\"http://10.0.0.5:8000\",\"worker_id\":\"5f0c3a9e1b2d4c6f\"}\n\nid: 18\nevent: removed\ndata: {\"at\":\"2026-11-28T14:09:01.004Z\",\"generation\":1,\"last_status\":\"ready\",\"reason\":\"deleted\",\"url\":\"http://10.0.0.5:8000\",\"worker_id\":\"5f0c3a9e1b2d4c6f\"}\n\n";

/// An excerpt of `GET /metrics`.
pub const METRICS: &str = "# HELP probemesh_workers Workers in the local view, by this node's status.\n# TYPE probemesh_workers gauge\nprobemesh_workers{status=\"ready\"} 1\n# EOF\n";
