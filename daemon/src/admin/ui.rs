//! `GET /ui`: the cluster page, one self-contained HTML document compiled into the
//! binary (`ui/index.html`: inline CSS and plain JS, no external resource). It reads
//! the API like any client: `GET /v1/members`, `GET /v1/workers?views=true`,
//! `GET /v1/workers/{id}` and the `/v1/events` stream; it never changes anything. With
//! `--admin-token` it sends the token it is given (`#token=` in the URL or the field on
//! the page, kept in the tab's sessionStorage) as `Authorization: Bearer`.

use axum::http::header;
use axum::response::IntoResponse;

/// The page.
pub const PAGE: &str = include_str!("ui/index.html");

/// `GET /ui`
#[utoipa::path(
    get,
    path = "/ui",
    tag = "meta",
    operation_id = "ui",
    summary = "The live cluster page (HTML)",
    description = "Members, the worker x node verdict matrix, each worker's model, type and origin, filters, a worker's detail; follows `/v1/events`. Self-contained: no external resource.",
    responses(
        (status = 200, description = "The page", content((String = "text/html"))),
    )
)]
pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // The page loads nothing from elsewhere; the policy makes a browser refuse
            // to, should a future edit try.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            ),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
}
