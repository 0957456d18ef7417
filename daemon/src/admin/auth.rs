//! Bearer-token check for mutating requests (`--admin-token`).

use super::AdminState;
use super::error::ApiError;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;

/// Lets reads through; requires `Authorization: Bearer <token>` on every other method
/// when a token is configured.
pub async fn require_token(
    State(state): State<Arc<AdminState>>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(expected) = state.token.as_deref() else {
        return Ok(next.run(req).await);
    };
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(next.run(req).await);
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    match given {
        Some(t) if constant_time_eq(t.as_bytes(), expected.as_bytes()) => Ok(next.run(req).await),
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "the admin token is wrong",
        )),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "this agent requires a token for changes: send Authorization: Bearer <token> (probemesh --token or PROBEMESH_ADMIN_TOKEN)",
        )),
    }
}

/// The token of an `Authorization: Bearer <token>` value. The scheme is matched
/// case-insensitively (RFC 7235 section 2.1: `bearer`, `BEARER` are the same scheme),
/// and any run of spaces or tabs may separate it from the token.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim_start().split_once([' ', '\t'])?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

/// Compares without an early exit, so the time taken does not reveal how much of a
/// guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn constant_time_eq_matches_equality() {
        assert!(super::constant_time_eq(b"abc", b"abc"));
        assert!(!super::constant_time_eq(b"abc", b"abd"));
        assert!(!super::constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for v in [
            "Bearer s3cret",
            "bearer s3cret",
            "BEARER s3cret",
            "bEaReR   s3cret ",
            "Bearer\ts3cret",
        ] {
            assert_eq!(super::bearer_token(v), Some("s3cret"), "{v:?}");
        }
        for v in [
            "Basic s3cret",
            "Bearers3cret",
            "Bearer",
            "Bearer   ",
            "s3cret",
            "",
        ] {
            assert_eq!(super::bearer_token(v), None, "{v:?}");
        }
    }
}
