//! Self-fencing on network-namespace hosts (SPEC S12; root only, skipped with a reason
//! otherwise and failed instead under `PROBEMESH_REQUIRE_ROOT_TESTS=1`): three gateway
//! hosts, four workers, one host's routes to the workers dropped. That host fences
//! itself, the others show it degraded and keep every worker ready; after the cut heals
//! it is ready again. Prints the time to fence and to unfence (docs/reliability.md).

use probemesh_tests::ns_cluster::NsCluster;
use probemesh_tests::{eventually, require};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const FAST: [&str; 4] = ["--probe-interval", "200ms", "--probe-timeout", "300ms"];
const WORKERS: usize = 4;

async fn ready_answer(c: &NsCluster, i: usize) -> (u16, Value) {
    match c.apis[i]
        .try_send(reqwest::Method::GET, "/v1/ready", None)
        .await
    {
        Ok(r) => (r.status, r.body),
        Err(e) => (0, json!({"error": e.to_string()})),
    }
}

async fn degraded_as_seen_by(c: &NsCluster, on: usize, node: &str) -> Option<bool> {
    let m = c.apis[on].get("/v1/members").await.body;
    m["members"]
        .as_array()?
        .iter()
        .find(|x| x["node_id"] == node)
        .and_then(|x| x["degraded"].as_bool())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_cut_off_from_every_worker_fences_itself_and_recovers() {
    if !require::netns() {
        return;
    }
    let c = NsCluster::start(3, WORKERS, &FAST).await;
    for j in 0..WORKERS {
        c.apis[j % 3]
            .register(&json!({"url": c.worker_url(j)}))
            .await;
    }
    for j in 0..WORKERS {
        eventually(
            "ready everywhere",
            Duration::from_secs(30),
            Duration::from_millis(100),
            || async {
                let s = c.statuses(&c.worker_url(j)).await;
                if s.iter().all(|x| x.as_deref() == Some("ready")) {
                    Ok(())
                } else {
                    Err(format!("{s:?}"))
                }
            },
        )
        .await;
    }
    for i in 0..3 {
        assert_eq!(
            ready_answer(&c, i).await.0,
            200,
            "a{i} ready before the cut"
        );
    }
    let a2 = c.apis[2].get("/v1/health").await.body["node_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    // a2 loses its routes to every worker.
    for j in 0..WORKERS {
        c.lab.blackhole("a2", &format!("{}/32", c.worker_ip(j)));
    }
    let cut = Instant::now();
    let mut fenced_after = None;
    let mut seen_by_peers_after = None;
    // Sample every 200 ms: the others keep every worker ready and a2 keeps every
    // worker listed, for the whole cut; a2 goes degraded and the others see it.
    while cut.elapsed() < Duration::from_secs(40) {
        for j in 0..WORKERS {
            let s = c.statuses(&c.worker_url(j)).await;
            assert_eq!(s[0].as_deref(), Some("ready"), "worker {j} on a0: {s:?}");
            assert_eq!(s[1].as_deref(), Some("ready"), "worker {j} on a1: {s:?}");
            assert!(s[2].is_some(), "worker {j} evicted on a2: {s:?}");
        }
        if fenced_after.is_none() {
            let (code, body) = ready_answer(&c, 2).await;
            if code == 503 && body["status"] == "degraded" {
                assert!(
                    body["reason"]
                        .as_str()
                        .is_some_and(|r| r.contains("fails 4 of the 4")),
                    "{body}"
                );
                fenced_after = Some(cut.elapsed());
            }
        }
        if seen_by_peers_after.is_none()
            && degraded_as_seen_by(&c, 0, &a2).await == Some(true)
            && degraded_as_seen_by(&c, 1, &a2).await == Some(true)
        {
            seen_by_peers_after = Some(cut.elapsed());
        }
        if fenced_after.is_some()
            && seen_by_peers_after.is_some()
            && cut.elapsed() > Duration::from_secs(20)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let fenced_after = fenced_after.expect("a2 never answered 503 degraded");
    let seen = seen_by_peers_after.expect("a0 and a1 never showed a2 degraded");
    assert_eq!(ready_answer(&c, 0).await.0, 200, "a0 stays ready");
    assert_eq!(ready_answer(&c, 1).await.0, 200, "a1 stays ready");
    assert!(
        c.apis[2]
            .metrics()
            .await
            .contains("probemesh_node_degraded 1"),
        "the degraded gauge"
    );

    // Heal: a2 recovers by itself and lists every worker ready again.
    for j in 0..WORKERS {
        c.lab.unblackhole("a2", &format!("{}/32", c.worker_ip(j)));
    }
    let healed = Instant::now();
    eventually(
        "a2 ready again",
        Duration::from_secs(90),
        Duration::from_millis(200),
        || async {
            match ready_answer(&c, 2).await {
                (200, _) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let unfenced_after = healed.elapsed();
    let ready = c.apis[2].workers("?status=ready").await;
    assert_eq!(
        ready.len(),
        WORKERS,
        "a2 lists every worker ready: {ready:?}"
    );
    eventually(
        "a0 shows a2 no longer degraded",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async {
            match degraded_as_seen_by(&c, 0, &a2).await {
                Some(false) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    eprintln!(
        "self-fencing: a2 degraded {fenced_after:?} after the cut, shown degraded on both peers after {seen:?}; ready again {unfenced_after:?} after healing"
    );
}
