//! Probe kinds (SPEC S3) with the real binary and in-test workers: `models` follows the
//! worker's `GET /v1/models` listing (right model, wrong model, then changed back);
//! `grpc` follows a Python grpcio-health-checking server switching between `SERVING`
//! and `NOT_SERVING` and going away, over plaintext and TLS, with distinct results for
//! an unknown service and a server that does not speak gRPC.

use probemesh_tests::grpc_worker::{GrpcWorker, Serving};
use probemesh_tests::*;
use serde_json::{Value, json};

fn last_result(w: &Value) -> &str {
    w["probe"]["last_result"].as_str().unwrap_or("")
}

/// Waits until worker `id` has `status` with `result` as its last probe result.
async fn wait_result(api: &Api, id: &str, status: &str, result: &str) -> Value {
    wait_worker(
        api,
        id,
        &format!("{status} with last_result {result}"),
        |w| status_of(w) == status && last_result(w) == result,
    )
    .await
}

/// A registration refused with 400 and error `code`, whose message names `needle`.
async fn refused(api: &Api, spec: &Value, code: &str, needle: &str) {
    let r = api.post("/v1/workers", spec).await;
    assert_eq!(r.status, 400, "{spec}: {}", r.text);
    assert_eq!(r.error_code(), Some(code), "{}", r.text);
    assert!(r.text.contains(needle), "{spec}: {}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_needs_the_listing_to_name_the_workers_model() {
    let agent = Agent::start(&["--success-threshold", "1", "--failure-threshold", "1"]).await;
    let api = agent.api();
    let worker = TestWorker::start(Health::Healthy);
    worker.set_models(&["llama-3-8b"]);
    let spec = json!({"url": worker.url(), "model_id": "llama-3-8b",
                      "health": {"kind": "models", "interval": "100ms"}});
    let w = api.register(&spec).await;
    let id = id_of(&w);
    assert_eq!(w["health"]["kind"], "models");
    let w = wait_result(api, &id, "ready", "ok").await;
    assert_eq!(w["routable"], true);
    assert!(worker.requests_to("/v1/models") >= 1);
    assert_eq!(
        worker.requests_to("/health"),
        0,
        "models does not probe health.path"
    );

    // The worker swapped its model: it still answers 200, but not with this model.
    worker.set_models(&["mistral-7b"]);
    let w = wait_result(api, &id, "not_ready", "model_mismatch").await;
    assert_eq!(w["routable"], false);
    // It lists the model again (next to another one): ready again.
    worker.set_models(&["mistral-7b", "llama-3-8b"]);
    wait_result(api, &id, "ready", "ok").await;
    // A non-2xx answer keeps its own result.
    worker.set(Health::Status(503));
    wait_result(api, &id, "not_ready", "http_503").await;
    // An answer that is not a listing at all does not list the model.
    worker.set_models(&[]);
    worker.set(Health::Healthy);
    wait_result(api, &id, "not_ready", "model_mismatch").await;

    refused(
        api,
        &json!({"url": "http://127.0.0.1:9", "health": {"kind": "models"}}),
        "INVALID_SPEC",
        "model_id",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nodes_default_kind_applies_where_it_can() {
    let agent = Agent::start(&["--probe-kind", "models", "--probe-interval", "100ms"]).await;
    let api = agent.api();
    let with_model = TestWorker::start(Health::Healthy);
    with_model.set_models(&["m"]);
    let plain = TestWorker::start(Health::Healthy);
    let a = api
        .register(&json!({"url": with_model.url(), "model_id": "m"}))
        .await;
    let b = api.register(&json!({"url": plain.url()})).await;
    assert_eq!(a["health"]["kind"], "models");
    // The command line names a kind per worker.
    let other = TestWorker::start(Health::Healthy);
    let out = run_probemesh(&[
        "workers",
        "add",
        &other.url(),
        "--health-kind",
        "http",
        "--admin",
        agent.url(),
    ])
    .await;
    assert_eq!(out.code, Some(0), "{out}");
    let c = api
        .worker(&worker_id_for(&other.url()))
        .await
        .expect("added");
    assert_eq!(c["health"]["kind"], "http");
    let out = run_probemesh(&[
        "workers",
        "add",
        "http://127.0.0.1:9",
        "--health-kind",
        "models",
        "--admin",
        agent.url(),
    ])
    .await;
    assert_eq!(
        out.code,
        Some(1),
        "models without --model is refused: {out}"
    );
    assert!(out.stderr.contains("model_id"), "{out}");
    // Without a model_id the node's `models` cannot apply: `http`.
    assert_eq!(b["health"]["kind"], "http");
    wait_status(api, &id_of(&a), "ready").await;
    wait_status(api, &id_of(&b), "ready").await;
    assert!(with_model.requests_to("/v1/models") >= 1);
    assert!(plain.requests_to("/health") >= 1);
    assert_eq!(plain.requests_to("/v1/models"), 0);
}

/// A gRPC worker, or `None` when Python's grpcio cannot be set up here (skips, or fails
/// in CI).
fn grpc_worker(
    initial: Serving,
    tls: Option<(&std::path::Path, &std::path::Path)>,
) -> Option<GrpcWorker> {
    require::ok(
        GrpcWorker::start(initial, tls),
        "a gRPC health server (python3 with grpcio-health-checking from PyPI)",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_follows_the_standard_health_service() {
    let Some(mut grpc) = grpc_worker(Serving::Serving, None) else {
        return;
    };
    let agent = Agent::start(&["--failure-threshold", "1"]).await;
    let api = agent.api();
    // A grpc:// worker is checked with `grpc` without saying so.
    let w = api
        .register(&json!({"url": grpc.grpc_url(), "health": {"interval": "100ms"}}))
        .await;
    let id = id_of(&w);
    assert_eq!(w["url"], grpc.grpc_url());
    assert_eq!(w["health"]["kind"], "grpc");
    wait_result(api, &id, "ready", "ok").await;

    grpc.set(Serving::NotServing);
    wait_result(api, &id, "not_ready", "not_serving").await;
    grpc.set(Serving::Serving);
    wait_result(api, &id, "ready", "ok").await;
    // The server goes away: its port refuses.
    grpc.stop();
    let w = wait_worker(api, &id, "refused after the server stopped", |w| {
        status_of(w) != "ready" && last_result(w) == "refused"
    })
    .await;
    assert_eq!(w["routable"], false);

    // A grpc:// worker cannot be given an HTTP kind; it needs a port.
    refused(
        api,
        &json!({"url": "grpc://127.0.0.1:50051", "health": {"kind": "http"}}),
        "INVALID_SPEC",
        "grpc",
    )
    .await;
    refused(
        api,
        &json!({"url": "grpc://127.0.0.1"}),
        "INVALID_URL",
        "port",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_results_say_what_was_wrong() {
    let Some(grpc) = grpc_worker(Serving::Unset, None) else {
        return;
    };
    let agent = Agent::start(&["--probe-interval", "100ms"]).await;
    let api = agent.api();
    // An http:// URL with kind grpc probes the same host and port. The server has no
    // status for the whole server ("").
    let w = api
        .register(&json!({"url": format!("http://127.0.0.1:{}", grpc.port),
                          "health": {"kind": "grpc"}}))
        .await;
    assert_eq!(w["health"]["kind"], "grpc");
    wait_result(api, &id_of(&w), "pending", "unknown_service").await;
    // An HTTP/1 server is no gRPC server.
    let http = TestWorker::start(Health::Healthy);
    let w = api
        .register(&json!({"url": http.url(), "health": {"kind": "grpc"}}))
        .await;
    wait_result(api, &id_of(&w), "pending", "transport_error").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_tls_verifies_the_workers_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca");
    let certs = dir.path().join("w");
    for args in [
        vec!["tls", "ca", "create", "--out", ca.to_str().unwrap()],
        vec![
            "tls",
            "cert",
            "create",
            "--ca",
            ca.to_str().unwrap(),
            "--node",
            "grpc-worker",
            "--ip",
            "127.0.0.1",
            "--out",
            certs.to_str().unwrap(),
        ],
    ] {
        let out = run_probemesh(&args).await;
        assert_eq!(out.code, Some(0), "{out}");
    }
    let (cert, key) = (
        certs.join("grpc-worker.pem"),
        certs.join("grpc-worker-key.pem"),
    );
    let Some(grpc) = grpc_worker(Serving::Serving, Some((&cert, &key))) else {
        return;
    };
    let spec = json!({"url": format!("https://127.0.0.1:{}", grpc.port),
                      "health": {"kind": "grpc", "interval": "100ms"}});
    // An agent that trusts the worker's CA (through the platform's SSL_CERT_FILE).
    let trusting = AgentBuilder::default()
        .env("SSL_CERT_FILE", ca.join("ca.pem").to_str().unwrap())
        .start()
        .await;
    let w = trusting.api().register(&spec).await;
    wait_result(trusting.api(), &id_of(&w), "ready", "ok").await;
    // One that does not refuses the certificate.
    let other = Agent::start(&[]).await;
    let w = other.api().register(&spec).await;
    wait_result(other.api(), &id_of(&w), "pending", "tls_error").await;
}
