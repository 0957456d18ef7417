//! What the real smg (`smg==1.13.0` from PyPI) does with requests in flight on a worker
//! that probemesh takes out of it at drain start (`DELETE /v1/workers/{id}?drain=…`,
//! the adapter's `DELETE /workers/{id}`), on loopback with a slow fake worker: smg
//! marks the worker `draining` at once (new requests are not sent to it), removes it
//! after a fixed 5 s without waiting for the requests in flight, and does not cut
//! them: a plain and a streamed completion that outlive the removal both arrive whole.

use probemesh_tests::smg::{FAKE_MODEL, LlmWorker, STREAM_CHUNKS, Smg, smg_bin};
use probemesh_tests::{
    Agent, client, eventually, free_port, gateway_workers, get_json, id_of, require, scaled,
    wait_status,
};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(30);

/// smg's entry for `url`, if listed.
async fn smg_entry(smg: &Smg, url: &str) -> Option<Value> {
    gateway_workers(&smg.url)
        .await?
        .into_iter()
        .find(|w| w["url"] == url)
}

/// One chat completion through smg, read as it arrives.
struct Answer {
    status: u16,
    body: String,
    /// When the first bytes of the body arrived.
    first: Option<Instant>,
    /// When the body ended (or broke).
    end: Instant,
}

async fn chat(smg_url: String, stream: bool, timeout: Duration) -> Answer {
    let r = client(timeout)
        .post(format!("{smg_url}/v1/chat/completions"))
        .json(&json!({"model": FAKE_MODEL, "stream": stream, "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await;
    let mut r = match r {
        Ok(r) => r,
        Err(e) => {
            let body = format!("REQUEST FAILED: {e}");
            return Answer {
                status: 0,
                body,
                first: None,
                end: Instant::now(),
            };
        }
    };
    let status = r.status().as_u16();
    let (mut bytes, mut first) = (Vec::new(), None);
    loop {
        match r.chunk().await {
            Ok(Some(c)) => {
                first.get_or_insert_with(Instant::now);
                bytes.extend_from_slice(&c);
            }
            Ok(None) => break,
            Err(e) => {
                bytes.extend_from_slice(format!("\nBODY CUT: {e}").as_bytes());
                break;
            }
        }
    }
    let body = String::from_utf8_lossy(&bytes).into_owned();
    Answer {
        status,
        body,
        first,
        end: Instant::now(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_survive_smgs_removal_of_a_draining_worker() {
    let need = format!("smg {}", probemesh_tests::smg::SMG_VERSION);
    if require::ok(smg_bin(), &need).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("smg.log");
    let smg = Smg::start(&[], "127.0.0.1", free_port(), &[], &log);
    smg.wait_up(async |u| get_json(u).await).await;
    let agent = Agent::start(&["--probe-interval", "100ms", "--smg-url", &smg.url]).await;
    let w = LlmWorker::start();
    let url = format!("http://127.0.0.1:{}", w.port);
    let id = id_of(
        &agent
            .api()
            .register(&json!({"url": url, "model_id": FAKE_MODEL}))
            .await,
    );
    wait_status(agent.api(), &id, "ready").await;
    eventually(
        "smg lists the worker ready",
        LONG,
        Duration::from_millis(50),
        || async {
            match smg_entry(&smg, &url).await {
                Some(e) if e["status"] == "ready" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;

    // Completions that outlast smg's 5 s drain by a margin.
    let delay = Duration::from_secs(10).max(scaled(Duration::from_secs(10)));
    w.set_chat_delay(delay);
    let timeout = delay + scaled(LONG);
    let plain = tokio::spawn(chat(smg.url.clone(), false, timeout));
    let streamed = tokio::spawn(chat(smg.url.clone(), true, timeout));
    eventually(
        "both requests reach the worker",
        LONG,
        Duration::from_millis(20),
        || async {
            if w.chats() >= 2 {
                Ok(())
            } else {
                Err(format!("{} chats", w.chats()))
            }
        },
    )
    .await;

    // Drain in probemesh: the adapter deletes the worker from smg at drain start.
    let started = Instant::now();
    let r = agent
        .api()
        .delete(&format!("/v1/workers/{id}?drain=60s"))
        .await
        .expect_status(200);
    assert_eq!(r.body["tombstoned"], false, "{}", r.text);
    let draining_seen = eventually(
        "smg marks the worker draining",
        LONG,
        Duration::from_millis(20),
        || async {
            match smg_entry(&smg, &url).await {
                Some(e) if e["status"] == "draining" => Ok(Instant::now()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    // Not routable while smg drains it: with no other worker, a new request gets 503.
    let fresh = chat(smg.url.clone(), false, scaled(LONG)).await;
    let new_status = fresh.status;
    assert_eq!(
        new_status, 503,
        "a new request during smg's drain: {}",
        fresh.body
    );
    assert_eq!(w.chats(), 2, "the new request reached the draining worker");
    let gone = eventually(
        "smg removes the worker",
        LONG,
        Duration::from_millis(20),
        || async {
            match smg_entry(&smg, &url).await {
                None => Ok(Instant::now()),
                Some(e) => Err(e.to_string()),
            }
        },
    )
    .await;
    let smg_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        smg_log.contains("Draining 1 worker(s) for 5s before removal"),
        "smg's own drain period"
    );
    assert_eq!(
        agent.api().worker(&id).await.map(|w| w["status"].clone()),
        Some(json!("draining"))
    );

    let Answer {
        status: p_status,
        body: p_body,
        end: p_end,
        ..
    } = plain.await.unwrap();
    let s = streamed.await.unwrap();
    let (s_status, s_body, s_end) = (s.status, s.body, s.end);
    assert_eq!(p_status, 200, "{p_body}");
    let p: Value = serde_json::from_str(&p_body).unwrap_or_else(|e| panic!("{e}: {p_body}"));
    assert_eq!(p["choices"][0]["message"]["content"], "hi", "{p_body}");
    assert_eq!(s_status, 200, "{s_body}");
    let contents: Vec<String> = s_body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    let want: Vec<String> = (0..STREAM_CHUNKS).map(|i| format!("t{i} ")).collect();
    assert_eq!(contents, want, "the whole stream: {s_body}");
    assert!(s_body.contains("data: [DONE]"), "{s_body}");
    assert_eq!(w.answered(), 2, "the worker did not answer both in full");
    // Both outlived smg's removal of the worker: smg neither waited for them nor cut them.
    let s_first = s.first.expect("the stream had a body");
    assert!(
        s_first < gone,
        "the stream had not started when smg removed the worker ({:?} later)",
        s_first - gone
    );
    assert!(
        gone < p_end && gone < s_end,
        "the requests ended before smg removed the worker, so this run shows nothing: \
         removed {:?} after the drain started, requests took {delay:?}",
        gone - started
    );
    println!(
        "FINDING smg {}: draining seen {:?} after the probemesh drain started, removed {:?} after; \
         plain completion ended {:?} and streamed one {:?} after the start, {:?} and {:?} after the removal, both whole \
         (the stream's first bytes {:?} before the removal); a new request during the drain: {new_status}",
        probemesh_tests::smg::SMG_VERSION,
        draining_seen - started,
        gone - started,
        p_end - started,
        s_end - started,
        p_end - gone,
        s_end - gone,
        gone - s_first,
    );
}
