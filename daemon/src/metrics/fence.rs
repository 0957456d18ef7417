//! Metrics of self-fencing (SPEC S12): whether this node is degraded, how often it
//! entered and left that state, and how many members say they are degraded.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    cause: &'static str,
}

/// The fencing metrics; clones share the same series.
#[derive(Clone, Debug, Default)]
pub struct FenceMetrics {
    degraded: Gauge,
    entered: Family<CauseLabels, Counter>,
    left: Counter,
    members_degraded: Gauge,
}

impl FenceMetrics {
    /// Registers every series.
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "node_degraded",
            "1 while this node is degraded (SPEC S12: it fails what its healthy peers reach, or its probes fail for lack of a local resource), else 0",
            self.degraded.clone(),
        );
        registry.register(
            "node_degraded_entered",
            "Times this node became degraded, by cause (unreachable: peers reach what it does not; local_resources: probes failed for lack of descriptors, sockets, ports or memory)",
            self.entered.clone(),
        );
        registry.register(
            "node_degraded_left",
            "Times this node stopped being degraded",
            self.left.clone(),
        );
        registry.register(
            "members_degraded",
            "Live members other than this node that say they are degraded",
            self.members_degraded.clone(),
        );
    }

    /// This node became degraded for `cause`.
    pub fn entered(&self, cause: &'static str) {
        self.degraded.set(1);
        self.entered.get_or_create(&CauseLabels { cause }).inc();
    }

    /// This node is no longer degraded.
    pub fn left(&self) {
        self.degraded.set(0);
        self.left.inc();
    }

    /// Live peers that say they are degraded.
    pub fn members_degraded(&self, n: usize) {
        self.members_degraded
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}
