//! Durability (SPEC S7, S8): state survives `kill -9` and restarts, declarative workers
//! are re-asserted, SIGTERM is graceful, and a data directory has one agent at a time.

use probemesh_tests::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

const EXIT: Duration = Duration::from_secs(10);

/// id -> (url, generation, owner) of every worker in the view.
async fn registrations(api: &Api) -> BTreeMap<String, (String, u64, String)> {
    api.workers("")
        .await
        .iter()
        .map(|w| {
            (
                id_of(w),
                (
                    w["url"].as_str().unwrap_or("?").to_string(),
                    w["generation"].as_u64().unwrap_or(0),
                    w["owner"].as_str().unwrap_or("?").to_string(),
                ),
            )
        })
        .collect()
}

/// The registered spec of a worker: everything but this node's status and probes.
fn spec_part(w: &Value) -> Value {
    let mut w = w.clone();
    if let Some(o) = w.as_object_mut() {
        for k in ["status", "routable", "status_since", "probe", "views"] {
            o.remove(k);
        }
    }
    w
}

#[tokio::test]
async fn kill9_keeps_acknowledged_registrations_and_deletions() {
    let worker = TestWorker::start(Health::Healthy);
    let mut agent = Agent::start(&["--probe-interval", "100ms"]).await;
    let api = agent.api().clone();
    let mut urls = Vec::new();
    for i in 0..40 {
        let w = api
            .register(
                &json!({"url": worker.url_with(&format!("/w{i}")), "labels": {"i": i.to_string()}}),
            )
            .await;
        assert_eq!(w["generation"], 1);
        urls.push((id_of(&w), worker.url_with(&format!("/w{i}"))));
    }
    for (id, _) in &urls[..10] {
        api.delete(&format!("/v1/workers/{id}"))
            .await
            .expect_status(200);
    }
    api.patch(
        &format!("/v1/workers/{}", urls[15].0),
        &json!({"labels": {"patched": "yes"}}),
    )
    .await
    .expect_status(200);
    let before = registrations(&api).await;
    assert_eq!(before.len(), 30);

    agent.kill9();
    agent.restart().await;
    let after = registrations(&api).await;
    assert_eq!(after, before, "the view changed across kill -9");
    for (id, _) in &urls[..10] {
        assert!(
            api.worker(id).await.is_none(),
            "deleted worker {id} is back"
        );
    }
    let w = api.worker(&urls[15].0).await.unwrap();
    assert_eq!(w["labels"], json!({"patched": "yes"}), "the PATCH was lost");
    assert_eq!(w["origin"], "local");
    assert_eq!(w["owner"], agent.node_id());
    // Probing resumes after the restart.
    eventually(
        "every worker ready again",
        SOON,
        Duration::from_millis(50),
        || async {
            let ready = api.workers("?status=ready").await.len();
            if ready == 30 {
                Ok(())
            } else {
                Err(format!("{ready} of 30 ready"))
            }
        },
    )
    .await;
    // A deleted URL registered again gets the next generation, also after a restart.
    let again = api.register(&json!({"url": urls[0].1})).await;
    assert_eq!(again["id"], urls[0].0.as_str());
    assert_eq!(again["generation"], 2);
    assert_eq!(again["status"], "pending");
}

#[tokio::test]
async fn declarative_workers_exist_at_start_and_are_reasserted_after_deletion() {
    let worker = TestWorker::start(Health::Healthy);
    let decl = worker.url_with("/decl");
    let mut agent = Agent::builder()
        .node_id("decl-node")
        .args(&["--worker", &decl, "--probe-interval", "100ms"])
        .start()
        .await;
    let api = agent.api().clone();
    // Registered before the agent reports ready.
    let list = api.workers("").await;
    assert_eq!(list.len(), 1, "{list:?}");
    let w = &list[0];
    let id = id_of(w);
    assert_eq!(w["url"], decl.as_str());
    assert_eq!(w["origin"], "local");
    assert_eq!(w["owner"], "decl-node");
    assert_eq!(w["generation"], 1);
    wait_status(&api, &id, "ready").await;

    agent.kill9();
    agent.restart().await;
    let w = api
        .worker(&id)
        .await
        .expect("declarative worker after restart");
    assert_eq!(
        w["generation"], 1,
        "re-registered although it was never deleted"
    );
    assert_eq!(api.workers("").await.len(), 1);

    api.delete(&format!("/v1/workers/{id}"))
        .await
        .expect_status(200);
    assert!(api.worker(&id).await.is_none());
    agent.kill9();
    agent.restart().await;
    let w = api
        .worker(&id)
        .await
        .expect("declarative worker re-asserted at start");
    assert_eq!(w["generation"], 2, "{w}");
    assert_eq!(w["owner"], "decl-node");
    wait_status(&api, &id, "ready").await;
}

#[tokio::test]
async fn sigterm_exits_zero_and_keeps_state() {
    let worker = TestWorker::start(Health::Healthy);
    let mut agent = Agent::start(&["--probe-interval", "50ms"]).await;
    let api = agent.api().clone();
    let probed = id_of(
        &api.register(&json!({"url": worker.url_with("/p"), "model_id": "m"}))
            .await,
    );
    api.register(
        &json!({"url": worker.url_with("/off"), "priority": 3, "health": {"disable": true}}),
    )
    .await;
    let gone = id_of(
        &api.register(&json!({"url": worker.url_with("/gone")}))
            .await,
    );
    api.delete(&format!("/v1/workers/{gone}"))
        .await
        .expect_status(200);
    api.patch(
        &format!("/v1/workers/{probed}"),
        &json!({"labels": {"patched": "yes"}}),
    )
    .await
    .expect_status(200);
    wait_status(&api, &probed, "ready").await;
    let before: Vec<Value> = api.workers("").await.iter().map(spec_part).collect();

    let status = agent.sigterm(EXIT).await.expect("graceful exit");
    assert!(status.success(), "exit status {status}");
    agent.restart().await;
    let after: Vec<Value> = api.workers("").await.iter().map(spec_part).collect();
    assert_eq!(after, before);
    assert!(api.worker(&gone).await.is_none());
    let again = api
        .register(&json!({"url": worker.url_with("/gone")}))
        .await;
    assert_eq!(again["generation"], 2);
}

/// A gateway always has a blocking query open; SIGTERM must not wait for it to run out
/// (up to 5 minutes), or orchestrators kill the agent mid-shutdown.
#[tokio::test]
async fn sigterm_does_not_wait_for_open_blocking_queries() {
    let mut agent = Agent::start(&[]).await;
    let api = agent.api().clone();
    let index = api.get("/v1/workers").await.index().expect("index");
    let waiter = tokio::spawn(async move {
        api.try_send(
            reqwest::Method::GET,
            &format!("/v1/workers?index={index}&wait=60s"),
            None,
        )
        .await
    });
    // Let the query reach the agent and start waiting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished());
    let status = agent.sigterm(EXIT).await;
    waiter.abort();
    let status = status.expect("agent should exit promptly on SIGTERM with a blocking query open");
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn a_second_agent_on_the_same_data_dir_refuses_to_start() {
    let agent = Agent::start(&[]).await;
    let api = agent.api();
    let id = id_of(
        &api.register(&json!({"url": refused_url(), "health": {"disable": true}}))
            .await,
    );
    let listen = format!("127.0.0.1:{}", free_port());
    let mut args = vec![
        "agent".to_string(),
        "--data-dir".into(),
        agent.data_dir().display().to_string(),
        "--admin-listen".into(),
        listen,
        "--node-id".into(),
        "intruder".into(),
    ];
    args.extend(private_gossip_args(free_udp_port()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_probemesh(&args).await;
    assert!(out.code.is_some_and(|c| c != 0), "{out}");
    assert!(out.stderr.contains("in use"), "{out}");
    // The first agent is unaffected.
    api.get("/v1/health").await.expect_status(200);
    assert!(api.worker(&id).await.is_some());
}

/// A crash in the middle of an append leaves a torn record at the end of `wal.log`
/// (docs/architecture.md): the agent cuts it off, keeps every acknowledged change, and
/// later appends are readable after the next crash.
#[tokio::test]
async fn a_torn_log_tail_is_cut_and_later_writes_survive() {
    let mut agent = Agent::start(&[]).await;
    let api = agent.api().clone();
    let off = json!({"disable": true});
    for i in 0..5 {
        api.register(&json!({"url": format!("http://127.0.0.1:1/t{i}"), "health": off}))
            .await;
    }
    let before = registrations(&api).await;
    agent.kill9();
    let wal = agent.data_dir().join("wal.log");
    assert!(wal.exists(), "no wal.log in {}", agent.data_dir().display());
    // A frame header announcing 64 bytes, followed by only 3 of them.
    let mut torn = std::fs::OpenOptions::new().append(true).open(&wal).unwrap();
    std::io::Write::write_all(&mut torn, &[64, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3]).unwrap();
    drop(torn);

    agent.restart().await;
    assert_eq!(registrations(&api).await, before);
    let w = api
        .register(&json!({"url": "http://127.0.0.1:1/after", "health": off}))
        .await;
    agent.kill9();
    agent.restart().await;
    let after = registrations(&api).await;
    assert_eq!(after.len(), 6, "{after:?}");
    assert!(
        after.contains_key(&id_of(&w)),
        "the write after the torn tail was lost"
    );
}

/// Generations are never reused, even after the tombstone that held them expired and
/// the agent restarted.
#[tokio::test]
async fn generations_are_never_reused_after_tombstones_expire() {
    let mut agent = Agent::start(&["--tombstone-ttl", "1s"]).await;
    let api = agent.api().clone();
    let spec = json!({"url": refused_url(), "health": {"disable": true}});
    let id = id_of(&api.register(&spec).await);
    api.delete(&format!("/v1/workers/{id}"))
        .await
        .expect_status(200);
    eventually(
        "the tombstone to expire",
        SOON,
        Duration::from_millis(50),
        || async {
            let m = api.metrics().await;
            match metric(&m, "probemesh_tombstones_expired_total") {
                Some(n) if n >= 1.0 => Ok(()),
                other => Err(format!("expired: {other:?}")),
            }
        },
    )
    .await;
    agent.kill9();
    agent.restart().await;
    let w = api.register(&spec).await;
    assert_eq!(w["generation"], 2, "{w}");
}

/// Start-up with a damaged snapshot stops with a message naming the file, instead of
/// starting empty and forgetting every registration.
#[tokio::test]
async fn a_corrupt_snapshot_stops_start_up() {
    let mut agent = Agent::start(&[]).await;
    let api = agent.api().clone();
    api.register(&json!({"url": refused_url(), "health": {"disable": true}}))
        .await;
    // A graceful stop writes the snapshot.
    assert!(agent.sigterm(EXIT).await.expect("graceful exit").success());
    let snap = agent.data_dir().join("state.bin");
    let mut bytes = std::fs::read(&snap).expect("state.bin after a graceful stop");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&snap, &bytes).unwrap();
    let data = agent.data_dir().display().to_string();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut args = vec!["agent", "--data-dir", &data, "--admin-listen", &listen];
    let gossip = private_gossip_args(free_udp_port());
    args.extend(gossip.iter().map(String::as_str));
    let out = run_probemesh(&args).await;
    assert!(
        out.code.is_some_and(|c| c != 0),
        "started on a corrupt snapshot:\n{out}"
    );
    assert!(out.stderr.contains("state.bin"), "{out}");
}

#[tokio::test]
async fn an_unusable_data_dir_stops_start_up() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let data = file.join("data").display().to_string();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut args = vec!["agent", "--data-dir", &data, "--admin-listen", &listen];
    let gossip = private_gossip_args(free_udp_port());
    args.extend(gossip.iter().map(String::as_str));
    let out = run_probemesh(&args).await;
    assert!(out.code.is_some_and(|c| c != 0), "{out}");
    assert!(
        out.stderr.contains(&data),
        "the message should name the directory:\n{out}"
    );
}
