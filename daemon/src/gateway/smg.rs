//! The `smg` adapter (`--smg-url`): keeps the gateway's worker set equal to this
//! node's ready set.
//!
//! Level-triggered: on every change of the local view (and every
//! [`RECONCILE_EVERY`], which repairs drift such as a restarted gateway or a manual
//! edit) it lists the gateway's workers, plans ([`super::plan`]) and applies the
//! difference: `POST /workers` for workers that became ready, `DELETE /workers/{id}`
//! for workers it added that are no longer ready. While the gateway is down it retries
//! with a backoff from 1 s to 30 s.

use super::plan::{GatewayWorker, MANAGED_LABEL, plan};
use crate::node::Node;
use probemesh_gossip::model::{Status, WorkerSpec, WorkerType, WorkerUrl};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Longest time between two reconciliations.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(10);
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
const TIMEOUT: Duration = Duration::from_secs(5);

/// Why a call to the gateway failed.
#[derive(Debug, thiserror::Error)]
pub enum SmgError {
    /// Not reachable, or no answer in time.
    #[error("cannot reach smg at {url}: {source}")]
    Unreachable {
        /// The request URL.
        url: String,
        /// The client error.
        source: reqwest::Error,
    },
    /// An unexpected answer.
    #[error("smg answered {status} to {what}: {body}")]
    Status {
        /// What was asked.
        what: String,
        /// HTTP status.
        status: u16,
        /// The body (truncated).
        body: String,
    },
}

/// An HTTP client for smg's worker API.
#[derive(Clone, Debug)]
pub struct SmgClient {
    base: String,
    http: reqwest::Client,
    node_id: String,
}

impl SmgClient {
    /// A client for the gateway at `base` (e.g. `http://127.0.0.1:30000`).
    pub fn new(base: &str, node_id: &str) -> Result<SmgClient, reqwest::Error> {
        crate::install_crypto_provider();
        Ok(SmgClient {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(TIMEOUT)
                .build()?,
            node_id: node_id.to_string(),
        })
    }

    async fn send(
        &self,
        what: String,
        req: reqwest::RequestBuilder,
        ok: &[u16],
    ) -> Result<Value, SmgError> {
        let resp = req.send().await.map_err(|source| SmgError::Unreachable {
            url: what.clone(),
            source,
        })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        if resp_ok(status, ok) {
            return Ok(serde_json::from_str(&text).unwrap_or(Value::Null));
        }
        Err(SmgError::Status {
            what,
            status,
            body: text.chars().take(300).collect(),
        })
    }

    /// `GET /workers`.
    pub async fn list(&self) -> Result<Vec<GatewayWorker>, SmgError> {
        let url = format!("{}/workers", self.base);
        let v = self
            .send(format!("GET {url}"), self.http.get(&url), &[200])
            .await?;
        let workers = v["workers"].as_array().cloned().unwrap_or_default();
        Ok(workers
            .iter()
            .filter(|w| w["status"] != "draining")
            .filter_map(|w| {
                Some(GatewayWorker {
                    id: w["id"].as_str()?.to_string(),
                    url: w["url"].as_str()?.to_string(),
                    managed: w["labels"][MANAGED_LABEL].is_string(),
                })
            })
            .collect())
    }

    /// `POST /workers` with the spec fields smg understands and the managed label.
    /// A 409 (already there) counts as done.
    pub async fn add(&self, spec: &WorkerSpec) -> Result<(), SmgError> {
        let url = format!("{}/workers", self.base);
        let body = smg_body(spec, &self.node_id);
        self.send(
            format!("POST {url} ({})", spec.url),
            self.http.post(&url).json(&body),
            &[200, 201, 202, 409],
        )
        .await
        .map(|_| ())
    }

    /// `DELETE /workers/{id}`; a 404 (already gone) counts as done.
    pub async fn remove(&self, id: &str) -> Result<(), SmgError> {
        let url = format!("{}/workers/{id}", self.base);
        self.send(
            format!("DELETE {url}"),
            self.http.delete(&url),
            &[200, 202, 204, 404],
        )
        .await
        .map(|_| ())
    }
}

fn resp_ok(status: u16, ok: &[u16]) -> bool {
    ok.contains(&status)
}

/// The smg worker body for `spec`: smg's field names, plus [`MANAGED_LABEL`] naming
/// this node.
pub fn smg_body(spec: &WorkerSpec, node_id: &str) -> Value {
    let mut labels = spec.labels.clone();
    labels.insert(MANAGED_LABEL.to_string(), node_id.to_string());
    let mut body = json!({
        "url": spec.url.as_str(),
        "worker_type": match spec.worker_type {
            WorkerType::Regular => "regular",
            WorkerType::Prefill => "prefill",
            WorkerType::Decode => "decode",
        },
        "labels": labels,
        "priority": spec.priority,
        "cost": spec.cost,
    });
    if let Some(m) = &spec.model_id {
        body["model_id"] = json!(m);
    }
    if let Some(p) = spec.bootstrap_port {
        body["bootstrap_port"] = json!(p);
    }
    body
}

/// The local ready set, by URL.
fn ready_set(node: &Node) -> BTreeMap<WorkerUrl, WorkerSpec> {
    node.registry()
        .read()
        .workers
        .values()
        .filter(|e| e.status == Status::Ready)
        .map(|e| (e.reg.spec.url.clone(), e.reg.spec.clone()))
        .collect()
}

/// One reconciliation. Returns how many adds and removes were made.
pub async fn reconcile(node: &Node, smg: &SmgClient) -> Result<(usize, usize), SmgError> {
    let current = smg.list().await?;
    let p = plan(&ready_set(node), &current);
    let (mut added, mut removed) = (0, 0);
    for spec in &p.add {
        smg.add(spec)
            .await
            .inspect_err(|_| node.metrics().smg_op("add", false))?;
        node.metrics().smg_op("add", true);
        tracing::info!(worker = %spec.url, "added to smg");
        added += 1;
    }
    for id in &p.remove {
        smg.remove(id)
            .await
            .inspect_err(|_| node.metrics().smg_op("remove", false))?;
        node.metrics().smg_op("remove", true);
        tracing::info!(smg_id = %id, "removed from smg");
        removed += 1;
    }
    Ok((added, removed))
}

/// Runs the adapter until `stop`.
pub async fn run(node: Arc<Node>, smg: SmgClient, stop: CancellationToken) {
    node.metrics().smg_enabled();
    let mut index = node.registry().subscribe();
    let mut backoff = BACKOFF_START;
    let mut down = false;
    loop {
        let wait = match reconcile(&node, &smg).await {
            Ok(_) => {
                if down {
                    tracing::info!(smg = %smg.base, "smg reachable again");
                }
                down = false;
                backoff = BACKOFF_START;
                node.metrics().smg_up(true);
                RECONCILE_EVERY
            }
            Err(e) => {
                if !down {
                    tracing::warn!(error = %e, retry_in = ?backoff, "smg sync failed; retrying with backoff");
                }
                down = true;
                node.metrics().smg_up(false);
                let w = backoff;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                w
            }
        };
        tokio::select! {
            () = stop.cancelled() => break,
            _ = index.changed(), if !down => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_carries_smg_fields_and_the_managed_label() {
        let mut spec = WorkerSpec::new(WorkerUrl::parse("http://10.0.0.1:8000").unwrap());
        spec.model_id = Some("llama".into());
        spec.worker_type = WorkerType::Prefill;
        spec.bootstrap_port = Some(9000);
        spec.labels.insert("zone".into(), "a".into());
        let b = smg_body(&spec, "node-1");
        assert_eq!(b["url"], "http://10.0.0.1:8000");
        assert_eq!(b["model_id"], "llama");
        assert_eq!(b["worker_type"], "prefill");
        assert_eq!(b["bootstrap_port"], 9000);
        assert_eq!(b["priority"], 50);
        assert_eq!(b["labels"]["zone"], "a");
        assert_eq!(b["labels"][MANAGED_LABEL], "node-1");
        let plain = smg_body(
            &WorkerSpec::new(WorkerUrl::parse("http://h:1").unwrap()),
            "n",
        );
        assert!(plain.get("model_id").is_none() && plain.get("bootstrap_port").is_none());
    }
}
