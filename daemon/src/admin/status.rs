//! `/v1/health`, `/v1/ready` and `/metrics`.

use super::AdminState;
use crate::metrics::CONTENT_TYPE;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::json;
use std::sync::Arc;

/// `GET /v1/health`: the process answers.
pub async fn health(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    Json(json!({"status": "ok", "node_id": state.node.node_id()}))
}

/// `GET /v1/ready`: 200 once every subsystem reported ready and the node can still make
/// changes durable, else 503 naming what is missing. `refused` (another live process
/// has this node's id) outranks everything: it lasts until the process is restarted.
pub async fn ready(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    let waiting = state.readiness.waiting();
    if let Some(reason) = state.readiness.refused() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "refused", "node_id": state.node.node_id(), "reason": reason})),
        )
    } else if let Some(reason) = state.node.store_stopped() {
        // Probing and routing still work, but no change can be acknowledged: an
        // orchestrator should take this replica out and an operator must act.
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "degraded", "node_id": state.node.node_id(), "reason": reason})),
        )
    } else if let Some(reason) = state.node.degraded() {
        // SPEC S12: the node cannot reach what its peers reach (or is short of local
        // resources); the orchestrator should take the gateway beside it out.
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "degraded", "node_id": state.node.node_id(), "reason": reason})),
        )
    } else if waiting.is_empty() {
        (
            StatusCode::OK,
            Json(json!({"status": "ready", "node_id": state.node.node_id()})),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({"status": "starting", "node_id": state.node.node_id(), "waiting_for": waiting}),
            ),
        )
    }
}

/// `GET /metrics`: Prometheus/OpenMetrics text.
pub async fn metrics(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    let node = &state.node;
    let text = {
        let view = node.registry().read();
        node.metrics().render(&view)
    };
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text)
}
