//! A worker's effective health-check settings: its own overrides over this node's
//! defaults.

use crate::config::ProbeDefaults;
use crate::lifecycle::state_machine::Thresholds;
use probemesh_gossip::model::HealthOverrides;
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
}

impl HealthSettings {
    /// Resolves `o` against `d`.
    pub fn resolve(o: &HealthOverrides, d: &ProbeDefaults) -> HealthSettings {
        HealthSettings {
            path: o.path.clone().unwrap_or_else(|| d.path.clone()),
            interval: o.interval_ms.map_or(d.interval, Duration::from_millis),
            timeout: o.timeout_ms.map_or(d.timeout, Duration::from_millis),
            thresholds: Thresholds {
                success: o.success_threshold.unwrap_or(d.success_threshold),
                failure: o.failure_threshold.unwrap_or(d.failure_threshold),
            },
            disabled: o.disable,
        }
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
}
