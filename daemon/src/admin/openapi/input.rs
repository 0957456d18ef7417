//! Schemas of the WorkerSpec fields whose limits come from the cluster's one validator
//! (`probemesh_gossip::model::validate`). Each schema admits exactly what the validator
//! accepts, with one difference JSON Schema cannot avoid: the validator counts the
//! length of `model_id` and labels in UTF-8 bytes, JSON Schema in characters, so a
//! string of multi-byte characters can be short enough for the schema and too long for
//! the server (which answers 400). The tests below hold each limit against the
//! validator.

use probemesh_gossip::model::validate::{
    MAX_LABEL_KEY_LEN, MAX_LABEL_VALUE_LEN, MAX_LABELS, MAX_MODEL_ID_LEN, MAX_PATH_LEN,
    MAX_THRESHOLD, MIN_THRESHOLD,
};
use utoipa::openapi::schema::{Object, ObjectBuilder, SchemaType, Type};

/// The longest worker URL, in bytes (the model's limit; its constant is private to
/// the model crate, so a test holds this one against `WorkerUrl::parse`).
pub const MAX_URL_LEN: usize = 2048;

/// URL schemes a worker URL may have.
pub const URL_SCHEMES: [&str; 3] = ["http", "https", "grpc"];

/// Printable characters (no C0 or C1 control characters, which the validator refuses).
const PRINTABLE: &str = "[^\\u0000-\\u001f\\u007f-\\u009f]";

/// One character of a health path segment: visible ASCII except `/`, `@`, `?`, `#`
/// and `\`.
const PATH_CHAR: &str = "[!\"$-.0->A-\\[\\]-~]";

fn nullable(t: Type) -> SchemaType {
    SchemaType::from_iter([t, Type::Null])
}

/// `url`: an http(s) or grpc URL without user information, query or fragment. No pattern:
/// the server parses it by the WHATWG URL rules (which trim, drop tabs and newlines,
/// map international names), which no regular expression matches exactly; a URL it
/// cannot take is a 400 `INVALID_URL`.
pub fn url() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(MAX_URL_LEN))
        .description(Some(format!(
            "Base URL of the worker: {} with a host, no user information, query or fragment, at most {MAX_URL_LEN} bytes (anything else is a 400 INVALID_URL); a `grpc://` URL (a gRPC worker, checked with kind `grpc`) needs an explicit port and has no path. It is normalized (scheme and host lower-cased, default port explicit, no trailing slash) and is the worker's identity; with `--allow-worker-cidr` its host must be an IP address inside the list",
            URL_SCHEMES.join(", ")
        )))
        .examples(["http://10.0.0.5:8000"])
        .build()
}

/// `url` of a PATCH: the worker's own URL (any other is a 400), or null.
pub fn url_or_null() -> Object {
    let mut o = url();
    o.schema_type = nullable(Type::String);
    o.description = Some(
        "If given, the worker's own URL (in any spelling that normalizes to it); a worker's URL cannot change, so another URL is a 400 INVALID_SPEC".into(),
    );
    o
}

/// `model_id`.
pub fn model_id() -> Object {
    ObjectBuilder::new()
        .schema_type(nullable(Type::String))
        .min_length(Some(1))
        .max_length(Some(MAX_MODEL_ID_LEN))
        .pattern(Some(format!("^{PRINTABLE}*$")))
        .description(Some(format!(
            "The model the worker serves: 1 to {MAX_MODEL_ID_LEN} bytes of UTF-8 without control characters (JSON Schema counts characters: a longer string of multi-byte characters is a 400)"
        )))
        .examples(["llama-3-8b"])
        .build()
}

/// `labels`.
pub fn labels() -> Object {
    let value = ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(MAX_LABEL_VALUE_LEN))
        .pattern(Some(format!("^{PRINTABLE}*$")));
    ObjectBuilder::new()
        .schema_type(nullable(Type::Object))
        .max_properties(Some(MAX_LABELS))
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(MAX_LABEL_KEY_LEN))
                .pattern(Some(format!("^{PRINTABLE}+$")))
                .build(),
        ))
        .additional_properties(Some(value))
        .description(Some(format!(
            "Free-form labels: at most {MAX_LABELS}; keys 1 to {MAX_LABEL_KEY_LEN} bytes, values at most {MAX_LABEL_VALUE_LEN} bytes (of UTF-8: JSON Schema counts characters), no control characters"
        )))
        .build()
}

/// `health.path`: exactly the validator's rule. Not `//` at the start; segments of
/// visible ASCII without `@`, `?`, `#`, `\`; no segment that is `.` or `..`, plain or
/// percent-encoded (`%2e`, any case).
pub fn health_path() -> Object {
    let dot_segment = "(\\.|%2[eE]){1,2}(/|$)";
    ObjectBuilder::new()
        .schema_type(nullable(Type::String))
        .max_length(Some(MAX_PATH_LEN))
        .pattern(Some(format!(
            "^(?!//)(/(?!{dot_segment}){PATH_CHAR}*)+$"
        )))
        .description(Some(
            "Probe path on the worker's own address: starts with `/` (not `//`), visible ASCII only, no `@`, `?`, `#`, `\\`, no `.` or `..` segment (null: this node's `--probe-path`)",
        ))
        .examples(["/health"])
        .build()
}

/// `health.interval`: 100ms to 1h.
pub fn health_interval() -> Object {
    ObjectBuilder::new()
        .schema_type(nullable(Type::String))
        .pattern(Some(crate::admin::api_duration::PATTERN))
        .description(Some(
            "Probe interval, 100ms to 1h (`500ms`, `5s`, `1m 30s`; null: this node's `--probe-interval`); outside that range a 400 INVALID_SPEC",
        ))
        .examples(["5s"])
        .build()
}

/// `health.timeout`: 1ms to under a minute.
pub fn health_timeout() -> Object {
    ObjectBuilder::new()
        .schema_type(nullable(Type::String))
        .pattern(Some(crate::admin::api_duration::PATTERN))
        .description(Some(
            "Probe timeout, 1ms to 59.999s (null: this node's `--probe-timeout`); outside that range a 400 INVALID_SPEC",
        ))
        .examples(["2s"])
        .build()
}

/// `health.success_threshold` and `health.failure_threshold`.
pub fn threshold() -> Object {
    ObjectBuilder::new()
        .schema_type(nullable(Type::Integer))
        .minimum(Some(MIN_THRESHOLD))
        .maximum(Some(MAX_THRESHOLD))
        .description(Some(format!(
            "{MIN_THRESHOLD} to {MAX_THRESHOLD} (null: this node's default)"
        )))
        .build()
}

/// `cost`: finite, at least 0 (f32 on the wire).
pub fn cost() -> Object {
    ObjectBuilder::new()
        .schema_type(nullable(Type::Number))
        .minimum(Some(0.0))
        .maximum(Some(f64::from(f32::MAX)))
        .description(Some(
            "Routing cost, a number from 0 to the largest 32-bit float (default 1.0)",
        ))
        .build()
}

/// `priority`.
pub fn priority() -> Object {
    ObjectBuilder::new()
        .schema_type(nullable(Type::Integer))
        .minimum(Some(0))
        .maximum(Some(u32::MAX))
        .description(Some("Routing priority (default 50)"))
        .build()
}

/// `bootstrap_port`.
pub fn bootstrap_port() -> Object {
    ObjectBuilder::new()
        .schema_type(nullable(Type::Integer))
        .minimum(Some(1))
        .maximum(Some(65535))
        .description(Some("Bootstrap port of a prefill worker (null: none)"))
        .build()
}

/// `worker_type` in an input (nullable: null is the default).
pub fn worker_type() -> Object {
    let mut o = super::schemas::worker_type();
    o.schema_type = nullable(Type::String);
    if let Some(values) = o.enum_values.as_mut() {
        values.push(serde_json::Value::Null);
    }
    o
}

/// `health.kind` in an input (nullable: null is the node's `--probe-kind`).
pub fn probe_kind() -> Object {
    let mut o = super::schemas::probe_kind();
    o.schema_type = nullable(Type::String);
    if let Some(values) = o.enum_values.as_mut() {
        values.push(serde_json::Value::Null);
    }
    o.description = Some(
        "What a probe checks (null: `grpc` for a `grpc://` worker, else this node's --probe-kind): `http` (GET url + path, any 2xx), `models` (GET url + /v1/models lists the worker's `model_id`; needs a `model_id`), `grpc` (the standard gRPC health check, `SERVING`; the only kind a `grpc://` worker takes)".into(),
    );
    o
}

/// `health.disable`.
pub fn disable() -> Object {
    ObjectBuilder::new()
        .schema_type(nullable(Type::Boolean))
        .description(Some(
            "Disable health checks: the worker is ready without probes (null: false)",
        ))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use probemesh_gossip::model::WorkerUrl;
    use probemesh_gossip::model::validate::{MAX_INTERVAL_MS, MAX_TIMEOUT_MS, MIN_INTERVAL_MS};

    #[test]
    fn the_url_schemes_are_the_ones_the_model_accepts() {
        for scheme in ["http", "https", "grpc", "ftp", "ws", "file"] {
            assert_eq!(
                WorkerUrl::parse(&format!("{scheme}://h:1")).is_ok(),
                URL_SCHEMES.contains(&scheme),
                "{scheme}"
            );
        }
    }

    #[test]
    fn the_url_length_limit_is_the_models() {
        let url = |len: usize| {
            let prefix = "http://h:1/";
            format!("{prefix}{}", "a".repeat(len - prefix.len()))
        };
        assert!(WorkerUrl::parse(&url(MAX_URL_LEN)).is_ok());
        assert!(WorkerUrl::parse(&url(MAX_URL_LEN + 1)).is_err());
    }

    #[test]
    fn the_duration_ranges_in_the_descriptions_are_the_validators() {
        assert_eq!((MIN_INTERVAL_MS, MAX_INTERVAL_MS), (100, 3_600_000));
        assert_eq!(MAX_TIMEOUT_MS, 59_999);
    }
}
