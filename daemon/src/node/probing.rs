//! The node as the probe engine's host: what to probe, and what a result changes.

use super::Node;
use crate::lifecycle::eviction::retry_delay;
use crate::lifecycle::state_machine::Outcome;
use crate::probe::check::{LocalResource, ProbeReport, ProbeResult};
use crate::probe::{Expect, NextStep, ProbeHost, Target};
use crate::registry::LastProbe;
use probemesh_gossip::model::{ProbeKind, Status, WorkerId};
use std::sync::Arc;
use std::time::Duration;

/// The listing a `models` probe requests (SPEC S3), under the worker URL's own path.
pub const MODELS_PATH: &str = "/v1/models";

impl Node {
    /// What to probe for `generation` of `id`: the URL, timeout and expected answer of
    /// its probe kind, or `None` when the worker is gone, changed generation, is
    /// failed, has checks disabled or is outside the allowlist. The URL is the worker's
    /// own scheme, host and port with only the path set (SPEC S3,
    /// `WorkerUrl::probe_url`; `models` requests [`MODELS_PATH`] and `health.path` is
    /// not used; `grpc` dials the same host and port, `WorkerUrl::grpc_target`).
    pub fn probe_target(&self, id: &WorkerId, generation: u64) -> Option<Target> {
        let view = self.registry.read();
        let e = view.workers.get(id)?;
        if e.reg.generation != generation
            || e.reg.spec.health.disable
            || e.status == Status::Failed
            || !self.allowed(&e.reg.spec)
        {
            return None;
        }
        let spec = &e.reg.spec;
        let h = self.health(spec);
        let planned = match (h.kind, &spec.model_id) {
            (ProbeKind::Grpc, _) => spec.url.grpc_target().map(|u| (u, Expect::GrpcServing)),
            (ProbeKind::Models, Some(model)) => spec
                .url
                .probe_url(MODELS_PATH)
                .map(|u| (u, Expect::Model(Arc::from(model.as_str())))),
            // `for_spec` never gives `models` without a model_id.
            (ProbeKind::Http | ProbeKind::Models, _) => {
                spec.url.probe_url(&h.path).map(|u| (u, Expect::Status))
            }
        };
        match planned {
            Ok((url, expect)) => Some(Target {
                url,
                timeout: h.timeout,
                expect,
            }),
            Err(err) => {
                // Every path was validated before it got here; if one was not, the
                // worker is not probed (so never ready) rather than probed elsewhere.
                tracing::error!(worker = %e.reg.spec.url, id = %id, error = %err, "no probe URL can be built for this worker; it is not probed");
                None
            }
        }
    }

    /// Applies a probe result and says what comes next.
    pub fn record_probe(&self, id: &WorkerId, generation: u64, report: ProbeReport) -> NextStep {
        self.metrics.probe(report.result.class(), report.latency);
        if let ProbeResult::Local(resource) = report.result {
            return self.record_local_fault(id, generation, resource);
        }
        let probe = LastProbe {
            result: report.result.describe(),
            at: self.settings.clock.now(),
            latency: report.latency,
        };
        let outcome = if report.result.is_success() {
            Outcome::Success
        } else {
            Outcome::Failure
        };
        let Some((entry, transition)) =
            self.registry
                .apply_probe(id, generation, outcome, probe, |spec| {
                    self.health(spec).thresholds
                })
        else {
            return NextStep::Stop;
        };
        if let Some(t) = &transition {
            self.note_transition(t, &entry);
        }
        // Failed here: whether the cluster evicts it (every live member agrees, S6 b) is
        // the cluster sync's decision, which the status change wakes; until then, and
        // if it never comes, this node retries after a backoff (S6b).
        match retry_delay(entry.status, entry.retry_attempts) {
            Some(backoff) => NextStep::Retry(backoff),
            None => NextStep::Probe(self.health(&entry.reg.spec).interval),
        }
    }

    /// A probe that this node could not even make: the worker's status and counters
    /// stay as they are, and the probe is tried again after the worker's interval.
    fn record_local_fault(
        &self,
        id: &WorkerId,
        generation: u64,
        resource: LocalResource,
    ) -> NextStep {
        self.metrics.probe_local_error(resource.as_str());
        if let Some(n) = self.local_faults.record(self.settings.clock.now_ms()) {
            tracing::warn!(
                resource = resource.as_str(),
                faults = n,
                worker = %id,
                "probes fail for lack of a local resource; this is the node's fault, no worker status changes (check ulimit -n, sockets, memory)"
            );
        }
        let view = self.registry.read();
        match view.workers.get(id) {
            Some(e) if e.reg.generation == generation && e.status != Status::Failed => {
                NextStep::Probe(self.health(&e.reg.spec).interval)
            }
            _ => NextStep::Stop,
        }
    }

    /// Whether probes failed for lack of a local resource within the last
    /// [`crate::local_faults::ACTIVE_FOR_MS`]: input to the degraded rule (SPEC S12).
    pub fn local_fault_active(&self) -> bool {
        self.local_faults.active(self.settings.clock.now_ms())
    }

    /// Starts a fresh pending cycle for a locally failed worker (SPEC S6b); returns the
    /// probe interval when it did.
    pub fn retry(&self, id: &WorkerId, generation: u64) -> Option<Duration> {
        let t = self
            .registry
            .retry_failed(id, generation, self.settings.clock.now())?;
        let entry = self.registry.get(id)?;
        self.note_transition(&t, &entry);
        Some(self.health(&entry.reg.spec).interval)
    }
}

impl ProbeHost for Node {
    fn target(&self, id: &WorkerId, generation: u64) -> Option<Target> {
        self.probe_target(id, generation)
    }

    fn record(&self, id: &WorkerId, generation: u64, report: ProbeReport) -> NextStep {
        self.record_probe(id, generation, report)
    }

    fn retry(&self, id: &WorkerId, generation: u64) -> Option<Duration> {
        Node::retry(self, id, generation)
    }

    fn in_flight(&self, delta: i64) {
        self.metrics.probes_in_flight().inc_by(delta);
    }
}
