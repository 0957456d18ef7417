//! The JSON body extractor: size limit (413), content type (415), syntax and schema
//! (400), each with a clear message.

use super::error::ApiError;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

/// Largest accepted request body (SPEC S11).
pub const MAX_BODY: usize = 64 * 1024;

/// A JSON request body decoded into `T`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mime = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if mime != "application/json" {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                format!(
                    "the body must be JSON with Content-Type: application/json (got `{content_type}`)"
                ),
            ));
        }
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "BODY_TOO_LARGE",
                format!("the body is larger than {MAX_BODY} bytes"),
            )
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY as u64) {
            return Err(too_large());
        }
        let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY)
            .await
            .map_err(|_| too_large())?;
        // serde reads a struct from a JSON array too, field by field in order; a body
        // like `[null, null]` would then be a PATCH that resets fields. Only an object
        // is a body here (other non-objects already fail to decode as a struct).
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        if first == Some(&b'[') && serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_ok() {
            return Err(ApiError::bad_request(
                "INVALID_SPEC",
                "the JSON does not match the expected shape: the body must be a JSON object, not an array",
            ));
        }
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            use serde_json::error::Category;
            match e.classify() {
                Category::Data => ApiError::bad_request(
                    "INVALID_SPEC",
                    format!("the JSON does not match the expected shape: {e}"),
                ),
                Category::Io | Category::Syntax | Category::Eof => ApiError::bad_request(
                    "INVALID_JSON",
                    format!("the body is not valid JSON: {e}"),
                ),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Two {
        a: Option<u32>,
        b: Option<u32>,
    }

    async fn decode(body: &str) -> Result<JsonBody<Two>, ApiError> {
        let req = Request::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        JsonBody::<Two>::from_request(req, &()).await
    }

    #[tokio::test]
    async fn an_array_is_not_a_body_even_when_serde_would_read_it_as_the_struct() {
        assert!(decode(r#"{"a":1}"#).await.is_ok());
        let e = decode("[1, 2]").await.unwrap_err();
        assert_eq!(
            (e.status, e.code),
            (StatusCode::BAD_REQUEST, "INVALID_SPEC")
        );
        let e = decode("[1, ").await.unwrap_err();
        assert_eq!(e.code, "INVALID_JSON");
    }
}
