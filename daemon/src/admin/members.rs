//! `GET /v1/members`: the cluster as this node sees it.

use super::AdminState;
use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use serde_json::json;
use std::sync::Arc;

/// `GET /v1/members`
pub async fn list(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    let snap = state.node.cluster();
    let members: Vec<_> = snap
        .members
        .iter()
        .map(|m| {
            json!({
                "node_id": m.node_id,
                "gossip_addr": m.gossip_addr.to_string(),
                "state": m.state.as_str(),
                "is_self": m.is_self,
                "workers_owned": m.workers_owned,
                "version": m.version,
                "degraded": if m.is_self { state.node.degraded().is_some() } else { m.degraded.is_some() },
                "degraded_reason": if m.is_self { state.node.degraded() } else { m.degraded.clone() },
            })
        })
        .collect();
    Json(json!({"node_id": state.node.node_id(), "members": members}))
}
