//! Non-default thresholds (SPEC S3): per-worker overrides and node-wide flags move every
//! limit of the state machine, including the pending cap (10 x failure threshold) and
//! the not_ready give-up (3 x failure threshold).

use probemesh_tests::*;
use serde_json::json;
use std::time::Duration;

const STEP: Duration = Duration::from_secs(10);

#[tokio::test]
async fn per_worker_thresholds_drive_every_transition() {
    let agent = Agent::start(&["--remove-failed=false"]).await;
    let api = agent.api();
    let worker = TestWorker::start(Health::Gated);
    let spec = json!({"url": worker.url(), "health": {"interval": "100ms", "timeout": "59s",
                      "success_threshold": 3, "failure_threshold": 2}});
    let w = api.register(&spec).await;
    let id = id_of(&w);
    assert_eq!(w["health"]["success_threshold"], 3);
    assert_eq!(w["health"]["failure_threshold"], 2);
    worker.wait_requests(1, STEP).await;
    // (answers, status, consecutive successes, consecutive failures)
    let steps: &[(&[u16], &str, u64, u64)] = &[
        (&[200, 200], "pending", 2, 0),
        (&[200], "ready", 0, 0),
        (&[503], "ready", 0, 1),
        (&[503], "not_ready", 0, 0),
        (&[503; 5], "not_ready", 0, 5),
    ];
    let mut sent = 1;
    for (codes, status, cs, cf) in steps {
        worker.allow(codes);
        sent += codes.len() as u64;
        worker.wait_requests(sent, STEP).await;
        let w = api.worker(&id).await.expect("listed");
        assert_eq!(
            (
                status_of(&w),
                w["probe"]["consecutive_successes"].as_u64(),
                w["probe"]["consecutive_failures"].as_u64()
            ),
            (*status, Some(*cs), Some(*cf)),
            "after {codes:?}: {w}"
        );
    }
    // The 6th further failure (3 x 2) gives up.
    worker.allow(&[503]);
    let w = wait_status(api, &id, "failed").await;
    assert_eq!(w["routable"], false);
    assert_eq!(worker.requests(), sent, "a failed worker was probed again");
}

#[tokio::test]
async fn node_wide_failure_threshold_scales_the_pending_cap() {
    let agent = Agent::start(&[
        "--remove-failed=false",
        "--probe-interval",
        "20ms",
        "--failure-threshold",
        "1",
    ])
    .await;
    let api = agent.api();
    let worker = TestWorker::start(Health::Status(503));
    let w = api.register(&json!({"url": worker.url()})).await;
    assert_eq!(w["health"]["failure_threshold"], 1);
    let id = id_of(&w);
    wait_status(api, &id, "failed").await;
    assert_eq!(
        worker.answers(503),
        10,
        "pending cap is 10 x failure_threshold"
    );
}
