//! The one set of rules a worker record must pass, wherever it comes from (SPEC S11):
//! the admin API runs it on every POST and PATCH, gossip decoding on every registration
//! and tombstone a peer publishes, and the store on every record it loads from disk. A
//! record that fails is refused (API) or dropped (peer, disk); it is never probed or
//! shown.
//!
//! The limits are public constants so that the docs, the API and the tests quote the
//! same numbers. URL rules live in [`WorkerUrl::parse`], the only way to make a
//! [`WorkerUrl`] (deserializing one runs it too), so a record's URL is valid by type.

use super::{
    Drain, HealthOverrides, MAX_DRAIN_MS, ProbeKind, Registration, Tombstone, UrlError, WorkerSpec,
    WorkerUrl,
};
use std::collections::BTreeMap;
use std::fmt;

/// Most labels a worker may carry.
pub const MAX_LABELS: usize = 64;
/// Longest label key, in bytes (at least 1).
pub const MAX_LABEL_KEY_LEN: usize = 128;
/// Longest label value, in bytes (may be empty).
pub const MAX_LABEL_VALUE_LEN: usize = 1024;
/// Longest `model_id`, in bytes (at least 1).
pub const MAX_MODEL_ID_LEN: usize = 1024;
/// Longest `health.path`, in bytes.
pub const MAX_PATH_LEN: usize = 1024;
/// Smallest success or failure threshold: 0 would make a worker ready (or not ready)
/// without a single probe.
pub const MIN_THRESHOLD: u32 = 1;
/// Largest success or failure threshold. 1000 probes at the shortest interval take
/// 100 s; more would keep a worker pending for no benefit.
pub const MAX_THRESHOLD: u32 = 1000;
/// Shortest per-worker probe interval, in ms. A record reaches every node, so this
/// bounds the probe rate any record can ask of the whole cluster: 10 probes a second
/// per worker per node.
pub const MIN_INTERVAL_MS: u64 = 100;
/// Longest per-worker probe interval, in ms (1 h): a worker probed less often than
/// that cannot be said to be verified.
pub const MAX_INTERVAL_MS: u64 = 3_600_000;
/// Shortest probe timeout, in ms.
pub const MIN_TIMEOUT_MS: u64 = 1;
/// Longest probe timeout, in ms: shorter than a minute (SPEC S11), so that a hanging
/// worker holds a probe slot for less than that.
pub const MAX_TIMEOUT_MS: u64 = 59_999;
/// Longest node id (`owner` of a registration, `writer` of a tombstone), in bytes.
pub const MAX_NODE_ID_LEN: usize = 128;
/// Longest piece of input quoted back in an error message, in characters.
const MAX_QUOTED: usize = 64;

/// The field a validation failure is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// `url`.
    Url,
    /// `id`: the record's id must be derived from its URL.
    Id,
    /// `generation`.
    Generation,
    /// `owner` of a registration.
    Owner,
    /// `writer` of a tombstone.
    Writer,
    /// `model_id`.
    ModelId,
    /// `labels`.
    Labels,
    /// `cost`.
    Cost,
    /// `bootstrap_port`.
    BootstrapPort,
    /// `health.path`.
    HealthPath,
    /// `health.interval`.
    HealthInterval,
    /// `health.timeout`.
    HealthTimeout,
    /// `health.success_threshold`.
    HealthSuccessThreshold,
    /// `health.failure_threshold`.
    HealthFailureThreshold,
    /// `health.kind`.
    HealthKind,
    /// The period of a drain (`started_at_ms` to `ends_at_ms`).
    DrainPeriod,
}

impl Field {
    /// Every field, for tests and docs.
    pub const ALL: [Field; 16] = [
        Field::Url,
        Field::Id,
        Field::Generation,
        Field::Owner,
        Field::Writer,
        Field::ModelId,
        Field::Labels,
        Field::Cost,
        Field::BootstrapPort,
        Field::HealthPath,
        Field::HealthInterval,
        Field::HealthTimeout,
        Field::HealthSuccessThreshold,
        Field::HealthFailureThreshold,
        Field::HealthKind,
        Field::DrainPeriod,
    ];

    /// The field's name as the API spells it (`health.interval`).
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Url => "url",
            Field::Id => "id",
            Field::Generation => "generation",
            Field::Owner => "owner",
            Field::Writer => "writer",
            Field::ModelId => "model_id",
            Field::Labels => "labels",
            Field::Cost => "cost",
            Field::BootstrapPort => "bootstrap_port",
            Field::HealthPath => "health.path",
            Field::HealthInterval => "health.interval",
            Field::HealthTimeout => "health.timeout",
            Field::HealthSuccessThreshold => "health.success_threshold",
            Field::HealthFailureThreshold => "health.failure_threshold",
            Field::HealthKind => "health.kind",
            Field::DrainPeriod => "drain",
        }
    }

    /// A bounded metrics label (`health_interval`): one value per field.
    pub fn reason(self) -> &'static str {
        match self {
            Field::HealthPath => "health_path",
            Field::HealthInterval => "health_interval",
            Field::HealthTimeout => "health_timeout",
            Field::HealthSuccessThreshold => "health_success_threshold",
            Field::HealthFailureThreshold => "health_failure_threshold",
            Field::HealthKind => "health_kind",
            other => other.as_str(),
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a record was refused: the field first, then what is wrong with it
/// (`health.interval: 99ms is too short; the minimum is 100ms`). Input quoted in the
/// message is escaped and cut to a few dozen characters, so the message is safe to log
/// and bounded whatever the record held.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {detail}")]
pub struct InvalidField {
    field: Field,
    detail: String,
}

impl InvalidField {
    fn new(field: Field, detail: impl Into<String>) -> InvalidField {
        InvalidField {
            field,
            detail: detail.into(),
        }
    }

    /// The field.
    pub fn field(&self) -> Field {
        self.field
    }

    /// A bounded label for metrics (`probemesh_gossip_records_rejected_total{reason}`).
    pub fn reason(&self) -> &'static str {
        self.field.reason()
    }

    /// What is wrong, without the field name.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

/// `s` escaped (no control characters reach a log line or a terminal) and cut to
/// [`MAX_QUOTED`] characters.
fn quoted(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(MAX_QUOTED)
        .flat_map(char::escape_debug)
        .collect();
    if s.chars().nth(MAX_QUOTED).is_some() {
        out.push('…');
    }
    out
}

/// Parses a worker URL (the rules of [`WorkerUrl::parse`]) as a [`Field::Url`] error.
pub fn url(raw: &str) -> Result<WorkerUrl, InvalidField> {
    WorkerUrl::parse(raw).map_err(|e| {
        // The parse errors quote the input; quote it safely instead.
        let e = match e {
            UrlError::Parse { url, reason } => UrlError::Parse {
                url: quoted(&url),
                reason,
            },
            UrlError::Scheme { url, scheme } => UrlError::Scheme {
                url: quoted(&url),
                scheme: quoted(&scheme),
            },
            UrlError::NoHost { url } => UrlError::NoHost { url: quoted(&url) },
            UrlError::Userinfo { url } => UrlError::Userinfo { url: quoted(&url) },
            UrlError::QueryOrFragment { url } => UrlError::QueryOrFragment { url: quoted(&url) },
            UrlError::GrpcPort { url } => UrlError::GrpcPort { url: quoted(&url) },
            UrlError::GrpcPath { url } => UrlError::GrpcPath { url: quoted(&url) },
            too_long @ UrlError::TooLong { .. } => too_long,
        };
        InvalidField::new(Field::Url, e.to_string())
    })
}

/// Checks every field of a spec.
pub fn worker_spec(spec: &WorkerSpec) -> Result<(), InvalidField> {
    if let Some(m) = &spec.model_id {
        model_id(m)?;
    }
    labels(&spec.labels)?;
    cost(spec.cost)?;
    if spec.bootstrap_port == Some(0) {
        return Err(InvalidField::new(
            Field::BootstrapPort,
            "must be between 1 and 65535",
        ));
    }
    if spec.health.kind == Some(ProbeKind::Models) && spec.model_id.is_none() {
        return Err(InvalidField::new(
            Field::HealthKind,
            "`models` checks that the worker lists its model_id in GET /v1/models; give the worker a model_id, or use kind `http`",
        ));
    }
    if spec.url.is_grpc()
        && let Some(kind @ (ProbeKind::Http | ProbeKind::Models)) = spec.health.kind
    {
        return Err(InvalidField::new(
            Field::HealthKind,
            format!(
                "a grpc:// worker answers gRPC, not HTTP: kind `{}` cannot check it; leave health.kind out (grpc:// workers are checked with `grpc`) or register its HTTP address",
                kind.as_str()
            ),
        ));
    }
    health(&spec.health)
}

/// Checks a registration: its spec, and that its id, generation and owner are ones
/// this cluster could have produced.
pub fn registration(r: &Registration) -> Result<(), InvalidField> {
    if r.spec.url.id() != r.id {
        return Err(InvalidField::new(
            Field::Id,
            format!(
                "`{}` is not the id of {}; an id is derived from the URL",
                r.id, r.spec.url
            ),
        ));
    }
    generation(r.generation)?;
    node_id(Field::Owner, &r.owner)?;
    worker_spec(&r.spec)
}

/// Checks a drain: id derived from its URL, a real generation, a valid writer, and a
/// period from 0 to [`MAX_DRAIN_MS`].
pub fn drain(d: &Drain) -> Result<(), InvalidField> {
    if d.url.id() != d.id {
        return Err(InvalidField::new(
            Field::Id,
            format!(
                "`{}` is not the id of {}; an id is derived from the URL",
                d.id, d.url
            ),
        ));
    }
    generation(d.generation)?;
    node_id(Field::Writer, &d.writer)?;
    match d.ends_at_ms.checked_sub(d.started_at_ms) {
        Some(p) if p <= MAX_DRAIN_MS => Ok(()),
        Some(p) => Err(InvalidField::new(
            Field::DrainPeriod,
            format!("{p} ms is longer than the longest drain, 1h"),
        )),
        None => Err(InvalidField::new(
            Field::DrainPeriod,
            "ends before it starts",
        )),
    }
}

/// Checks a tombstone: id derived from its URL, a real generation, a valid writer.
pub fn tombstone(t: &Tombstone) -> Result<(), InvalidField> {
    if t.url.id() != t.id {
        return Err(InvalidField::new(
            Field::Id,
            format!(
                "`{}` is not the id of {}; an id is derived from the URL",
                t.id, t.url
            ),
        ));
    }
    generation(t.generation)?;
    node_id(Field::Writer, &t.writer)
}

fn generation(g: u64) -> Result<(), InvalidField> {
    if g == 0 {
        return Err(InvalidField::new(
            Field::Generation,
            "must be at least 1; generations start at 1",
        ));
    }
    Ok(())
}

/// A node id: 1 to [`MAX_NODE_ID_LEN`] bytes of letters, digits, `-`, `_`, `.` and `:`
/// (it appears in URLs, metric labels and logs). `field` says which record field
/// holds it.
pub fn node_id(field: Field, id: &str) -> Result<(), InvalidField> {
    if id.is_empty() {
        return Err(InvalidField::new(field, "must not be empty"));
    }
    if id.len() > MAX_NODE_ID_LEN {
        return Err(InvalidField::new(
            field,
            format!(
                "is {} bytes; at most {MAX_NODE_ID_LEN} are allowed",
                id.len()
            ),
        ));
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
    {
        return Err(InvalidField::new(
            field,
            format!(
                "`{}` may only contain letters, digits, '-', '_', '.' and ':'",
                quoted(id)
            ),
        ));
    }
    Ok(())
}

/// `model_id`: 1 to [`MAX_MODEL_ID_LEN`] bytes, no control characters.
pub fn model_id(m: &str) -> Result<(), InvalidField> {
    if m.is_empty() || m.len() > MAX_MODEL_ID_LEN {
        return Err(InvalidField::new(
            Field::ModelId,
            format!("must be 1 to {MAX_MODEL_ID_LEN} bytes"),
        ));
    }
    if m.chars().any(char::is_control) {
        return Err(InvalidField::new(
            Field::ModelId,
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// `labels`: at most [`MAX_LABELS`]; keys 1 to [`MAX_LABEL_KEY_LEN`] bytes, values at
/// most [`MAX_LABEL_VALUE_LEN`] bytes, neither with control characters.
pub fn labels(labels: &BTreeMap<String, String>) -> Result<(), InvalidField> {
    if labels.len() > MAX_LABELS {
        return Err(InvalidField::new(
            Field::Labels,
            format!("at most {MAX_LABELS} labels are allowed"),
        ));
    }
    for (k, v) in labels {
        if k.is_empty() || k.len() > MAX_LABEL_KEY_LEN || k.chars().any(char::is_control) {
            return Err(InvalidField::new(
                Field::Labels,
                format!(
                    "key `{}` must be 1 to {MAX_LABEL_KEY_LEN} printable bytes",
                    quoted(k)
                ),
            ));
        }
        if v.len() > MAX_LABEL_VALUE_LEN || v.chars().any(char::is_control) {
            return Err(InvalidField::new(
                Field::Labels,
                format!(
                    "value of `{}` must be at most {MAX_LABEL_VALUE_LEN} printable bytes",
                    quoted(k)
                ),
            ));
        }
    }
    Ok(())
}

/// `cost`: a finite number, at least 0.
pub fn cost(c: f32) -> Result<(), InvalidField> {
    if !c.is_finite() || c < 0.0 {
        return Err(InvalidField::new(
            Field::Cost,
            "must be a finite number >= 0",
        ));
    }
    Ok(())
}

/// Every set health override.
pub fn health(h: &HealthOverrides) -> Result<(), InvalidField> {
    if let Some(p) = &h.path {
        health_path(p)?;
    }
    if let Some(ms) = h.interval_ms {
        interval_ms(ms)?;
    }
    if let Some(ms) = h.timeout_ms {
        timeout_ms(ms)?;
    }
    if let Some(n) = h.success_threshold {
        threshold(Field::HealthSuccessThreshold, n)?;
    }
    if let Some(n) = h.failure_threshold {
        threshold(Field::HealthFailureThreshold, n)?;
    }
    Ok(())
}

/// `health.path` is a path and nothing else (SPEC S3): it starts with `/` (so it has
/// no scheme), not with `//` (an authority); it holds no `@` (user information), no `.`
/// or `..` segment, plain or percent-encoded (it would climb out of the worker's base
/// path), no `?` or `#` (a query or fragment is not a path), no `\` (which URL parsers
/// read as `/`); only visible ASCII (anything else must be percent-encoded), at most
/// [`MAX_PATH_LEN`] bytes.
pub fn health_path(p: &str) -> Result<(), InvalidField> {
    let bad = |why: &str| Err(InvalidField::new(Field::HealthPath, why));
    if p.len() > MAX_PATH_LEN {
        return bad(&format!("is longer than {MAX_PATH_LEN} bytes"));
    }
    if !p.starts_with('/') {
        return bad(&format!(
            "`{}` must start with '/'; it is a path on the worker's own address, not a URL",
            quoted(p)
        ));
    }
    if p.starts_with("//") {
        return bad(&format!(
            "`{}` starts with '//', which names another host; write a path such as /health",
            quoted(p)
        ));
    }
    if let Some(c) = p.chars().find(|c| !c.is_ascii_graphic()) {
        return bad(&format!(
            "`{}` contains {}; only visible ASCII is allowed (percent-encode the rest)",
            quoted(p),
            match c {
                ' ' => "a space".to_string(),
                c if c.is_control() => "a control character".to_string(),
                c => format!("'{c}'"),
            }
        ));
    }
    for (c, what) in [
        ('@', "'@' (user information)"),
        ('?', "'?' (a query)"),
        ('#', "'#' (a fragment)"),
        ('\\', "'\\'"),
    ] {
        if p.contains(c) {
            return bad(&format!(
                "`{}` contains {what}; health.path is a plain path on the worker's own address",
                quoted(p)
            ));
        }
    }
    let dot_segment = p.split('/').any(|seg| {
        let seg = seg.to_ascii_lowercase().replace("%2e", ".");
        seg == "." || seg == ".."
    });
    if dot_segment {
        return bad(&format!(
            "`{}` contains a '.' or '..' segment; write the path without them",
            quoted(p)
        ));
    }
    Ok(())
}

/// `health.interval` in ms: [`MIN_INTERVAL_MS`] to [`MAX_INTERVAL_MS`].
pub fn interval_ms(ms: u64) -> Result<(), InvalidField> {
    if ms < MIN_INTERVAL_MS {
        return Err(InvalidField::new(
            Field::HealthInterval,
            format!("{ms}ms is too short; the minimum is {MIN_INTERVAL_MS}ms"),
        ));
    }
    if ms > MAX_INTERVAL_MS {
        return Err(InvalidField::new(
            Field::HealthInterval,
            format!("{ms}ms is too long; the maximum is 1h"),
        ));
    }
    Ok(())
}

/// `health.timeout` in ms: [`MIN_TIMEOUT_MS`] to [`MAX_TIMEOUT_MS`] (under a minute).
pub fn timeout_ms(ms: u64) -> Result<(), InvalidField> {
    if ms < MIN_TIMEOUT_MS {
        return Err(InvalidField::new(
            Field::HealthTimeout,
            format!("must be at least {MIN_TIMEOUT_MS}ms"),
        ));
    }
    if ms > MAX_TIMEOUT_MS {
        return Err(InvalidField::new(
            Field::HealthTimeout,
            format!("{ms}ms is too long; a probe timeout must be shorter than 1m"),
        ));
    }
    Ok(())
}

/// A success or failure threshold: [`MIN_THRESHOLD`] to [`MAX_THRESHOLD`].
pub fn threshold(field: Field, n: u32) -> Result<(), InvalidField> {
    if !(MIN_THRESHOLD..=MAX_THRESHOLD).contains(&n) {
        return Err(InvalidField::new(
            field,
            format!("{n} is out of range; use {MIN_THRESHOLD} to {MAX_THRESHOLD}"),
        ));
    }
    Ok(())
}

#[doc(hidden)]
#[path = "validate_cases.rs"]
pub mod cases;

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
