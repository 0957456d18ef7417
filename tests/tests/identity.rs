//! A node's id is the node name in its certificate, and one live process holds it
//! (SPEC S10), with the real binary: a `--node-id` that is not the certificate's name
//! stops start-up; without `--node-id` the certificate's name is used; a second process
//! with a certificate for a name already live in the cluster is refused (not ready,
//! with the reason) while the first keeps its place in `/v1/members` and its views.

use probemesh_tests::agent::AgentBuilder;
use probemesh_tests::binary::probemesh_command;
use probemesh_tests::{
    Cluster, ClusterCa, Health, SOON, TestWorker, eventually, free_port, free_udp_port, id_of,
    member_args, run_probemesh, wait_status,
};
use serde_json::{Value, json};
use std::time::Duration;

const POLL: Duration = Duration::from_millis(50);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_id_other_than_the_certificates_name_stops_start_up() {
    let ca = ClusterCa::new();
    let tls = ca.flags("beta");
    let data = tempfile::tempdir().unwrap();
    let admin = format!("127.0.0.1:{}", free_port());
    let gossip = format!("127.0.0.1:{}", free_udp_port());
    let mut args = vec![
        "agent",
        "--node-id",
        "alpha",
        "--data-dir",
        data.path().to_str().unwrap(),
        "--admin-listen",
        &admin,
        "--gossip-listen",
        &gossip,
    ];
    args.extend(tls.iter().map(String::as_str));
    let out = run_probemesh(&args).await;
    assert_eq!(out.code, Some(2), "{out}");
    for needle in ["--node-id", "`alpha`", "`beta`", "beta.pem"] {
        assert!(out.stderr.contains(needle), "missing {needle}:\n{out}");
    }
    // Nothing was opened or created before the refusal.
    assert!(
        std::fs::read_dir(data.path()).unwrap().next().is_none(),
        "the data directory was touched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_node_id_the_certificates_name_is_the_node_id() {
    let ca = ClusterCa::new();
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = probemesh_command()
        .arg("agent")
        .arg("--data-dir")
        .arg(data.path())
        .arg("--admin-listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--gossip-listen")
        .arg(format!("127.0.0.1:{}", free_udp_port()))
        .args(ca.flags("gw-7"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let api = probemesh_tests::Api::new(format!("http://127.0.0.1:{port}"));
    let health = eventually("the agent answers", SOON, POLL, || async {
        match api.try_send(reqwest::Method::GET, "/v1/ready", None).await {
            Ok(r) if r.status == 200 => Ok(r.body),
            Ok(r) => Err(r.text),
            Err(e) => Err(e),
        }
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(health["node_id"], "gw-7");
}

/// The `/v1/members` row of `node` in `members`.
fn member<'a>(members: &'a Value, node: &str) -> Vec<&'a Value> {
    members["members"]
        .as_array()
        .map(|m| m.iter().filter(|x| x["node_id"] == node).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_with_a_live_name_is_refused_and_the_first_keeps_its_place() {
    let cluster = Cluster::start(2, &[]).await;
    let (seed, first) = (&cluster.agents[0], &cluster.agents[1]);
    let worker = TestWorker::start(Health::Healthy);
    let w = seed.api().register(&json!({"url": worker.url()})).await;
    let id = id_of(&w);
    wait_status(first.api(), &id, "ready").await;
    let first_addr = format!("127.0.0.1:{}", cluster.gossip_ports[1]);
    let settled = |api: probemesh_tests::Api, id: String, first_addr: String| async move {
        let m = api.get("/v1/members").await.body;
        let rows = member(&m, "node-1");
        let w = api.worker(&id).await.unwrap_or_default();
        match rows.as_slice() {
            [row]
                if row["gossip_addr"] == first_addr.as_str()
                    && row["state"] == "alive"
                    && w["views"]["node-1"]["status"] == "ready" =>
            {
                Ok(())
            }
            _ => Err(format!("members {m}; views {}", w["views"])),
        }
    };
    eventually("node-0 sees node-1 ready", SOON, POLL, || {
        settled(seed.api().clone(), id.clone(), first_addr.clone())
    })
    .await;

    // Another host with the same name (or a stolen certificate): the same certificate,
    // another gossip address, seeded with node-0.
    let port = free_udp_port();
    let args = member_args(
        "node-1",
        port,
        Some(cluster.gossip_ports[0]),
        cluster.ca.flags("node-1"),
        &[],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let second = AgentBuilder::default()
        .node_id("node-1")
        .args(&args)
        .start_unready()
        .await;
    let refused = eventually("the second process refuses itself", SOON, POLL, || async {
        let r = second.api().get("/v1/ready").await;
        if r.status == 503 && r.body["status"] == "refused" {
            Ok(r.body)
        } else {
            Err(format!("HTTP {}: {}", r.status, r.text))
        }
    })
    .await;
    let reason = refused["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("`node-1`") && reason.contains(&first_addr),
        "{reason}"
    );
    assert!(
        second.log().contains("node refused"),
        "no error in the log:\n{}",
        second.log()
    );
    // The second process published nothing and is gone from gossip; for several
    // seconds the first keeps its row, its views and its readiness everywhere.
    for _ in 0..6 {
        settled(seed.api().clone(), id.clone(), first_addr.clone())
            .await
            .unwrap_or_else(|e| panic!("node-0 lost node-1: {e}"));
        let own = first.api().get("/v1/members").await.body;
        let rows = member(&own, "node-1");
        assert!(
            rows.len() == 1 && rows[0]["is_self"] == true && rows[0]["gossip_addr"] == first_addr,
            "node-1's own row: {own}"
        );
        assert_eq!(first.api().get("/v1/ready").await.status, 200);
        let w = first.api().worker(&id).await.unwrap();
        assert_eq!(w["views"]["node-1"]["status"], "ready", "{w}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        first
            .log()
            .contains("another live process uses this node's id"),
        "the first process did not report the rival:\n{}",
        first.log()
    );
    let after = second.api().get("/v1/ready").await;
    assert_eq!(after.body["status"], "refused", "refused for good");
}
