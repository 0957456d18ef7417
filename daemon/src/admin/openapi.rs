//! The OpenAPI 3.1 document of the admin API (`GET /v1/openapi.json`).
//!
//! It is generated, not written: every route is registered through
//! [`super::routes`], an [`utoipa_axum`] router that takes each handler together with
//! its `#[utoipa::path]` attribute, so a route cannot be served without being described,
//! and the bodies are described by the types the handlers serialize
//! ([`super::worker_json::WorkerJson`], [`super::members::MembersJson`], ...). What the
//! attributes cannot know is added here from the code that decides it: the answers the
//! HTTP layer gives before any handler runs ([`Rejection::ALL`]), the status names
//! ([`Status::ALL`]), and the bearer token.
//!
//! `docs/openapi.json` is a rendered copy; the unit test below fails when it is stale and
//! rewrites it with `PROBEMESH_UPDATE_OPENAPI=1`.

use super::AdminState;
use super::error::ErrorBody;
use super::server::rejection::Rejection;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use probemesh_gossip::model::Status;
use std::sync::{Arc, OnceLock};
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, RefOr};
use utoipa::{Modify, OpenApi};

pub mod examples;
pub mod input;
pub mod params;
pub mod schemas;

/// Name of the bearer-token security scheme in the document.
pub const TOKEN_SCHEME: &str = "admin_token";

/// The static part of the document: title, description, tags, shared components.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "probemesh admin API",
        description = "The admin HTTP API of a probemesh agent (SPEC section 4). Every answer is about this node: its local view of the workers and its own statuses; peers' statuses appear only in `views`.\n\nErrors are `{\"error\": {\"code\": \"SNAKE_CASE_CODE\", \"message\": \"human sentence\"}}`; the code is stable, the message is not. Requests the HTTP layer rejects before any route runs (a malformed request line or header, an over-long target or head, another HTTP version, a full connection table) get the same JSON error and are listed under every operation.\n\nWith `--admin-token`, every method other than GET, HEAD and OPTIONS needs `Authorization: Bearer <token>`; reads never do.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = "status", description = "Liveness, readiness and metrics of this agent"),
        (name = "workers", description = "The local view of the workers, and changes to it"),
        (name = "cluster", description = "Cluster members and the event stream"),
        (name = "meta", description = "This document and the cluster page"),
    ),
    components(schemas(
        ErrorBody,
        schemas::TransitionEvent,
        schemas::RemovedEvent,
        schemas::ResyncEvent,
    )),
    modifiers(&Common),
)]
pub struct ApiDoc;

/// Adds what every operation shares: the HTTP layer's own rejections, `Retry-After` on
/// the connection cap, and the bearer scheme.
struct Common;

impl Modify for Common {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            TOKEN_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "`--admin-token`: required on every change when the agent has a token; reads never need it",
                    ))
                    .build(),
            ),
        );
    }
}

/// Adds the HTTP layer's rejections to one operation. A status the operation already
/// documents keeps its own entry, with the layer's reason appended.
fn add_layer_rejections(op: &mut Operation) {
    for r in Rejection::ALL {
        let (code, _) = r.status();
        let key = code.to_string();
        let why = format!(
            "`{}` (HTTP layer, before the route): {}",
            r.code(),
            r.message()
        );
        match op.responses.responses.get_mut(&key) {
            Some(RefOr::T(existing)) => {
                existing.description = format!("{}; or {why}", existing.description);
            }
            Some(RefOr::Ref(_)) => {}
            None => {
                op.responses
                    .responses
                    .insert(key, RefOr::T(error_response(why, r.code(), r.message())));
            }
        }
    }
}

/// A JSON error response with an example.
pub fn error_response(description: String, code: &str, message: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .example(Some(examples::error(code, message)))
                .build(),
        )
        .build()
}

/// Completes the generated document: layer rejections on every operation; the
/// document is OpenAPI 3.1 (utoipa 5 writes 3.1.0).
pub fn complete(mut doc: Document) -> Document {
    for item in doc.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.post,
            &mut item.patch,
            &mut item.delete,
            &mut item.put,
            &mut item.head,
            &mut item.options,
            &mut item.trace,
        ]
        .into_iter()
        .flatten()
        {
            add_layer_rejections(op);
        }
    }
    doc
}

/// The document, built once from the router's routes.
pub fn document() -> &'static Document {
    static DOC: OnceLock<Document> = OnceLock::new();
    DOC.get_or_init(super::openapi_document)
}

/// The document as pretty-printed JSON with a final newline (as `docs/openapi.json`).
pub fn document_json() -> String {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| match render(document()) {
        Ok(mut s) => {
            s.push('\n');
            s
        }
        // Serialising a document of plain maps and strings does not fail; if it ever
        // did, the answer says so instead of being empty.
        Err(e) => format!("{{\"error\": \"cannot render the OpenAPI document: {e}\"}}\n"),
    })
    .clone()
}

/// The document as pretty JSON. utoipa 5.5 writes the fields of a Link Object in
/// snake case (`operation_id`); OpenAPI spells them `operationId`, `operationRef` and
/// `requestBody`, so they are renamed here.
fn render(doc: &Document) -> Result<String, serde_json::Error> {
    let mut v = serde_json::to_value(doc)?;
    if let Some(paths) = v.get_mut("paths").and_then(|p| p.as_object_mut()) {
        let responses = paths
            .values_mut()
            .filter_map(|item| item.as_object_mut())
            .flat_map(|item| item.values_mut())
            .filter_map(|op| op.get_mut("responses").and_then(|r| r.as_object_mut()))
            .flat_map(|r| r.values_mut());
        for response in responses {
            let Some(links) = response.get_mut("links").and_then(|l| l.as_object_mut()) else {
                continue;
            };
            for link in links.values_mut().filter_map(|l| l.as_object_mut()) {
                for (from, to) in [
                    ("operation_id", "operationId"),
                    ("operation_ref", "operationRef"),
                    ("request_body", "requestBody"),
                ] {
                    if let Some(x) = link.remove(from) {
                        link.insert(to.to_string(), x);
                    }
                }
            }
        }
    }
    serde_json::to_string_pretty(&v)
}

/// `GET /v1/openapi.json`
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "meta",
    operation_id = "openapi",
    summary = "This OpenAPI 3.1 document",
    description = "Generated at start from the handlers and types that serve the API; `docs/openapi.json` holds a copy.",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object),
    )
)]
pub async fn serve(State(_state): State<Arc<AdminState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document_json(),
    )
}

/// Every status name, for descriptions.
pub fn status_names() -> String {
    Status::ALL
        .iter()
        .map(|s| format!("`{}`", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;
