//! `GET /v1/members`: the cluster as this node sees it.

use super::AdminState;
use super::openapi::{examples, schemas};
use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

/// The body of `GET /v1/members`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Members)]
pub struct MembersJson {
    /// This node's id.
    pub node_id: String,
    /// Every member this node knows of, itself included.
    pub members: Vec<MemberJson>,
}

/// One cluster member as this node sees it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Member)]
pub struct MemberJson {
    /// Its node id.
    pub node_id: String,
    /// The address peers gossip with it on.
    #[schema(example = "10.0.1.2:7800")]
    pub gossip_addr: String,
    /// Alive or dead.
    #[schema(schema_with = schemas::member_state)]
    pub state: &'static str,
    /// Whether it is this node.
    pub is_self: bool,
    /// Registrations it advertises.
    pub workers_owned: usize,
    /// Its probemesh version, if it publishes one.
    pub version: Option<String>,
    /// Whether it says it is self-fenced (SPEC S12); the same on every node.
    pub degraded: bool,
    /// Its reason while it is degraded (a peer's text, at most 512 characters).
    pub degraded_reason: Option<String>,
}

/// `GET /v1/members`
#[utoipa::path(
    get,
    path = "/v1/members",
    tag = "cluster",
    operation_id = "members",
    summary = "Cluster members as this node sees them",
    responses(
        (status = 200, description = "Every member, this node included", body = MembersJson,
         example = json!(examples::members())),
    )
)]
pub async fn list(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    let snap = state.node.cluster();
    let own_degraded = state.node.degraded();
    let members = snap
        .members
        .iter()
        .map(|m| MemberJson {
            node_id: m.node_id.clone(),
            gossip_addr: m.gossip_addr.to_string(),
            state: m.state.as_str(),
            is_self: m.is_self,
            workers_owned: m.workers_owned,
            version: m.version.clone(),
            degraded: if m.is_self {
                own_degraded.is_some()
            } else {
                m.degraded.is_some()
            },
            degraded_reason: if m.is_self {
                own_degraded.clone()
            } else {
                m.degraded.clone()
            },
        })
        .collect();
    Json(MembersJson {
        node_id: state.node.node_id().to_string(),
        members,
    })
}
