//! `/v1/health`, `/v1/ready` and `/metrics`.

use super::AdminState;
use super::openapi::{examples, schemas};
use crate::metrics::CONTENT_TYPE;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

/// The body of `GET /v1/health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthBody {
    /// Always `ok`.
    #[schema(pattern = "^ok$")]
    pub status: &'static str,
    /// This node's id.
    pub node_id: String,
}

/// The body of `GET /v1/ready`, in every state.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyBody {
    /// `ready`, or why not.
    #[schema(schema_with = schemas::ready_status)]
    pub status: &'static str,
    /// This node's id.
    pub node_id: String,
    /// Why the node is `degraded` or `refused`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    pub reason: Option<String>,
    /// The start-up steps not done yet (`starting` only): `state`, `gossip`,
    /// `identity`, `admin`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    pub waiting_for: Option<Vec<String>>,
}

/// `GET /v1/health`: the process answers.
#[utoipa::path(
    get,
    path = "/v1/health",
    tag = "status",
    operation_id = "health",
    summary = "Liveness: the agent answers",
    responses(
        (status = 200, description = "The agent is alive", body = HealthBody,
         example = json!({"status": "ok", "node_id": "node-a"})),
    )
)]
pub async fn health(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    Json(HealthBody {
        status: "ok",
        node_id: state.node.node_id().to_string(),
    })
}

/// `GET /v1/ready`: 200 once every subsystem reported ready and the node can still make
/// changes durable, else 503 naming what is missing. `refused` (another live process
/// has this node's id) outranks everything: it lasts until the process is restarted.
#[utoipa::path(
    get,
    path = "/v1/ready",
    tag = "status",
    operation_id = "ready",
    summary = "Readiness: state loaded, gossip up, identity checked, changes durable",
    description = "For an orchestrator's readiness probe: while it answers 503, the gateway replica beside this sidecar should take no traffic.",
    responses(
        (status = 200, description = "Ready", body = ReadyBody,
         example = json!({"status": "ready", "node_id": "node-a"})),
        (status = 503, description = "Not ready: `starting` (with `waiting_for`), `degraded` (the store stopped taking writes, or the node is self-fenced: SPEC S12) or `refused` (another live process has this node id), with the `reason`", body = ReadyBody,
         example = json!({"status": "starting", "node_id": "node-a", "waiting_for": ["gossip"]})),
    )
)]
pub async fn ready(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    let node_id = state.node.node_id();
    let body = |status, reason, waiting_for| ReadyBody {
        status,
        node_id: node_id.to_string(),
        reason,
        waiting_for,
    };
    let waiting = state.readiness.waiting();
    if let Some(reason) = state.readiness.refused() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(body("refused", Some(reason.to_string()), None)),
        )
    } else if let Some(reason) = state.node.store_stopped() {
        // Probing and routing still work, but no change can be acknowledged: an
        // orchestrator should take this replica out and an operator must act.
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(body("degraded", Some(reason.to_string()), None)),
        )
    } else if let Some(reason) = state.node.degraded() {
        // SPEC S12: the node cannot reach what its peers reach (or is short of local
        // resources); the orchestrator should take the gateway beside it out.
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(body("degraded", Some(reason), None)),
        )
    } else if waiting.is_empty() {
        (StatusCode::OK, Json(body("ready", None, None)))
    } else {
        let waiting = waiting.iter().map(|w| w.to_string()).collect();
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(body("starting", None, Some(waiting))),
        )
    }
}

/// `GET /metrics`: Prometheus/OpenMetrics text.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "status",
    operation_id = "metrics",
    summary = "Prometheus metrics (OpenMetrics text)",
    description = "Every `probemesh_*` metric; docs/operations.md lists them, deploy/prometheus/alerts.yml and deploy/grafana/ use them.",
    responses(
        (status = 200, description = "OpenMetrics text exposition",
         content((String = "application/openmetrics-text", example = json!(examples::METRICS)))),
    )
)]
pub async fn metrics(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    let node = &state.node;
    let cluster = node.cluster();
    let text = {
        let view = node.registry().read();
        node.metrics()
            .set_spread(crate::metrics::spread::spread(&view, &cluster));
        node.metrics().render(&view)
    };
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text)
}
