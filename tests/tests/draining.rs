//! Draining (SPEC S14) with real agents on loopback: `DELETE ?drain=` puts the worker
//! into `draining` on every node at once (not routable, still listed, an event), and it
//! is tombstoned everywhere when the period ends, also when the node that started the
//! drain is gone; the CLI's `workers remove --drain`.

use probemesh_tests::{
    Cluster, Health, TestWorker, eventually, id_of, run_probemesh, wait_gone, wait_status,
};
use serde_json::json;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(20);

async fn wait_draining(cluster: &Cluster, id: &str) {
    for a in &cluster.agents {
        eventually(&format!("{} draining", a.node_id()), LONG, POLL, || {
            let api = a.api().clone();
            let id = id.to_string();
            async move {
                match api.worker(&id).await {
                    Some(w) if w["status"] == "draining" && w["routable"] == false => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_reaches_every_node_and_ends_in_a_tombstone_even_without_its_starter() {
    let mut cluster = Cluster::start(3, &[]).await;
    let worker = TestWorker::start(Health::Healthy);
    let id = id_of(
        &cluster.agents[0]
            .api()
            .register(&json!({"url": worker.url()}))
            .await,
    );
    for a in &cluster.agents {
        wait_status(a.api(), &id, "ready").await;
    }
    // Refused before anything changes: too long, malformed, unknown parameter.
    for (q, needle) in [
        ("drain=2h", "longer than the longest drain"),
        ("drain=soon", "is not a duration"),
        ("later=1s", "unknown query parameter"),
    ] {
        let r = cluster.agents[1]
            .api()
            .send(
                reqwest::Method::DELETE,
                &format!("/v1/workers/{id}?{q}"),
                None,
            )
            .await;
        assert_eq!(r.status, 400, "{q}: {}", r.text);
        assert_eq!(r.error_code(), Some("INVALID_QUERY"), "{q}");
        assert!(r.text.contains(needle), "{q}: {}", r.text);
    }
    assert!(cluster.agents[0].api().worker(&id).await.is_some());

    // Drain for 4 s from node 1, then kill node 1: the others still end it.
    let started = Instant::now();
    let r = cluster.agents[1]
        .api()
        .delete(&format!("/v1/workers/{id}?drain=4s"))
        .await
        .expect_status(200)
        .body;
    assert_eq!(r["tombstoned"], false, "{r}");
    assert!(r["drain_ends_at"].is_string(), "{r}");
    wait_draining(&cluster, &id).await;
    let ready = cluster.agents[0].api().workers("?status=ready").await;
    assert!(
        ready.is_empty(),
        "a draining worker is not in the ready set: {ready:?}"
    );
    let probes_before = worker.requests();
    cluster.agents[1].kill9();
    let survivors = [&cluster.agents[0], &cluster.agents[2]];
    // Probes go on while it drains, without changing its status.
    worker.set(Health::Status(503));
    eventually("probes go on while draining", LONG, POLL, || async {
        if worker.requests() > probes_before + 2 {
            Ok(())
        } else {
            Err(format!("{} requests", worker.requests()))
        }
    })
    .await;
    let w = cluster.agents[0]
        .api()
        .worker(&id)
        .await
        .expect("still listed");
    assert_eq!(
        w["status"], "draining",
        "a failing probe does not move it: {w}"
    );
    for a in survivors {
        wait_gone(a.api(), &id).await;
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(4),
        "tombstoned after {took:?}, before the drain ended"
    );
    let t = cluster.agents[2].api().metrics().await;
    let drained = probemesh_tests::metric(&t, "probemesh_evictions_total{reason=\"drained\"}")
        .unwrap_or(0.0)
        + probemesh_tests::metric(
            &cluster.agents[0].api().metrics().await,
            "probemesh_evictions_total{reason=\"drained\"}",
        )
        .unwrap_or(0.0);
    assert!(drained >= 1.0, "a survivor wrote the drain-end tombstone");
    eprintln!(
        "draining: tombstoned everywhere {took:?} after a 4 s drain whose starter was killed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_remove_drain_from_the_cli() {
    let cluster = Cluster::start(1, &[]).await;
    let worker = TestWorker::start(Health::Healthy);
    let api = cluster.agents[0].api();
    let id = id_of(&api.register(&json!({"url": worker.url()})).await);
    wait_status(api, &id, "ready").await;
    let out = run_probemesh(&[
        "workers",
        "remove",
        &id,
        "--drain",
        "2s",
        "--admin",
        api.base(),
    ])
    .await;
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains("draining"), "{out}");
    let w = api.worker(&id).await.expect("listed while draining");
    assert_eq!(w["status"], "draining");
    wait_gone(api, &id).await;
}
