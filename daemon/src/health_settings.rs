//! A worker's effective health-check settings: its own overrides over this node's
//! defaults.
//!
//! Every record was validated before it got here (API, gossip decoding, store load),
//! so the clamps below never change a value in practice. They are a second wall: should
//! a record ever slip past the validator, it still cannot ask for a threshold of 0
//! (ready without a probe) or an interval of 0 (a probe loop), SPEC S11.

use crate::config::ProbeDefaults;
use crate::config::limits::MIN_PROBE_INTERVAL;
use crate::lifecycle::state_machine::Thresholds;
use probemesh_gossip::model::validate::{
    MAX_INTERVAL_MS, MAX_THRESHOLD, MAX_TIMEOUT_MS, MIN_INTERVAL_MS, MIN_THRESHOLD, MIN_TIMEOUT_MS,
};
use probemesh_gossip::model::{HealthOverrides, ProbeKind, WorkerSpec};
use std::time::Duration;

/// Health-check settings after applying defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthSettings {
    /// Probe path.
    pub path: String,
    /// Time between probes.
    pub interval: Duration,
    /// Probe timeout.
    pub timeout: Duration,
    /// State-machine thresholds.
    pub thresholds: Thresholds,
    /// No probes at all.
    pub disabled: bool,
    /// What a probe checks (SPEC S3).
    pub kind: ProbeKind,
}

impl HealthSettings {
    /// Resolves `o` against `d`. A worker's overrides are clamped into the validator's
    /// bounds; the node's own defaults (checked at start-up, where the interval may go
    /// down to [`MIN_PROBE_INTERVAL`]) only into what keeps the state machine sound.
    pub fn resolve(o: &HealthOverrides, d: &ProbeDefaults) -> HealthSettings {
        let ms = |v: u64, lo: u64, hi: u64| Duration::from_millis(v.clamp(lo, hi));
        let threshold = |v: Option<u32>, default: u32| {
            v.map_or(default, |n| n.clamp(MIN_THRESHOLD, MAX_THRESHOLD))
                .max(MIN_THRESHOLD)
        };
        HealthSettings {
            path: o.path.clone().unwrap_or_else(|| d.path.clone()),
            interval: o
                .interval_ms
                .map_or(d.interval, |v| ms(v, MIN_INTERVAL_MS, MAX_INTERVAL_MS))
                .max(MIN_PROBE_INTERVAL),
            timeout: o
                .timeout_ms
                .map_or(d.timeout, |v| ms(v, MIN_TIMEOUT_MS, MAX_TIMEOUT_MS))
                .max(Duration::from_millis(MIN_TIMEOUT_MS)),
            thresholds: Thresholds {
                success: threshold(o.success_threshold, d.success_threshold),
                failure: threshold(o.failure_threshold, d.failure_threshold),
            },
            disabled: o.disable,
            kind: o.kind.unwrap_or(d.kind),
        }
    }

    /// The settings of `spec` on a node with defaults `d` (SPEC S3). A `grpc://`
    /// worker is checked with `grpc` whatever the node's default (the validator refuses
    /// another kind in its own spec). A worker without a `model_id` cannot be checked
    /// with `models`: when that kind comes from the node's default rather than the
    /// worker's own spec (which the validator refuses), it is probed with `http`.
    pub fn for_spec(spec: &WorkerSpec, d: &ProbeDefaults) -> HealthSettings {
        let mut h = HealthSettings::resolve(&spec.health, d);
        if spec.url.is_grpc() {
            h.kind = ProbeKind::Grpc;
        } else if h.kind == ProbeKind::Models && spec.model_id.is_none() {
            h.kind = ProbeKind::Http;
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_win_and_gaps_fall_back_to_node_defaults() {
        let d = ProbeDefaults::default();
        let o = HealthOverrides {
            path: Some("/v1/models".into()),
            interval_ms: Some(250),
            failure_threshold: Some(5),
            ..Default::default()
        };
        let h = HealthSettings::resolve(&o, &d);
        assert_eq!(h.path, "/v1/models");
        assert_eq!(h.interval, Duration::from_millis(250));
        assert_eq!(h.timeout, d.timeout);
        assert_eq!(
            h.thresholds,
            Thresholds {
                success: 2,
                failure: 5
            }
        );
        assert!(!h.disabled);
        assert_eq!(
            HealthSettings::resolve(&HealthOverrides::default(), &d).path,
            "/health"
        );
    }

    #[test]
    fn values_past_the_validator_are_clamped_not_obeyed() {
        let d = ProbeDefaults::default();
        let zero = HealthOverrides {
            interval_ms: Some(0),
            timeout_ms: Some(0),
            success_threshold: Some(0),
            failure_threshold: Some(0),
            ..Default::default()
        };
        let h = HealthSettings::resolve(&zero, &d);
        assert_eq!(h.interval, Duration::from_millis(MIN_INTERVAL_MS));
        assert_eq!(h.timeout, Duration::from_millis(MIN_TIMEOUT_MS));
        assert_eq!(
            h.thresholds,
            Thresholds {
                success: 1,
                failure: 1
            }
        );
        let huge = HealthOverrides {
            interval_ms: Some(u64::MAX),
            timeout_ms: Some(u64::MAX),
            success_threshold: Some(u32::MAX),
            failure_threshold: Some(u32::MAX),
            ..Default::default()
        };
        let h = HealthSettings::resolve(&huge, &d);
        assert_eq!(h.interval, Duration::from_millis(MAX_INTERVAL_MS));
        assert_eq!(h.timeout, Duration::from_millis(MAX_TIMEOUT_MS));
        assert_eq!(h.thresholds.success, MAX_THRESHOLD);
        // A node default of 0 (never accepted by the config loader) is clamped too.
        let broken = ProbeDefaults {
            interval: Duration::ZERO,
            success_threshold: 0,
            ..ProbeDefaults::default()
        };
        let h = HealthSettings::resolve(&HealthOverrides::default(), &broken);
        assert_eq!(h.interval, MIN_PROBE_INTERVAL);
        assert_eq!(h.thresholds.success, 1);
    }

    #[test]
    fn the_kind_follows_the_spec_then_the_url_then_the_node() {
        let spec = |url: &str, model: Option<&str>, kind: Option<ProbeKind>| {
            let mut s = WorkerSpec::new(probemesh_gossip::model::WorkerUrl::parse(url).unwrap());
            s.model_id = model.map(str::to_string);
            s.health.kind = kind;
            s
        };
        let node = |kind| ProbeDefaults {
            kind,
            ..ProbeDefaults::default()
        };
        let http = node(ProbeKind::Http);
        let models = node(ProbeKind::Models);
        let k = |s: &WorkerSpec, d: &ProbeDefaults| HealthSettings::for_spec(s, d).kind;
        assert_eq!(k(&spec("http://h:1", None, None), &http), ProbeKind::Http);
        assert_eq!(
            k(&spec("http://h:1", None, Some(ProbeKind::Grpc)), &http),
            ProbeKind::Grpc
        );
        assert_eq!(k(&spec("grpc://h:1", None, None), &http), ProbeKind::Grpc);
        assert_eq!(
            k(&spec("grpc://h:1", Some("m"), None), &models),
            ProbeKind::Grpc
        );
        assert_eq!(
            k(&spec("http://h:1", Some("m"), None), &models),
            ProbeKind::Models
        );
        // The node's default `models` cannot check a worker without a model_id.
        assert_eq!(k(&spec("http://h:1", None, None), &models), ProbeKind::Http);
    }
}
