//! End-to-end test harness of probemesh: runs the real `probemesh` binary against real
//! HTTP workers on 127.0.0.1.
//!
//! - [`binary`]: finds or builds the binary, runs one-shot commands;
//! - [`agent`]: [`Agent`], one agent process on its own data directory and port;
//! - [`http`]: [`Api`], the admin API client, plus raw HTTP and metrics helpers;
//! - [`worker`]: [`TestWorker`], a worker whose health the test controls;
//! - [`wait`]: deadlines scaled by `PROBEMESH_TEST_PATIENCE`, polling, free ports;
//! - [`require`]: root, tools and mounts a test needs; skips with a printed reason, or
//!   fails under `PROBEMESH_REQUIRE_ROOT_TESTS=1` (CI);
//! - [`tmpfs`]: a small tmpfs mount for disk-full tests (root only);
//! - [`limits`]: `prlimit` around the agent, own fd limit, a keep-alive raw client.
//! - [`docker`]: [`docker::DockerRun`], the containers, networks and images of one
//!   container test, removed on drop; the image builds;
//! - [`kube`]: rendering and validating the Kubernetes manifests offline;
//! - [`tls_worker`]: [`tls_worker::TlsWorker`], an HTTPS worker for TLS-root checks;
//! - [`grpc_worker`]: [`grpc_worker::GrpcWorker`], a gRPC health server (Python grpcio);
//! - [`webdriver`]: [`webdriver::Browser`], headless chromium over WebDriver;
//! - [`pytools`]: PyPI tools (schemathesis, grpcio-health-checking) in venvs under the
//!   target directory;
//! - [`routers`]: vllm-router and sglang-router from PyPI in a cached venv;
//! - [`rules`]: metric names used by the alert rules and the dashboard.
//!
//! The tests live in `tests/*.rs`, one file per area.

#![warn(missing_docs)]

pub mod agent;
pub mod binary;
pub mod cluster;
pub mod docker;
pub mod grpc_worker;
pub mod http;
pub mod kube;
pub mod limits;
pub mod netns;
pub mod ns_cluster;
pub mod pytools;
pub mod require;
pub mod routers;
pub mod rules;
pub mod smg;
pub mod tls_worker;
pub mod tmpfs;
pub mod wait;
pub mod webdriver;
pub mod worker;

pub use agent::{Agent, AgentBuilder};
pub use binary::{CmdOutput, private_gossip_args, probemesh_bin, run_probemesh, run_probemesh_env};
pub use cluster::{Cluster, ClusterCa, alive_members, member_args};
pub use http::{Api, Body, Reply, client, gateway_workers, get_json, metric, raw_http, status_of};
pub use wait::{
    eventually, free_port, free_udp_port, patience, refused_url, scaled, try_eventually,
};
pub use worker::{Health, TestWorker};

use serde_json::Value;
use std::time::Duration;

/// Default deadline for a state the agent should reach within a few probe intervals.
pub const SOON: Duration = Duration::from_secs(10);

/// Polls `GET /v1/workers/{id}` until `pred` holds for the Worker JSON (deadline
/// [`SOON`], scaled) and returns it.
pub async fn wait_worker(api: &Api, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    eventually(
        &format!("worker {id}: {what}"),
        SOON,
        Duration::from_millis(10),
        || async {
            match api.worker(id).await {
                Some(w) if pred(&w) => Ok(w),
                Some(w) => Err(w.to_string()),
                None => Err("404 (not in the view)".to_string()),
            }
        },
    )
    .await
}

/// Waits until worker `id` has status `status` and returns it.
pub async fn wait_status(api: &Api, id: &str, status: &str) -> Value {
    wait_worker(api, id, &format!("status {status}"), |w| {
        status_of(w) == status
    })
    .await
}

/// Waits until worker `id` is gone from the view (404).
pub async fn wait_gone(api: &Api, id: &str) {
    eventually(
        &format!("worker {id} to disappear"),
        SOON,
        Duration::from_millis(10),
        || async {
            match api.worker(id).await {
                None => Ok(()),
                Some(w) => Err(w.to_string()),
            }
        },
    )
    .await
}

/// The `id` field of a Worker JSON.
pub fn id_of(worker: &Value) -> String {
    worker["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {worker}"))
        .to_string()
}

/// The id the agent gives the worker at `url` (derived the same way, from the shared
/// model crate).
pub fn worker_id_for(url: &str) -> String {
    probemesh_gossip::model::WorkerUrl::parse(url)
        .expect("valid worker URL")
        .id()
        .to_string()
}
