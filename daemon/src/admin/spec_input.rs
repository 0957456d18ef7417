//! WorkerSpec as the API accepts it: JSON with unknown fields refused, converted into
//! the shared [`WorkerSpec`] and checked by the cluster's one validator
//! ([`probemesh_gossip::model::validate`]), the same rules peers' and stored records
//! pass. PATCH bodies use the same fields, all optional; `null` resets a field to its
//! default.

use probemesh_gossip::model::validate::{self, Field};
use probemesh_gossip::model::{
    HealthOverrides, InvalidField, ProbeKind, WorkerSpec, WorkerType, WorkerUrl,
};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use utoipa::ToSchema;

use super::openapi::input as schema;

/// `POST /v1/workers` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WorkerSpec)]
pub struct SpecInput {
    /// Required base URL.
    #[schema(schema_with = schema::url)]
    pub url: String,
    /// Model served.
    #[schema(schema_with = schema::model_id)]
    pub model_id: Option<String>,
    /// Role.
    #[schema(schema_with = schema::worker_type)]
    pub worker_type: Option<WorkerType>,
    /// Labels.
    #[schema(schema_with = schema::labels)]
    pub labels: Option<BTreeMap<String, String>>,
    /// Priority.
    #[serde(default, deserialize_with = "int_or_null")]
    #[schema(schema_with = schema::priority)]
    pub priority: Option<u32>,
    /// Cost, as written (range-checked before it becomes an `f32`: [`cost`]).
    #[schema(schema_with = schema::cost)]
    pub cost: Option<f64>,
    /// Bootstrap port.
    #[serde(default, deserialize_with = "int_or_null")]
    #[schema(schema_with = schema::bootstrap_port)]
    pub bootstrap_port: Option<u16>,
    /// Health overrides.
    #[serde(default, deserialize_with = "health_or_null")]
    #[schema(value_type = Option<HealthInput>)]
    pub health: Option<HealthInput>,
}

/// `health` object of a spec: each field unset or `null` takes this node's default.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = HealthSpec)]
pub struct HealthInput {
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = schema::health_path)]
    path: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = schema::health_interval)]
    interval: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = schema::health_timeout)]
    timeout: Option<Option<String>>,
    #[serde(default, deserialize_with = "present_int")]
    #[schema(schema_with = schema::threshold)]
    success_threshold: Option<Option<u32>>,
    #[serde(default, deserialize_with = "present_int")]
    #[schema(schema_with = schema::threshold)]
    failure_threshold: Option<Option<u32>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = schema::disable)]
    disable: Option<Option<bool>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = schema::probe_kind)]
    kind: Option<Option<String>>,
}

/// `PATCH /v1/workers/{id}` body: every field optional; `null` resets to the default.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WorkerPatch)]
pub struct PatchInput {
    /// Must equal the worker's URL if given.
    #[schema(schema_with = schema::url_or_null)]
    pub url: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = schema::model_id)]
    model_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = schema::worker_type)]
    worker_type: Option<Option<WorkerType>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = schema::labels)]
    labels: Option<Option<BTreeMap<String, String>>>,
    #[serde(default, deserialize_with = "present_int")]
    #[schema(schema_with = schema::priority)]
    priority: Option<Option<u32>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = schema::cost)]
    cost: Option<Option<f64>>,
    #[serde(default, deserialize_with = "present_int")]
    #[schema(schema_with = schema::bootstrap_port)]
    bootstrap_port: Option<Option<u16>>,
    #[serde(default, deserialize_with = "present_health")]
    #[schema(value_type = Option<HealthInput>)]
    health: Option<Option<HealthInput>>,
}

/// Distinguishes a field set to `null` (`Some(None)`) from an absent one (`None`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// An integer field or `null`. JSON does not tell `186` from `186.0` (JSON Schema
/// calls both integers), so a number with no fractional part is taken as the integer
/// it is; a fraction, a negative number or one out of range is refused.
fn int_or_null<'de, D: Deserializer<'de>, T: TryFrom<u64>>(d: D) -> Result<Option<T>, D::Error> {
    use serde::de::Error;
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    let whole = n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64)
            .map(|f| f as u64)
    });
    let v = whole.ok_or_else(|| {
        D::Error::custom(format!(
            "invalid value: {n}, expected a non-negative integer"
        ))
    })?;
    T::try_from(v)
        .map(Some)
        .map_err(|_| D::Error::custom(format!("invalid value: {n} is out of range")))
}

/// [`int_or_null`] for PATCH fields, where `null` and absent differ.
fn present_int<'de, D: Deserializer<'de>, T: TryFrom<u64>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    int_or_null(d).map(Some)
}

/// The `health` object or `null`. serde would also read the struct from an array
/// (`[null, null]`, field by field); only an object is a `health` here.
fn health_or_null<'de, D: Deserializer<'de>>(d: D) -> Result<Option<HealthInput>, D::Error> {
    use serde::de::Error;
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => Ok(None),
        v @ serde_json::Value::Object(_) => serde_json::from_value(v)
            .map(Some)
            .map_err(D::Error::custom),
        other => Err(D::Error::custom(format!(
            "invalid type: health must be an object or null, not {other}"
        ))),
    }
}

/// [`health_or_null`] for PATCH.
fn present_health<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<HealthInput>>, D::Error> {
    health_or_null(d).map(Some)
}

/// A cost as written, range-checked before it becomes an `f32`: from 0 to the largest
/// `f32`. Converting first would let `-1e-50` through as `-0` and round numbers just
/// past the largest `f32` down to it, values the document (0 to that maximum) calls
/// invalid.
fn cost(c: f64) -> Result<f32, InvalidSpec> {
    if (0.0..=f64::from(f32::MAX)).contains(&c) {
        Ok(c as f32)
    } else {
        Err(invalid(
            "cost",
            format!("must be a finite number from 0 to {}", f32::MAX),
        ))
    }
}

/// A validation failure: which field, and why.
#[derive(Debug, PartialEq, Eq)]
pub struct InvalidSpec {
    /// `INVALID_URL` or `INVALID_SPEC`.
    pub code: &'static str,
    /// The sentence for the client.
    pub message: String,
}

fn invalid(field: &str, why: impl std::fmt::Display) -> InvalidSpec {
    InvalidSpec {
        code: "INVALID_SPEC",
        message: format!("{field}: {why}"),
    }
}

impl From<InvalidField> for InvalidSpec {
    fn from(e: InvalidField) -> InvalidSpec {
        InvalidSpec {
            code: if e.field() == Field::Url {
                "INVALID_URL"
            } else {
                "INVALID_SPEC"
            },
            message: e.to_string(),
        }
    }
}

/// Parses and normalizes a worker URL for the API.
pub fn parse_url(raw: &str) -> Result<WorkerUrl, InvalidSpec> {
    Ok(validate::url(raw)?)
}

impl SpecInput {
    /// Validates and converts into a spec with every spec-level default filled in.
    pub fn into_spec(self) -> Result<WorkerSpec, InvalidSpec> {
        let mut spec = WorkerSpec::new(parse_url(&self.url)?);
        let patch = PatchInput {
            url: None,
            model_id: self.model_id.map(Some),
            worker_type: self.worker_type.map(Some),
            labels: self.labels.map(Some),
            priority: self.priority.map(Some),
            cost: self.cost.map(Some),
            bootstrap_port: self.bootstrap_port.map(Some),
            health: self.health.map(Some),
        };
        patch.apply_fields(&mut spec)?;
        validate::worker_spec(&spec)?;
        Ok(spec)
    }
}

impl PatchInput {
    /// The spec after this patch.
    pub fn apply(self, current: &WorkerSpec) -> Result<WorkerSpec, InvalidSpec> {
        if let Some(raw) = &self.url
            && parse_url(raw)? != current.url
        {
            return Err(invalid(
                "url",
                "a worker's URL cannot change; a different URL is a different worker, register it with POST /v1/workers",
            ));
        }
        let mut spec = current.clone();
        self.apply_fields(&mut spec)?;
        validate::worker_spec(&spec)?;
        Ok(spec)
    }

    /// Sets the fields this patch names; the caller validates the result as a whole.
    fn apply_fields(self, spec: &mut WorkerSpec) -> Result<(), InvalidSpec> {
        let defaults = WorkerSpec::new(spec.url.clone());
        if let Some(v) = self.model_id {
            spec.model_id = v;
        }
        if let Some(v) = self.worker_type {
            spec.worker_type = v.unwrap_or_default();
        }
        if let Some(v) = self.labels {
            spec.labels = v.unwrap_or_default();
        }
        if let Some(v) = self.priority {
            spec.priority = v.unwrap_or(defaults.priority);
        }
        if let Some(v) = self.cost {
            spec.cost = v.map(cost).transpose()?.unwrap_or(defaults.cost);
        }
        if let Some(v) = self.bootstrap_port {
            spec.bootstrap_port = v;
        }
        match self.health {
            Some(Some(h)) => h.apply(&mut spec.health)?,
            // `"health": null` puts every health setting back to the node defaults.
            Some(None) => spec.health = HealthOverrides::default(),
            None => {}
        }
        Ok(())
    }
}

impl HealthInput {
    /// Sets the overrides this object names; durations are parsed here, their bounds
    /// are the validator's.
    fn apply(self, o: &mut HealthOverrides) -> Result<(), InvalidSpec> {
        if let Some(v) = self.path {
            o.path = v;
        }
        if let Some(v) = self.interval {
            o.interval_ms = v
                .map(|s| duration_ms(Field::HealthInterval, &s))
                .transpose()?;
        }
        if let Some(v) = self.timeout {
            o.timeout_ms = v
                .map(|s| duration_ms(Field::HealthTimeout, &s))
                .transpose()?;
        }
        if let Some(v) = self.success_threshold {
            o.success_threshold = v;
        }
        if let Some(v) = self.failure_threshold {
            o.failure_threshold = v;
        }
        if let Some(v) = self.disable {
            o.disable = v.unwrap_or(false);
        }
        if let Some(v) = self.kind {
            o.kind = v
                .map(|k| {
                    ProbeKind::parse(&k).ok_or_else(|| {
                        invalid(
                            Field::HealthKind.as_str(),
                            format!(
                                "`{}` is not a probe kind; use http, models or grpc",
                                k.chars()
                                    .take(32)
                                    .flat_map(char::escape_debug)
                                    .collect::<String>()
                            ),
                        )
                    })
                })
                .transpose()?;
        }
        Ok(())
    }
}

/// A duration in whole milliseconds; too large a value saturates, and the validator
/// then refuses it with its limit.
fn duration_ms(field: Field, raw: &str) -> Result<u64, InvalidSpec> {
    let d = super::api_duration::parse(raw).map_err(|e| invalid(field.as_str(), e))?;
    Ok(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use probemesh_gossip::model::validate::cases::{BASE_URL, cases};

    fn spec(json: &str) -> Result<WorkerSpec, InvalidSpec> {
        serde_json::from_str::<SpecInput>(json).unwrap().into_spec()
    }

    #[test]
    fn full_spec_converts_with_durations_in_ms() {
        let s = spec(r#"{"url":"http://10.0.0.5:8000/","model_id":"llama","worker_type":"decode","labels":{"a":"b"},"priority":7,"cost":2.5,"bootstrap_port":9000,"health":{"path":"/v1/models","interval":"500ms","timeout":"2s","success_threshold":1,"failure_threshold":4,"disable":false}}"#).unwrap();
        assert_eq!(s.url.as_str(), "http://10.0.0.5:8000");
        assert_eq!(s.worker_type, WorkerType::Decode);
        assert_eq!(s.health.interval_ms, Some(500));
        assert_eq!(s.health.timeout_ms, Some(2000));
        assert_eq!(s.health.failure_threshold, Some(4));
        assert_eq!(s.bootstrap_port, Some(9000));
    }

    #[test]
    fn only_url_is_required_and_defaults_follow_smg() {
        let s = spec(r#"{"url":"http://h:1"}"#).unwrap();
        assert_eq!(
            (s.priority, s.cost, s.worker_type),
            (50, 1.0, WorkerType::Regular)
        );
        assert!(serde_json::from_str::<SpecInput>(r#"{"model_id":"x"}"#).is_err());
    }

    #[test]
    fn unknown_fields_are_refused_at_every_level() {
        assert!(
            serde_json::from_str::<SpecInput>(r#"{"url":"http://h:1","colour":"red"}"#).is_err()
        );
        assert!(
            serde_json::from_str::<SpecInput>(
                r#"{"url":"http://h:1","health":{"intervall":"1s"}}"#
            )
            .is_err()
        );
        assert!(serde_json::from_str::<PatchInput>(r#"{"status":"ready"}"#).is_err());
    }

    #[test]
    fn invalid_values_name_their_field() {
        for (json, field) in [
            (r#"{"url":"ftp://h"}"#, "url"),
            (r#"{"url":"http://h","cost":-1}"#, "cost"),
            (r#"{"url":"http://h","bootstrap_port":0}"#, "bootstrap_port"),
            (r#"{"url":"http://h","model_id":""}"#, "model_id"),
            (
                r#"{"url":"http://h","health":{"path":"health"}}"#,
                "health.path",
            ),
            (
                r#"{"url":"http://h","health":{"interval":"1ms"}}"#,
                "health.interval",
            ),
            (
                r#"{"url":"http://h","health":{"interval":"soon"}}"#,
                "health.interval",
            ),
            (
                r#"{"url":"http://h","health":{"success_threshold":0}}"#,
                "health.success_threshold",
            ),
            (r#"{"url":"http://h","labels":{"":"x"}}"#, "labels"),
        ] {
            let err = spec(json).unwrap_err();
            assert!(err.message.starts_with(field), "{json}: {}", err.message);
        }
        assert_eq!(
            spec(r#"{"url":"http://u:p@h"}"#).unwrap_err().code,
            "INVALID_URL"
        );
    }

    /// The cluster's shared boundary cases, as a client sends them: the API accepts
    /// exactly what peers' and stored records may hold, and names the same field.
    #[test]
    fn shared_boundary_cases_hold_for_post_and_patch() {
        let mut checked = 0;
        for c in cases() {
            let Some(body) = &c.api_body else { continue };
            // A PATCH goes to the worker the body names (a URL cannot change), or to
            // the cases' base worker when that URL is itself refused.
            let named = serde_json::from_str::<serde_json::Value>(body).unwrap()["url"]
                .as_str()
                .map(|u| spec(&format!(r#"{{"url":"{u}"}}"#)));
            let base = match named {
                Some(Ok(s)) => s,
                _ => spec(&format!(r#"{{"url":"{BASE_URL}"}}"#)).unwrap(),
            };
            let post = spec(body);
            let patch = serde_json::from_str::<PatchInput>(body)
                .unwrap()
                .apply(&base);
            for (how, got) in [("POST", post), ("PATCH", patch)] {
                match (c.refused, got) {
                    (None, Ok(_)) => {}
                    (Some(field), Err(e)) => {
                        assert!(
                            e.message.starts_with(&format!("{field}: ")),
                            "{how} {}: {}",
                            c.name,
                            e.message
                        );
                        let want = if field == Field::Url {
                            "INVALID_URL"
                        } else {
                            "INVALID_SPEC"
                        };
                        assert_eq!(e.code, want, "{how} {}", c.name);
                    }
                    (want, got) => panic!("{how} {}: wanted {want:?}, got {got:?}", c.name),
                }
            }
            checked += 1;
        }
        assert!(checked > 40, "{checked} cases");
    }

    #[test]
    fn integers_may_be_written_with_a_zero_fraction() {
        let s = spec(r#"{"url":"http://h:1","priority":186.0,"bootstrap_port":9000.0,"health":{"success_threshold":2.0}}"#).unwrap();
        assert_eq!((s.priority, s.bootstrap_port), (186, Some(9000)));
        assert_eq!(s.health.success_threshold, Some(2));
        for bad in [
            r#"{"url":"http://h:1","priority":1.5}"#,
            r#"{"url":"http://h:1","priority":-1}"#,
            r#"{"url":"http://h:1","bootstrap_port":65536}"#,
            r#"{"url":"http://h:1","priority":"5"}"#,
        ] {
            assert!(serde_json::from_str::<SpecInput>(bad).is_err(), "{bad}");
        }
        for bad in ["-1e-50", "3.4028234663852889e38", "1e39"] {
            let body = format!(r#"{{"url":"http://h:1","cost":{bad}}}"#);
            assert!(
                spec(&body).unwrap_err().message.starts_with("cost: "),
                "{bad}"
            );
        }
        let max = format!(r#"{{"url":"http://h:1","cost":{}}}"#, f64::from(f32::MAX));
        assert_eq!(spec(&max).unwrap().cost, f32::MAX);
        for bad in [r#"[null, null]"#, "[]", "5", r#""x""#] {
            let body = format!(r#"{{"url":"http://h:1","health":{bad}}}"#);
            assert!(serde_json::from_str::<SpecInput>(&body).is_err(), "{bad}");
            let body = format!(r#"{{"health":{bad}}}"#);
            assert!(serde_json::from_str::<PatchInput>(&body).is_err(), "{bad}");
        }
        let p: PatchInput =
            serde_json::from_str(r#"{"priority":7.0,"bootstrap_port":null}"#).unwrap();
        assert_eq!(p.priority, Some(Some(7)));
        assert_eq!(p.bootstrap_port, Some(None));
    }

    #[test]
    fn patch_changes_only_what_it_names_and_null_resets() {
        let base = spec(r#"{"url":"http://h:1","model_id":"m","priority":9,"labels":{"a":"1"},"health":{"interval":"1s","path":"/x"}}"#).unwrap();
        let p: PatchInput = serde_json::from_str(
            r#"{"priority":null,"labels":{"b":"2"},"health":{"interval":null}}"#,
        )
        .unwrap();
        let s = p.apply(&base).unwrap();
        assert_eq!(s.priority, 50);
        assert_eq!(s.model_id.as_deref(), Some("m"));
        assert_eq!(s.labels.get("b").map(String::as_str), Some("2"));
        assert!(!s.labels.contains_key("a"));
        assert_eq!(s.health.interval_ms, None);
        assert_eq!(s.health.path.as_deref(), Some("/x"));
        let other_url: PatchInput = serde_json::from_str(r#"{"url":"http://other:1"}"#).unwrap();
        assert!(
            other_url
                .apply(&base)
                .unwrap_err()
                .message
                .contains("different worker")
        );
        let same_url: PatchInput = serde_json::from_str(r#"{"url":"http://H:1/"}"#).unwrap();
        assert_eq!(same_url.apply(&base).unwrap(), base);
    }
}
