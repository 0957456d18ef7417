//! The cluster page (`GET /ui`) in a real browser: Debian's chromium, headless, driven
//! over WebDriver by chromedriver (`tests/src/webdriver.rs`). A three-node cluster whose
//! workers answer each node differently: the matrix shows every node's own verdict; a
//! worker failing changes its cells without a reload; the page loads nothing from
//! elsewhere; it reads at 360 px; it says when its event stream is lost and recovers.
//! Screenshots go to `target/ui-screenshots/`; with `PROBEMESH_UPDATE_SCREENSHOTS=1`
//! the desktop one is also copied to `docs/ui-desktop.png` (shown in the README).

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use probemesh_tests::binary::workspace_root;
use probemesh_tests::webdriver::{self, Browser};
use probemesh_tests::{Agent, Cluster, eventually, id_of, metric};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);

/// A worker that answers each probe path (`/health/<node>`) with its own status code.
struct PathWorker {
    codes: Arc<Mutex<HashMap<String, u16>>>,
    url: String,
    task: tokio::task::JoinHandle<()>,
}

async fn answer(State(codes): State<Arc<Mutex<HashMap<String, u16>>>>, uri: Uri) -> StatusCode {
    let code = codes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(uri.path())
        .copied()
        .unwrap_or(200);
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl PathWorker {
    async fn start(failing_for: &[&str]) -> PathWorker {
        let codes: Arc<Mutex<HashMap<String, u16>>> = Arc::new(Mutex::new(
            failing_for
                .iter()
                .map(|n| (format!("/health/{n}"), 503))
                .collect(),
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let app = Router::new()
            .fallback(answer)
            .with_state(Arc::clone(&codes));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        PathWorker { codes, url, task }
    }

    fn set(&self, node: &str, code: u16) {
        self.codes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(format!("/health/{node}"), code);
    }
}

impl Drop for PathWorker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn screenshot_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
        .join("ui-screenshots")
}

/// The page's matrix: `(worker id, node) -> status` of every cell.
const READ_CELLS: &str = "return [...document.querySelectorAll('#matrix td[data-worker]')].map(td => [td.dataset.worker, td.dataset.node, td.dataset.status]);";

async fn cells(b: &Browser) -> HashMap<(String, String), String> {
    let v = b.eval(READ_CELLS).await.unwrap_or(Value::Null);
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            Some((
                (c[0].as_str()?.to_string(), c[1].as_str()?.to_string()),
                c[2].as_str()?.to_string(),
            ))
        })
        .collect()
}

/// Waits until the page shows `want` for every listed cell (`a|b`: either status).
async fn wait_cells(b: &Browser, what: &str, want: &[(&str, &str, &str)]) {
    eventually(what, LONG, POLL, || async {
        let got = cells(b).await;
        let wrong: Vec<String> = want
            .iter()
            .filter(|(w, n, s)| {
                got.get(&(w.to_string(), n.to_string()))
                    .is_none_or(|g| !s.split('|').any(|one| one == g))
            })
            .map(|(w, n, s)| {
                format!(
                    "{w}@{n}: want {s}, page shows {:?}",
                    got.get(&(w.to_string(), n.to_string()))
                )
            })
            .collect();
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(wrong.join("; "))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_every_nodes_verdicts_and_follows_a_failure_without_reload() {
    if !webdriver::available() {
        return;
    }
    let cluster = Cluster::start(3, &[]).await;
    let nodes = ["node-0", "node-1", "node-2"];
    // a: healthy for all; b: node-2 cannot reach it; c: nobody can.
    let a = PathWorker::start(&[]).await;
    let b = PathWorker::start(&["node-2"]).await;
    let c = PathWorker::start(&nodes).await;
    let api = cluster.agents[0].api();
    // b and c stay pending where they fail for the whole test (a pending worker fails
    // after 10 x failure_threshold probes: 1,000 x 200 ms); a leaves ready after 5.
    let slow = json!({"interval": "200ms", "failure_threshold": 100});
    let ida = id_of(&api.register(&json!({"url": a.url, "model_id": "llama-3-8b", "health": {"interval": "200ms", "failure_threshold": 5}})).await);
    let idb = id_of(&api.register(&json!({"url": b.url, "model_id": "llama-3-8b", "worker_type": "prefill", "health": slow})).await);
    let idc = id_of(
        &api.register(&json!({"url": c.url, "model_id": "mistral-7b", "health": slow}))
            .await,
    );
    let expected = [
        (ida.as_str(), "ready", "ready", "ready"),
        (idb.as_str(), "ready", "ready", "pending"),
        (idc.as_str(), "pending", "pending", "pending"),
    ];
    // Each node's own status, from its own API, is what its column must show.
    for (i, node) in nodes.iter().enumerate() {
        for (id, s0, s1, s2) in expected {
            let want = [s0, s1, s2][i];
            probemesh_tests::wait_status(cluster.agents[i].api(), id, want).await;
            let _ = node;
        }
    }
    // Node-0 counts them by reach: one ready on all, one on some, one on none.
    let m0 = cluster.agents[0].api().clone();
    eventually("probemesh_cluster_workers on node-0", LONG, POLL, || {
        let m0 = m0.clone();
        async move {
            let text = m0.metrics().await;
            let got: Vec<Option<f64>> = ["all", "some", "none"]
                .iter()
                .map(|r| {
                    metric(
                        &text,
                        &format!("probemesh_cluster_workers{{ready_on=\"{r}\"}}"),
                    )
                })
                .collect();
            if got == [Some(1.0), Some(1.0), Some(1.0)] {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        }
    })
    .await;

    let browser = Browser::start(1280, 900).await.expect("start chromium");
    let page = format!("{}/ui", cluster.agents[0].url());
    browser.goto(&page).await.expect("open the page");
    browser
        .eval("window.__notReloaded = true; return true")
        .await
        .expect("mark the page");
    let mut want = Vec::new();
    for (id, s0, s1, s2) in expected {
        for (node, s) in nodes.iter().zip([s0, s1, s2]) {
            want.push((id, *node, s));
        }
    }
    wait_cells(&browser, "the matrix shows every node's own verdict", &want).await;
    let shots = screenshot_dir();
    browser
        .screenshot(&shots.join("ui-desktop.png"))
        .await
        .expect("screenshot");

    // The filters: by this node's status, and by model.
    let rows = |filter: &str, value: &str| {
        format!(
            "const s = document.getElementById('{filter}'); s.value = '{value}'; s.dispatchEvent(new Event('change')); return [...document.querySelectorAll('#matrix tbody tr')].map(r => r.dataset.worker);"
        )
    };
    let pending = browser
        .eval(&rows("f-status", "pending"))
        .await
        .expect("status filter");
    assert_eq!(pending, json!([idc]), "status filter");
    browser.eval(&rows("f-status", "")).await.expect("reset");
    let llama = browser
        .eval(&rows("f-model", "llama-3-8b"))
        .await
        .expect("model filter");
    assert_eq!(
        llama.as_array().map(Vec::len),
        Some(2),
        "model filter: {llama}"
    );
    browser.eval(&rows("f-model", "")).await.expect("reset");

    // A worker's detail: its spec and probe counters.
    browser
        .eval(&format!("document.querySelector('#matrix tr[data-worker=\"{idb}\"] td.w a').click(); return true"))
        .await
        .expect("open detail");
    eventually("the detail of worker b", LONG, POLL, || async {
        let d = browser
            .eval("const d = document.getElementById('detail'); return [d.hidden, d.dataset.worker || '', d.innerText];")
            .await
            .unwrap_or(Value::Null);
        let text = d[2].as_str().unwrap_or("");
        if d[0] == false && d[1] == idb.as_str() && text.contains("successes in a row") && text.contains("\"worker_type\": \"prefill\"") {
            Ok(())
        } else {
            Err(d.to_string())
        }
    })
    .await;

    // Worker a fails for node-1 (a peer: its cell follows the gossiped verdict), then for
    // node-0 (this node: its cell follows the event stream). No reload in between.
    a.set("node-1", 503);
    // (not_ready turns failed 15 probes later, 3 s: the page may show either.)
    wait_cells(
        &browser,
        "a peer's cell leaves ready",
        &[
            (&ida, "node-1", "not_ready|failed"),
            (&ida, "node-0", "ready"),
        ],
    )
    .await;
    a.set("node-0", 503);
    wait_cells(
        &browser,
        "this node's cell leaves ready",
        &[
            (&ida, "node-0", "not_ready|failed"),
            (&ida, "node-2", "ready"),
        ],
    )
    .await;
    assert_eq!(
        browser
            .eval("return window.__notReloaded === true")
            .await
            .expect("marker"),
        json!(true),
        "the page was reloaded"
    );
    // The detail of a lists the transition it saw on the stream.
    browser
        .eval(&format!("document.querySelector('#matrix tr[data-worker=\"{ida}\"] td.w a').click(); return true"))
        .await
        .expect("open detail of a");
    eventually("the detail lists the transition", LONG, POLL, || async {
        let t = browser
            .eval("return document.getElementById('events').innerText")
            .await
            .unwrap_or(Value::Null);
        if t.as_str().is_some_and(|t| t.contains("ready → not_ready")) {
            Ok(())
        } else {
            Err(t.to_string())
        }
    })
    .await;

    // Nothing came from anywhere but the agent.
    let origin = cluster.agents[0].url().to_string();
    let loaded = browser
        .eval("return performance.getEntriesByType('resource').map(e => e.name).concat([location.href])")
        .await
        .expect("resource timing");
    let names: Vec<&str> = loaded
        .as_array()
        .expect("list")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(names.len() > 3, "the page made no requests? {names:?}");
    for n in &names {
        assert!(
            n.starts_with(&origin),
            "the page loaded {n}, not from {origin}"
        );
    }
    let external = browser
        .eval("return [...document.querySelectorAll('[src],[href],link,iframe,img,object,embed')].length")
        .await
        .expect("elements");
    assert_eq!(external, json!(0), "elements that load resources");

    // 360 px: no sideways scrolling of the page (the matrix scrolls in its box), and
    // the cells still there.
    browser.set_size(360, 740).await.expect("phone size");
    browser
        .eval("window.scrollTo(0, 0); return true")
        .await
        .expect("scroll to the top");
    eventually("the page at 360 px", LONG, POLL, || async {
        let v = browser
            .eval("return [window.innerWidth, document.documentElement.scrollWidth, document.querySelectorAll('#matrix td[data-worker]').length]")
            .await
            .unwrap_or(Value::Null);
        if v[0] == 360 && v[1].as_u64().is_some_and(|w| w <= 360) && v[2] == 9 { Ok(()) } else { Err(v.to_string()) }
    })
    .await;
    browser
        .screenshot(&shots.join("ui-phone.png"))
        .await
        .expect("screenshot");
    if std::env::var("PROBEMESH_UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
        std::fs::copy(
            shots.join("ui-desktop.png"),
            workspace_root().join("docs/ui-desktop.png"),
        )
        .expect("copy the screenshot into docs/");
    }
    println!("screenshots: {}", shots.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_takes_the_token_says_when_the_stream_is_lost_and_reconnects() {
    if !webdriver::available() {
        return;
    }
    let mut agent = Agent::start(&["--admin-token", "s3cret"]).await;
    let browser = Browser::start(1024, 768).await.expect("start chromium");
    browser
        .goto(&format!("{}/ui#token=s3cret", agent.url()))
        .await
        .expect("open");
    let stream =
        "const s = document.getElementById('stream'); return [s.dataset.state, s.textContent];";
    let wait_stream = |want: &'static str| {
        let browser = &browser;
        async move {
            eventually(&format!("stream state {want}"), LONG, POLL, || async {
                let v = browser.eval(stream).await.unwrap_or(Value::Null);
                if v[0] == want {
                    Ok(v)
                } else {
                    Err(v.to_string())
                }
            })
            .await
        }
    };
    wait_stream("live").await;
    let token = browser
        .eval("return [sessionStorage.getItem('probemesh-token'), location.hash]")
        .await
        .expect("token");
    assert_eq!(
        token,
        json!(["s3cret", ""]),
        "the token moves from the URL into sessionStorage"
    );

    agent.kill9();
    let lost = wait_stream("lost").await;
    assert!(
        lost[1].as_str().is_some_and(|t| t.contains("lost")),
        "{lost}"
    );
    agent.restart().await;
    wait_stream("live").await;
    // After reconnecting it reads the lists again: a worker registered now appears.
    let w = probemesh_tests::TestWorker::start(probemesh_tests::Health::Healthy);
    let id = id_of(
        &agent
            .api()
            .with_token("s3cret")
            .register(&json!({"url": w.url()}))
            .await,
    );
    eventually("the new worker on the page", LONG, POLL, || async {
        let got = cells(&browser).await;
        let s = got.get(&(id.clone(), agent.node_id().to_string())).cloned();
        if s.as_deref() == Some("ready") {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_one_document_that_names_no_other_resource() {
    let agent = Agent::start(&[]).await;
    let r = agent.api().get("/ui").await.expect_status(200);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/html"))
    );
    let csp = r.header("content-security-policy").unwrap_or("");
    assert!(
        csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    for needle in [
        "src=", "href=", "@import", "url(", "<link", "<iframe", "<img", "//cdn", "http://",
        "https://",
    ] {
        assert!(!r.text.contains(needle), "the page contains {needle:?}");
    }
    println!("GET /ui: {} bytes", r.text.len());
}
