//! Path and query parameters of the API, described for the document. The parsing is
//! the handlers' own (`workers::parse_list_query`); a unit test there checks that every
//! parameter described here is accepted and that no other is.

use probemesh_gossip::model::Status;
use utoipa::IntoParams;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{Required, Schema};

use crate::admin::api_duration::PATTERN as DURATION_PATTERN;

/// A worker id: 16 lower-case hex digits.
pub const ID_PATTERN: &str = "^[0-9a-f]{16}$";

/// The names of the query parameters of `GET /v1/workers`.
pub const LIST_PARAMS: [&str; 6] = ["status", "model", "url", "views", "index", "wait"];

fn string(pattern: Option<String>) -> Schema {
    Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(pattern)
            .build(),
    )
}

fn query(name: &str, schema: Schema, description: &str, example: serde_json::Value) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .schema(Some(schema))
        .description(Some(description))
        .example(Some(example))
        .build()
}

/// A comma list of statuses, as a pattern built from [`Status::ALL`].
pub fn status_list_pattern() -> String {
    let one = Status::ALL
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join("|");
    format!("^({one})(,({one}))*$")
}

/// Query parameters of `GET /v1/workers`.
pub struct ListParams;

impl IntoParams for ListParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let integer = Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0))
                .maximum(Some(utoipa::Number::UInt(
                    usize::try_from(u64::MAX).unwrap_or(usize::MAX),
                )))
                .description(Some("An unsigned 64-bit integer"))
                .build(),
        );
        let boolean = Schema::Object(ObjectBuilder::new().schema_type(Type::Boolean).build());
        vec![
            query(
                "status",
                string(Some(status_list_pattern())),
                &format!(
                    "Only workers with one of these statuses on this node (comma list of {})",
                    super::status_names()
                ),
                "ready".into(),
            ),
            query(
                "model",
                string(None),
                "Only workers whose `model_id` is this",
                "llama-3-8b".into(),
            ),
            query(
                "url",
                Schema::Object(super::input::url()),
                "Only the worker with this URL (normalized as at registration; an invalid URL is a 400 INVALID_QUERY)",
                "http://10.0.0.5:8000".into(),
            ),
            query(
                "views",
                boolean,
                "`true` adds each worker's `views`: every live member's status for it, as in `GET /v1/workers/{id}`",
                true.into(),
            ),
            query(
                "index",
                integer,
                "Blocking query: hold the answer until the view's index exceeds this (the `index` or `X-Probemesh-Index` of an earlier answer) or `wait` ends",
                1_764_338_816_009_000u64.into(),
            ),
            query(
                "wait",
                string(Some(DURATION_PATTERN.to_string())),
                "Longest time a blocking query holds the answer (default and maximum `5m`; longer is cut to `5m`)",
                "30s".into(),
            ),
        ]
    }
}

/// Query parameters of `DELETE /v1/workers/{id}`.
pub struct DeleteParams;

impl IntoParams for DeleteParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![query(
            "drain",
            string(Some(DURATION_PATTERN.to_string())),
            "Drain for this long first (SPEC S14; at most `1h`): the generation is `draining` on every node (not routable, still listed) and tombstoned when the period ends, by whichever live node sees the end first. Absent or `0s`: tombstoned at once",
            "30s".into(),
        )]
    }
}

/// The `{id}` path parameter.
pub struct IdParam;

impl IntoParams for IdParam {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            ParameterBuilder::new()
                .name("id")
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .schema(Some(string(Some(ID_PATTERN.to_string()))))
                .description(Some(
                    "The worker id (16 hex digits, derived from the normalized URL; the same on every node). Any other segment is an unknown id (404); one that is not UTF-8 after percent-decoding is a 400 INVALID_ID",
                ))
                .example(Some("5f0c3a9e1b2d4c6f".into()))
                .build(),
        ]
    }
}
