//! The OpenAPI document against the live agent that serves it: schemathesis (PyPI)
//! with every check on, and the event payloads against their documented schemas.
//!
//! schemathesis runs against one agent with an admin token (so the `ignored_auth`
//! check has something to check) and `--allow-worker-cidr 127.0.0.0/8` (so that no
//! probe of a generated worker leaves the machine). The hooks in
//! `tests/fixtures/schemathesis_hooks.py` keep generated values inside what that agent
//! may do; they never change the document. `/v1/events` is left out of the run: it is
//! a stream that never ends, which a request-response checker cannot read to the end;
//! the second test checks its payloads.

use probemesh_tests::binary::workspace_root;
use probemesh_tests::{Agent, Health, TestWorker, id_of, pytools, require, scaled};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const TOKEN: &str = "schemathesis-token";

/// Examples per operation and phase: about a thousand requests in all, 15-40 s here.
const MAX_EXAMPLES: &str = "60";

/// The lines of schemathesis's output from its SUMMARY heading on.
fn summary(out: &str) -> String {
    let start = out
        .find("SUMMARY")
        .map_or(0, |i| out[..i].rfind('\n').map_or(0, |n| n + 1));
    out[start..].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    if !require::tool("python3", "install schemathesis from PyPI into a venv") {
        return;
    }
    let Some(st) = require::ok(
        tokio::task::spawn_blocking(pytools::schemathesis)
            .await
            .expect("installer task"),
        "schemathesis (PyPI)",
    ) else {
        return;
    };
    let agent = Agent::builder()
        .args(&[
            "--admin-token",
            TOKEN,
            "--allow-worker-cidr",
            "127.0.0.0/8",
            "--probe-interval",
            "200ms",
        ])
        .start()
        .await;
    // Something to list, view and change: a ready worker and a pending one.
    let healthy = TestWorker::start(Health::Healthy);
    let sick = TestWorker::start(Health::Status(503));
    let api = agent.api().with_token(TOKEN);
    for w in [&healthy, &sick] {
        api.register(&json!({"url": w.url(), "model_id": "m"}))
            .await;
    }
    let scratch = agent.scratch().join("schemathesis");
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    let hooks = workspace_root().join("tests/fixtures/schemathesis_hooks.py");
    let mut cmd = tokio::process::Command::new(&st);
    cmd.current_dir(&scratch)
        .env("SCHEMATHESIS_HOOKS", &hooks)
        .env("NO_COLOR", "1")
        .args([
            "run",
            &format!("{}/v1/openapi.json", agent.url()),
            "--url",
            agent.url(),
            "--header",
            &format!("Authorization: Bearer {TOKEN}"),
            "--exclude-path",
            "/v1/events",
            "--max-examples",
            MAX_EXAMPLES,
            "--request-timeout",
            "10",
            "--no-color",
        ])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    if let Ok(seed) = std::env::var("PROBEMESH_SCHEMATHESIS_SEED") {
        cmd.args(["--seed", &seed]);
    }
    let started = Instant::now();
    let out = tokio::time::timeout(scaled(Duration::from_secs(150)), cmd.output())
        .await
        .expect("schemathesis finished within its time bound")
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!(
        "schemathesis {} against {} ({:.1} s):\n{}",
        pytools::SCHEMATHESIS_VERSION,
        agent.url(),
        started.elapsed().as_secs_f64(),
        summary(&stdout)
    );
    assert!(
        out.status.success() && stdout.contains("No issues found"),
        "schemathesis found problems ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Stateful") && stdout.contains("Fuzzing") && stdout.contains("Coverage"),
        "a phase did not run:\n{stdout}"
    );
    // The agent took all of it and still serves.
    assert_eq!(agent.api().get("/v1/ready").await.status, 200);
    assert!(!agent.log().contains("panicked"), "{}", agent.log());
}

/// The field names of schema `name` in the document, and which are required.
fn schema_fields(doc: &Value, name: &str) -> (Vec<String>, Vec<String>) {
    let s = &doc["components"]["schemas"][name];
    let mut props: Vec<String> = s["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("no schema {name}"))
        .keys()
        .cloned()
        .collect();
    props.sort();
    let mut req: Vec<String> = s["required"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    req.sort();
    (props, req)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_document_is_the_docs_copy_and_events_carry_the_documented_fields() {
    let agent = Agent::start(&["--probe-interval", "100ms"]).await;
    let served = agent.api().get("/v1/openapi.json").await.expect_status(200);
    assert_eq!(served.body["openapi"], "3.1.0");
    let copy = std::fs::read_to_string(workspace_root().join("docs/openapi.json"))
        .expect("docs/openapi.json");
    assert_eq!(
        served.text, copy,
        "docs/openapi.json is not what the agent serves"
    );
    let doc = served.body;

    // Collect the raw event stream while a worker enters, turns ready and is deleted.
    let url = format!("{}/v1/events", agent.url());
    let mut resp = reqwest::get(&url).await.expect("open /v1/events");
    let worker = TestWorker::start(Health::Healthy);
    let id = id_of(&agent.api().register(&json!({"url": worker.url()})).await);
    probemesh_tests::wait_status(agent.api(), &id, "ready").await;
    agent
        .api()
        .delete(&format!("/v1/workers/{id}"))
        .await
        .expect_status(200);
    // Read until the `removed` event arrives (deadline scaled by the patience).
    let deadline = Instant::now() + scaled(Duration::from_secs(10));
    let mut raw = String::new();
    let events: Vec<(String, Value)> = loop {
        if let Ok(Ok(Some(bytes))) =
            tokio::time::timeout(Duration::from_millis(200), resp.chunk()).await
        {
            raw.push_str(&String::from_utf8_lossy(&bytes));
        }
        let events: Vec<(String, Value)> = raw
            .split("\n\n")
            .filter_map(|block| {
                let kind = block.lines().find_map(|l| l.strip_prefix("event: "))?;
                let data = block.lines().find_map(|l| l.strip_prefix("data: "))?;
                Some((kind.to_string(), serde_json::from_str(data).ok()?))
            })
            .collect();
        if events.iter().any(|(k, _)| k == "removed") {
            break events;
        }
        assert!(
            Instant::now() < deadline,
            "no removed event on /v1/events; got:\n{raw}"
        );
    };
    for (kind, schema) in [
        ("transition", "TransitionEvent"),
        ("removed", "RemovedEvent"),
    ] {
        let (props, required) = schema_fields(&doc, schema);
        let of_kind: Vec<_> = events.iter().filter(|(k, _)| k == kind).collect();
        assert!(!of_kind.is_empty(), "no {kind} event in {events:?}");
        for (_, data) in of_kind {
            let mut keys: Vec<String> = data.as_object().expect("object").keys().cloned().collect();
            keys.sort();
            assert_eq!(
                keys, props,
                "a {kind} event's fields are not {schema}'s: {data}"
            );
            for r in &required {
                assert!(
                    !data[r].is_null() || r == "from",
                    "{kind}: {r} is null in {data}"
                );
            }
        }
    }
}
