//! Real agents on loopback forming a cluster (SPEC S1, S2, S5, S10): import as
//! pending, verification by every node, membership, CA isolation, garbage packets,
//! restart on the same address.

use probemesh_tests::{
    Agent, Cluster, Health, TestWorker, alive_members, eventually, id_of, status_of, wait_status,
    wait_worker,
};
use serde_json::json;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_registered_on_one_node_is_pending_elsewhere_until_each_node_verifies_it() {
    let cluster = Cluster::start(4, &[]).await;
    // Unhealthy at first: every node must import it as pending and keep it there.
    let worker = TestWorker::start(Health::Status(503));
    let w = cluster.agents[0]
        .api()
        .register(&json!({"url": worker.url()}))
        .await;
    let id = id_of(&w);
    for a in &cluster.agents[1..] {
        let seen = wait_worker(a.api(), &id, "imported", |_| true).await;
        assert_eq!(seen["origin"], "peer");
        assert_eq!(seen["owner"], "node-0");
        assert_eq!(status_of(&seen), "pending");
    }
    // Let every node probe the sick worker a few times: nobody may call it ready.
    for a in &cluster.agents {
        let path = format!("/health/{}", a.node_id());
        worker.wait_requests_to(&path, 3, LONG).await;
        assert_eq!(status_of(&a.api().worker(&id).await.unwrap()), "pending");
    }
    // Healthy now: each node promotes it on its own probes.
    worker.set(Health::Healthy);
    for a in &cluster.agents {
        wait_status(a.api(), &id, "ready").await;
        let path = format!("/health/{}", a.node_id());
        assert!(
            worker.requests_to(&path) >= 2,
            "{} never probed the worker itself",
            a.node_id()
        );
    }
    // Every node shows the whole matrix (S5).
    let one = cluster.agents[2].api().worker(&id).await.unwrap();
    eventually("views of all 4 nodes", LONG, POLL, || {
        let api = cluster.agents[2].api().clone();
        let id = id.clone();
        async move {
            let w = api.worker(&id).await.unwrap_or_default();
            let views = w["views"].as_object().cloned().unwrap_or_default();
            if views.len() == 4 && views.values().all(|v| v["status"] == "ready") {
                Ok(())
            } else {
                Err(w["views"].to_string())
            }
        }
    })
    .await;
    assert_eq!(one["generation"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_converges_and_the_cli_shows_it() {
    let cluster = Cluster::start(5, &[]).await;
    for a in &cluster.agents {
        let m = a.api().get("/v1/members").await.body;
        assert_eq!(alive_members(&m), 5);
        assert_eq!(m["node_id"], a.node_id());
        let selfs: Vec<_> = m["members"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["is_self"] == true)
            .collect();
        assert_eq!(selfs.len(), 1);
        assert_eq!(selfs[0]["node_id"], a.node_id());
    }
    let out =
        probemesh_tests::run_probemesh(&["members", "--admin", cluster.agents[3].url()]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    for i in 0..5 {
        assert!(out.stdout.contains(&format!("node-{i}")), "{}", out.stdout);
    }
    assert!(out.stdout.contains("node-3 (self)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_foreign_ca_can_neither_read_nor_change_cluster_state() {
    let cluster = Cluster::start(2, &[]).await;
    // The intruder makes its own CA (no TLS flags) and seeds the cluster.
    let port = probemesh_tests::free_udp_port();
    let intruder = Agent::builder()
        .node_id("intruder")
        .args(&[
            "--gossip-listen",
            &format!("127.0.0.1:{port}"),
            "--seeds",
            &format!("127.0.0.1:{}", cluster.gossip_ports[0]),
            "--gossip-interval",
            "100ms",
        ])
        .start()
        .await;
    let evil = TestWorker::start(Health::Healthy);
    let good = TestWorker::start(Health::Healthy);
    let evil_id = id_of(&intruder.api().register(&json!({"url": evil.url()})).await);
    let good_id = id_of(
        &cluster.agents[0]
            .api()
            .register(&json!({"url": good.url()}))
            .await,
    );
    wait_worker(cluster.agents[1].api(), &good_id, "imported", |_| true).await;
    // Give the intruder many gossip rounds.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for a in &cluster.agents {
        assert!(
            a.api().worker(&evil_id).await.is_none(),
            "intruder changed state on {}",
            a.node_id()
        );
        let m = a.api().get("/v1/members").await.body;
        assert!(
            !m.to_string().contains("intruder"),
            "intruder became a member: {m}"
        );
    }
    assert!(
        intruder.api().worker(&good_id).await.is_none(),
        "intruder read cluster state"
    );
    assert_eq!(
        alive_members(&intruder.api().get("/v1/members").await.body),
        1
    );
    let metrics = cluster.agents[0].api().metrics().await;
    let refused = probemesh_tests::metric(&metrics, "probemesh_gossip_handshake_failures_total")
        .unwrap_or(0.0);
    assert!(refused > 0.0, "refused handshakes are counted:\n{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_udp_on_the_gossip_port_does_no_harm() {
    let cluster = Cluster::start(2, &[]).await;
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = format!("127.0.0.1:{}", cluster.gossip_ports[0]);
    let mut x = 0x9e37_79b9u32;
    for len in [0usize, 1, 5, 40, 1200, 1350, 4000, 9000] {
        for first in [0x00u8, 0x40, 0xc0, 0xff] {
            let mut buf = vec![0u8; len];
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *b = x as u8;
            }
            if let Some(b) = buf.first_mut() {
                *b = first;
            }
            let _ = sock.send_to(&buf, &target);
        }
    }
    let worker = TestWorker::start(Health::Healthy);
    let id = id_of(
        &cluster.agents[1]
            .api()
            .register(&json!({"url": worker.url()}))
            .await,
    );
    wait_status(cluster.agents[0].api(), &id, "ready").await;
    assert_eq!(cluster.agents[0].api().get("/v1/health").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_and_restarted_on_the_same_address_rejoins() {
    let mut cluster = Cluster::start(3, &[]).await;
    let worker = TestWorker::start(Health::Healthy);
    let id = id_of(
        &cluster.agents[2]
            .api()
            .register(&json!({"url": worker.url()}))
            .await,
    );
    wait_status(cluster.agents[0].api(), &id, "ready").await;
    cluster.agents[2].kill9();
    cluster.agents[2].restart().await;
    let restarted = Instant::now();
    // The restarted node is heard again quickly: a new registration made there reaches
    // the others.
    let other = TestWorker::start(Health::Healthy);
    let id2 = id_of(
        &cluster.agents[2]
            .api()
            .register(&json!({"url": other.url()}))
            .await,
    );
    for a in &cluster.agents[..2] {
        wait_worker(a.api(), &id2, "learned from the restarted node", |_| true).await;
    }
    let heard = restarted.elapsed();
    eprintln!("restarted node heard again after {heard:?}");
    assert!(heard < Duration::from_secs(10), "took {heard:?}");
    cluster.wait_members(3).await;
    // Its own registration survived the crash and is still known everywhere.
    for a in &cluster.agents {
        wait_status(a.api(), &id, "ready").await;
    }
}
