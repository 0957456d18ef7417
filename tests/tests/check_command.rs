//! `probemesh check health|ready` (the exec probe of deploy/kubernetes): exit 0 only
//! when the endpoint answers 200, 1 with the reason otherwise, 2 for a bad `--admin`.

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use probemesh_tests::*;

/// Runs `probemesh ARGS` and asserts the exit code.
async fn pm(args: &[&str], env: &[(&str, &str)], want: i32) -> CmdOutput {
    let out = run_probemesh_env(args, env).await;
    assert_eq!(
        out.code,
        Some(want),
        "`probemesh {}`:\n{out}",
        args.join(" ")
    );
    out
}

#[tokio::test]
async fn check_follows_the_running_agent() {
    let agent = Agent::start(&[]).await;
    let admin = &agent.url().to_string();
    let out = pm(&["check", "health", "--admin", admin], &[], 0).await;
    let body: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("JSON body");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["node_id"], agent.node_id());
    let out = pm(&["check", "ready"], &[("PROBEMESH_ADMIN", admin)], 0).await;
    assert!(out.stdout.contains("\"ready\""), "{out}");

    drop(agent);
    let out = pm(
        &["check", "health", "--admin", admin, "--timeout", "1s"],
        &[],
        1,
    )
    .await;
    assert!(out.stderr.contains("cannot connect"), "{out}");
}

#[tokio::test]
async fn a_degraded_or_starting_agent_is_not_ready_and_the_reason_is_printed() {
    let app = Router::new()
        .route("/v1/health", get(|| async { r#"{"status":"ok"}"# }))
        .route(
            "/v1/ready",
            get(|| async {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    r#"{"status":"degraded","reason":"own probes fail for 9 of 10 workers"}"#,
                )
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let admin = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });

    pm(&["check", "health", "--admin", &admin], &[], 0).await;
    let out = pm(&["check", "ready", "--admin", &admin], &[], 1).await;
    assert!(
        out.stderr
            .contains("503: degraded (own probes fail for 9 of 10 workers)"),
        "{out}"
    );
}

#[tokio::test]
async fn a_silent_agent_times_out_and_a_bad_admin_url_is_usage() {
    // Accepts connections (the kernel's backlog) but never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let admin = format!("http://{}", listener.local_addr().expect("addr"));
    probemesh_bin(); // built (if needed) before the clock starts
    let start = std::time::Instant::now();
    let out = pm(
        &["check", "ready", "--admin", &admin, "--timeout", "300ms"],
        &[],
        1,
    )
    .await;
    assert!(out.stderr.contains("no answer within"), "{out}");
    assert!(start.elapsed() < scaled(std::time::Duration::from_secs(10)));
    drop(listener);

    pm(
        &["check", "ready", "--admin", "https://127.0.0.1:7801"],
        &[],
        2,
    )
    .await;
    pm(&["check", "sideways"], &[], 2).await;
}
