//! The other routers of smg's lineage, from PyPI at pinned versions (`vllm-router`,
//! `sglang-router`, cached venv, see `probemesh_tests::routers`), against the push
//! adapter (`--smg-url`) and the manifest (`--smg-manifest`), on loopback. Each row of
//! the compatibility table in docs/smg.md is asserted here and printed as a `ROW` line
//! (`--nocapture` shows them).

use probemesh_tests::routers::{self, Kind, Launch, Router};
use probemesh_tests::smg::{FAKE_MODEL, LlmWorker};
use probemesh_tests::{Agent, client, eventually, id_of, require, wait_status};
use serde_json::{Value, json};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);
const MANAGED: &str = "probemesh.managed";

fn available() -> bool {
    let need = format!(
        "vllm-router {} and sglang-router {} (PyPI)",
        routers::VLLM_ROUTER_VERSION,
        routers::SGLANG_ROUTER_VERSION
    );
    require::ok(routers::install(), &need).is_some()
}

fn row(kind: Kind, mode: &str, result: &str) {
    println!(
        "ROW | {} | {} | {mode} | {result}",
        kind.name(),
        kind.version()
    );
}

/// URLs the router lists (draining ones left out, as the adapter does).
async fn urls(router: &Router) -> Vec<String> {
    router
        .workers()
        .await
        .iter()
        .filter(|w| w["status"] != "draining")
        .filter_map(|w| w["url"].as_str().map(str::to_string))
        .collect()
}

async fn wait_router(router: &Router, what: &str, pred: impl Fn(&[String]) -> bool) {
    eventually(
        &format!("{}: {what}", router.kind.label()),
        LONG,
        POLL,
        || async {
            let u = urls(router).await;
            if pred(&u) {
                Ok(())
            } else {
                Err(format!("{u:?}"))
            }
        },
    )
    .await;
}

async fn entry(router: &Router, url: &str) -> Value {
    router
        .workers()
        .await
        .into_iter()
        .find(|w| w["url"] == url)
        .unwrap_or_else(|| panic!("{url} not listed by {}", router.kind.label()))
}

/// Deletes `url` from the router by hand, the way each router names its workers.
async fn delete_by_hand(router: &Router, url: &str) {
    let e = entry(router, url).await;
    let id = match e["id"].as_str() {
        Some(id) => id.to_string(),
        // vllm-router: the id is the URL, percent-encoded.
        None => url.replace(':', "%3A").replace('/', "%2F"),
    };
    let r = client(Duration::from_secs(10))
        .delete(format!("{}/workers/{id}", router.url))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "manual delete: {}", r.status());
}

fn metric(text: &str, series: &str) -> f64 {
    probemesh_tests::metric(text, series).unwrap_or(0.0)
}

/// The push adapter keeps the router's managed workers equal to the ready set: a
/// worker in, repaired after a manual delete, out when deleted in probemesh, out when
/// it leaves `ready`, out when it left `ready` while the agent was down; a worker added
/// by hand is never touched.
async fn push_adapter_follows_the_ready_set(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let router = Router::start(kind, &[], &dir.path().join("router.log")).await;
    let foreign = LlmWorker::start();
    let foreign_url = format!("http://127.0.0.1:{}", foreign.port);
    let r = client(Duration::from_secs(30))
        .post(format!("{}/workers", router.url))
        .json(&json!({"url": foreign_url}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "manual add: {}", r.status());
    wait_router(&router, "the foreign worker is listed", |u| {
        u.contains(&foreign_url)
    })
    .await;

    let mut agent = Agent::start(&[
        "--probe-interval",
        "100ms",
        "--remove-failed",
        "false",
        "--smg-url",
        &router.url,
    ])
    .await;
    let ws: Vec<LlmWorker> = (0..3).map(|_| LlmWorker::start()).collect();
    let url: Vec<String> = ws
        .iter()
        .map(|w| format!("http://127.0.0.1:{}", w.port))
        .collect();
    let mut id = Vec::new();
    for u in &url {
        let spec =
            json!({"url": u, "model_id": FAKE_MODEL, "labels": {"zone": "a"}, "priority": 7});
        id.push(id_of(&agent.api().register(&spec).await));
    }
    for i in &id {
        wait_status(agent.api(), i, "ready").await;
    }
    wait_router(&router, "the three ready workers are added", |u| {
        url.iter().all(|x| u.contains(x))
    })
    .await;

    // What the router keeps of the body.
    let e = entry(&router, &url[0]).await;
    match kind {
        Kind::SglangRouter => {
            assert!(e["id"].is_string() && e.get("labels").is_none(), "{e}");
            assert_eq!(e["metadata"][MANAGED], agent.node_id(), "{e}");
            assert_eq!(e["metadata"]["zone"], "a", "{e}");
            assert_eq!(
                (&e["model_id"], &e["priority"]),
                (&json!(FAKE_MODEL), &json!(7))
            );
        }
        Kind::VllmRouter => {
            assert!(e.get("id").is_none(), "vllm-router lists no ids: {e}");
            assert!(
                e.get("labels").is_none() && e.get("metadata").is_none(),
                "{e}"
            );
            assert_eq!(e["model_id"], "unknown", "model_id is not kept: {e}");
            assert_eq!(e["priority"], 50, "priority is not kept: {e}");
        }
    }

    // Drift: W0 deleted from the router by hand comes back.
    delete_by_hand(&router, &url[0]).await;
    wait_router(&router, "W0 gone after the manual delete", |u| {
        !u.contains(&url[0])
    })
    .await;
    wait_router(&router, "W0 repaired", |u| u.contains(&url[0])).await;

    // Deleted in probemesh: out of the router.
    agent
        .api()
        .delete(&format!("/v1/workers/{}", id[0]))
        .await
        .expect_status(200);
    wait_router(&router, "W0 removed after its DELETE", |u| {
        !u.contains(&url[0])
    })
    .await;

    // W1 leaves ready: out of the router.
    ws[1].set_healthy(false);
    wait_status(agent.api(), &id[1], "not_ready").await;
    wait_router(&router, "W1 removed once not ready", |u| {
        !u.contains(&url[1])
    })
    .await;
    let m = agent.api().metrics().await;
    let ok = |op: &str| {
        metric(
            &m,
            &format!("probemesh_smg_operations_total{{op=\"{op}\",result=\"ok\"}}"),
        )
    };
    let err = |op: &str| {
        metric(
            &m,
            &format!("probemesh_smg_operations_total{{op=\"{op}\",result=\"error\"}}"),
        )
    };
    assert!(ok("add") >= 4.0 && ok("remove") >= 2.0, "{m}");
    assert_eq!((err("add"), err("remove")), (0.0, 0.0), "{m}");

    // W2 leaves ready while the agent is down: the restarted agent (which added
    // nothing yet) still takes it out.
    agent.kill9();
    ws[2].set_healthy(false);
    assert!(
        urls(&router).await.contains(&url[2]),
        "W2 is still in the router while the agent is down"
    );
    agent.restart().await;
    wait_router(&router, "W2 removed by the restarted agent", |u| {
        !u.contains(&url[2])
    })
    .await;
    assert_ne!(
        agent
            .api()
            .worker(&id[2])
            .await
            .map(|w| w["status"].clone()),
        Some(json!("ready"))
    );

    let u = urls(&router).await;
    assert_eq!(
        u,
        vec![foreign_url.clone()],
        "only the foreign worker is left"
    );
    let f = entry(&router, &foreign_url).await;
    assert!(
        !f["labels"][MANAGED].is_string() && !f["metadata"][MANAGED].is_string(),
        "{f}"
    );
    row(
        kind,
        "push (--smg-url)",
        "works: in, repaired, out on DELETE, out on not_ready, out after an agent restart; foreign worker kept",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sglang_router_follows_the_ready_set_through_the_push_adapter() {
    if available() {
        push_adapter_follows_the_ready_set(Kind::SglangRouter).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vllm_router_follows_the_ready_set_through_the_push_adapter() {
    if available() {
        push_adapter_follows_the_ready_set(Kind::VllmRouter).await;
    }
}

/// Neither router has smg 1.13's file discovery: `--discovery-provider` is refused
/// at start, so `--smg-manifest` has no reader there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neither_router_offers_file_discovery() {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("workers.json");
    std::fs::write(&manifest, "{\"version\": 1, \"workers\": []}\n").unwrap();
    let path = manifest.to_string_lossy().into_owned();
    for kind in [Kind::VllmRouter, Kind::SglangRouter] {
        let flags = ["--discovery-provider", "file", "--discovery-file", &path];
        match routers::launch_with(kind, &flags, Duration::from_secs(30)).unwrap() {
            Launch::Exited { code, output } => {
                assert_eq!(code, Some(2), "{}: {output}", kind.label());
                assert!(
                    output.contains("unrecognized arguments: --discovery-provider"),
                    "{}: {output}",
                    kind.label()
                );
            }
            Launch::Running => panic!(
                "{} accepted --discovery-provider file: the table in docs/smg.md is out of date",
                kind.label()
            ),
        }
        row(
            kind,
            "file discovery (--smg-manifest)",
            "not offered: `unrecognized arguments: --discovery-provider`",
        );
    }
}

/// sglang-router's `smg` script is its own 0.3 gateway (the program smg was before its
/// rename), not smg 1.13: the same console script as `sglang-router`.
#[test]
fn sglang_routers_smg_script_is_its_own_gateway_not_smg_1_13() {
    if !available() {
        return;
    }
    let bin = routers::venv_dir().join("bin");
    let want = format!("sgl-model-gateway {}", routers::SGLANG_ROUTER_VERSION);
    for script in ["smg", "sglang-router"] {
        let out = std::process::Command::new(bin.join(script))
            .arg("--version")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.trim() == want,
            "{script}: {text}"
        );
    }
    println!("sglang-router's smg script: {want}");
}
