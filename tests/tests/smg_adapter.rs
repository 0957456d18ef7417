//! The smg adapter against the real gateway (`smg==1.13.0` from PyPI, cached venv) on
//! loopback: the gateway's managed workers follow the agent's ready set; workers the
//! agent did not add are left alone; drift is repaired.

use probemesh_tests::smg::{LlmWorker, Smg, smg_bin};
use probemesh_tests::{
    Agent, eventually, free_port, gateway_workers, get_json, id_of, require, wait_status,
};
use serde_json::json;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(30);

async fn smg_urls(smg: &Smg) -> Vec<(String, bool)> {
    gateway_workers(&smg.url)
        .await
        .unwrap_or_default()
        .iter()
        .filter(|w| w["status"] != "draining")
        .map(|w| {
            (
                w["url"].as_str().unwrap_or("").to_string(),
                w["labels"]["probemesh.managed"].is_string(),
            )
        })
        .collect()
}

async fn wait_smg(smg: &Smg, what: &str, pred: impl Fn(&[(String, bool)]) -> bool) {
    eventually(what, LONG, Duration::from_millis(100), || async {
        let urls = smg_urls(smg).await;
        if pred(&urls) {
            Ok(())
        } else {
            Err(format!("{urls:?}"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_follows_the_ready_set_and_keeps_foreign_workers() {
    let need = format!("smg {}", probemesh_tests::smg::SMG_VERSION);
    if require::ok(smg_bin(), &need).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let smg = Smg::start(&[], "127.0.0.1", port, &[], &dir.path().join("smg.log"));
    smg.wait_up(async |u| get_json(u).await).await;

    let w1 = LlmWorker::start();
    let foreign = LlmWorker::start();
    let w1_url = format!("http://127.0.0.1:{}", w1.port);
    let foreign_url = format!("http://127.0.0.1:{}", foreign.port);
    // A worker somebody added to the gateway by hand.
    let c = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = c
        .post(format!("{}/workers", smg.url))
        .json(&json!({"url": foreign_url}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());

    let agent = Agent::start(&["--probe-interval", "100ms", "--smg-url", &smg.url]).await;
    let id = id_of(
        &agent
            .api()
            .register(&json!({"url": w1_url, "model_id": "fake-model", "labels": {"zone": "a"}}))
            .await,
    );
    wait_status(agent.api(), &id, "ready").await;
    wait_smg(&smg, "W1 added to smg, managed", |ws| {
        ws.iter().any(|(u, m)| u == &w1_url && *m)
    })
    .await;
    let listed = get_json(&format!("{}/workers", smg.url)).await.unwrap();
    let w = listed["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["url"] == w1_url.as_str())
        .unwrap()
        .clone();
    assert_eq!(w["labels"]["zone"], "a", "labels carried over: {w}");

    // W1 leaves ready: removed from the gateway; the foreign worker stays.
    w1.set_healthy(false);
    wait_status(agent.api(), &id, "not_ready").await;
    wait_smg(&smg, "W1 removed", |ws| {
        !ws.iter().any(|(u, _)| u == &w1_url)
    })
    .await;
    assert!(
        smg_urls(&smg)
            .await
            .iter()
            .any(|(u, m)| u == &foreign_url && !*m),
        "foreign worker touched"
    );

    // Back to ready: added again.
    w1.set_healthy(true);
    wait_status(agent.api(), &id, "ready").await;
    wait_smg(&smg, "W1 back", |ws| ws.iter().any(|(u, _)| u == &w1_url)).await;

    // Drift: somebody deletes our worker from the gateway; reconciliation puts it back.
    let listed = get_json(&format!("{}/workers", smg.url)).await.unwrap();
    let smg_id = listed["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["url"] == w1_url.as_str())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    c.delete(format!("{}/workers/{smg_id}", smg.url))
        .send()
        .await
        .unwrap();
    wait_smg(&smg, "W1 repaired after a manual delete", |ws| {
        ws.iter().any(|(u, _)| u == &w1_url)
    })
    .await;

    // Deleted in probemesh: removed from the gateway.
    agent.api().delete(&format!("/v1/workers/{id}")).await;
    wait_smg(&smg, "W1 removed after DELETE", |ws| {
        !ws.iter().any(|(u, _)| u == &w1_url)
    })
    .await;
    let metrics = agent.api().metrics().await;
    assert!(
        probemesh_tests::metric(
            &metrics,
            "probemesh_smg_operations_total{op=\"add\",result=\"ok\"}"
        )
        .unwrap_or(0.0)
            >= 2.0,
        "{metrics}"
    );
}
