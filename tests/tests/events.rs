//! `GET /v1/events` (SSE) and `probemesh workers watch`.

use probemesh_tests::{Agent, Health, TestWorker, id_of, probemesh_bin, wait_status};
use serde_json::{Value, json};
use std::time::Duration;

/// Reads SSE frames from `resp` until `n` events (not comments) arrived or `within`.
async fn read_events(
    resp: &mut reqwest::Response,
    n: usize,
    within: Duration,
) -> Vec<(Option<u64>, String, Value)> {
    let mut out = Vec::new();
    let mut buf = String::new();
    let end = tokio::time::Instant::now() + within;
    while out.len() < n {
        let chunk = tokio::time::timeout_at(end, resp.chunk()).await;
        let Ok(Ok(Some(chunk))) = chunk else { break };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(pos) = buf.find("\n\n") {
            let block: String = buf.drain(..pos + 2).collect();
            let (mut id, mut event, mut data) = (None, String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse().ok();
                } else if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().into();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim());
                }
            }
            if !event.is_empty() {
                out.push((
                    id,
                    event,
                    serde_json::from_str(&data).unwrap_or(Value::Null),
                ));
            }
        }
    }
    out
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy().build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_status_change_and_removal_is_an_event_and_reconnects_resume() {
    let agent = Agent::start(&["--probe-interval", "100ms"]).await;
    let http = client();
    let mut resp = http
        .get(format!("{}/v1/events", agent.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let worker = TestWorker::start(Health::Healthy);
    let id = id_of(&agent.api().register(&json!({"url": worker.url()})).await);
    wait_status(agent.api(), &id, "ready").await;
    let events = read_events(&mut resp, 2, Duration::from_secs(10)).await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].1, "transition");
    assert_eq!(events[0].2["from"], Value::Null);
    assert_eq!(events[0].2["to"], "pending");
    assert_eq!(events[0].2["worker_id"], id.as_str());
    assert_eq!(events[1].2["from"], "pending");
    assert_eq!(events[1].2["to"], "ready");
    assert_eq!(events[1].2["reason"], "probe");
    for k in ["worker_id", "url", "from", "to", "at", "reason"] {
        assert!(events[1].2.get(k).is_some(), "missing {k}");
    }
    let last = events[1].0.expect("event ids");
    assert!(last > events[0].0.unwrap());
    drop(resp);

    // Missed while disconnected: a removal. Reconnecting with Last-Event-ID gets it.
    agent.api().delete(&format!("/v1/workers/{id}")).await;
    let mut resp = http
        .get(format!("{}/v1/events", agent.url()))
        .header("Last-Event-ID", last.to_string())
        .send()
        .await
        .unwrap();
    let missed = read_events(&mut resp, 1, Duration::from_secs(10)).await;
    assert_eq!(missed.len(), 1, "{missed:?}");
    assert_eq!(missed[0].1, "removed");
    assert_eq!(missed[0].0, Some(last + 1));
    assert_eq!(missed[0].2["reason"], "deleted");

    // An id the agent cannot serve (from another run) asks for a resync.
    let mut resp = http
        .get(format!("{}/v1/events", agent.url()))
        .header("Last-Event-ID", "5")
        .send()
        .await
        .unwrap();
    let first = read_events(&mut resp, 1, Duration::from_secs(10)).await;
    assert_eq!(first[0].1, "resync");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_event_stream_does_not_delay_shutdown() {
    let mut agent = Agent::start(&[]).await;
    let http = client();
    let _resp = http
        .get(format!("{}/v1/events", agent.url()))
        .send()
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let status = agent.sigterm(Duration::from_secs(10)).await.expect("exits");
    assert!(status.success());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_watch_prints_changes_as_they_happen() {
    let agent = Agent::start(&["--probe-interval", "100ms"]).await;
    let mut child = tokio::process::Command::new(probemesh_bin())
        .args(["workers", "watch", "--admin", agent.url()])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    // The watcher connects at some point after it starts; register workers until one of
    // them shows up, then follow that one through pending -> ready.
    let mut workers = Vec::new();
    let mut followed = None;
    let mut seen: Vec<String> = Vec::new();
    let end = tokio::time::Instant::now() + Duration::from_secs(15);
    while followed.is_none() && tokio::time::Instant::now() < end {
        let worker = TestWorker::start(Health::Healthy);
        let id = id_of(&agent.api().register(&json!({"url": worker.url()})).await);
        workers.push(worker);
        let step = tokio::time::Instant::now() + Duration::from_secs(1);
        while let Ok(Ok(Some(l))) = tokio::time::timeout_at(step, lines.next_line()).await {
            let hit = l.contains(&id) && l.contains("new -> pending");
            seen.push(l);
            if hit {
                followed = Some(id.clone());
                break;
            }
        }
    }
    let id = followed.unwrap_or_else(|| panic!("watch printed nothing useful: {seen:?}"));
    let done = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen
        .iter()
        .any(|l| l.contains(&id) && l.contains("pending -> ready"))
    {
        match tokio::time::timeout_at(done, lines.next_line()).await {
            Ok(Ok(Some(l))) => seen.push(l),
            _ => break,
        }
    }
    assert!(
        seen.iter()
            .any(|l| l.contains(&id) && l.contains("pending -> ready")),
        "{seen:?}"
    );
    let _ = child.kill().await;
}
