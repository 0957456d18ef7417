//! API errors: one place maps every failure to an HTTP status and a stable code.
//! Body: `{"error": {"code": "SNAKE_CASE_CODE", "message": "human sentence"}}`.

use crate::node::NodeError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// An error answer of the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// What was wrong and what to do.
    pub message: String,
}

impl ApiError {
    /// An error with the given status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404 for a worker id.
    pub fn unknown_worker(id: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "WORKER_NOT_FOUND",
            format!(
                "no worker with id `{id}` is known to this node; list them with GET /v1/workers"
            ),
        )
    }
}

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"error": {"code": "WORKER_NOT_FOUND", "message": "no worker with id `5f0c3a9e1b2d4c6f` is known to this node; list them with GET /v1/workers"}}))]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The `error` object of an error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code (`SNAKE_CASE`).
    #[schema(pattern = "^[A-Z][A-Z0-9_]*$", example = "INVALID_SPEC")]
    pub code: String,
    /// What was wrong and what to do; may change between versions.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> ApiError {
        match &e {
            NodeError::UnknownWorker(id) => ApiError::unknown_worker(id),
            NodeError::Conflict { .. } => {
                ApiError::new(StatusCode::CONFLICT, "WORKER_CONFLICT", e.to_string())
            }
            NodeError::Invalid(m) if m.starts_with("url:") => {
                ApiError::bad_request("INVALID_URL", m.clone())
            }
            NodeError::Invalid(_) => ApiError::bad_request("INVALID_SPEC", e.to_string()),
            NodeError::Store(s) if s.is_disk_full() => ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "STORE_FULL",
                format!("{e}; free space in the data directory (--data-dir) and retry"),
            ),
            NodeError::Store(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "STORE_UNAVAILABLE",
                e.to_string(),
            ),
            NodeError::GenerationsExhausted(_) => {
                ApiError::new(StatusCode::CONFLICT, "GENERATIONS_EXHAUSTED", e.to_string())
            }
            NodeError::Internal(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", e.to_string())
            }
        }
    }
}

/// 404 for paths that are not part of the API.
pub async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "no such endpoint; see docs/api.md for the routes",
    )
}

/// 405 for known paths with the wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "this endpoint does not accept that method; see docs/api.md",
    )
}

/// A 503 for a bound that is full (connections, blocking queries, event streams):
/// the JSON error plus `Retry-After`, so clients back off instead of hammering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Busy {
    /// The error body.
    pub error: ApiError,
    /// Seconds the client should wait before retrying.
    pub retry_after_secs: u32,
}

impl IntoResponse for Busy {
    fn into_response(self) -> Response {
        let mut r = self.error.into_response();
        r.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from(self.retry_after_secs),
        );
        r
    }
}
