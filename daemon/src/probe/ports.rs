//! The engine's two sides: the [`ProbeHost`] that says what to probe and takes the
//! results (the node), and the [`Check`] that makes one probe (HTTP in the agent, a
//! reachability matrix in the simulator). The engine knows nothing else about either.

use super::result::ProbeReport;
use probemesh_gossip::model::WorkerId;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// What one probe dials, what it checks, and how long it may take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The worker's own scheme, host and port with the path the check requests
    /// (`WorkerUrl::probe_url`; for `grpc`, `WorkerUrl::grpc_target`).
    pub url: reqwest::Url,
    /// The probe timeout.
    pub timeout: Duration,
    /// What the answer must show (SPEC S3 probe kinds).
    pub expect: Expect,
}

impl Target {
    /// An `http` probe of `url`: any 2xx answer is a success.
    pub fn http(url: reqwest::Url, timeout: Duration) -> Target {
        Target {
            url,
            timeout,
            expect: Expect::Status,
        }
    }
}

/// What a probe's answer must show to be a success (SPEC S3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// `http`: any 2xx.
    Status,
    /// `models`: a 2xx whose listing's `data[].id` holds this model id.
    Model(Arc<str>),
    /// `grpc`: `grpc.health.v1.Health/Check` answers `SERVING`.
    GrpcServing,
}

/// What the engine does after a result was recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextStep {
    /// Probe again after the worker's interval.
    Probe(Duration),
    /// The worker failed on this node: start a fresh pending cycle after this backoff
    /// (SPEC S6b). Eviction, when the cluster agrees, is the cluster sync's decision.
    Retry(Duration),
    /// Nothing: the worker is gone, changed generation or has checks disabled.
    Stop,
}

/// The node as the probe engine sees it.
pub trait ProbeHost: Send + Sync + 'static {
    /// What to probe for `generation` of `id`, or `None` when it must not be probed
    /// (gone, other generation, failed, checks disabled, outside the allowlist).
    fn target(&self, id: &WorkerId, generation: u64) -> Option<Target>;

    /// Applies a probe result and says what comes next.
    fn record(&self, id: &WorkerId, generation: u64, report: ProbeReport) -> NextStep;

    /// Starts a fresh pending cycle for a failed worker (SPEC S6b); returns its probe
    /// interval when it did.
    fn retry(&self, id: &WorkerId, generation: u64) -> Option<Duration>;

    /// Called with +1 when a probe starts and -1 when it ends (a metric).
    fn in_flight(&self, delta: i64);
}

/// One health check.
pub trait Check: Send + Sync + 'static {
    /// Probes `target` once; a failure is a result, never an error.
    fn check(&self, target: &Target) -> impl Future<Output = ProbeReport> + Send;

    /// The engine stopped probing `target` for a worker (cancelled: removed, checks
    /// disabled; or its host no longer gives a target): drop anything kept for it, such
    /// as an idle connection. When a probe of it was in flight at the cancel, this is
    /// called again once that probe has ended, so what the late probe kept goes too.
    /// The default keeps nothing, so does nothing.
    fn forget(&self, target: &Target) {
        let _ = target;
    }
}
