//! The simulated probe: a [`Check`] over a reachability matrix (node × worker address)
//! instead of HTTP, in virtual time.
//!
//! A reachable worker answers `200` after [`LATENCY`]; an unreachable one is either
//! refused after [`LATENCY`] (nothing listens) or silent until the probe's timeout
//! (packets dropped, as behind a firewall: SPEC S3's `timeout`). The matrix is read
//! when a probe starts, as a connect would be.

use crate::trace::{Event, Trace};
use probemesh::probe::check::{ProbeReport, ProbeResult};
use probemesh::probe::{Check, Target};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a reachable (or refusing) worker takes to answer.
pub const LATENCY: Duration = Duration::from_millis(2);

/// How an unreachable worker fails.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// The connection is refused at once.
    #[default]
    Refused,
    /// Nothing answers: the probe times out.
    Timeout,
}

/// The node name of a block that applies to every node, also those started later.
pub const ANY_NODE: &str = "*";

/// Which (node, worker address) pairs cannot reach each other. Absent: reachable.
/// Addresses are `host:port` as [`authority`] writes them.
#[derive(Debug, Default)]
pub struct Reachability {
    blocked: Mutex<BTreeMap<(String, String), Failure>>,
}

impl Reachability {
    /// An empty matrix: everything reachable.
    pub fn new() -> Arc<Reachability> {
        Arc::new(Reachability::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), Failure>> {
        self.blocked.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// From now on `node` cannot reach `worker` (an address from [`authority`]).
    pub fn block(&self, node: &str, worker: &str, how: Failure) {
        self.lock()
            .insert((node.to_string(), worker.to_string()), how);
    }

    /// From now on `node` reaches `worker` again.
    pub fn unblock(&self, node: &str, worker: &str) {
        self.lock().remove(&(node.to_string(), worker.to_string()));
    }

    /// How `node` fails to reach `worker`, if it does (a block for [`ANY_NODE`]
    /// applies to every node).
    pub fn blocked(&self, node: &str, worker: &str) -> Option<Failure> {
        let m = self.lock();
        m.get(&(node.to_string(), worker.to_string()))
            .or_else(|| m.get(&(ANY_NODE.to_string(), worker.to_string())))
            .copied()
    }

    /// Makes `worker` reachable from every node again (all its blocks go).
    pub fn unblock_everywhere(&self, worker: &str) {
        self.lock().retain(|(_, w), _| w != worker);
    }
}

/// `host:port` of a URL (the port made explicit), the matrix's worker key.
pub fn authority(url: &url::Url) -> String {
    format!(
        "{}:{}",
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or_default()
    )
}

/// One node's probes over the matrix.
#[derive(Debug)]
pub struct SimChecker {
    node: String,
    matrix: Arc<Reachability>,
    trace: Option<Trace>,
}

impl SimChecker {
    /// The checker of `node`; with `trace`, every result is traced (when the trace
    /// keeps probes).
    pub fn new(node: &str, matrix: Arc<Reachability>, trace: Option<Trace>) -> SimChecker {
        SimChecker {
            node: node.to_string(),
            matrix,
            trace: trace.filter(Trace::probes),
        }
    }
}

impl Check for SimChecker {
    async fn check(&self, target: &Target) -> ProbeReport {
        let worker = authority(&target.url);
        let result = match self.matrix.blocked(&self.node, &worker) {
            None => ProbeResult::Ok(200),
            Some(Failure::Refused) => ProbeResult::Refused,
            Some(Failure::Timeout) => ProbeResult::Timeout,
        };
        let latency = if result == ProbeResult::Timeout {
            target.timeout
        } else {
            LATENCY
        };
        tokio::time::sleep(latency).await;
        if let Some(t) = &self.trace {
            t.push(
                &self.node,
                Event::Probe {
                    worker,
                    result: result.class(),
                },
            );
        }
        ProbeReport { result, latency }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn unreachable_workers_are_refused_or_time_out_in_virtual_time() {
        let m = Reachability::new();
        let c = SimChecker::new("node-00", Arc::clone(&m), None);
        let url = url::Url::parse("http://10.0.0.1:8000/health").unwrap();
        let target = Target::http(url.clone(), Duration::from_secs(2));
        assert_eq!(c.check(&target).await.result, ProbeResult::Ok(200));
        m.block("node-00", &authority(&url), Failure::Timeout);
        let t0 = tokio::time::Instant::now();
        assert_eq!(c.check(&target).await.result, ProbeResult::Timeout);
        assert_eq!(t0.elapsed(), Duration::from_secs(2));
        m.block("node-00", "10.0.0.1:8000", Failure::Refused);
        assert_eq!(c.check(&target).await.result, ProbeResult::Refused);
        m.unblock("node-00", "10.0.0.1:8000");
        assert_eq!(c.check(&target).await.result, ProbeResult::Ok(200));
        assert!(m.blocked("node-01", "10.0.0.1:8000").is_none());
    }
}
