//! Cluster-wide lifecycle with real agents on loopback (SPEC S6, S7, S8): death
//! eviction, delete anywhere, owner death past the grace period, restarts with and
//! without the data directory.

use probemesh_tests::{
    Agent, Cluster, Health, TestWorker, eventually, id_of, member_args, status_of, wait_gone,
    wait_status, wait_worker,
};
use serde_json::json;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_dies_is_evicted_on_every_node_and_stays_evicted() {
    let cluster = Cluster::start(3, &[]).await;
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
    worker.set(Health::Status(503));
    for a in &cluster.agents {
        eventually(&format!("{} evicts", a.node_id()), LONG, POLL, || {
            let api = a.api().clone();
            let id = id.clone();
            async move {
                match api.worker(&id).await {
                    None => Ok(()),
                    Some(w) => Err(w["status"].to_string()),
                }
            }
        })
        .await;
    }
    let evictions: f64 = probemesh_tests::metric(
        &cluster.agents[0].api().metrics().await,
        "probemesh_evictions_total{reason=\"failed\"}",
    )
    .unwrap_or(0.0);
    let others: f64 = {
        let mut sum = 0.0;
        for a in &cluster.agents[1..] {
            sum += probemesh_tests::metric(
                &a.api().metrics().await,
                "probemesh_evictions_total{reason=\"failed\"}",
            )
            .unwrap_or(0.0);
        }
        sum
    };
    assert!(
        evictions + others >= 1.0,
        "some node wrote the failure tombstone"
    );
    // The worker recovers, but the tombstoned generation never comes back by itself.
    worker.set(Health::Healthy);
    tokio::time::sleep(Duration::from_secs(1)).await;
    for a in &cluster.agents {
        assert!(
            a.api().worker(&id).await.is_none(),
            "{} resurrected it",
            a.node_id()
        );
    }
    // Registering it again is a new generation, pending then ready everywhere.
    let again = cluster.agents[1]
        .api()
        .register(&json!({"url": worker.url()}))
        .await;
    assert_eq!(again["generation"], 2);
    for a in &cluster.agents {
        let w = wait_status(a.api(), &id, "ready").await;
        assert_eq!(w["generation"], 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_on_any_node_removes_the_worker_everywhere_even_where_ready() {
    let cluster = Cluster::start(3, &[]).await;
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
    let reply = cluster.agents[2]
        .api()
        .delete(&format!("/v1/workers/{id}"))
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.body["tombstoned"], true);
    for a in &cluster.agents {
        wait_gone(a.api(), &id).await;
    }
    // The owner does not bring it back.
    tokio::time::sleep(Duration::from_millis(800)).await;
    for a in &cluster.agents {
        assert!(a.api().worker(&id).await.is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_outlives_its_owner_and_reaches_a_node_that_joins_later() {
    let mut cluster = Cluster::start(3, &["--dead-node-grace-period", "2s"]).await;
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
    cluster.agents[0].kill9();
    // Past detection and the grace period, the survivors still route to it.
    eventually("owner declared dead", LONG, POLL, || {
        let api = cluster.agents[1].api().clone();
        async move {
            let m = api.get("/v1/members").await.body;
            let dead = m["members"].as_array().is_some_and(|ms| {
                ms.iter()
                    .all(|x| x["node_id"] != "node-0" || x["state"] == "dead")
            });
            if dead { Ok(()) } else { Err(m.to_string()) }
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for a in &cluster.agents[1..] {
        assert_eq!(
            status_of(&a.api().worker(&id).await.expect("kept")),
            "ready"
        );
    }
    // A node that joins now learns the registration from the adopter.
    let n = cluster.add_seeded(1).await;
    let w = wait_status(cluster.agents[n].api(), &id, "ready").await;
    assert_eq!(w["owner"], "node-0");
    assert_eq!(w["origin"], "peer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_with_its_data_dir_keeps_registrations_and_tombstones() {
    let mut cluster = Cluster::start(2, &[]).await;
    let kept = TestWorker::start(Health::Healthy);
    let deleted = TestWorker::start(Health::Healthy);
    let kept_id = id_of(
        &cluster.agents[1]
            .api()
            .register(&json!({"url": kept.url()}))
            .await,
    );
    let deleted_id = id_of(
        &cluster.agents[1]
            .api()
            .register(&json!({"url": deleted.url()}))
            .await,
    );
    wait_status(cluster.agents[0].api(), &deleted_id, "ready").await;
    cluster.agents[0]
        .api()
        .delete(&format!("/v1/workers/{deleted_id}"))
        .await;
    wait_gone(cluster.agents[1].api(), &deleted_id).await;
    cluster.agents[1].kill9();
    cluster.agents[1].restart().await;
    let w = wait_status(cluster.agents[1].api(), &kept_id, "ready").await;
    assert_eq!(w["origin"], "local");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        cluster.agents[1].api().worker(&deleted_id).await.is_none(),
        "tombstone lost on restart"
    );
    assert!(cluster.agents[0].api().worker(&deleted_id).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_with_an_empty_data_dir_learns_everything_from_its_peers() {
    let mut cluster = Cluster::start(3, &[]).await;
    let a = TestWorker::start(Health::Healthy);
    let b = TestWorker::start(Health::Healthy);
    let a_id = id_of(
        &cluster.agents[0]
            .api()
            .register(&json!({"url": a.url()}))
            .await,
    );
    let b_id = id_of(
        &cluster.agents[2]
            .api()
            .register(&json!({"url": b.url()}))
            .await,
    );
    wait_status(cluster.agents[1].api(), &a_id, "ready").await;
    wait_status(cluster.agents[1].api(), &b_id, "ready").await;
    cluster.agents[2]
        .api()
        .delete(&format!("/v1/workers/{a_id}"))
        .await;
    wait_gone(cluster.agents[1].api(), &a_id).await;
    // Replace node-1 by a fresh process with the same name and address but no state.
    cluster.agents[1].kill9();
    let port = cluster.gossip_ports[1];
    let args = member_args(
        "node-1",
        port,
        Some(cluster.gossip_ports[0]),
        cluster.ca.flags("node-1"),
        &[],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let empty = tempfile::tempdir().unwrap();
    let fresh = Agent::builder()
        .node_id("node-1")
        .data_dir(&empty.path().join("data"))
        .args(&args)
        .start()
        .await;
    let w = wait_status(fresh.api(), &b_id, "ready").await;
    assert_eq!(w["origin"], "peer");
    wait_worker(fresh.api(), &b_id, "owner node-2", |w| {
        w["owner"] == "node-2"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        fresh.api().worker(&a_id).await.is_none(),
        "a deleted worker came back on a fresh node"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_survives_its_owner_gone_for_good_and_every_other_node_restarting() {
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
    cluster.agents[0].kill9();
    // Both survivors crash together and come back: nobody is left to gossip it to them.
    cluster.agents[1].kill9();
    cluster.agents[2].kill9();
    cluster.agents[1].restart().await;
    cluster.agents[2].restart().await;
    for a in &cluster.agents[1..] {
        let w = wait_status(a.api(), &id, "ready").await;
        assert_eq!(w["owner"], "node-0");
    }
}
