//! The registered description of a worker, as stored and shared.
//!
//! These types are encoded with postcard, which is not self-describing: fields are
//! never skipped or flattened here. The admin API has its own JSON input types and
//! converts into these.

use super::WorkerUrl;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The role of a worker, as `smg` names it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerType {
    /// Serves whole requests (smg's default).
    #[default]
    Regular,
    /// Prefill half of a disaggregated pair.
    Prefill,
    /// Decode half of a disaggregated pair.
    Decode,
}

/// Per-worker health-check settings. `None` means "use this node's default", so each
/// node applies its own `--probe-*` flags to workers that do not override them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HealthOverrides {
    /// Probe path, starting with `/`.
    pub path: Option<String>,
    /// Time between probes, in milliseconds.
    pub interval_ms: Option<u64>,
    /// Probe timeout, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Consecutive successes to become ready.
    pub success_threshold: Option<u32>,
    /// Consecutive failures to leave ready.
    pub failure_threshold: Option<u32>,
    /// No probes: the worker is ready as soon as it is known.
    pub disable: bool,
    /// What a probe checks (SPEC S3, `health.kind`); `None`: the node's default.
    /// Last, so that a reader of format 1.0 ignores it (see `codec::FORMAT_MINOR`).
    pub kind: Option<ProbeKind>,
}

/// What a probe checks (SPEC S3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKind {
    /// `GET url + path`: any 2xx is a success.
    #[default]
    Http,
    /// `GET url + /v1/models`: a 2xx whose `data[].id` lists the worker's `model_id`.
    Models,
    /// The standard `grpc.health.v1.Health/Check`: `SERVING` is a success.
    Grpc,
}

impl ProbeKind {
    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Http => "http",
            ProbeKind::Models => "models",
            ProbeKind::Grpc => "grpc",
        }
    }

    /// Parses the API name.
    pub fn parse(s: &str) -> Option<ProbeKind> {
        match s {
            "http" => Some(ProbeKind::Http),
            "models" => Some(ProbeKind::Models),
            "grpc" => Some(ProbeKind::Grpc),
            _ => None,
        }
    }
}

/// Default `priority`, as in smg's worker API.
pub const DEFAULT_PRIORITY: u32 = 50;
/// Default `cost`, as in smg's worker API.
pub const DEFAULT_COST: f32 = 1.0;

/// A worker as registered: everything but its status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerSpec {
    /// Identity of the worker.
    pub url: WorkerUrl,
    /// Model served, if declared.
    pub model_id: Option<String>,
    /// Role of the worker.
    pub worker_type: WorkerType,
    /// Free-form labels passed through to the gateway.
    pub labels: BTreeMap<String, String>,
    /// Routing priority (smg semantics).
    pub priority: u32,
    /// Routing cost (smg semantics).
    pub cost: f32,
    /// Bootstrap port of a prefill worker (smg semantics).
    pub bootstrap_port: Option<u16>,
    /// Health-check overrides.
    pub health: HealthOverrides,
}

impl WorkerSpec {
    /// A spec with only the URL set and every other field at its default.
    pub fn new(url: WorkerUrl) -> WorkerSpec {
        WorkerSpec {
            url,
            model_id: None,
            worker_type: WorkerType::default(),
            labels: BTreeMap::new(),
            priority: DEFAULT_PRIORITY,
            cost: DEFAULT_COST,
            bootstrap_port: None,
            health: HealthOverrides::default(),
        }
    }
}
