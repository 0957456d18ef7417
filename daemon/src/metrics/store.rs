//! Metrics of the data directory: commits and their fsync time, refused writes by
//! kind, compactions, and records left out when the state was loaded at start.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// The store metrics; clones share the same series.
#[derive(Clone, Debug)]
pub struct StoreMetrics {
    commits: Counter,
    errors: Counter,
    commit_duration: Histogram,
    write_failures: Family<KindLabels, Counter>,
    compactions: Counter,
    compaction_failures: Counter,
    records_rejected: Family<ReasonLabels, Counter>,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        StoreMetrics {
            commits: Counter::default(),
            errors: Counter::default(),
            commit_duration: Histogram::new([
                0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5,
            ]),
            write_failures: Family::default(),
            compactions: Counter::default(),
            compaction_failures: Counter::default(),
            records_rejected: Family::default(),
        }
    }
}

impl StoreMetrics {
    /// Registers every series.
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "store_records_rejected",
            "Registrations and tombstones read from the data directory at start that failed validation and were left out, by reason (the invalid field)",
            self.records_rejected.clone(),
        );
        registry.register(
            "store_commits",
            "Mutations made durable in the data directory",
            self.commits.clone(),
        );
        registry.register(
            "store_errors",
            "Mutations that failed to become durable",
            self.errors.clone(),
        );
        registry.register(
            "store_commit_duration_seconds",
            "Time to append and fsync one mutation",
            self.commit_duration.clone(),
        );
        registry.register(
            "store_write_failures",
            "Mutations refused because the data directory could not take them, by kind: full (no space or quota), io (another write error), stopped (the store stopped taking writes after an undo failed)",
            self.write_failures.clone(),
        );
        registry.register(
            "store_compactions",
            "Compactions of the log into a snapshot that succeeded",
            self.compactions.clone(),
        );
        registry.register(
            "store_compaction_failures",
            "Compactions that failed (the change that triggered them was kept; retried later)",
            self.compaction_failures.clone(),
        );
    }

    /// Creates the labelled series that must exist from the start (at 0), so that
    /// `increase()` sees their first event.
    pub(super) fn init_series(&self) {
        for kind in ["full", "io", "stopped"] {
            let _ = self.write_failures.get_or_create(&KindLabels { kind });
        }
    }

    /// Counts one record left out of the state loaded from disk.
    pub fn record_rejected(&self, reason: &'static str) {
        self.records_rejected
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Counts one store commit attempt.
    pub fn commit(&self, ok: bool, took: Duration) {
        if ok {
            self.commits.inc();
        } else {
            self.errors.inc();
        }
        self.commit_duration.observe(took.as_secs_f64());
    }

    /// Counts a mutation the store refused (`kind` from [`crate::store::StoreError::kind`]).
    pub fn write_failed(&self, kind: &'static str) {
        self.write_failures
            .get_or_create(&KindLabels { kind })
            .inc();
    }

    /// Counts one compaction attempt.
    pub fn compaction(&self, ok: bool) {
        if ok {
            self.compactions.inc();
        } else {
            self.compaction_failures.inc();
        }
    }
}
