//! Records as format 1.0 (minor 0) encoded them, read by this build and converted:
//! postcard is not self-describing, so an older layout needs its own types. Minor 1
//! added `health.kind` at the end of a worker spec (`codec::FORMAT_MINOR`).

use super::{HealthOverrides, Registration, WorkerId, WorkerSpec, WorkerType, WorkerUrl};
use crate::codec::Evolving;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `HealthOverrides` of minor 0: no `kind`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HealthOverridesV0 {
    path: Option<String>,
    interval_ms: Option<u64>,
    timeout_ms: Option<u64>,
    success_threshold: Option<u32>,
    failure_threshold: Option<u32>,
    disable: bool,
}

/// `WorkerSpec` of minor 0.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerSpecV0 {
    url: WorkerUrl,
    model_id: Option<String>,
    worker_type: WorkerType,
    labels: BTreeMap<String, String>,
    priority: u32,
    cost: f32,
    bootstrap_port: Option<u16>,
    health: HealthOverridesV0,
}

/// `Registration` of minor 0.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegistrationV0 {
    id: WorkerId,
    generation: u64,
    owner: String,
    registered_at_ms: u64,
    revision: u64,
    spec: WorkerSpecV0,
}

impl From<HealthOverridesV0> for HealthOverrides {
    fn from(h: HealthOverridesV0) -> HealthOverrides {
        HealthOverrides {
            path: h.path,
            interval_ms: h.interval_ms,
            timeout_ms: h.timeout_ms,
            success_threshold: h.success_threshold,
            failure_threshold: h.failure_threshold,
            disable: h.disable,
            kind: None,
        }
    }
}

impl From<WorkerSpecV0> for WorkerSpec {
    fn from(s: WorkerSpecV0) -> WorkerSpec {
        WorkerSpec {
            url: s.url,
            model_id: s.model_id,
            worker_type: s.worker_type,
            labels: s.labels,
            priority: s.priority,
            cost: s.cost,
            bootstrap_port: s.bootstrap_port,
            health: s.health.into(),
        }
    }
}

impl From<RegistrationV0> for Registration {
    fn from(r: RegistrationV0) -> Registration {
        Registration {
            id: r.id,
            generation: r.generation,
            owner: r.owner,
            registered_at_ms: r.registered_at_ms,
            revision: r.revision,
            spec: r.spec.into(),
        }
    }
}

impl RegistrationV0 {
    /// The minor-0 form of `r` (its `health.kind` dropped): what a 1.0 node wrote, for
    /// compatibility tests.
    pub fn from_current(r: &Registration) -> RegistrationV0 {
        let h = &r.spec.health;
        RegistrationV0 {
            id: r.id.clone(),
            generation: r.generation,
            owner: r.owner.clone(),
            registered_at_ms: r.registered_at_ms,
            revision: r.revision,
            spec: WorkerSpecV0 {
                url: r.spec.url.clone(),
                model_id: r.spec.model_id.clone(),
                worker_type: r.spec.worker_type,
                labels: r.spec.labels.clone(),
                priority: r.spec.priority,
                cost: r.spec.cost,
                bootstrap_port: r.spec.bootstrap_port,
                health: HealthOverridesV0 {
                    path: h.path.clone(),
                    interval_ms: h.interval_ms,
                    timeout_ms: h.timeout_ms,
                    success_threshold: h.success_threshold,
                    failure_threshold: h.failure_threshold,
                    disable: h.disable,
                },
            },
        }
    }
}

impl Evolving for Registration {
    fn decode_older(_minor: u8, payload: &[u8]) -> Result<Registration, postcard::Error> {
        postcard::from_bytes::<RegistrationV0>(payload).map(Registration::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{self, FORMAT_MAJOR, HEADER_LEN, MAGIC};
    use crate::model::ProbeKind;

    fn reg() -> Registration {
        let url = WorkerUrl::parse("http://10.0.0.5:8000").unwrap();
        let mut spec = WorkerSpec::new(url.clone());
        spec.model_id = Some("m".into());
        spec.health.interval_ms = Some(700);
        Registration {
            id: url.id(),
            generation: 3,
            owner: "a".into(),
            registered_at_ms: 1,
            revision: 2,
            spec,
        }
    }

    fn encode_at_minor_0<T: Serialize>(v: &T) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend([FORMAT_MAJOR, 0]);
        postcard::to_extend(v, out).unwrap()
    }

    #[test]
    fn a_registration_written_by_format_1_0_is_read_with_no_kind() {
        let r = reg();
        let old = encode_at_minor_0(&RegistrationV0::from_current(&r));
        assert_eq!(codec::decode_evolving::<Registration>(&old).unwrap(), r);
    }

    #[test]
    fn a_format_1_0_reader_reads_a_new_registration_and_ignores_the_kind() {
        let mut r = reg();
        r.spec.health.kind = Some(ProbeKind::Models);
        let new = codec::encode(&r).unwrap();
        let seen: RegistrationV0 = postcard::from_bytes(&new[HEADER_LEN..]).unwrap();
        let mut without = r.clone();
        without.spec.health.kind = None;
        assert_eq!(Registration::from(seen), without);
        assert_eq!(codec::decode_evolving::<Registration>(&new).unwrap(), r);
    }
}
