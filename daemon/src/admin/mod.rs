//! The admin HTTP API (SPEC section 4). Routes:
//!
//! | route | handler |
//! |---|---|
//! | `GET /v1/health` | [`status::health`] |
//! | `GET /v1/ready` | [`status::ready`] |
//! | `GET /v1/workers` | [`workers::list`] (filters, blocking query) |
//! | `POST /v1/workers` | [`workers::create`] |
//! | `GET /v1/workers/{id}` | [`workers::get`] |
//! | `PATCH /v1/workers/{id}` | [`workers::update`] |
//! | `DELETE /v1/workers/{id}` | [`workers::delete`] |
//! | `GET /v1/members` | [`members::list`] |
//! | `GET /v1/events` | [`events::stream`] (Server-Sent Events) |
//! | `GET /metrics` | [`status::metrics`] |
//!
//! Mutating requests pass [`auth::require_token`] when `--admin-token` is set. Every
//! error is JSON, mapped in [`error`]. The router is served by [`server`] (connection
//! cap, timeouts, JSON for requests rejected before the router); [`held`] bounds the
//! blocking queries and event streams held open.

pub mod auth;
pub mod body;
pub mod error;
pub mod events;
pub mod held;
pub mod list_cache;
pub mod members;
pub mod server;
pub mod spec_input;
pub mod status;
pub mod worker_json;
pub mod workers;

use crate::node::Node;
use crate::readiness::Readiness;
use axum::Router;
use axum::routing::get;
use std::sync::Arc;

/// What the handlers share.
#[derive(Debug)]
pub struct AdminState {
    /// The node.
    pub node: Arc<Node>,
    /// `--admin-token`.
    pub token: Option<String>,
    /// Start-up latches behind `/v1/ready`.
    pub readiness: Readiness,
    /// Cancelled at shutdown; ends blocking queries early.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Rendered worker lists.
    pub list_cache: list_cache::ListCache,
    /// Bounds on held blocking queries and event streams.
    pub held: held::HeldLimits,
}

/// The API router.
pub fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/v1/health", get(status::health))
        .route("/v1/ready", get(status::ready))
        .route("/v1/workers", get(workers::list).post(workers::create))
        .route(
            "/v1/workers/{id}",
            get(workers::get)
                .patch(workers::update)
                .delete(workers::delete),
        )
        .route("/v1/members", get(members::list))
        .route("/v1/events", get(events::stream))
        .route("/metrics", get(status::metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            auth::require_token,
        ))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(state)
}
