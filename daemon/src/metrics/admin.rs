//! Metrics of the admin HTTP server's limits (`probemesh_admin_*`): connections open,
//! refused and closed by a timeout, requests the server rejected before the router, and
//! the held blocking queries and event streams.
//!
//! Kept in their own struct so the accept loop and the handlers can hold a cheap clone
//! (every prometheus-client metric is an `Arc` inside) without the whole [`Metrics`].
//!
//! [`Metrics`]: super::Metrics

use super::ReasonLabels;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: &'static str,
}

/// The admin server's metrics; clones share the same series.
#[derive(Clone, Debug, Default)]
pub struct AdminMetrics {
    connections_open: Gauge,
    max_connections: Gauge,
    refused: Family<ReasonLabels, Counter>,
    closed: Family<ReasonLabels, Counter>,
    rejected: Family<CodeLabels, Counter>,
    blocking_queries_held: Gauge,
    blocking_queries_refused: Counter,
    event_streams_open: Gauge,
    event_streams_refused: Counter,
}

impl AdminMetrics {
    /// Registers every series under `probemesh_admin_`.
    pub(super) fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("admin");
        r.register(
            "connections_open",
            "Admin API connections open now",
            self.connections_open.clone(),
        );
        r.register(
            "max_connections",
            "Admin API connection cap in force (--admin-max-connections, lowered below the open-file limit)",
            self.max_connections.clone(),
        );
        r.register(
            "connections_refused",
            "Admin API connections refused, by reason (cap: over the connection cap, answered 503 or closed; accept_error: accept failed, e.g. out of file descriptors)",
            self.refused.clone(),
        );
        r.register(
            "connections_closed",
            "Admin API connections closed by the server, by reason (head_timeout: no complete request head within 10s; idle_timeout: keep-alive idle for 60s)",
            self.closed.clone(),
        );
        r.register(
            "requests_rejected",
            "Requests rejected before the router (malformed or oversized request heads), by error code",
            self.rejected.clone(),
        );
        r.register(
            "blocking_queries_held",
            "Blocking queries (GET /v1/workers?index=) waiting now",
            self.blocking_queries_held.clone(),
        );
        r.register(
            "blocking_queries_refused",
            "Blocking queries refused with 503 TOO_MANY_BLOCKING_QUERIES",
            self.blocking_queries_refused.clone(),
        );
        r.register(
            "event_streams_open",
            "Event streams (GET /v1/events) open now",
            self.event_streams_open.clone(),
        );
        r.register(
            "event_streams_refused",
            "Event streams refused with 503 TOO_MANY_EVENT_STREAMS",
            self.event_streams_refused.clone(),
        );
    }

    /// Creates the labelled series at zero (see `Metrics::init_series`).
    pub(super) fn init_series(&self) {
        for reason in ["cap", "accept_error"] {
            let _ = self.refused.get_or_create(&ReasonLabels { reason });
        }
        for reason in ["head_timeout", "idle_timeout"] {
            let _ = self.closed.get_or_create(&ReasonLabels { reason });
        }
    }

    /// Tracks connections open (a gauge: inc on accept, dec when the task ends).
    pub fn connections_open(&self) -> &Gauge {
        &self.connections_open
    }

    /// Records the connection cap in force.
    pub fn set_max_connections(&self, n: usize) {
        self.max_connections
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Counts one refused connection.
    pub fn connection_refused(&self, reason: &'static str) {
        self.refused.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// Connections refused so far for `reason`.
    pub fn connections_refused(&self, reason: &'static str) -> u64 {
        self.refused.get_or_create(&ReasonLabels { reason }).get()
    }

    /// Counts one connection closed by the server.
    pub fn connection_closed(&self, reason: &'static str) {
        self.closed.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// Connections closed so far for `reason`.
    pub fn connections_closed(&self, reason: &'static str) -> u64 {
        self.closed.get_or_create(&ReasonLabels { reason }).get()
    }

    /// Creates the series of a rejection code at zero (the server declares its codes at
    /// start, so that the family is there before the first rejection).
    pub fn declare_rejection(&self, code: &'static str) {
        let _ = self.rejected.get_or_create(&CodeLabels { code });
    }

    /// Counts one request rejected before the router, by its error code.
    pub fn request_rejected(&self, code: &'static str) {
        self.rejected.get_or_create(&CodeLabels { code }).inc();
    }

    /// Tracks held blocking queries.
    pub fn blocking_queries_held(&self) -> &Gauge {
        &self.blocking_queries_held
    }

    /// Counts one refused blocking query.
    pub fn blocking_query_refused(&self) {
        self.blocking_queries_refused.inc();
    }

    /// Tracks open event streams.
    pub fn event_streams_open(&self) -> &Gauge {
        &self.event_streams_open
    }

    /// Counts one refused event stream.
    pub fn event_stream_refused(&self) {
        self.event_streams_refused.inc();
    }
}
