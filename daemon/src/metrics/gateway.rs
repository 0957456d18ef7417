//! Metrics of the smg file-discovery manifest (`--smg-manifest`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    result: &'static str,
}

/// The manifest's metrics; clones share the same series.
#[derive(Clone, Debug, Default)]
pub struct GatewayMetrics {
    writes: Family<OutcomeLabels, Counter>,
    up: Gauge,
}

impl GatewayMetrics {
    /// Registers every series.
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "smg_manifest_writes",
            "Writes of the --smg-manifest file, by result (ok, error)",
            self.writes.clone(),
        );
        registry.register(
            "smg_manifest_up",
            "1 when the last write of the --smg-manifest file succeeded, else 0",
            self.up.clone(),
        );
    }

    /// One write of the manifest, and whether it succeeded.
    pub fn manifest_write(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.writes.get_or_create(&OutcomeLabels { result }).inc();
        self.up.set(i64::from(ok));
    }
}
