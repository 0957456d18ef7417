//! `/v1/workers` and `/v1/workers/{id}`: list (with filters and blocking queries),
//! get, register, update, delete.

use super::AdminState;
use super::body::JsonBody;
use super::error::ApiError;
use super::list_cache;
use super::spec_input::{InvalidSpec, PatchInput, SpecInput, parse_url};
use super::worker_json::{ViewJson, WorkerJson, rfc3339};
use crate::config::parse_duration;
use crate::node::NodeError;
use axum::Json;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use probemesh_gossip::model::{Status, WorkerId, WorkerUrl};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

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
                            "status: `{s}` is not a status; use pending, ready, not_ready or failed"
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
            "url" => q.url = Some(parse_url(&v).map_err(|e| bad(e.message))?),
            "index" => {
                q.index = Some(
                    v.parse()
                        .map_err(|_| bad(format!("index: `{v}` is not a non-negative integer")))?,
                )
            }
            "wait" => {
                q.wait = Some(
                    parse_duration(&v)
                        .map_err(|e| bad(format!("wait: {e}")))?
                        .min(MAX_WAIT),
                )
            }
            other => {
                return Err(bad(format!(
                    "unknown query parameter `{other}`; use status, model, url, index and wait"
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
    let workers: Vec<WorkerJson<'_>> = entries
        .into_iter()
        .map(|e| WorkerJson::new(e, node.health(&e.reg.spec)))
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
#[derive(serde::Serialize)]
struct ListJson<'a> {
    node_id: &'a str,
    index: u64,
    workers: Vec<WorkerJson<'a>>,
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

fn one(state: &AdminState, id: &WorkerId, with_views: bool) -> Result<(u64, Value), ApiError> {
    let node = &state.node;
    let view = node.registry().read();
    let e = view
        .workers
        .get(id)
        .ok_or_else(|| ApiError::unknown_worker(id.as_str()))?;
    let mut w = WorkerJson::new(e, node.health(&e.reg.spec));
    if with_views {
        let mut views = BTreeMap::new();
        // Peers' verdicts on this generation, from the live, attested members only.
        let cluster = node.cluster();
        for (peer, v) in cluster
            .verdicts_on(id)
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
        w = w.with_views(views);
    }
    let value = serde_json::to_value(&w)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", e.to_string()))?;
    Ok((view.index, value))
}

/// `GET /v1/workers/{id}`
pub async fn get(
    State(state): State<Arc<AdminState>>,
    IdPath(raw): IdPath,
) -> Result<Response, ApiError> {
    let (index, body) = one(&state, &worker_id(&raw)?, true)?;
    Ok((index_header(index), Json(body)).into_response())
}

/// `POST /v1/workers`
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
pub async fn delete(
    State(state): State<Arc<AdminState>>,
    IdPath(raw): IdPath,
) -> Result<Response, ApiError> {
    let id = worker_id(&raw)?;
    let t = state.node.delete(&id).await?;
    let index = state.node.registry().read().index;
    let body = json!({"id": t.id, "generation": t.generation, "tombstoned": true});
    Ok((index_header(index), Json(body)).into_response())
}
