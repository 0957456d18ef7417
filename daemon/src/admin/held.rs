//! Bounds on requests the API holds open: blocking queries (`GET /v1/workers?index=`)
//! and event streams (`GET /v1/events`). Each costs little while it waits, but without
//! a bound a local client could hold thousands; past the bound a request gets a 503
//! with `Retry-After` at once, never a silent drop.

use super::error::{ApiError, Busy};
use crate::metrics::AdminMetrics;
use axum::http::StatusCode;
use prometheus_client::metrics::gauge::Gauge;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Blocking queries waiting at once. A gateway holds one or two; 512 leaves room for a
/// fleet of scripts and dashboards while bounding memory (~21 KB each).
pub const MAX_BLOCKING_QUERIES: usize = 512;
/// Event streams open at once: each gets a copy of every event, so fewer than queries.
pub const MAX_EVENT_STREAMS: usize = 128;
/// `Retry-After` of a refused blocking query, in seconds.
const BLOCKING_RETRY_SECS: u32 = 1;
/// `Retry-After` of a refused event stream: slots free up rarely, come back later.
const STREAM_RETRY_SECS: u32 = 5;

/// The two bounds, shared by every connection.
#[derive(Debug)]
pub struct HeldLimits {
    blocking: Arc<Semaphore>,
    streams: Arc<Semaphore>,
    metrics: AdminMetrics,
}

/// One held request; frees its slot when dropped.
#[derive(Debug)]
pub struct Held {
    _permit: OwnedSemaphorePermit,
    gauge: Gauge,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

impl HeldLimits {
    /// The documented bounds.
    pub fn new(metrics: AdminMetrics) -> HeldLimits {
        HeldLimits::with_caps(MAX_BLOCKING_QUERIES, MAX_EVENT_STREAMS, metrics)
    }

    /// Other bounds (tests).
    pub fn with_caps(blocking: usize, streams: usize, metrics: AdminMetrics) -> HeldLimits {
        HeldLimits {
            blocking: Arc::new(Semaphore::new(blocking)),
            streams: Arc::new(Semaphore::new(streams)),
            metrics,
        }
    }

    /// A slot for a blocking query that is about to wait, or the 503.
    pub fn hold_blocking_query(&self) -> Result<Held, Busy> {
        match Arc::clone(&self.blocking).try_acquire_owned() {
            Ok(permit) => Ok(held(permit, self.metrics.blocking_queries_held())),
            Err(_) => {
                self.metrics.blocking_query_refused();
                Err(Busy {
                    error: ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "TOO_MANY_BLOCKING_QUERIES",
                        format!(
                            "{MAX_BLOCKING_QUERIES} blocking queries are already waiting on this node; retry shortly, or poll without index"
                        ),
                    ),
                    retry_after_secs: BLOCKING_RETRY_SECS,
                })
            }
        }
    }

    /// A slot for an event stream, or the 503.
    pub fn open_event_stream(&self) -> Result<Held, Busy> {
        match Arc::clone(&self.streams).try_acquire_owned() {
            Ok(permit) => Ok(held(permit, self.metrics.event_streams_open())),
            Err(_) => {
                self.metrics.event_stream_refused();
                Err(Busy {
                    error: ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "TOO_MANY_EVENT_STREAMS",
                        format!(
                            "{MAX_EVENT_STREAMS} event streams are already open on this node; retry later"
                        ),
                    ),
                    retry_after_secs: STREAM_RETRY_SECS,
                })
            }
        }
    }
}

fn held(permit: OwnedSemaphorePermit, gauge: &Gauge) -> Held {
    gauge.inc();
    Held {
        _permit: permit,
        gauge: gauge.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse;

    #[test]
    fn past_the_bound_a_request_gets_a_503_with_retry_after() {
        let m = AdminMetrics::default();
        let limits = HeldLimits::with_caps(2, 1, m.clone());
        let a = limits.hold_blocking_query().unwrap();
        let _b = limits.hold_blocking_query().unwrap();
        assert_eq!(m.blocking_queries_held().get(), 2);
        let busy = limits.hold_blocking_query().unwrap_err();
        assert_eq!(busy.error.code, "TOO_MANY_BLOCKING_QUERIES");
        let r = busy.into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()["retry-after"], "1");
        assert_eq!(r.headers()["content-type"], "application/json");
        drop(a);
        assert_eq!(m.blocking_queries_held().get(), 1);
        let _c = limits
            .hold_blocking_query()
            .expect("a freed slot is reused");

        let s = limits.open_event_stream().unwrap();
        let busy = limits.open_event_stream().unwrap_err();
        assert_eq!(busy.error.code, "TOO_MANY_EVENT_STREAMS");
        assert_eq!(busy.retry_after_secs, 5);
        assert_eq!(m.event_streams_open().get(), 1);
        drop(s);
        assert_eq!(m.event_streams_open().get(), 0);
        assert!(limits.open_event_stream().is_ok());
    }
}
