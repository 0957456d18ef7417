//! The per-worker state machine (SPEC S3, S4, S6, S7, S9) as a user sees it through the
//! admin API, with real probes against test workers and the default thresholds
//! (success 2, failure 3) unless a test says otherwise.

use probemesh_tests::*;
use serde_json::{Value, json};
use std::cell::{Cell, RefCell};
use std::time::Duration;

const STEP: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(5);

fn probe_field(w: &Value, key: &str) -> Value {
    w["probe"][key].clone()
}

/// Drives one worker probe by probe (the test worker holds every probe until the test
/// releases it), so each intermediate state is observed exactly.
#[tokio::test]
async fn lifecycle_step_by_step_with_default_thresholds() {
    let agent = Agent::start(&[]).await;
    let api = agent.api();
    let worker = TestWorker::start(Health::Gated);
    let spec = json!({"url": worker.url(), "health": {"interval": "100ms", "timeout": "59s"}});
    let w = api.register(&spec).await;
    let id = id_of(&w);
    assert_eq!(w["status"], "pending");
    assert_eq!(w["routable"], false);
    assert_eq!(w["health"]["success_threshold"], 2);
    assert_eq!(w["health"]["failure_threshold"], 3);
    assert_eq!(
        w["probe"],
        json!({"consecutive_successes": 0, "consecutive_failures": 0, "pending_probes": 0,
               "last_result": null, "last_probe_at": null, "last_latency_ms": null})
    );
    // The first probe is made at once, not one interval later.
    worker.wait_requests(1, STEP).await;

    // (answers released, then: status, consecutive successes, failures, pending probes, last result)
    type Step = (&'static [u16], &'static str, u64, u64, u64, &'static str);
    let steps: &[Step] = &[
        (&[503], "pending", 0, 1, 1, "http_503"),
        (&[503], "pending", 0, 2, 2, "http_503"),
        (&[200], "pending", 1, 0, 3, "ok"),
        (&[200], "ready", 0, 0, 0, "ok"),
        (&[503, 503], "ready", 0, 2, 0, "http_503"),
        (&[503], "not_ready", 0, 0, 0, "http_503"),
        (&[200], "not_ready", 1, 0, 0, "ok"),
        (&[200], "ready", 0, 0, 0, "ok"),
        (&[503, 503, 503], "not_ready", 0, 0, 0, "http_503"),
        (&[503; 8], "not_ready", 0, 8, 0, "http_503"),
    ];
    let mut sent = 1;
    for (i, (codes, status, cs, cf, pp, last)) in steps.iter().enumerate() {
        worker.allow(codes);
        sent += codes.len() as u64;
        // The next probe only starts after the previous result was applied.
        worker.wait_requests(sent, STEP).await;
        let w = api.worker(&id).await.expect("worker listed");
        let got = (
            w["status"].as_str().unwrap_or("?"),
            probe_field(&w, "consecutive_successes"),
            probe_field(&w, "consecutive_failures"),
            probe_field(&w, "pending_probes"),
            probe_field(&w, "last_result"),
        );
        assert_eq!(
            got,
            (*status, json!(cs), json!(cf), json!(pp), json!(last)),
            "after step {i} ({codes:?}): {w}"
        );
        assert_eq!(w["routable"], *status == "ready", "step {i}: {w}");
        assert!(w["probe"]["last_probe_at"].is_string(), "{w}");
        assert!(w["probe"]["last_latency_ms"].is_number(), "{w}");
    }

    // The 9th further failure while not_ready makes it failed; with --remove-failed (the
    // default) a one-node cluster evicts it at once.
    worker.allow(&[503]);
    wait_gone(api, &id).await;
    assert!(
        !api.workers("").await.iter().any(|w| w["id"] == id.as_str()),
        "evicted worker still listed"
    );
    assert_eq!(
        worker.requests(),
        sent,
        "a failed worker is not probed again"
    );

    let m = api.metrics().await;
    for (series, want) in [
        (
            r#"probemesh_status_transitions_total{from="pending",to="ready"}"#,
            1.0,
        ),
        (
            r#"probemesh_status_transitions_total{from="ready",to="not_ready"}"#,
            2.0,
        ),
        (
            r#"probemesh_status_transitions_total{from="not_ready",to="ready"}"#,
            1.0,
        ),
        (
            r#"probemesh_status_transitions_total{from="not_ready",to="failed"}"#,
            1.0,
        ),
        (r#"probemesh_evictions_total{reason="failed"}"#, 1.0),
        (r#"probemesh_probes_total{result="http_error"}"#, 17.0),
        (r#"probemesh_probes_total{result="ok"}"#, 4.0),
        (r#"probemesh_workers{status="ready"}"#, 0.0),
        (r#"probemesh_workers{status="pending"}"#, 0.0),
        (r#"probemesh_workers{status="not_ready"}"#, 0.0),
        (r#"probemesh_workers{status="failed"}"#, 0.0),
    ] {
        assert_eq!(metric(&m, series), Some(want), "{series} in\n{m}");
    }

    // Registering the evicted URL again creates generation 2, pending.
    let r = api.post("/v1/workers", &spec).await.expect_status(201);
    assert_eq!(r.body["id"], id.as_str());
    assert_eq!(r.body["generation"], 2);
    assert_eq!(r.body["status"], "pending");
    assert_eq!(
        r.header("location"),
        Some(format!("/v1/workers/{id}").as_str())
    );
    worker.set(Health::Healthy);
    let w = wait_status(api, &id, "ready").await;
    assert_eq!(w["generation"], 2);
    let m = api.metrics().await;
    assert_eq!(
        metric(&m, r#"probemesh_workers{status="ready"}"#),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &m,
            r#"probemesh_status_transitions_total{from="pending",to="ready"}"#
        ),
        Some(2.0)
    );
}

/// The same lifecycle with the probes running freely at their interval.
#[tokio::test]
async fn free_running_lifecycle_ends_in_eviction_after_twelve_failures() {
    let agent = Agent::start(&["--probe-interval", "50ms"]).await;
    let api = agent.api();
    let worker = TestWorker::start(Health::Healthy);
    let id = id_of(&api.register(&json!({"url": worker.url()})).await);
    wait_status(api, &id, "ready").await;

    worker.set(Health::Status(503));
    let seen = RefCell::new(vec!["ready".to_string()]);
    eventually("eviction", STEP, POLL, || async {
        match api.worker(&id).await {
            None => Ok(()),
            Some(w) => {
                let s = status_of(&w).to_string();
                let mut seen = seen.borrow_mut();
                if seen.last() != Some(&s) {
                    seen.push(s);
                }
                Err(w.to_string())
            }
        }
    })
    .await;
    let seen = seen.into_inner();
    // Never back to ready, and not_ready on the way (failed is evicted too fast to
    // be sampled reliably; the metrics prove it).
    assert_eq!(seen[..2], ["ready", "not_ready"], "statuses seen: {seen:?}");
    assert!(!seen[1..].contains(&"ready".to_string()), "{seen:?}");
    assert_eq!(
        worker.answers(503),
        12,
        "3 failures to leave ready, 9 more to fail"
    );
    let m = api.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"probemesh_status_transitions_total{from="not_ready",to="failed"}"#
        ),
        Some(1.0),
        "{m}"
    );
}

#[tokio::test]
async fn flapping_worker_fails_after_30_probes_and_is_never_ready() {
    let agent = Agent::start(&["--remove-failed=false", "--probe-interval", "20ms"]).await;
    let api = agent.api();
    let worker = TestWorker::start(Health::Flap);
    let id = id_of(&api.register(&json!({"url": worker.url()})).await);
    let last_pending = Cell::new(0);
    let samples = Cell::new(0u32);
    let w = eventually("flapping worker to fail", STEP, Duration::ZERO, || async {
        let w = api.worker(&id).await.ok_or("worker vanished")?;
        samples.set(samples.get() + 1);
        match status_of(&w) {
            "failed" => Ok(w),
            "pending" => {
                let pp = w["probe"]["pending_probes"].as_u64().unwrap_or(0);
                assert!(pp >= last_pending.get(), "pending_probes went back: {w}");
                assert!(pp < 30, "still pending after 30 probes: {w}");
                last_pending.set(pp);
                Err(w.to_string())
            }
            other => panic!("a flapping worker must never be {other}: {w}"),
        }
    })
    .await;
    let samples = samples.get();
    assert!(samples > 5, "too few samples ({samples}) to mean anything");
    assert_eq!(w["routable"], false);
    assert_eq!(worker.answers(200), 15, "{w}");
    assert_eq!(worker.answers(503), 15, "{w}");
    let m = api.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"probemesh_status_transitions_total{from="pending",to="failed"}"#
        ),
        Some(1.0),
        "{m}"
    );
    assert!(
        metric(
            &m,
            r#"probemesh_status_transitions_total{from="pending",to="ready"}"#
        )
        .is_none_or(|v| v == 0.0),
        "{m}"
    );

    // Failed is terminal: while a control worker gets 10 more probes, this one gets none.
    let control = TestWorker::start(Health::Healthy);
    api.register(&json!({"url": control.url()})).await;
    control.wait_requests(10, STEP).await;
    assert_eq!(worker.requests(), 30, "a failed worker was probed again");
    assert_eq!(status_of(&api.worker(&id).await.unwrap()), "failed");
}

#[tokio::test]
async fn hanging_worker_times_out_and_is_never_ready() {
    let agent = Agent::start(&[]).await;
    let api = agent.api();
    let worker = TestWorker::start(Health::Hang);
    let spec = json!({"url": worker.url(), "health": {"interval": "100ms", "timeout": "150ms"}});
    let id = id_of(&api.register(&spec).await);
    let w = wait_worker(api, &id, "two timeouts", |w| {
        w["probe"]["pending_probes"].as_u64() >= Some(2)
    })
    .await;
    assert_eq!(w["status"], "pending", "{w}");
    assert_eq!(w["probe"]["last_result"], "timeout", "{w}");
    assert_eq!(
        w["probe"]["consecutive_failures"],
        w["probe"]["pending_probes"]
    );
    let m = api.metrics().await;
    assert!(
        metric(&m, r#"probemesh_probes_total{result="timeout"}"#) >= Some(2.0),
        "{m}"
    );
    let latency = w["probe"]["last_latency_ms"].as_f64().unwrap_or(0.0);
    assert!(
        (150.0..2000.0).contains(&latency),
        "latency {latency} ms for a 150ms timeout"
    );
    assert!(worker.requests() >= 2);
    assert_eq!(worker.answers(200), 0);
}

#[tokio::test]
async fn refused_connection_is_a_failure_and_pending_cap_evicts() {
    let agent = Agent::start(&["--probe-interval", "50ms"]).await;
    let api = agent.api();
    let id = id_of(&api.register(&json!({"url": refused_url()})).await);
    let w = wait_worker(api, &id, "a refused probe", |w| {
        w["probe"]["last_result"] == "refused"
    })
    .await;
    assert_eq!(w["status"], "pending", "{w}");
    // 30 failed probes while pending (10 x failure_threshold) fail it, then it is evicted.
    wait_gone(api, &id).await;
    let m = api.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"probemesh_status_transitions_total{from="pending",to="failed"}"#
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, r#"probemesh_probes_total{result="refused"}"#),
        Some(30.0),
        "{m}"
    );
}

#[tokio::test]
async fn http_503_is_reported_with_its_code() {
    let agent = Agent::start(&["--probe-interval", "50ms"]).await;
    let api = agent.api();
    let worker = TestWorker::start(Health::Status(503));
    let id = id_of(&api.register(&json!({"url": worker.url()})).await);
    let w = wait_worker(api, &id, "a 503 probe", |w| {
        w["probe"]["last_result"] == "http_503"
    })
    .await;
    assert_eq!(w["status"], "pending", "{w}");
    assert_eq!(w["routable"], false);
    // Any non-2xx is a failure, redirects included (they are not followed).
    for code in [404u16, 302, 500] {
        worker.set(Health::Status(code));
        let want = format!("http_{code}");
        wait_worker(api, &id, &want, |w| {
            w["probe"]["last_result"] == want.as_str()
        })
        .await;
    }
    worker.set(Health::Status(204));
    let w = wait_status(api, &id, "ready").await;
    assert_eq!(w["probe"]["last_result"], "ok", "204 is a success");
}

#[tokio::test]
async fn probes_request_the_url_plus_the_configured_path() {
    let agent = Agent::start(&["--probe-interval", "50ms", "--probe-path", "/ping"]).await;
    let api = agent.api();
    let worker = TestWorker::start(Health::Healthy);
    let a = id_of(&api.register(&json!({"url": worker.url_with("/a")})).await);
    let b = id_of(
        &api.register(&json!({"url": worker.url_with("/b"), "health": {"path": "/v1/models"}}))
            .await,
    );
    wait_status(api, &a, "ready").await;
    let w = wait_status(api, &b, "ready").await;
    assert_eq!(w["health"]["path"], "/v1/models");
    assert!(worker.requests_to("/a/ping") >= 2);
    assert!(worker.requests_to("/b/v1/models") >= 2);
    assert_eq!(
        worker.requests(),
        worker.requests_to("/a/ping") + worker.requests_to("/b/v1/models"),
        "probes went to other paths"
    );
}

#[tokio::test]
async fn disabled_health_checks_are_ready_at_once_and_never_probed() {
    let agent = Agent::start(&["--probe-interval", "20ms"]).await;
    let api = agent.api();
    let worker = TestWorker::start(Health::Healthy);
    let w = api
        .register(&json!({"url": worker.url_with("/off"), "health": {"disable": true}}))
        .await;
    assert_eq!(w["status"], "ready", "{w}");
    assert_eq!(w["routable"], true);
    assert_eq!(w["health"]["disable"], true);
    // A probed worker on the same server proves probes happen meanwhile.
    api.register(&json!({"url": worker.url_with("/on")})).await;
    worker.wait_requests_to("/on/health", 5, STEP).await;
    assert_eq!(
        worker.requests_to("/off/health"),
        0,
        "disabled worker probed"
    );
    let w = api.worker(&id_of(&w)).await.unwrap();
    assert_eq!(w["status"], "ready");
    assert_eq!(w["probe"]["last_result"], Value::Null);
}

#[tokio::test]
async fn patch_of_metadata_keeps_status_generation_and_status_since() {
    let agent = Agent::start(&["--probe-interval", "50ms"]).await;
    let api = agent.api();
    let worker = TestWorker::start(Health::Healthy);
    let id = id_of(&api.register(&json!({"url": worker.url()})).await);
    let before = wait_status(api, &id, "ready").await;
    let patch = json!({"labels": {"zone": "a"}, "priority": 7, "cost": 2.5, "model_id": "m2"});
    let r = api
        .patch(&format!("/v1/workers/{id}"), &patch)
        .await
        .expect_status(200);
    for w in [r.body, api.worker(&id).await.unwrap()] {
        assert_eq!(w["status"], "ready", "{w}");
        assert_eq!(w["generation"], 1);
        assert_eq!(w["status_since"], before["status_since"]);
        assert_eq!(w["labels"], json!({"zone": "a"}));
        assert_eq!(w["priority"], 7);
        assert_eq!(w["cost"], 2.5);
        assert_eq!(w["model_id"], "m2");
    }
}

#[tokio::test]
async fn patch_disabling_health_checks_makes_a_pending_worker_ready() {
    let agent = Agent::start(&["--probe-interval", "20ms"]).await;
    let api = agent.api();
    let worker = TestWorker::start(Health::Status(503));
    let id = id_of(&api.register(&json!({"url": worker.url_with("/w")})).await);
    wait_worker(api, &id, "a failed probe", |w| {
        w["probe"]["pending_probes"].as_u64() >= Some(1)
    })
    .await;
    let r = api
        .patch(
            &format!("/v1/workers/{id}"),
            &json!({"health": {"disable": true}}),
        )
        .await
        .expect_status(200);
    assert_eq!(r.body["status"], "ready", "{}", r.text);
    assert_eq!(r.body["routable"], true);
    assert_eq!(r.body["generation"], 1);
    // Probes stop (one may have been in flight).
    let after_patch = worker.requests_to("/w/health");
    api.register(&json!({"url": worker.url_with("/control")}))
        .await;
    worker.wait_requests_to("/control/health", 5, STEP).await;
    assert!(worker.requests_to("/w/health") <= after_patch + 1);
    assert_eq!(status_of(&api.worker(&id).await.unwrap()), "ready");
}

#[tokio::test]
async fn remove_failed_false_keeps_a_failed_worker_listed() {
    let agent = Agent::start(&["--remove-failed=false", "--probe-interval", "20ms"]).await;
    let api = agent.api();
    let id = id_of(&api.register(&json!({"url": refused_url()})).await);
    let w = wait_status(api, &id, "failed").await;
    assert_eq!(w["routable"], false);
    let failed = api.workers("?status=failed").await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["id"], id.as_str());
    // Still there while a control worker is probed 5 more times.
    let control = TestWorker::start(Health::Healthy);
    api.register(&json!({"url": control.url()})).await;
    control.wait_requests(5, STEP).await;
    assert_eq!(status_of(&api.worker(&id).await.unwrap()), "failed");
    let m = api.metrics().await;
    assert_eq!(
        metric(&m, r#"probemesh_workers{status="failed"}"#),
        Some(1.0)
    );
    assert!(
        metric(&m, r#"probemesh_evictions_total{reason="failed"}"#).is_none_or(|v| v == 0.0),
        "{m}"
    );
}

#[tokio::test]
async fn patch_of_the_interval_reschedules_the_next_probe() {
    let agent = Agent::start(&[]).await;
    let api = agent.api();
    let worker = TestWorker::start(Health::Healthy);
    let spec = json!({"url": worker.url(), "health": {"interval": "1h"}});
    let id = id_of(&api.register(&spec).await);
    // The first probe runs at once; the next would be an hour later.
    worker.wait_requests(1, STEP).await;
    let w = api
        .patch(
            &format!("/v1/workers/{id}"),
            &json!({"health": {"interval": "100ms"}}),
        )
        .await
        .expect_status(200);
    assert_eq!(w.body["health"]["interval"], "100ms");
    let w = wait_status(api, &id, "ready").await;
    assert_eq!(w["generation"], 1);
}

#[tokio::test]
async fn patch_that_changes_nothing_writes_nothing() {
    let agent = Agent::start(&[]).await;
    let api = agent.api();
    let spec = json!({"url": refused_url(), "priority": 5, "health": {"disable": true}});
    let id = id_of(&api.register(&spec).await);
    let path = format!("/v1/workers/{id}");
    let before = api.get(&path).await.expect_status(200);
    let commits = metric(&api.metrics().await, "probemesh_store_commits_total");
    for patch in [json!({}), json!({"priority": 5}), json!({"health": {}})] {
        let r = api.patch(&path, &patch).await.expect_status(200);
        assert_eq!(r.index(), before.index(), "{patch} changed the view");
        assert_eq!(r.body["priority"], 5);
    }
    assert_eq!(
        metric(&api.metrics().await, "probemesh_store_commits_total"),
        commits,
        "a no-op PATCH wrote to disk"
    );
}
