//! The `smg` adapter (`--smg-url`): keeps the gateway's worker set equal to this
//! node's ready set.
//!
//! Level-triggered: on every change of the local view (and every
//! [`RECONCILE_EVERY`], which repairs drift such as a restarted gateway or a manual
//! edit) it lists the gateway's workers, plans ([`super::plan`]) and applies the
//! difference: `POST /workers` for workers that became ready, `DELETE /workers/{id}`
//! for workers it added that are no longer ready. While the gateway is down it retries
//! with a backoff from 1 s to 30 s.
//!
//! Two routers of smg's lineage list their workers differently, and the client reads
//! both (docs/smg.md, "Other routers"): sglang-router 0.3 lists the labels it was given
//! under `metadata`; vllm-router 0.1 lists neither ids nor labels and names a worker by
//! its URL (`DELETE /workers/{url}`). For such an *unlabeled* worker the adapter counts
//! it as its own when it added it since it started, or when its URL is registered here
//! (which survives an agent restart).

use super::plan::{GatewayWorker, MANAGED_LABEL, plan};
use crate::node::Node;
use probemesh_gossip::model::{Status, WorkerSpec, WorkerType, WorkerUrl};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
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
    /// URLs this client added and has not removed since (read for gateways that keep
    /// no labels).
    added: Arc<Mutex<BTreeSet<WorkerUrl>>>,
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
            added: Arc::default(),
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
            .filter_map(listed)
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

    /// `DELETE /workers/{id}` (the id percent-encoded: vllm-router's id is a URL); a 404
    /// (already gone) counts as done.
    pub async fn remove(&self, id: &str) -> Result<(), SmgError> {
        let url = format!("{}/workers/{}", self.base, path_segment(id));
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

/// One entry of `GET /workers`: smg's `id` and `labels`; sglang-router 0.3's labels
/// under `metadata`; vllm-router's entries have neither, so the URL is the id.
fn listed(w: &Value) -> Option<GatewayWorker> {
    let url = w["url"].as_str()?.to_string();
    let labeled = |field: &str| w[field][MANAGED_LABEL].is_string();
    let (id, unlabeled) = match w["id"].as_str() {
        Some(id) => (id.to_string(), false),
        None if w.get("labels").is_none() && w.get("metadata").is_none() => (url.clone(), true),
        None => return None,
    };
    Some(GatewayWorker {
        id,
        url,
        managed: labeled("labels") || labeled("metadata"),
        unlabeled,
    })
}

/// `s` percent-encoded as one path segment (every byte but RFC 3986's unreserved ones).
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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

/// The local ready set, by URL, and the URLs of every worker in the view.
fn ready_set(node: &Node) -> (BTreeMap<WorkerUrl, WorkerSpec>, BTreeSet<WorkerUrl>) {
    let view = node.registry().read();
    let ready = view
        .workers
        .values()
        .filter(|e| e.status == Status::Ready)
        .map(|e| (e.reg.spec.url.clone(), e.reg.spec.clone()))
        .collect();
    let known = view
        .workers
        .values()
        .map(|e| e.reg.spec.url.clone())
        .collect();
    (ready, known)
}

/// Decides ownership of the workers a gateway lists without labels: ours when this
/// client added it, or when its URL is registered here (after an agent restart).
fn own_unlabeled(current: &mut [GatewayWorker], known: &BTreeSet<WorkerUrl>, smg: &SmgClient) {
    let added = smg.added.lock().unwrap_or_else(|e| e.into_inner());
    for g in current.iter_mut().filter(|g| g.unlabeled) {
        g.managed =
            WorkerUrl::parse(&g.url).is_ok_and(|u| known.contains(&u) || added.contains(&u));
    }
}

/// Remembers (or forgets) that this client added `url`.
fn remember(smg: &SmgClient, url: &str, added: bool) {
    let Ok(u) = WorkerUrl::parse(url) else { return };
    let mut set = smg.added.lock().unwrap_or_else(|e| e.into_inner());
    if added {
        set.insert(u);
    } else {
        set.remove(&u);
    }
}

/// One reconciliation. Returns how many adds and removes were made.
pub async fn reconcile(node: &Node, smg: &SmgClient) -> Result<(usize, usize), SmgError> {
    let mut current = smg.list().await?;
    let (ready, known) = ready_set(node);
    own_unlabeled(&mut current, &known, smg);
    let p = plan(&ready, &current);
    let (mut added, mut removed) = (0, 0);
    for spec in &p.add {
        smg.add(spec)
            .await
            .inspect_err(|_| node.metrics().smg_op("add", false))?;
        node.metrics().smg_op("add", true);
        remember(smg, spec.url.as_str(), true);
        tracing::info!(worker = %spec.url, "added to smg");
        added += 1;
    }
    for id in &p.remove {
        smg.remove(id)
            .await
            .inspect_err(|_| node.metrics().smg_op("remove", false))?;
        node.metrics().smg_op("remove", true);
        if let Some(g) = current.iter().find(|g| &g.id == id) {
            remember(smg, &g.url, false);
        }
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

    #[test]
    fn listings_of_smg_sglang_router_and_vllm_router_are_read() {
        let smg = json!({"id": "u-1", "url": "http://h:1", "labels": {MANAGED_LABEL: "n"}, "status": "ready"});
        let sglang = json!({"id": "u-2", "url": "http://h:2", "metadata": {MANAGED_LABEL: "n", "cost": "1"}});
        let vllm = json!({"url": "http://h:3", "model_id": "unknown", "is_healthy": true});
        let foreign = json!({"id": "u-4", "url": "http://h:4", "labels": {}});
        let broken = json!({"url": "http://h:5", "labels": {}});
        let got: Vec<_> = [smg, sglang, vllm, foreign, broken]
            .iter()
            .map(listed)
            .collect();
        let gw = |id: &str, url: &str, managed, unlabeled| {
            Some(GatewayWorker {
                id: id.into(),
                url: url.into(),
                managed,
                unlabeled,
            })
        };
        assert_eq!(
            got,
            vec![
                gw("u-1", "http://h:1", true, false),
                gw("u-2", "http://h:2", true, false),
                gw("http://h:3", "http://h:3", false, true),
                gw("u-4", "http://h:4", false, false),
                None,
            ]
        );
    }

    #[test]
    fn an_unlabeled_worker_is_ours_when_added_here_or_registered_here() {
        let smg = SmgClient::new("http://127.0.0.1:1", "n").unwrap();
        let w = |url: &str| GatewayWorker {
            id: url.into(),
            url: url.into(),
            managed: false,
            unlabeled: true,
        };
        let mut current = vec![
            w("http://added:1"),
            w("http://known:1/"),
            w("http://other:1"),
        ];
        current.push(GatewayWorker {
            unlabeled: false,
            ..w("http://known:1")
        });
        remember(&smg, "http://added:1", true);
        let known: BTreeSet<_> = [WorkerUrl::parse("http://KNOWN:1").unwrap()].into();
        own_unlabeled(&mut current, &known, &smg);
        let managed: Vec<bool> = current.iter().map(|g| g.managed).collect();
        // A labeled worker's ownership is its label, never the URL.
        assert_eq!(managed, vec![true, true, false, false]);
        remember(&smg, "http://added:1", false);
        own_unlabeled(&mut current, &BTreeSet::new(), &smg);
        assert!(current.iter().all(|g| !g.managed));
    }

    #[test]
    fn ids_are_percent_encoded_as_one_path_segment() {
        assert_eq!(path_segment("01a231e6-d9dd-712b"), "01a231e6-d9dd-712b");
        assert_eq!(
            path_segment("http://127.0.0.1:8000/x y"),
            "http%3A%2F%2F127.0.0.1%3A8000%2Fx%20y"
        );
    }
}
