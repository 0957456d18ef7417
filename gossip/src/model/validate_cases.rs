//! The boundary cases of every validation rule, as one table shared by the tests of the
//! three paths a record takes (API input, gossip import, store load), so that the paths
//! cannot drift apart: each case is a change to a valid registration, the same case as
//! an API body where a client can send it, and the field it must be refused for (or
//! `None` when it sits just inside a limit and must be accepted).
//!
//! Test support, compiled into the library so that the daemon's and the end-to-end
//! tests can use it; nothing in probemesh calls it.

use super::{Field, MAX_LABEL_KEY_LEN, MAX_LABEL_VALUE_LEN, MAX_LABELS, MAX_MODEL_ID_LEN};
use super::{MAX_NODE_ID_LEN, MAX_PATH_LEN};
use crate::model::{HealthOverrides, Registration, WorkerSpec, WorkerType, WorkerUrl};
use serde::Serialize;
use std::collections::BTreeMap;

/// URL of the valid registration every case starts from.
pub const BASE_URL: &str = "http://10.0.0.1:8000";

/// One case.
pub struct Case {
    /// What the case checks.
    pub name: &'static str,
    /// The field it must be refused for; `None`: it must be accepted.
    pub refused: Option<Field>,
    /// Turns [`valid_registration`] into the case.
    pub apply: fn(&mut Registration),
    /// The case as a `POST /v1/workers` body, when a client can express it (ids,
    /// generations and owners are never client input, NaN is not JSON).
    pub api_body: Option<String>,
    /// A URL that [`crate::model::WorkerUrl`] refuses, for the record paths: encode the
    /// registration with [`RawRegistration`] to put it on the wire or on disk.
    pub raw_url: Option<&'static str>,
}

/// The registration every case starts from; it passes validation.
pub fn valid_registration() -> Registration {
    let url = WorkerUrl::parse(BASE_URL).unwrap_or_else(|e| unreachable!("{e}"));
    Registration {
        id: url.id(),
        generation: 1,
        owner: "node-a".into(),
        registered_at_ms: 1_700_000_000_000,
        revision: 1_700_000_000_000,
        spec: WorkerSpec::new(url),
    }
}

/// A registration whose URL is any string: serializes exactly like [`Registration`]
/// (postcard writes a [`WorkerUrl`] as its string), so hostile tests can write records
/// that the typed model cannot hold.
#[derive(Debug, Serialize)]
pub struct RawRegistration {
    id: String,
    generation: u64,
    owner: String,
    registered_at_ms: u64,
    revision: u64,
    spec: RawSpec,
}

#[derive(Debug, Serialize)]
struct RawSpec {
    url: String,
    model_id: Option<String>,
    worker_type: WorkerType,
    labels: BTreeMap<String, String>,
    priority: u32,
    cost: f32,
    bootstrap_port: Option<u16>,
    health: HealthOverrides,
}

impl RawRegistration {
    /// `reg` with its URL replaced by `url` (the id is left as it was).
    pub fn new(reg: &Registration, url: &str) -> RawRegistration {
        let s = &reg.spec;
        RawRegistration {
            id: reg.id.to_string(),
            generation: reg.generation,
            owner: reg.owner.clone(),
            registered_at_ms: reg.registered_at_ms,
            revision: reg.revision,
            spec: RawSpec {
                url: url.to_string(),
                model_id: s.model_id.clone(),
                worker_type: s.worker_type,
                labels: s.labels.clone(),
                priority: s.priority,
                cost: s.cost,
                bootstrap_port: s.bootstrap_port,
                health: s.health.clone(),
            },
        }
    }
}

fn body(members: &str) -> Option<String> {
    Some(format!(r#"{{"url":"{BASE_URL}",{members}}}"#))
}

fn health(members: &str) -> Option<String> {
    body(&format!(r#""health":{{{members}}}"#))
}

/// Makes `r` a gRPC worker (`grpc://`), its id following its URL.
fn grpc_worker(r: &mut Registration) {
    if let Ok(url) = WorkerUrl::parse("grpc://10.0.0.1:50051") {
        r.id = url.id();
        r.spec.url = url;
    }
}

fn labels_json(n: usize) -> String {
    let items: Vec<String> = (0..n).map(|i| format!(r#""k{i}":"v""#)).collect();
    format!(r#""labels":{{{}}}"#, items.join(","))
}

fn many_labels(r: &mut Registration, n: usize) {
    r.spec.labels = (0..n).map(|i| (format!("k{i}"), "v".to_string())).collect();
}

fn case(
    name: &'static str,
    refused: Option<Field>,
    apply: fn(&mut Registration),
    api_body: Option<String>,
) -> Case {
    Case {
        name,
        refused,
        apply,
        api_body,
        raw_url: None,
    }
}

fn url_case(name: &'static str, url: &'static str) -> Case {
    Case {
        name,
        refused: Some(Field::Url),
        apply: |_| {},
        api_body: Some(format!(r#"{{"url":"{url}"}}"#)),
        raw_url: Some(url),
    }
}

/// Every case. Accepted cases sit on a limit; refused ones just past it.
#[rustfmt::skip]
pub fn cases() -> Vec<Case> {
    use Field::*;
    let ok = None;
    let long_path = format!("/{}", "p".repeat(MAX_PATH_LEN - 1));
    let too_long_path = format!("/{}", "p".repeat(MAX_PATH_LEN));
    vec![
        case("the valid base", ok, |_| {}, body(r#""priority":50"#)),
        // health.interval
        case("interval at the minimum", ok, |r| r.spec.health.interval_ms = Some(100), health(r#""interval":"100ms""#)),
        case("interval at the maximum", ok, |r| r.spec.health.interval_ms = Some(3_600_000), health(r#""interval":"1h""#)),
        case("interval under the minimum", Some(HealthInterval), |r| r.spec.health.interval_ms = Some(99), health(r#""interval":"99ms""#)),
        case("interval 0", Some(HealthInterval), |r| r.spec.health.interval_ms = Some(0), health(r#""interval":"0s""#)),
        case("interval over the maximum", Some(HealthInterval), |r| r.spec.health.interval_ms = Some(3_600_001), health(r#""interval":"3600001ms""#)),
        // health.timeout
        case("timeout at the minimum", ok, |r| r.spec.health.timeout_ms = Some(1), health(r#""timeout":"1ms""#)),
        case("timeout just under a minute", ok, |r| r.spec.health.timeout_ms = Some(59_999), health(r#""timeout":"59999ms""#)),
        case("timeout 0", Some(HealthTimeout), |r| r.spec.health.timeout_ms = Some(0), health(r#""timeout":"0ms""#)),
        case("timeout of a minute", Some(HealthTimeout), |r| r.spec.health.timeout_ms = Some(60_000), health(r#""timeout":"60s""#)),
        // thresholds
        case("thresholds at 1", ok, |r| { r.spec.health.success_threshold = Some(1); r.spec.health.failure_threshold = Some(1) }, health(r#""success_threshold":1,"failure_threshold":1"#)),
        case("thresholds at the maximum", ok, |r| { r.spec.health.success_threshold = Some(1000); r.spec.health.failure_threshold = Some(1000) }, health(r#""success_threshold":1000,"failure_threshold":1000"#)),
        case("success threshold 0", Some(HealthSuccessThreshold), |r| r.spec.health.success_threshold = Some(0), health(r#""success_threshold":0"#)),
        case("success threshold over the maximum", Some(HealthSuccessThreshold), |r| r.spec.health.success_threshold = Some(1001), health(r#""success_threshold":1001"#)),
        case("failure threshold 0", Some(HealthFailureThreshold), |r| r.spec.health.failure_threshold = Some(0), health(r#""failure_threshold":0"#)),
        case("failure threshold over the maximum", Some(HealthFailureThreshold), |r| r.spec.health.failure_threshold = Some(1001), health(r#""failure_threshold":1001"#)),
        // health.kind
        case("models kind with a model_id", ok, |r| { r.spec.health.kind = Some(crate::model::ProbeKind::Models); r.spec.model_id = Some("m".into()) }, body(r#""model_id":"m","health":{"kind":"models"}"#)),
        case("models kind without a model_id", Some(HealthKind), |r| r.spec.health.kind = Some(crate::model::ProbeKind::Models), health(r#""kind":"models""#)),
        case("grpc kind on an http worker", ok, |r| r.spec.health.kind = Some(crate::model::ProbeKind::Grpc), health(r#""kind":"grpc""#)),
        case("grpc worker", ok, grpc_worker, Some(r#"{"url":"grpc://10.0.0.1:50051"}"#.into())),
        case("grpc worker with kind grpc", ok, |r| { grpc_worker(r); r.spec.health.kind = Some(crate::model::ProbeKind::Grpc) }, Some(r#"{"url":"grpc://10.0.0.1:50051","health":{"kind":"grpc"}}"#.into())),
        case("grpc worker with kind http", Some(HealthKind), |r| { grpc_worker(r); r.spec.health.kind = Some(crate::model::ProbeKind::Http) }, Some(r#"{"url":"grpc://10.0.0.1:50051","health":{"kind":"http"}}"#.into())),
        case("grpc worker with kind models", Some(HealthKind), |r| { grpc_worker(r); r.spec.model_id = Some("m".into()); r.spec.health.kind = Some(crate::model::ProbeKind::Models) }, Some(r#"{"url":"grpc://10.0.0.1:50051","model_id":"m","health":{"kind":"models"}}"#.into())),
        // health.path
        case("path of the maximum length", ok, |r| r.spec.health.path = Some(format!("/{}", "p".repeat(MAX_PATH_LEN - 1))), health(&format!(r#""path":"{long_path}""#))),
        case("path with percent-encoding and dots inside segments", ok, |r| r.spec.health.path = Some("/a..b/.well-known/x%20y".into()), health(r#""path":"/a..b/.well-known/x%20y""#)),
        case("path over the maximum length", Some(HealthPath), |r| r.spec.health.path = Some(format!("/{}", "p".repeat(MAX_PATH_LEN))), health(&format!(r#""path":"{too_long_path}""#))),
        case("path without a leading slash", Some(HealthPath), |r| r.spec.health.path = Some("health".into()), health(r#""path":"health""#)),
        case("path that is an authority", Some(HealthPath), |r| r.spec.health.path = Some("@127.0.0.1:47860/pwned".into()), health(r#""path":"@127.0.0.1:47860/pwned""#)),
        case("path with user information", Some(HealthPath), |r| r.spec.health.path = Some("/@127.0.0.1:47860/pwned".into()), health(r#""path":"/@127.0.0.1:47860/pwned""#)),
        case("path starting with //", Some(HealthPath), |r| r.spec.health.path = Some("//127.0.0.1:47860/pwned".into()), health(r#""path":"//127.0.0.1:47860/pwned""#)),
        case("path that is a URL", Some(HealthPath), |r| r.spec.health.path = Some("http://127.0.0.1:47860/pwned".into()), health(r#""path":"http://127.0.0.1:47860/pwned""#)),
        case("path with a .. segment", Some(HealthPath), |r| r.spec.health.path = Some("/a/../b".into()), health(r#""path":"/a/../b""#)),
        case("path with an encoded .. segment", Some(HealthPath), |r| r.spec.health.path = Some("/a/%2E%2e/b".into()), health(r#""path":"/a/%2E%2e/b""#)),
        case("path with a . segment", Some(HealthPath), |r| r.spec.health.path = Some("/.".into()), health(r#""path":"/.""#)),
        case("path with a query", Some(HealthPath), |r| r.spec.health.path = Some("/health?x=1".into()), health(r#""path":"/health?x=1""#)),
        case("path with a fragment", Some(HealthPath), |r| r.spec.health.path = Some("/health#x".into()), health(r#""path":"/health#x""#)),
        case("path with a space", Some(HealthPath), |r| r.spec.health.path = Some("/a b".into()), health(r#""path":"/a b""#)),
        case("path with a backslash", Some(HealthPath), |r| r.spec.health.path = Some("/a\\b".into()), health(r#""path":"/a\\b""#)),
        case("path with a control character", Some(HealthPath), |r| r.spec.health.path = Some("/a\u{7}".into()), health(r#""path":"/a\u0007""#)),
        case("path with non-ASCII", Some(HealthPath), |r| r.spec.health.path = Some("/gesundheit-ü".into()), health(r#""path":"/gesundheit-ü""#)),
        // model_id
        case("model_id of the maximum length", ok, |r| r.spec.model_id = Some("m".repeat(MAX_MODEL_ID_LEN)), body(&format!(r#""model_id":"{}""#, "m".repeat(MAX_MODEL_ID_LEN)))),
        case("empty model_id", Some(ModelId), |r| r.spec.model_id = Some(String::new()), body(r#""model_id":"""#)),
        case("model_id over the maximum length", Some(ModelId), |r| r.spec.model_id = Some("m".repeat(MAX_MODEL_ID_LEN + 1)), body(&format!(r#""model_id":"{}""#, "m".repeat(MAX_MODEL_ID_LEN + 1)))),
        case("model_id with a control character", Some(ModelId), |r| r.spec.model_id = Some("a\nb".into()), body(r#""model_id":"a\nb""#)),
        // labels
        case("the maximum number of labels", ok, |r| many_labels(r, MAX_LABELS), body(&labels_json(MAX_LABELS))),
        case("label key and value of the maximum length, empty value", ok, |r| { r.spec.labels.insert("k".repeat(MAX_LABEL_KEY_LEN), "v".repeat(MAX_LABEL_VALUE_LEN)); r.spec.labels.insert("e".into(), String::new()); }, body(&format!(r#""labels":{{"{}":"{}","e":""}}"#, "k".repeat(MAX_LABEL_KEY_LEN), "v".repeat(MAX_LABEL_VALUE_LEN)))),
        case("too many labels", Some(Labels), |r| many_labels(r, MAX_LABELS + 1), body(&labels_json(MAX_LABELS + 1))),
        case("empty label key", Some(Labels), |r| { r.spec.labels.insert(String::new(), "v".into()); }, body(r#""labels":{"":"v"}"#)),
        case("label key over the maximum length", Some(Labels), |r| { r.spec.labels.insert("k".repeat(MAX_LABEL_KEY_LEN + 1), "v".into()); }, body(&format!(r#""labels":{{"{}":"v"}}"#, "k".repeat(MAX_LABEL_KEY_LEN + 1)))),
        case("label key with a control character", Some(Labels), |r| { r.spec.labels.insert("a\u{7}b".into(), "v".into()); }, body(r#""labels":{"a\u0007b":"v"}"#)),
        case("label value over the maximum length", Some(Labels), |r| { r.spec.labels.insert("k".into(), "v".repeat(MAX_LABEL_VALUE_LEN + 1)); }, body(&format!(r#""labels":{{"k":"{}"}}"#, "v".repeat(MAX_LABEL_VALUE_LEN + 1)))),
        case("label value with a control character", Some(Labels), |r| { r.spec.labels.insert("k".into(), "a\rb".into()); }, body(r#""labels":{"k":"a\rb"}"#)),
        // cost, priority, bootstrap_port, worker_type
        case("cost 0", ok, |r| r.spec.cost = 0.0, body(r#""cost":0"#)),
        case("negative cost", Some(Cost), |r| r.spec.cost = -0.5, body(r#""cost":-0.5"#)),
        case("cost NaN", Some(Cost), |r| r.spec.cost = f32::NAN, None),
        case("cost infinite", Some(Cost), |r| r.spec.cost = f32::INFINITY, None),
        case("priority u32::MAX", ok, |r| r.spec.priority = u32::MAX, body(r#""priority":4294967295"#)),
        case("bootstrap_port 65535 and 1", ok, |r| r.spec.bootstrap_port = Some(65_535), body(r#""bootstrap_port":1"#)),
        case("bootstrap_port 0", Some(BootstrapPort), |r| r.spec.bootstrap_port = Some(0), body(r#""bootstrap_port":0"#)),
        case("worker types decode and prefill", ok, |r| r.spec.worker_type = WorkerType::Decode, body(r#""worker_type":"prefill""#)),
        // url (the record paths write the raw string; the model cannot hold it)
        url_case("url with another scheme", "ftp://10.0.0.1:8000"),
        url_case("url with user information", "http://u:p@10.0.0.1:8000"),
        url_case("url with a query", "http://10.0.0.1:8000/?a=1"),
        url_case("url without a host", "http://:8000"),
        url_case("grpc url without a port", "grpc://10.0.0.1"),
        url_case("grpc url with a path", "grpc://10.0.0.1:50051/v1"),
        // id, generation, owner: never client input
        case("id of another URL", Some(Id), |r| r.id = WorkerUrl::parse("http://10.0.0.2:8000").map(|u| u.id()).unwrap_or_else(|_| r.id.clone()), None),
        case("generation 0", Some(Generation), |r| r.generation = 0, None),
        case("owner of the maximum length", ok, |r| r.owner = "o".repeat(MAX_NODE_ID_LEN), None),
        case("empty owner", Some(Owner), |r| r.owner = String::new(), None),
        case("owner over the maximum length", Some(Owner), |r| r.owner = "o".repeat(MAX_NODE_ID_LEN + 1), None),
        case("owner with a space", Some(Owner), |r| r.owner = "node a".into(), None),
    ]
}
