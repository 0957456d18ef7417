//! Crash safety under kill -9 at random moments, and rolling restarts under a steady
//! stream of blocking queries (docs/reliability.md).

use probemesh_tests::{Agent, Api, Cluster, Health, TestWorker, id_of, wait_status};
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_mutation_survives_kill_9_at_random_moments() {
    let mut agent = Agent::start(&["--probe-interval", "1h"]).await;
    let pid = Arc::new(AtomicU32::new(agent.pid().unwrap()));
    let done = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(AtomicUsize::new(0));
    // The killer: SIGKILL at a random moment every 200-800 ms, whatever is in flight.
    let killer = {
        let (pid, done, kills) = (Arc::clone(&pid), Arc::clone(&done), Arc::clone(&kills));
        tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(42);
            while !done.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(rng.random_range(200..800))).await;
                let p = pid.load(Ordering::SeqCst);
                if p != 0 && !done.load(Ordering::SeqCst) {
                    let _ = std::process::Command::new("kill")
                        .args(["-9", &p.to_string()])
                        .status();
                    kills.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    // url -> Some(true) registered / Some(false) deleted, by the last acknowledged
    // mutation; None when a later mutation's fate is unknown (no answer).
    let mut truth: BTreeMap<String, Option<bool>> = BTreeMap::new();
    let mut live: Vec<String> = Vec::new();
    let (mut tried, mut acked, mut unknown) = (0, 0, 0);
    let mut next = 0u32;
    while tried < 1000 {
        tried += 1;
        let delete = !live.is_empty() && rng.random_bool(0.3);
        let (url, result) = if delete {
            let url = live.swap_remove(rng.random_range(0..live.len()));
            let id = probemesh_tests::worker_id_for(&url);
            let r = agent
                .api()
                .try_send(reqwest::Method::DELETE, &format!("/v1/workers/{id}"), None)
                .await;
            (url, r.map(|r| r.status))
        } else {
            next += 1;
            let url = format!("http://10.9.{}.{}:8000", next / 250, next % 250 + 1);
            let body =
                probemesh_tests::Body::json(&json!({"url": url, "health": {"disable": true}}));
            let r = agent
                .api()
                .try_send(reqwest::Method::POST, "/v1/workers", Some(body))
                .await;
            (url, r.map(|r| r.status))
        };
        match result {
            Ok(s) if (200..300).contains(&s) => {
                acked += 1;
                truth.insert(url.clone(), Some(!delete));
                if !delete {
                    live.push(url);
                }
            }
            Ok(404) if delete => {
                // Already gone: the delete's effect holds.
                truth.insert(url, Some(false));
            }
            _ => {
                unknown += 1;
                truth.insert(url.clone(), None);
                if !delete {
                    // It may exist; keep it eligible for a later delete.
                    live.push(url);
                }
                pid.store(0, Ordering::SeqCst);
                agent.restart().await;
                pid.store(agent.pid().unwrap(), Ordering::SeqCst);
            }
        }
    }
    done.store(true, Ordering::SeqCst);
    killer.await.unwrap();
    agent.restart().await;
    let listed: BTreeSet<String> = agent
        .api()
        .workers("")
        .await
        .iter()
        .filter_map(|w| w["url"].as_str().map(str::to_string))
        .collect();
    let mut checked = 0;
    for (url, fate) in &truth {
        if let Some(present) = fate {
            checked += 1;
            assert_eq!(
                listed.contains(url),
                *present,
                "{url}: acknowledged {} but found {}",
                if *present { "registered" } else { "deleted" },
                listed.contains(url)
            );
        }
    }
    eprintln!(
        "crash safety: {tried} mutations tried, {acked} acknowledged, {unknown} without an answer, {} kills, {checked} outcomes checked after the last restart",
        kills.load(Ordering::SeqCst)
    );
    assert!(
        kills.load(Ordering::SeqCst) >= 5,
        "the agent was hardly ever killed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_never_drops_a_ready_worker_elsewhere_nor_revives_a_deleted_one() {
    let mut cluster = Cluster::start(5, &[]).await;
    let workers: Vec<TestWorker> = (0..3).map(|_| TestWorker::start(Health::Healthy)).collect();
    let mut ids = Vec::new();
    for w in &workers {
        ids.push(id_of(
            &cluster.agents[0]
                .api()
                .register(&json!({"url": w.url()}))
                .await,
        ));
    }
    let dead = TestWorker::start(Health::Healthy);
    let dead_id = id_of(
        &cluster.agents[1]
            .api()
            .register(&json!({"url": dead.url()}))
            .await,
    );
    for a in &cluster.agents {
        for id in &ids {
            wait_status(a.api(), id, "ready").await;
        }
    }
    cluster.agents[2]
        .api()
        .delete(&format!("/v1/workers/{dead_id}"))
        .await;
    for a in &cluster.agents {
        probemesh_tests::wait_gone(a.api(), &dead_id).await;
    }
    // One blocking-query client per node, checking every answer.
    let restarting = Arc::new(AtomicUsize::new(usize::MAX));
    let stop = Arc::new(AtomicBool::new(false));
    let violations = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let answers = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for (i, a) in cluster.agents.iter().enumerate() {
        let api: Api = a.api().clone();
        let (restarting, stop, violations, answers, ids, dead_id) = (
            Arc::clone(&restarting),
            Arc::clone(&stop),
            Arc::clone(&violations),
            Arc::clone(&answers),
            ids.clone(),
            dead_id.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut index = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let r = api
                    .try_send(
                        reqwest::Method::GET,
                        &format!("/v1/workers?status=ready&index={index}&wait=250ms"),
                        None,
                    )
                    .await;
                let Ok(r) = r else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                if restarting.load(Ordering::SeqCst) == i {
                    index = 0;
                    continue;
                }
                answers.fetch_add(1, Ordering::SeqCst);
                index = r.index().unwrap_or(0);
                let ready: BTreeSet<&str> = r.body["workers"]
                    .as_array()
                    .map(|ws| ws.iter().filter_map(|w| w["id"].as_str()).collect())
                    .unwrap_or_default();
                for id in &ids {
                    if !ready.contains(id.as_str()) {
                        violations
                            .lock()
                            .unwrap()
                            .push(format!("node {i} dropped ready worker {id}"));
                    }
                }
                if ready.contains(dead_id.as_str()) {
                    violations
                        .lock()
                        .unwrap()
                        .push(format!("node {i} revived deleted worker {dead_id}"));
                }
            }
        }));
    }
    for i in 0..5 {
        restarting.store(i, Ordering::SeqCst);
        let status = cluster.agents[i]
            .sigterm(Duration::from_secs(10))
            .await
            .expect("graceful exit");
        assert!(status.success());
        cluster.agents[i].restart().await;
        for id in &ids {
            wait_status(cluster.agents[i].api(), id, "ready").await;
        }
        restarting.store(usize::MAX, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        let _ = c.await;
    }
    let v = violations.lock().unwrap().clone();
    eprintln!(
        "rolling restart of 5 agents: {} blocking-query answers checked, {} violations",
        answers.load(Ordering::SeqCst),
        v.len()
    );
    assert!(v.is_empty(), "{v:?}");
    for a in &cluster.agents {
        assert!(a.api().worker(&dead_id).await.is_none());
    }
}
