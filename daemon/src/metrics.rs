//! Prometheus metrics of the agent (served at `GET /metrics`).
//!
//! Counters are updated where things happen; the per-status worker gauge is computed
//! from the local view at scrape time, so it can never drift from the view.

mod admin;
mod fence;
mod gateway;
pub mod spread;
mod store;
pub mod tls;

pub use admin::AdminMetrics;
pub use fence::FenceMetrics;
pub use gateway::GatewayMetrics;
pub use store::StoreMetrics;

use crate::registry::View;
use crate::transport_metrics::{PaceCollector, TransportCollector};
use probemesh_gossip::model::Status;
use probemesh_gossip::pace::Pace;
use probemesh_gossip::transport::TransportMetrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Content type of the exposition format produced by [`Metrics::render`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransitionLabels {
    from: &'static str,
    to: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SmgLabels {
    op: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MemberLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SpreadLabels {
    ready_on: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertLabels {
    certificate: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    revision: &'static str,
}

/// Every metric the agent exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    workers: Family<StatusLabels, Gauge>,
    view_index: Gauge,
    transitions: Family<TransitionLabels, Counter>,
    probes: Family<ResultLabels, Counter>,
    probe_duration: Histogram,
    probes_in_flight: Gauge,
    evictions: Family<ReasonLabels, Counter>,
    tombstones_expired: Counter,
    sync_rounds: Counter,
    verdict_buckets_held: Counter,
    probe_local_errors: Family<KindLabels, Counter>,
    members: Family<MemberLabels, Gauge>,
    smg_ops: Family<SmgLabels, Counter>,
    smg_up: Gauge,
    smg_enabled: Gauge,
    gossip_malformed_values: Gauge,
    identity_rivals: Gauge,
    identity_refused: Gauge,
    gossip_records_rejected: Family<ReasonLabels, Counter>,
    gossip_owner_claims_refused: Counter,
    store: StoreMetrics,
    transport: Arc<OnceLock<Arc<TransportMetrics>>>,
    pace: Arc<OnceLock<Arc<Pace>>>,
    admin: AdminMetrics,
    fence: FenceMetrics,
    gateway: GatewayMetrics,
    certificate_expiry: Family<CertLabels, Gauge>,
    cluster_workers: Family<SpreadLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("probemesh");
        let m = Metrics {
            workers: Family::default(),
            view_index: Gauge::default(),
            transitions: Family::default(),
            probes: Family::default(),
            probe_duration: Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            probes_in_flight: Gauge::default(),
            evictions: Family::default(),
            tombstones_expired: Counter::default(),
            sync_rounds: Counter::default(),
            verdict_buckets_held: Counter::default(),
            probe_local_errors: Family::default(),
            members: Family::default(),
            smg_ops: Family::default(),
            smg_up: Gauge::default(),
            smg_enabled: Gauge::default(),
            gossip_malformed_values: Gauge::default(),
            identity_rivals: Gauge::default(),
            identity_refused: Gauge::default(),
            gossip_records_rejected: Family::default(),
            gossip_owner_claims_refused: Counter::default(),
            store: StoreMetrics::default(),
            transport: Arc::new(OnceLock::new()),
            pace: Arc::new(OnceLock::new()),
            admin: AdminMetrics::default(),
            fence: FenceMetrics::default(),
            gateway: GatewayMetrics::default(),
            certificate_expiry: Family::default(),
            cluster_workers: Family::default(),
            registry: Registry::default(),
        };
        m.admin.register(&mut registry);
        m.fence.register(&mut registry);
        m.store.register(&mut registry);
        m.gateway.register(&mut registry);
        registry.register(
            "members",
            "Cluster members by state, as this node sees them",
            m.members.clone(),
        );
        registry.register(
            "gossip_malformed_values",
            "Values in the gossiped cluster state that failed to decode (ignored)",
            m.gossip_malformed_values.clone(),
        );
        registry.register(
            "identity_rivals",
            "Other live processes seen using this node's id (SPEC S10); should be 0",
            m.identity_rivals.clone(),
        );
        registry.register(
            "identity_refused",
            "1 when this process refused to join because another live process has its node id",
            m.identity_refused.clone(),
        );
        registry.register(
            "gossip_records_rejected",
            "Registrations and tombstones published by peers that were dropped, each counted once, by reason: the invalid field (health_interval, health_path, owner, ...) or what kept it from decoding (base64, decode, newer_format, key_mismatch)",
            m.gossip_records_rejected.clone(),
        );
        registry.register(
            "gossip_owner_claims_refused",
            "Registrations a peer advertised as owned by this node, which this node never registered; imported as the advertiser's, never advertised as this node's own",
            m.gossip_owner_claims_refused.clone(),
        );
        registry.register(
            "smg_operations",
            "Changes pushed to the smg gateway, by operation (add, remove) and result (ok, error)",
            m.smg_ops.clone(),
        );
        registry.register(
            "smg_up",
            "1 when the last sync with smg succeeded (0 without --smg-url)",
            m.smg_up.clone(),
        );
        registry.register(
            "smg_enabled",
            "1 when this agent pushes its ready set into smg (--smg-url), else 0",
            m.smg_enabled.clone(),
        );
        registry.register_collector(Box::new(TransportCollector(Arc::clone(&m.transport))));
        registry.register_collector(Box::new(PaceCollector(Arc::clone(&m.pace))));
        registry.register(
            "workers",
            "Workers in the local view, by this node's status",
            m.workers.clone(),
        );
        registry.register(
            "view_index",
            "Change index of the local view",
            m.view_index.clone(),
        );
        registry.register(
            "status_transitions",
            "Local status changes of workers, by from and to status",
            m.transitions.clone(),
        );
        registry.register("probes", "Health probes made, by result", m.probes.clone());
        registry.register(
            "probe_duration_seconds",
            "Latency of health probes, successful or not",
            m.probe_duration.clone(),
        );
        registry.register(
            "probes_in_flight",
            "Health probes currently running",
            m.probes_in_flight.clone(),
        );
        registry.register(
            "evictions",
            "Worker generations tombstoned by this node, by reason",
            m.evictions.clone(),
        );
        registry.register(
            "tombstones_expired",
            "Tombstones forgotten after --tombstone-ttl",
            m.tombstones_expired.clone(),
        );
        registry.register(
            "cluster_sync_rounds",
            "Full reconciliations with the cluster state (decode, import, publish); rounds where nothing changed are skipped and not counted",
            m.sync_rounds.clone(),
        );
        registry.register(
            "gossip_verdict_buckets_held",
            "Changed verdict buckets kept at their published value for a moment because they were written less than 1 s before (each round that keeps one counts it): a burst of status changes travels as one write per bucket per second",
            m.verdict_buckets_held.clone(),
        );
        registry.register(
            "probe_local_errors",
            "Probes that failed for lack of a local resource (descriptors, buffers, ports, memory): the node's fault, not the worker's; no worker status changed",
            m.probe_local_errors.clone(),
        );
        registry.register(
            "cluster_workers",
            "Workers of the local view by how many live members hold them ready (ready_on: none, some, all), from every member's verdicts; refreshed at scrape",
            m.cluster_workers.clone(),
        );
        registry.register(
            "tls_certificate_expiry_timestamp_seconds",
            "notAfter of the TLS certificates this node loaded at start (certificate: node, ca), in Unix seconds",
            m.certificate_expiry.clone(),
        );
        let build: Family<BuildLabels, Gauge> = Family::default();
        build
            .get_or_create(&BuildLabels {
                version: crate::version::VERSION,
                revision: crate::version::GIT_REVISION,
            })
            .set(1);
        registry.register("build_info", "Build of the running agent", build);
        let m = Metrics { registry, ..m };
        m.init_series();
        m
    }

    /// Creates, at zero, the labelled series that alerts and the dashboard read
    /// (deploy/prometheus, deploy/grafana). A family shows nothing until its first
    /// labels are used; then `increase()` misses the first event (the series starts at
    /// 1, not from 0) and a query for it finds no series at all.
    fn init_series(&self) {
        self.store.init_series();
        for kind in ["descriptors", "buffers", "ports", "memory"] {
            let _ = self.probe_local_errors.get_or_create(&KindLabels { kind });
        }
        for op in ["add", "remove"] {
            for result in ["ok", "error"] {
                let _ = self.smg_ops.get_or_create(&SmgLabels { op, result });
            }
        }
        for reason in ["deleted", "failed"] {
            let _ = self.evictions.get_or_create(&ReasonLabels { reason });
        }
        let _ = self.probes.get_or_create(&ResultLabels { result: "ok" });
        for from in Status::ALL {
            for to in Status::ALL.into_iter().filter(|to| *to != from) {
                let _ = self.transitions.get_or_create(&TransitionLabels {
                    from: from.as_str(),
                    to: to.as_str(),
                });
            }
        }
        self.members(0, 0);
        self.admin.init_series();
    }

    /// The self-fencing metrics (`probemesh_node_degraded*`, `probemesh_members_degraded`).
    pub fn fence(&self) -> &FenceMetrics {
        &self.fence
    }

    /// The `--smg-manifest` metrics (`probemesh_smg_manifest_*`).
    pub fn gateway(&self) -> &GatewayMetrics {
        &self.gateway
    }

    /// The admin server's metrics (`probemesh_admin_*`).
    pub fn admin(&self) -> &AdminMetrics {
        &self.admin
    }

    /// Records the `notAfter` (Unix seconds) of a certificate (`node` or `ca`).
    pub fn certificate_expiry(&self, certificate: &'static str, not_after: i64) {
        self.certificate_expiry
            .get_or_create(&CertLabels { certificate })
            .set(not_after);
    }

    /// Counts one status change.
    pub fn transition(&self, from: Status, to: Status) {
        self.transitions
            .get_or_create(&TransitionLabels {
                from: from.as_str(),
                to: to.as_str(),
            })
            .inc();
    }

    /// Counts one finished probe.
    pub fn probe(&self, result_class: &'static str, latency: Duration) {
        self.probes
            .get_or_create(&ResultLabels {
                result: result_class,
            })
            .inc();
        self.probe_duration.observe(latency.as_secs_f64());
    }

    /// Tracks probes in flight.
    pub fn probes_in_flight(&self) -> &Gauge {
        &self.probes_in_flight
    }

    /// Counts one eviction.
    pub fn eviction(&self, reason: &'static str) {
        self.evictions.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// Counts expired tombstones.
    pub fn tombstones_expired(&self, n: u64) {
        self.tombstones_expired.inc_by(n);
    }

    /// Counts one full cluster sync round.
    pub fn sync_round(&self) {
        self.sync_rounds.inc();
    }

    /// Counts verdict buckets a publication held back.
    pub fn verdict_buckets_held(&self, n: usize) {
        self.verdict_buckets_held.inc_by(n as u64);
    }

    /// Full cluster sync rounds so far.
    pub fn sync_rounds(&self) -> u64 {
        self.sync_rounds.get()
    }

    /// Attaches the gossip thread's wake-up counters (once gossip has started).
    pub fn attach_pace(&self, p: Arc<Pace>) {
        let _ = self.pace.set(p);
    }

    /// Attaches the gossip transport's counters (once gossip has started).
    pub fn attach_transport(&self, t: Arc<TransportMetrics>) {
        let _ = self.transport.set(t);
    }

    /// Counts one smg operation.
    pub fn smg_op(&self, op: &'static str, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.smg_ops.get_or_create(&SmgLabels { op, result }).inc();
    }

    /// Records that the smg adapter runs (`--smg-url`).
    pub fn smg_enabled(&self) {
        self.smg_enabled.set(1);
    }

    /// Records whether the last smg sync succeeded.
    pub fn smg_up(&self, up: bool) {
        self.smg_up.set(i64::from(up));
    }

    /// Records the member counts.
    pub fn members(&self, alive: usize, dead: usize) {
        for (state, n) in [("alive", alive), ("dead", dead)] {
            self.members
                .get_or_create(&MemberLabels { state })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Records how many gossiped values failed to decode in the last snapshot.
    pub fn gossip_malformed(&self, n: u64) {
        self.gossip_malformed_values
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Records how many other live processes use this node's id.
    pub fn identity_rivals(&self, n: usize) {
        self.identity_rivals
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Records that this process refused to join (another process has its id).
    pub fn identity_refused(&self) {
        self.identity_refused.set(1);
    }

    /// Counts one dropped peer record (once per record, by the caller's memory).
    pub fn gossip_record_rejected(&self, reason: &'static str) {
        self.gossip_records_rejected
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Counts one registration a peer advertised in this node's name.
    pub fn gossip_owner_claim_refused(&self) {
        self.gossip_owner_claims_refused.inc();
    }

    /// The data directory's metrics (`probemesh_store_*`).
    pub fn store(&self) -> &StoreMetrics {
        &self.store
    }

    /// Counts a probe that failed for lack of a local resource.
    pub fn probe_local_error(&self, kind: &'static str) {
        self.probe_local_errors
            .get_or_create(&KindLabels { kind })
            .inc();
    }

    /// Sets `probemesh_cluster_workers` (see [`spread`]); the scrape handler calls it
    /// with the view and cluster snapshot it renders.
    pub fn set_spread(&self, s: spread::Spread) {
        for (ready_on, n) in [("none", s.none), ("some", s.some), ("all", s.all)] {
            self.cluster_workers
                .get_or_create(&SpreadLabels { ready_on })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Renders every metric, refreshing the view-derived gauges from `view` first.
    pub fn render(&self, view: &View) -> String {
        let mut counts = [0i64; Status::ALL.len()];
        for e in view.workers.values() {
            counts[Status::ALL.iter().position(|s| *s == e.status).unwrap_or(0)] += 1;
        }
        for (status, n) in Status::ALL.iter().zip(counts) {
            self.workers
                .get_or_create(&StatusLabels {
                    status: status.as_str(),
                })
                .set(n);
        }
        self.view_index
            .set(i64::try_from(view.index).unwrap_or(i64::MAX));
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_labels() {
        let m = Metrics::new();
        m.transition(Status::Pending, Status::Ready);
        m.probe("ok", Duration::from_millis(3));
        m.eviction("deleted");
        m.gossip_record_rejected("health_interval");
        m.store().record_rejected("owner");
        m.gossip_owner_claim_refused();
        let text = m.render(&View::default());
        for needle in [
            "probemesh_workers{status=\"ready\"} 0",
            "probemesh_status_transitions_total{from=\"pending\",to=\"ready\"} 1",
            "probemesh_probes_total{result=\"ok\"} 1",
            "probemesh_probe_duration_seconds_bucket",
            "probemesh_evictions_total{reason=\"deleted\"} 1",
            "probemesh_build_info",
            "probemesh_gossip_records_rejected_total{reason=\"health_interval\"} 1",
            "probemesh_store_records_rejected_total{reason=\"owner\"} 1",
            "probemesh_gossip_owner_claims_refused_total 1",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
