//! Blocking queries at scale: hundreds of waiting clients are all woken by one change,
//! and the index never goes backwards, also across a restart.

use probemesh_tests::{Agent, Health, TestWorker};
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_waiting_clients_all_wake_on_one_change() {
    let agent = Agent::start(&[]).await;
    let index = agent
        .api()
        .get("/v1/workers")
        .await
        .index()
        .expect("index header");
    let mut waiters = Vec::new();
    for _ in 0..300 {
        let api = agent.api().clone();
        waiters.push(tokio::spawn(async move {
            let r = api
                .get(&format!("/v1/workers?index={index}&wait=60s"))
                .await;
            (Instant::now(), r.index(), r.body)
        }));
    }
    // All 300 are parked: none has answered while nothing changes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        waiters.iter().all(|w| !w.is_finished()),
        "a blocking query answered without a change"
    );
    let worker = TestWorker::start(Health::Healthy);
    let changed_at = Instant::now();
    agent
        .api()
        .register(&json!({"url": worker.url(), "health": {"disable": true}}))
        .await;
    let mut slowest = Duration::ZERO;
    for w in waiters {
        let (at, idx, body) = tokio::time::timeout(Duration::from_secs(20), w)
            .await
            .expect("woken")
            .unwrap();
        assert!(idx.unwrap() > index);
        assert_eq!(body["workers"].as_array().unwrap().len(), 1);
        slowest = slowest.max(at.saturating_duration_since(changed_at));
    }
    eprintln!("300 blocking queries answered within {slowest:?} of the change");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_never_goes_backwards_across_a_restart() {
    let mut agent = Agent::start(&[]).await;
    let worker = TestWorker::start(Health::Healthy);
    for i in 0..20 {
        agent
            .api()
            .register(&json!({"url": format!("{}/{i}", worker.url()), "health": {"disable": true}}))
            .await;
    }
    let before = agent.api().get("/v1/workers").await.index().unwrap();
    agent.kill9();
    agent.restart().await;
    let after = agent.api().get("/v1/workers").await.index().unwrap();
    assert!(after > before, "index went from {before} to {after}");
}
