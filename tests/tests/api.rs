//! The admin HTTP API (SPEC section 4): exact shapes, identity and idempotency, filters,
//! blocking queries, deletion, health endpoints and the admin token.

use probemesh_tests::*;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Percent-encodes a query value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && (b[10] == b'T' || b[10] == b't')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && (s.ends_with('Z') || s.ends_with('z') || s[19..].contains(['+', '-']))
}

fn ids(workers: &[Value]) -> BTreeSet<String> {
    workers.iter().map(id_of).collect()
}

#[tokio::test]
async fn post_answers_201_with_location_and_every_field() {
    let agent = Agent::builder().node_id("api-node").start().await;
    let api = agent.api();
    // A worker that never answers keeps the probe counters at zero while we look.
    let worker = TestWorker::start(Health::Hang);
    let r = api
        .post("/v1/workers", &json!({"url": worker.url()}))
        .await
        .expect_status(201);
    let w = &r.body;
    let id = id_of(w);
    assert_eq!(id.len(), 16, "{id}");
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    assert_eq!(
        r.header("location"),
        Some(format!("/v1/workers/{id}").as_str())
    );
    assert!(r.index().is_some(), "no X-Probemesh-Index: {:?}", r.headers);
    // Every field of SPEC section 4 (later versions may add more).
    let missing: Vec<_> = set(&[
        "id",
        "url",
        "model_id",
        "worker_type",
        "labels",
        "priority",
        "cost",
        "bootstrap_port",
        "health",
        "status",
        "routable",
        "origin",
        "owner",
        "generation",
        "status_since",
        "probe",
    ])
    .difference(&keys(w))
    .cloned()
    .collect();
    assert!(missing.is_empty(), "fields missing: {missing:?} in {w}");
    assert_eq!(w["url"], worker.url());
    assert_eq!(w["model_id"], Value::Null);
    assert_eq!(w["worker_type"], "regular");
    assert_eq!(w["labels"], json!({}));
    assert_eq!(w["priority"], 50);
    assert_eq!(w["cost"], 1.0);
    assert_eq!(w["bootstrap_port"], Value::Null);
    assert_eq!(
        w["health"],
        json!({"path": "/health", "interval": "5s", "timeout": "2s",
               "success_threshold": 2, "failure_threshold": 3, "disable": false, "kind": "http"})
    );
    assert_eq!(w["status"], "pending");
    assert_eq!(w["routable"], false);
    assert_eq!(w["origin"], "local");
    assert_eq!(w["owner"], "api-node");
    assert_eq!(w["generation"], 1);
    let since = w["status_since"].as_str().unwrap_or("");
    assert!(is_rfc3339(since), "status_since {since:?}");
    assert_eq!(
        w["probe"],
        json!({"consecutive_successes": 0, "consecutive_failures": 0, "pending_probes": 0,
               "last_result": null, "last_probe_at": null, "last_latency_ms": null})
    );
    // The Location answers.
    let loc = r.header("location").unwrap().to_string();
    assert_eq!(
        api.get(&loc).await.expect_status(200).body["id"],
        id.as_str()
    );

    // Every field given is kept, normalized where needed.
    let full = json!({
        "url": format!("{}/full/", worker.url()), "model_id": "llama-3-8b",
        "worker_type": "prefill", "labels": {"a": "1", "b": "2"}, "priority": 7, "cost": 2.5,
        "bootstrap_port": 9000,
        "health": {"path": "/v1/models", "interval": "500ms", "timeout": "1s",
                   "success_threshold": 1, "failure_threshold": 4, "disable": true}
    });
    let w = api.register(&full).await;
    assert_eq!(w["url"], format!("{}/full", worker.url()));
    assert_eq!(w["model_id"], "llama-3-8b");
    assert_eq!(w["worker_type"], "prefill");
    assert_eq!(w["labels"], json!({"a": "1", "b": "2"}));
    assert_eq!(
        (w["priority"].clone(), w["cost"].clone()),
        (json!(7), json!(2.5))
    );
    assert_eq!(w["bootstrap_port"], 9000);
    assert_eq!(
        w["health"],
        json!({"path": "/v1/models", "interval": "500ms", "timeout": "1s",
               "success_threshold": 1, "failure_threshold": 4, "disable": true, "kind": "http"})
    );
    assert_eq!(
        (w["status"].clone(), w["routable"].clone()),
        (json!("ready"), json!(true))
    );
}

#[tokio::test]
async fn same_spec_again_is_200_and_another_spec_is_409() {
    let agent = Agent::start(&[]).await;
    let api = agent.api();
    let url = refused_url();
    let spec = json!({"url": url, "model_id": "m", "health": {"disable": true}});
    let first = api.register(&spec).await;
    let commits = |m: &str| metric(m, "probemesh_store_commits_total");
    let before = commits(&api.metrics().await);
    // The same spec, written differently: explicit defaults, nulls, another URL spelling.
    let same = json!({"url": format!("{}/", url.replace("http://", "HTTP://")), "model_id": "m",
                      "priority": 50, "cost": 1.0, "worker_type": "regular", "labels": {},
                      "bootstrap_port": null, "health": {"disable": true, "interval": null}});
    for body in [&spec, &same] {
        let again = api.post("/v1/workers", body).await.expect_status(200);
        assert_eq!(again.body["id"], first["id"]);
        assert_eq!(again.body["generation"], 1);
        assert_eq!(again.body["status"], "ready");
        assert_eq!(again.header("location"), None, "Location on a 200");
    }
    assert_eq!(
        commits(&api.metrics().await),
        before,
        "an idempotent POST wrote to disk"
    );

    for other in [
        json!({"url": url, "model_id": "m", "priority": 9, "health": {"disable": true}}),
        json!({"url": url, "health": {"disable": true}}),
        // An explicit health override is part of the spec even when it equals the default.
        json!({"url": url, "model_id": "m", "health": {"disable": true, "interval": "5s"}}),
    ] {
        let r = api.post("/v1/workers", &other).await.expect_status(409);
        assert_eq!(
            r.error_code(),
            Some("WORKER_CONFLICT"),
            "{other}: {}",
            r.text
        );
    }
    let w = api.worker(&id_of(&first)).await.unwrap();
    assert_eq!(w["priority"], 50, "a refused spec changed the worker");
    assert_eq!(api.workers("").await.len(), 1);
}

#[tokio::test]
async fn equivalent_urls_are_one_worker_with_one_id_on_every_node() {
    let a = Agent::start(&[]).await;
    let b = Agent::start(&[]).await;
    // Health checks off: these URLs are never contacted.
    let off = json!({"disable": true});
    let w = a
        .api()
        .register(&json!({"url": "HTTP://LocalHost:80/", "health": off}))
        .await;
    assert_eq!(w["url"], "http://localhost:80");
    let id = id_of(&w);
    for same in [
        "http://localhost",
        "http://LOCALHOST:80",
        "http://localhost:80/",
    ] {
        let r = a
            .api()
            .post("/v1/workers", &json!({"url": same, "health": off}))
            .await
            .expect_status(200);
        assert_eq!(r.body["id"], id.as_str(), "{same}");
    }
    let https = a
        .api()
        .register(&json!({"url": "https://localhost/", "health": off}))
        .await;
    assert_eq!(https["url"], "https://localhost:443");
    assert_ne!(id_of(&https), id);
    let path = a
        .api()
        .register(&json!({"url": "http://localhost/v1/", "health": off}))
        .await;
    assert_eq!(path["url"], "http://localhost:80/v1");
    assert_ne!(id_of(&path), id);
    // The id is derived from the URL alone: another node derives the same one.
    let on_b = b
        .api()
        .register(&json!({"url": "http://localhost", "health": off}))
        .await;
    assert_eq!(id_of(&on_b), id);
    assert_eq!(a.api().workers("").await.len(), 3);
}

#[tokio::test]
async fn concurrent_posts_of_one_url_register_it_once() {
    let agent = Agent::start(&[]).await;
    let url = refused_url();
    let spec = json!({"url": url, "health": {"disable": true}});
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (api, spec) = (agent.api().clone(), spec.clone());
            tokio::spawn(async move { api.post("/v1/workers", &spec).await })
        })
        .collect();
    let mut statuses = Vec::new();
    let mut ids_seen = BTreeSet::new();
    for t in tasks {
        let r = t.await.expect("task");
        statuses.push(r.status);
        ids_seen.insert(id_of(&r.body));
        assert_eq!(r.body["generation"], 1, "{}", r.text);
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 200, 200, 200, 201]);
    assert_eq!(ids_seen.len(), 1);
    // Many different URLs at once: all registered, each once.
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let api = agent.api().clone();
            let spec = json!({"url": format!("{url}/p{i}"), "health": {"disable": true}});
            tokio::spawn(async move { api.post("/v1/workers", &spec).await.status })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.expect("task"), 201);
    }
    assert_eq!(agent.api().workers("").await.len(), 21);
}

#[tokio::test]
async fn get_one_shows_this_nodes_view() {
    let agent = Agent::start(&[]).await;
    let api = agent.api();
    let w = api
        .register(&json!({"url": refused_url(), "health": {"disable": true}}))
        .await;
    let r = api
        .get(&format!("/v1/workers/{}", id_of(&w)))
        .await
        .expect_status(200);
    assert!(r.index().is_some());
    let views = r.body["views"]
        .as_object()
        .unwrap_or_else(|| panic!("no views: {}", r.text));
    assert_eq!(views.len(), 1, "{}", r.text);
    let mine = &views[agent.node_id()];
    assert_eq!(mine["status"], "ready", "{}", r.text);
    assert!(is_rfc3339(mine["updated_at"].as_str().unwrap_or("")));
    assert_eq!(r.body["status"], "ready");
    assert_eq!(r.body["id"], w["id"]);
}

#[tokio::test]
async fn list_filters_by_status_model_and_url() {
    let agent = Agent::start(&[]).await;
    let api = agent.api();
    let hang = TestWorker::start(Health::Hang);
    let off = json!({"disable": true});
    let a = id_of(
        &api.register(&json!({"url": hang.url_with("/a"), "model_id": "m1", "health": off}))
            .await,
    );
    let b = id_of(
        &api.register(&json!({"url": hang.url_with("/b"), "model_id": "m2", "health": off}))
            .await,
    );
    let c = id_of(
        &api.register(&json!({"url": hang.url_with("/c"), "model_id": "m1",
                              "health": {"timeout": "59s"}}))
            .await,
    );
    let all = api.get("/v1/workers").await.expect_status(200);
    assert_eq!(all.body["node_id"], agent.node_id());
    assert_eq!(
        all.body["index"].as_u64(),
        all.index(),
        "body index = header"
    );
    let s = |v: &[&String]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    for (query, want) in [
        ("", s(&[&a, &b, &c])),
        ("?status=ready", s(&[&a, &b])),
        ("?status=pending", s(&[&c])),
        ("?status=ready,pending", s(&[&a, &b, &c])),
        ("?status=not_ready,failed", s(&[])),
        ("?model=m1", s(&[&a, &c])),
        ("?model=m2", s(&[&b])),
        ("?model=nope", s(&[])),
        ("?status=ready&model=m1", s(&[&a])),
        // A repeated parameter: the last one counts.
        ("?model=m1&model=m2", s(&[&b])),
    ] {
        assert_eq!(ids(&api.workers(query).await), want, "query {query:?}");
    }
    let url_query = format!(
        "?url={}",
        enc(&hang.url_with("/b/").replace("http", "HTTP"))
    );
    assert_eq!(ids(&api.workers(&url_query).await), s(&[&b]));
}

/// A gateway that sends `status=` (an empty list, e.g. from an empty setting) must not
/// be told silently that there are no workers: either the filter is refused or ignored.
#[tokio::test]
async fn an_empty_status_filter_does_not_hide_every_worker() {
    let agent = Agent::start(&[]).await;
    let api = agent.api();
    api.register(&json!({"url": refused_url(), "health": {"disable": true}}))
        .await;
    for query in ["?status=", "?status=,"] {
        let r = api.get(&format!("/v1/workers{query}")).await;
        let listed = r.body["workers"].as_array().map(Vec::len);
        assert!(
            (r.status == 400 && r.error_code() == Some("INVALID_QUERY"))
                || (r.status == 200 && listed == Some(1)),
            "GET /v1/workers{query} answered {} with {listed:?} workers: {}",
            r.status,
            r.text
        );
    }
}

#[tokio::test]
async fn every_answer_carries_the_index_and_blocking_queries_wake_on_change() {
    let agent = Agent::start(&[]).await;
    let api = agent.api();
    let off = json!({"disable": true});
    let list = api.get("/v1/workers").await.expect_status(200);
    let i0 = list.index().expect("index on GET /v1/workers");
    let post = api
        .post("/v1/workers", &json!({"url": refused_url(), "health": off}))
        .await
        .expect_status(201);
    let i1 = post.index().expect("index on POST");
    assert!(i1 > i0, "{i1} > {i0}");
    let id = id_of(&post.body);
    let get = api
        .get(&format!("/v1/workers/{id}"))
        .await
        .expect_status(200);
    assert_eq!(get.index(), Some(i1));
    let patch = api
        .patch(&format!("/v1/workers/{id}"), &json!({"priority": 1}))
        .await
        .expect_status(200);
    let i2 = patch.index().expect("index on PATCH");
    assert!(i2 > i1);
    let del = api
        .delete(&format!("/v1/workers/{id}"))
        .await
        .expect_status(200);
    let i3 = del.index().expect("index on DELETE");
    assert!(i3 > i2);

    // Nothing changes: the query holds for its wait, then answers with the same index.
    let t = Instant::now();
    let r = api
        .get(&format!("/v1/workers?index={i3}&wait=300ms"))
        .await
        .expect_status(200);
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(r.index(), Some(i3));

    // A change wakes a waiting query at once.
    let waiter = {
        let api = api.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            let r = api.get(&format!("/v1/workers?index={i3}&wait=60s")).await;
            (r, t.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiter.is_finished(),
        "blocking query answered without a change"
    );
    let w = api
        .register(&json!({"url": refused_url(), "health": off}))
        .await;
    let (r, took) = tokio::time::timeout(scaled(Duration::from_secs(10)), waiter)
        .await
        .expect("blocking query did not wake up")
        .expect("waiter task");
    assert_eq!(r.status, 200);
    assert!(r.index() > Some(i3), "{:?}", r.index());
    assert!(took < Duration::from_secs(30), "{took:?}");
    assert_eq!(
        ids(r.body["workers"].as_array().unwrap()),
        [id_of(&w)].into()
    );
}

#[tokio::test]
async fn delete_tombstones_the_worker() {
    let agent = Agent::start(&[]).await;
    let api = agent.api();
    let id = id_of(
        &api.register(&json!({"url": refused_url(), "health": {"disable": true}}))
            .await,
    );
    let r = api
        .delete(&format!("/v1/workers/{id}"))
        .await
        .expect_status(200);
    assert_eq!(
        r.body,
        json!({"id": id, "generation": 1, "tombstoned": true})
    );
    let r = api
        .get(&format!("/v1/workers/{id}"))
        .await
        .expect_status(404);
    assert_eq!(r.error_code(), Some("WORKER_NOT_FOUND"));
    assert!(api.workers("").await.is_empty());
    let r = api
        .delete(&format!("/v1/workers/{id}"))
        .await
        .expect_status(404);
    assert_eq!(r.error_code(), Some("WORKER_NOT_FOUND"));
}

#[tokio::test]
async fn health_and_ready_answer_with_the_node_id() {
    let agent = Agent::builder().node_id("shape-node").start().await;
    let api = agent.api();
    let h = api.get("/v1/health").await.expect_status(200);
    assert_eq!(h.body["status"], "ok", "{}", h.text);
    assert_eq!(h.body["node_id"], "shape-node");
    assert!(
        h.header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
    );
    let r = api.get("/v1/ready").await.expect_status(200);
    assert_eq!(r.body["node_id"], "shape-node", "{}", r.text);
    let m = api.metrics().await;
    assert!(m.contains("probemesh_build_info"), "{m}");
}

#[tokio::test]
async fn worker_lists_are_gzipped_for_clients_that_accept_it() {
    use std::io::Read;
    let agent = Agent::builder().node_id("gzip-node").start().await;
    let api = agent.api();
    for i in 0..20 {
        api.post(
            "/v1/workers",
            &json!({"url": format!("http://10.9.0.{}:8000", i + 1), "health": {"disable": true}}),
        )
        .await
        .expect_status(201);
    }
    let plain = api.get("/v1/workers?status=ready").await.expect_status(200);
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.header("vary"), Some("accept-encoding"));
    assert_eq!(plain.body["workers"].as_array().map(Vec::len), Some(20));

    let url = format!("{}/v1/workers?status=ready", api.base());
    let resp = reqwest::Client::new()
        .get(&url)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get("content-encoding")
            .and_then(|v| v.to_str().ok()),
        Some("gzip")
    );
    let compressed = resp.bytes().await.unwrap();
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_end(&mut json)
        .expect("the body is gzip");
    assert!(compressed.len() < json.len());
    let decoded: Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(decoded, plain.body, "the gzip body is the same list");
}
