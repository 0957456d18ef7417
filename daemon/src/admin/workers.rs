//! `/v1/workers` and `/v1/workers/{id}`: list (with filters and blocking queries),
//! get, register, update, delete.

use super::AdminState;
use super::body::JsonBody;
use super::error::{ApiError, ErrorBody};
use super::list_cache;
use super::openapi::examples;
use super::openapi::params::{DeleteParams, IdParam, ListParams};
use super::spec_input::{InvalidSpec, PatchInput, SpecInput, parse_url};
use super::worker_json::{ViewJson, WorkerJson, rfc3339};
use crate::node::NodeError;
use axum::Json;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use probemesh_gossip::model::{Status, WorkerId, WorkerUrl};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use utoipa::ToSchema;

/// Header carrying the view index on every answer.
pub const INDEX_HEADER: &str = "x-probemesh-index";
/// Longest blocking-query wait.
pub const MAX_WAIT: Duration = Duration::from_secs(300);

impl From<InvalidSpec> for ApiError {
    fn from(e: InvalidSpec) -> ApiError {
        ApiError::bad_request(e.code, e.message)
    }
}

/// Filters and blocking-query parameters of `GET /v1/workers`.
#[derive(Debug, Default)]
struct ListQuery {
    statuses: Option<Vec<Status>>,
    model: Option<String>,
    url: Option<WorkerUrl>,
    views: bool,
    index: Option<u64>,
    wait: Option<Duration>,
}

impl ListQuery {
    /// The filters (not the blocking-query parameters) in a canonical form.
    fn cache_key(&self) -> String {
        let mut statuses: Vec<&str> = self.statuses.iter().flatten().map(|s| s.as_str()).collect();
        statuses.sort_unstable();
        statuses.dedup();
        format!(
            "{}|{}|{}|{}",
            self.statuses.is_some(),
            statuses.join(","),
            self.model.as_deref().unwrap_or("\u{0}"),
            self.url.as_ref().map_or("", |u| u.as_str())
        )
    }
}

fn parse_list_query(pairs: Vec<(String, String)>) -> Result<ListQuery, ApiError> {
    let mut q = ListQuery::default();
    let bad = |m: String| ApiError::bad_request("INVALID_QUERY", m);
    for (k, v) in pairs {
        match k.as_str() {
            "status" => {
                let mut list = Vec::new();
                for s in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    list.push(Status::parse(s).ok_or_else(|| {
                        bad(format!(
                            "status: `{s}` is not a status; use pending, ready, not_ready, failed or draining"
                        ))
                    })?);
                }
                if list.is_empty() {
                    return Err(bad(
                        "status: give at least one status (pending, ready, not_ready, failed), or leave the parameter out"
                            .into(),
                    ));
                }
                q.statuses.get_or_insert_with(Vec::new).extend(list);
            }
            "model" => q.model = Some(v),
            "views" => {
                q.views = match v.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad(format!("views: `{v}` is not true or false"))),
                }
            }
            "url" => q.url = Some(parse_url(&v).map_err(|e| bad(e.message))?),
            "index" => {
                q.index = Some(
                    v.parse()
                        .map_err(|_| bad(format!("index: `{v}` is not a non-negative integer")))?,
                )
            }
            "wait" => {
                q.wait = Some(
                    super::api_duration::parse(&v)
                        .map_err(|e| bad(format!("wait: {e}")))?
                        .min(MAX_WAIT),
                )
            }
            other => {
                return Err(bad(format!(
                    "unknown query parameter `{other}`; use status, model, url, views, index and wait"
                )));
            }
        }
    }
    Ok(q)
}

fn index_header(index: u64) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(INDEX_HEADER, HeaderValue::from(index));
    h
}

/// `GET /v1/workers`
#[utoipa::path(
    get,
    path = "/v1/workers",
    tag = "workers",
    operation_id = "list_workers",
    summary = "The local view: every worker this node knows, with this node's status",
    description = "Filters combine (all must hold). A blocking query (`index`) holds the answer until the view's index exceeds it or `wait` ends, then answers the current view. Answers are gzip-encoded when the client accepts it.",
    params(ListParams),
    responses(
        (status = 200, description = "The workers, sorted by URL", body = ListJson,
         headers(("X-Probemesh-Index" = u64, description = "The view's index")),
         example = json!(examples::list_with_views())),
        (status = 400, description = "`INVALID_QUERY`: an unknown or malformed query parameter", body = ErrorBody,
         example = json!(examples::error("INVALID_QUERY", "status: `up` is not a status; use pending, ready, not_ready or failed"))),
        (status = 503, description = "`TOO_MANY_BLOCKING_QUERIES` (512 waiting; with `Retry-After: 1`)", body = ErrorBody,
         headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
    )
)]
pub async fn list(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let gzip = list_cache::accepts_gzip(&headers);
    let Query(pairs) = query.map_err(|e| ApiError::bad_request("INVALID_QUERY", e.body_text()))?;
    let q = parse_list_query(pairs)?;
    let node = &state.node;
    if let Some(seen) = q.index {
        // Blocking query: hold the answer until the view moves past `seen` or the wait
        // ends. Waiters sleep on a watch channel and cost little while idle, but their
        // number is bounded (`held.rs`); one that would not wait needs no slot.
        let mut rx = node.registry().subscribe();
        if *rx.borrow_and_update() <= seen {
            let _held = match state.held.hold_blocking_query() {
                Ok(h) => h,
                Err(busy) => return Ok(busy.into_response()),
            };
            let wait = q.wait.unwrap_or(MAX_WAIT);
            tokio::select! {
                _ = tokio::time::timeout(wait, rx.wait_for(|idx| *idx > seen)) => {}
                () = state.shutdown.cancelled() => {}
            }
        }
    }
    if q.views {
        // Views come from peers' gossiped verdicts, which do not move the local view's
        // index the cache is keyed by: render them fresh every time.
        let (index, body) = render_list(node, &q)?;
        let rendered = list_cache::Rendered::new(body);
        return Ok(list_response(index, &rendered, gzip));
    }
    let (index, rendered) = state
        .list_cache
        .get_or_render(
            q.cache_key(),
            || node.registry().read().index,
            || render_list(node, &q),
        )
        .await?;
    Ok(list_response(index, &rendered, gzip))
}

/// Renders the list for `q` from the current view; returns the view index with it.
fn render_list(node: &crate::node::Node, q: &ListQuery) -> Result<(u64, bytes::Bytes), ApiError> {
    let view = node.registry().read();
    let mut entries: Vec<_> = view
        .workers
        .values()
        .filter(|e| q.statuses.as_ref().is_none_or(|s| s.contains(&e.status)))
        .filter(|e| {
            q.model
                .as_ref()
                .is_none_or(|m| e.reg.spec.model_id.as_ref() == Some(m))
        })
        .filter(|e| q.url.as_ref().is_none_or(|u| &e.reg.spec.url == u))
        .collect();
    entries.sort_by(|a, b| a.reg.spec.url.cmp(&b.reg.spec.url));
    let cluster = q.views.then(|| node.cluster());
    let workers: Vec<WorkerJson<'_>> = entries
        .into_iter()
        .map(|e| {
            let w = WorkerJson::new(e, node.health(&e.reg.spec));
            match &cluster {
                Some(c) => w.with_views(views_of(node, c, e)),
                None => w,
            }
        })
        .collect();
    let list = ListJson {
        node_id: node.node_id(),
        index: view.index,
        workers,
    };
    let body = serde_json::to_vec(&list)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", e.to_string()))?;
    Ok((view.index, bytes::Bytes::from(body)))
}

/// A list answer: gzip-encoded when the client accepts it (a list of 1,000 workers is
/// about 530 KB of JSON and about a tenth of that compressed).
fn list_response(index: u64, rendered: &list_cache::Rendered, gzip: bool) -> Response {
    let (body, gzipped) = rendered.body(gzip);
    let mut headers = index_header(index);
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if gzipped {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    (headers, json_body(body)).into_response()
}

/// The body of `GET /v1/workers`.
#[derive(serde::Serialize, ToSchema)]
#[schema(as = WorkerList)]
pub struct ListJson<'a> {
    /// This node's id.
    node_id: &'a str,
    /// The view's index (also in `X-Probemesh-Index`); pass it as `index` for a
    /// blocking query.
    index: u64,
    /// The workers that pass the filters.
    workers: Vec<WorkerJson<'a>>,
}

/// The body of `DELETE /v1/workers/{id}`.
#[derive(serde::Serialize, ToSchema)]
#[schema(as = Deleted)]
pub struct DeletedJson {
    /// The worker's id.
    id: String,
    /// The generation tombstoned, or draining.
    generation: u64,
    /// True when the generation is tombstoned cluster-wide now; false while it drains.
    tombstoned: bool,
    /// When the drain ends and the generation is tombstoned (RFC 3339), for a drain.
    #[serde(skip_serializing_if = "Option::is_none")]
    drain_ends_at: Option<String>,
}

/// The longest drain (SPEC S14).
const MAX_DRAIN: Duration = Duration::from_secs(3600);

/// The `drain` parameter of a DELETE: `None` for an immediate tombstone.
fn parse_drain(pairs: Vec<(String, String)>) -> Result<Option<Duration>, ApiError> {
    let bad = |m: String| ApiError::bad_request("INVALID_QUERY", m);
    let mut drain = None;
    for (k, v) in pairs {
        match k.as_str() {
            "drain" => {
                let d = super::api_duration::parse(&v).map_err(|e| bad(format!("drain: {e}")))?;
                if d > MAX_DRAIN {
                    return Err(bad(format!(
                        "drain: {v} is longer than the longest drain, 1h"
                    )));
                }
                drain = (!d.is_zero()).then_some(d);
            }
            other => {
                return Err(bad(format!(
                    "unknown query parameter `{}`; DELETE takes only drain",
                    other
                        .chars()
                        .take(64)
                        .flat_map(char::escape_debug)
                        .collect::<String>()
                )));
            }
        }
    }
    Ok(drain)
}

fn json_body(body: bytes::Bytes) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], body)
}

/// The `{id}` path segment; a segment that does not even decode (bad percent-encoding)
/// gets a JSON error like every other bad input (S11).
pub struct IdPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(raw)) => Ok(IdPath(raw)),
            Err(e) => Err(ApiError::bad_request(
                "INVALID_ID",
                format!("the worker id in the path is not valid: {}", e.body_text()),
            )),
        }
    }
}

fn worker_id(raw: &str) -> Result<WorkerId, ApiError> {
    WorkerId::parse(raw).ok_or_else(|| ApiError::unknown_worker(raw))
}

/// Every live member's status for `e`'s generation, this node's own included.
fn views_of(
    node: &crate::node::Node,
    cluster: &probemesh_gossip::cluster::ClusterSnapshot,
    e: &crate::registry::Entry,
) -> BTreeMap<String, ViewJson> {
    let mut views = BTreeMap::new();
    // Peers' verdicts on this generation, from the live, attested members only.
    for (peer, v) in cluster
        .verdicts_on(&e.reg.id)
        .into_iter()
        .filter(|(_, v)| v.generation == e.reg.generation)
    {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(v.since_ms);
        views.insert(
            peer.to_string(),
            ViewJson {
                status: v.status,
                updated_at: rfc3339(at),
            },
        );
    }
    // This node's own row is its local status, never a value gossiped under its id
    // (SPEC S10): inserted last, so nothing above can stand in for it.
    views.insert(
        node.node_id().to_string(),
        ViewJson {
            status: e.status,
            updated_at: rfc3339(e.status_since),
        },
    );
    views
}

fn one(state: &AdminState, id: &WorkerId, with_views: bool) -> Result<(u64, Value), ApiError> {
    let node = &state.node;
    let view = node.registry().read();
    let e = view
        .workers
        .get(id)
        .ok_or_else(|| ApiError::unknown_worker(id.as_str()))?;
    let mut w = WorkerJson::new(e, node.health(&e.reg.spec));
    if with_views {
        w = w.with_views(views_of(node, &node.cluster(), e));
    }
    let value = serde_json::to_value(&w)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", e.to_string()))?;
    Ok((view.index, value))
}

/// `GET /v1/workers/{id}`
#[utoipa::path(
    get,
    path = "/v1/workers/{id}",
    tag = "workers",
    operation_id = "get_worker",
    summary = "One worker, with every live member's status for it (`views`)",
    params(IdParam),
    responses(
        (status = 200, description = "The worker with its `views`", body = WorkerJson,
         headers(("X-Probemesh-Index" = u64, description = "The view's index")),
         example = json!(examples::worker(true))),
        (status = 400, description = "`INVALID_ID`: the id segment is not UTF-8 after percent-decoding", body = ErrorBody),
        (status = 404, description = "`WORKER_NOT_FOUND`: no worker with this id in the local view", body = ErrorBody,
         example = json!(examples::error("WORKER_NOT_FOUND", "no worker with id `5f0c3a9e1b2d4c6f` is known to this node; list them with GET /v1/workers"))),
    )
)]
pub async fn get(
    State(state): State<Arc<AdminState>>,
    IdPath(raw): IdPath,
) -> Result<Response, ApiError> {
    let (index, body) = one(&state, &worker_id(&raw)?, true)?;
    Ok((index_header(index), Json(body)).into_response())
}

/// `POST /v1/workers`
#[utoipa::path(
    post,
    path = "/v1/workers",
    tag = "workers",
    operation_id = "register_worker",
    summary = "Register a worker on this node (it starts `pending`, or `ready` with health checks disabled)",
    description = "Only `url` is required; the defaults of `worker_type`, `priority` and `cost` follow smg's worker API, and unset health settings take this node's `--probe-*` flags. A 2xx answer means the registration is on this node's disk.",
    request_body(content = SpecInput, content_type = "application/json", example = json!(examples::spec())),
    security(("admin_token" = [])),
    responses(
        (status = 201, description = "Registered", body = WorkerJson,
         headers(
            ("Location" = String, description = "`/v1/workers/{id}`"),
            ("X-Probemesh-Index" = u64, description = "The view's index"),
         ),
         links(
            ("GetWorker" = (operation_id = "get_worker", parameters(("id" = "$response.body#/id")), description = "The worker registered")),
            ("UpdateWorker" = (operation_id = "update_worker", parameters(("id" = "$response.body#/id")), description = "Change it")),
            ("DeleteWorker" = (operation_id = "delete_worker", parameters(("id" = "$response.body#/id")), description = "Tombstone it")),
         ),
         example = json!(examples::worker(false))),
        (status = 200, description = "Already registered with the same spec: the existing worker", body = WorkerJson,
         headers(("X-Probemesh-Index" = u64, description = "The view's index"))),
        (status = 400, description = "`INVALID_JSON`, `INVALID_SPEC` (the message starts with the field) or `INVALID_URL`", body = ErrorBody,
         example = json!(examples::error("INVALID_SPEC", "health.interval: 1ms is too short; the minimum is 100ms"))),
        (status = 401, description = "`UNAUTHORIZED`: token missing or wrong (with `--admin-token`)", body = ErrorBody),
        (status = 409, description = "`WORKER_CONFLICT` (the URL is registered with another spec) or `GENERATIONS_EXHAUSTED`", body = ErrorBody),
        (status = 413, description = "`BODY_TOO_LARGE`: over 65,536 bytes", body = ErrorBody),
        (status = 415, description = "`UNSUPPORTED_MEDIA_TYPE`: not `Content-Type: application/json`", body = ErrorBody),
        (status = 503, description = "`STORE_UNAVAILABLE`: the change could not be made durable; nothing changed", body = ErrorBody),
        (status = 507, description = "`STORE_FULL`: the data directory's disk is full; nothing changed", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<Arc<AdminState>>,
    JsonBody(input): JsonBody<SpecInput>,
) -> Result<Response, ApiError> {
    let spec = input.into_spec()?;
    let (entry, created) = state.node.register(spec).await?;
    let (index, body) = one(&state, &entry.reg.id, false)?;
    let mut headers = index_header(index);
    if created {
        let location = format!("/v1/workers/{}", entry.reg.id);
        if let Ok(v) = HeaderValue::from_str(&location) {
            headers.insert(header::LOCATION, v);
        }
        Ok((StatusCode::CREATED, headers, Json(body)).into_response())
    } else {
        Ok((StatusCode::OK, headers, Json(body)).into_response())
    }
}

/// `PATCH /v1/workers/{id}`
#[utoipa::path(
    patch,
    path = "/v1/workers/{id}",
    tag = "workers",
    operation_id = "update_worker",
    summary = "Change a worker's metadata or health settings; its status is kept",
    description = "Only the fields given change; `null` puts a field back to its default. A patch that disables health checks makes the worker `ready`.",
    params(IdParam),
    request_body(content = PatchInput, content_type = "application/json", example = json!(examples::patch())),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The worker after the change", body = WorkerJson,
         headers(("X-Probemesh-Index" = u64, description = "The view's index"))),
        (status = 400, description = "`INVALID_ID`, `INVALID_JSON`, `INVALID_SPEC` or `INVALID_URL`", body = ErrorBody),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorBody),
        (status = 404, description = "`WORKER_NOT_FOUND`", body = ErrorBody),
        (status = 413, description = "`BODY_TOO_LARGE`", body = ErrorBody),
        (status = 415, description = "`UNSUPPORTED_MEDIA_TYPE`", body = ErrorBody),
        (status = 503, description = "`STORE_UNAVAILABLE`; nothing changed", body = ErrorBody),
        (status = 507, description = "`STORE_FULL`; nothing changed", body = ErrorBody),
    )
)]
pub async fn update(
    State(state): State<Arc<AdminState>>,
    IdPath(raw): IdPath,
    JsonBody(patch): JsonBody<PatchInput>,
) -> Result<Response, ApiError> {
    let id = worker_id(&raw)?;
    let entry = state
        .node
        .update(&id, |current| {
            patch
                .apply(current)
                .map_err(|e| NodeError::Invalid(e.message))
        })
        .await
        .map_err(|e| match e {
            // Keep the URL error code for URL problems in a patch.
            NodeError::Invalid(m) if m.starts_with("url:") => {
                ApiError::bad_request("INVALID_URL", m)
            }
            other => other.into(),
        })?;
    let (index, body) = one(&state, &entry.reg.id, false)?;
    Ok((index_header(index), Json(body)).into_response())
}

/// `DELETE /v1/workers/{id}`
#[utoipa::path(
    delete,
    path = "/v1/workers/{id}",
    tag = "workers",
    operation_id = "delete_worker",
    summary = "Tombstone the worker's generation cluster-wide, at once or after a drain",
    params(IdParam, DeleteParams),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Tombstoned", body = DeletedJson,
         headers(("X-Probemesh-Index" = u64, description = "The view's index")),
         example = json!(examples::deleted())),
        (status = 400, description = "`INVALID_ID`, or `INVALID_QUERY` (a malformed `drain`, longer than `1h`, or another parameter)", body = ErrorBody),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorBody),
        (status = 404, description = "`WORKER_NOT_FOUND`", body = ErrorBody),
        (status = 503, description = "`STORE_UNAVAILABLE`; nothing changed", body = ErrorBody),
        (status = 507, description = "`STORE_FULL`; nothing changed", body = ErrorBody),
    )
)]
pub async fn delete(
    State(state): State<Arc<AdminState>>,
    IdPath(raw): IdPath,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let id = worker_id(&raw)?;
    let Query(pairs) = query.map_err(|e| ApiError::bad_request("INVALID_QUERY", e.body_text()))?;
    let body = match parse_drain(pairs)? {
        None => {
            let t = state.node.delete(&id).await?;
            DeletedJson {
                id: t.id.to_string(),
                generation: t.generation,
                tombstoned: true,
                drain_ends_at: None,
            }
        }
        Some(period) => {
            let d = state.node.drain(&id, period).await?;
            let ends = std::time::UNIX_EPOCH + Duration::from_millis(d.ends_at_ms);
            DeletedJson {
                id: d.id.to_string(),
                generation: d.generation,
                tombstoned: false,
                drain_ends_at: Some(rfc3339(ends)),
            }
        }
    };
    let index = state.node.registry().read().index;
    Ok((index_header(index), Json(body)).into_response())
}
