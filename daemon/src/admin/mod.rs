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
//! | `GET /v1/openapi.json` | [`openapi::serve`] (this API's OpenAPI 3.1 document) |
//! | `GET /ui` | [`ui::page`] (the cluster page) |
//!
//! Every route is registered in [`routes`] together with its `#[utoipa::path]`
//! description, so the OpenAPI document ([`openapi`]) lists exactly the routes served.
//!
//! Mutating requests pass [`auth::require_token`] when `--admin-token` is set. Every
//! error is JSON, mapped in [`error`]. The router is served by [`server`] (connection
//! cap, timeouts, JSON for requests rejected before the router); [`held`] bounds the
//! blocking queries and event streams held open.

pub mod api_duration;
pub mod auth;
pub mod body;
pub mod error;
pub mod events;
pub mod held;
pub mod list_cache;
pub mod members;
pub mod openapi;
pub mod server;
pub mod spec_input;
pub mod status;
pub mod ui;
pub mod worker_json;
pub mod workers;

use crate::node::Node;
use crate::readiness::Readiness;
use axum::Router;
use std::sync::Arc;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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

/// Every route with its description: the one list both the router and the OpenAPI
/// document are made from.
fn routes() -> OpenApiRouter<Arc<AdminState>> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(status::health))
        .routes(routes!(status::ready))
        .routes(routes!(workers::list, workers::create))
        .routes(routes!(workers::get, workers::update, workers::delete))
        .routes(routes!(members::list))
        .routes(routes!(events::stream))
        .routes(routes!(status::metrics))
        .routes(routes!(openapi::serve))
        .routes(routes!(ui::page))
}

/// The OpenAPI document of [`router`]'s routes.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    openapi::complete(routes().split_for_parts().1)
}

/// The API router.
pub fn router(state: Arc<AdminState>) -> Router {
    let (routes, _) = routes().split_for_parts();
    routes
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            auth::require_token,
        ))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(state)
}
