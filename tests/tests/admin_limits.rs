//! The admin API's limits (SPEC S11, S13, `--admin-max-connections`; issue 11): a fast
//! JSON 503 over the connection cap, the 10 s head and 60 s idle timeouts (never
//! cutting a request in flight), JSON for requests rejected before the router, the
//! Bearer scheme in any case, and a healthy worker that stays ready while a local
//! client floods an agent whose open-file limit is small.

use probemesh_tests::limits::{KeepAliveConn, closed_within, raise_own_nofile_limit};
use probemesh_tests::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The SPEC's head timeout.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// The SPEC's idle keep-alive timeout.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

async fn connect(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the admin port")
}

/// Status and JSON body of a raw answer; checks the JSON error shape and type.
fn json_error(text: &str) -> (u16, String) {
    let status: u16 = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no head end in {text:?}"));
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "not JSON: {head}"
    );
    let v: Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("body {body:?} is not JSON: {e}"));
    let msg = v["error"]["message"].as_str().unwrap_or("");
    assert!(!msg.is_empty(), "no message in {body}");
    (
        status,
        v["error"]["code"].as_str().unwrap_or("").to_string(),
    )
}

fn metric_or_zero(text: &str, series: &str) -> f64 {
    metric(text, series).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_cap_a_request_gets_a_fast_503_and_service_resumes() {
    let agent = Agent::start(&["--admin-max-connections", "8"]).await;
    let port = agent.port();
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(connect(port).await);
    }
    // The agent has accepted all 8 once a 9th is refused; poll until it is.
    let started = Instant::now();
    let (took, text) = eventually(
        "a 9th connection to be refused",
        SOON,
        Duration::from_millis(20),
        || async {
            let t = Instant::now();
            let r = tokio::task::spawn_blocking(move || {
                raw_http(
                    port,
                    b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                )
            })
            .await
            .unwrap();
            match r {
                Ok((503, text)) => Ok((t.elapsed(), text)),
                Ok((s, text)) => Err(format!("HTTP {s}: {text}")),
                Err(e) => Err(e),
            }
        },
    )
    .await;
    assert!(
        started.elapsed() < HEAD_TIMEOUT,
        "refused only after {:?}",
        started.elapsed()
    );
    eprintln!("503 TOO_MANY_CONNECTIONS answered in {took:?}");
    assert!(
        took < scaled(Duration::from_secs(2)),
        "the 503 took {took:?}"
    );
    assert_eq!(
        json_error(&text),
        (503, "TOO_MANY_CONNECTIONS".into()),
        "{text}"
    );
    let lower = text.to_ascii_lowercase();
    assert!(lower.contains("retry-after: 1\r\n"), "{text}");
    assert!(lower.contains("connection: close\r\n"), "{text}");

    // Once the idle ones go, requests are served again.
    drop(idle);
    let text = eventually(
        "requests to be served again",
        SOON,
        Duration::from_millis(20),
        || async {
            match agent
                .api()
                .try_send(reqwest::Method::GET, "/metrics", None)
                .await
            {
                Ok(r) if r.status == 200 => Ok(r.text),
                Ok(r) => Err(format!("HTTP {}: {}", r.status, r.text)),
                Err(e) => Err(e),
            }
        },
    )
    .await;
    assert!(
        metric_or_zero(
            &text,
            "probemesh_admin_connections_refused_total{reason=\"cap\"}"
        ) >= 1.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "probemesh_admin_max_connections"),
        Some(8.0),
        "{text}"
    );
}

/// Time until the agent closes `stream`, or `None` if it is still open after `within`.
async fn time_to_close(
    mut stream: TcpStream,
    since: Instant,
    within: Duration,
) -> Option<Duration> {
    closed_within(&mut stream, within.saturating_sub(since.elapsed()))
        .await
        .then(|| since.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_slowloris_connections_are_closed_within_the_head_timeout() {
    let agent = Agent::start(&[]).await;
    let port = agent.port();
    let limit = HEAD_TIMEOUT + scaled(Duration::from_secs(5));

    let silent_at = Instant::now();
    let silent = tokio::spawn(time_to_close(connect(port).await, silent_at, limit));

    // One header byte per second: the head never completes.
    let mut slow = connect(port).await;
    let slow_at = Instant::now();
    slow.write_all(b"GET /v1/health HTTP/1.1\r\n")
        .await
        .unwrap();
    let slowloris = tokio::spawn(async move {
        let (mut rd, mut wr) = slow.into_split();
        let dribble = async {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if wr.write_all(b"X").await.is_err() {
                    return;
                }
            }
        };
        let mut buf = [0u8; 256];
        tokio::select! {
            () = dribble => Some(slow_at.elapsed()),
            r = tokio::time::timeout(limit, tokio::io::AsyncReadExt::read(&mut rd, &mut buf)) => {
                r.ok().map(|_| slow_at.elapsed())
            }
        }
    });

    let silent = silent.await.unwrap().expect("silent connection still open");
    let slowloris = slowloris
        .await
        .unwrap()
        .expect("slowloris connection still open");
    eprintln!("silent connection closed after {silent:?}, slowloris after {slowloris:?}");
    for (what, t) in [("silent", silent), ("slowloris", slowloris)] {
        assert!(
            t >= HEAD_TIMEOUT - Duration::from_millis(200),
            "{what} closed early: {t:?}"
        );
        assert!(t <= limit, "{what} closed late: {t:?}");
    }
    let text = agent.api().metrics().await;
    let closed = metric_or_zero(
        &text,
        "probemesh_admin_connections_closed_total{reason=\"head_timeout\"}",
    );
    assert!(closed >= 2.0, "head timeouts counted: {closed}\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_blocking_query_outlives_the_head_timeout() {
    let agent = Agent::start(&[]).await;
    let index = agent.api().get("/v1/workers").await.index().expect("index");
    let api = agent.api().clone();
    let started = Instant::now();
    let held = tokio::spawn(async move {
        api.get(&format!("/v1/workers?index={index}&wait=30s"))
            .await
    });
    // Watch it past the head timeout: it must stay open all along.
    while started.elapsed() < HEAD_TIMEOUT + Duration::from_secs(2) {
        assert!(
            !held.is_finished(),
            "the blocking query ended after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let text = agent.api().metrics().await;
    assert_eq!(
        metric(&text, "probemesh_admin_blocking_queries_held"),
        Some(1.0),
        "{text}"
    );
    let worker = TestWorker::start(Health::Healthy);
    agent
        .api()
        .register(&json!({"url": worker.url(), "health": {"disable": true}}))
        .await;
    let r = tokio::time::timeout(scaled(Duration::from_secs(5)), held)
        .await
        .expect("woken by the change")
        .unwrap()
        .expect_status(200);
    assert!(r.index().unwrap() > index);
    eprintln!(
        "blocking query held {:?}, answered after the change",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_outlives_the_head_timeout_and_closes_by_60s() {
    let agent = Agent::start(&[]).await;
    let mut conn = KeepAliveConn::connect(agent.port()).await.unwrap();
    assert_eq!(conn.get("/v1/health").await.unwrap().0, 200);
    // Past the head timeout, idle: still open and serving.
    tokio::time::sleep(HEAD_TIMEOUT + Duration::from_secs(2)).await;
    assert_eq!(
        conn.get("/v1/health")
            .await
            .expect("idle connection closed by the head timer")
            .0,
        200
    );
    let idle_from = Instant::now();
    let mut raw = conn.into_stream();
    let limit = IDLE_TIMEOUT + scaled(Duration::from_secs(8));
    assert!(
        closed_within(&mut raw, limit).await,
        "idle connection still open after {limit:?}"
    );
    let t = idle_from.elapsed();
    eprintln!("idle keep-alive connection closed after {t:?}");
    assert!(
        t >= IDLE_TIMEOUT - Duration::from_millis(200),
        "closed early: {t:?}"
    );
    let text = agent.api().metrics().await;
    assert!(
        metric_or_zero(
            &text,
            "probemesh_admin_connections_closed_total{reason=\"idle_timeout\"}"
        ) >= 1.0
    );
}

#[tokio::test]
async fn requests_rejected_before_the_router_get_json_errors() {
    let agent = Agent::start(&[]).await;
    let port = agent.port();
    let long_uri = format!(
        "GET /v1/{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let huge_headers = format!(
        "GET /v1/health HTTP/1.1\r\nHost: x\r\n{}Connection: close\r\n\r\n",
        (0..20)
            .map(|i| format!("X-Big-{i}: {}\r\n", "b".repeat(5000)))
            .collect::<String>()
    );
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "garbage request line",
            b"this is not http\r\n\r\n".to_vec(),
            400,
            "BAD_REQUEST",
        ),
        (
            "bad header",
            b"GET /v1/health HTTP/1.1\r\nno colon here\r\n\r\n".to_vec(),
            400,
            "BAD_REQUEST",
        ),
        ("70 KB URI", long_uri.into_bytes(), 414, "URI_TOO_LONG"),
        (
            "100 KB of headers",
            huge_headers.into_bytes(),
            431,
            "HEADERS_TOO_LARGE",
        ),
        (
            "HTTP/2.0 request line",
            b"GET /v1/health HTTP/2.0\r\n\r\n".to_vec(),
            505,
            "HTTP_VERSION_NOT_SUPPORTED",
        ),
    ];
    for (name, req, status, code) in cases {
        let (got, text) = tokio::task::spawn_blocking(move || raw_http(port, &req))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, status, "{name}: {text}");
        assert_eq!(json_error(&text), (status, code.to_string()), "{name}");
    }
    // The 413 and 404 of the router stay JSON, and the agent is fine.
    let r = agent.api().get("/nope").await;
    assert_eq!((r.status, r.error_code()), (404, Some("NOT_FOUND")));
    agent.api().get("/v1/health").await.expect_status(200);
    let text = agent.api().metrics().await;
    for code in ["BAD_REQUEST", "URI_TOO_LONG", "HEADERS_TOO_LARGE"] {
        let series = format!("probemesh_admin_requests_rejected_total{{code=\"{code}\"}}");
        assert!(metric_or_zero(&text, &series) >= 1.0, "{series}\n{text}");
    }
}

#[tokio::test]
async fn the_bearer_scheme_is_matched_in_any_case() {
    let agent = Agent::start(&["--admin-token", "s3cret"]).await;
    let port = agent.port();
    let worker = TestWorker::start(Health::Healthy);
    for (i, scheme) in ["bearer", "BEARER", "Bearer"].into_iter().enumerate() {
        let body = json!({"url": format!("{}/{i}", worker.url()), "health": {"disable": true}})
            .to_string();
        let req = format!(
            "POST /v1/workers HTTP/1.1\r\nHost: x\r\nAuthorization: {scheme} s3cret\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let (status, text) = tokio::task::spawn_blocking(move || raw_http(port, req.as_bytes()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status, 201, "{scheme}: {text}");
    }
    let req = "DELETE /v1/workers/0123456789abcdef HTTP/1.1\r\nHost: x\r\nAuthorization: bearer wrong\r\nConnection: close\r\n\r\n";
    let (status, text) = tokio::task::spawn_blocking(move || raw_http(port, req.as_bytes()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        json_error(&text),
        (401, "UNAUTHORIZED".into()),
        "{status}: {text}"
    );
}

/// The bug of issue 11: under `prlimit --nofile=256`, 300 idle connections made
/// `accept` fail with EMFILE, the probes of a healthy worker failed and it was
/// tombstoned. Now the connection cap stays below the limit, so probes keep their
/// descriptors and the worker stays ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_connections_under_a_small_fd_limit_evicts_nothing() {
    if !probemesh_tests::require::tool("prlimit", "run the agent under a small open-file limit") {
        return;
    }
    let own = raise_own_nofile_limit();
    let flood = if own >= 1024 { 300 } else { (own / 2) as usize };
    let mut agent = Agent::builder()
        .wrapped_in(&["prlimit", "--nofile=256:256", "--"])
        .args(&["--probe-interval", "200ms", "--probe-timeout", "500ms"])
        .start()
        .await;
    let worker = TestWorker::start(Health::Healthy);
    let id = id_of(&agent.api().register(&json!({"url": worker.url()})).await);
    wait_status(agent.api(), &id, "ready").await;
    let before = agent.api().metrics().await;
    let ok_before = metric_or_zero(&before, "probemesh_probes_total{result=\"ok\"}");

    // One connection opened before the flood, to watch the worker through it.
    let mut watch = KeepAliveConn::connect(agent.port()).await.unwrap();
    let flood_at = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..flood {
        match TcpStream::connect(("127.0.0.1", agent.port())).await {
            Ok(s) => idle.push(s),
            Err(e) => panic!("connect {} failed: {e}", idle.len()),
        }
    }
    eprintln!(
        "{} idle connections opened in {:?}",
        idle.len(),
        flood_at.elapsed()
    );
    let mut polls = 0;
    while flood_at.elapsed() < Duration::from_secs(5) {
        let (status, w) = watch
            .get(&format!("/v1/workers/{id}"))
            .await
            .expect("watch connection");
        assert_eq!(status, 200, "{w}");
        assert_eq!(
            status_of(&w),
            "ready",
            "the worker left ready during the flood: {w}"
        );
        assert_eq!(w["probe"]["consecutive_failures"], 0, "a probe failed: {w}");
        polls += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(agent.is_running(), "the agent died");

    // Every idle connection is closed by the agent on time: the held ones by the head
    // timeout (counted from their accept), the others at once with or without a 503.
    let limit = HEAD_TIMEOUT + scaled(Duration::from_secs(5));
    let closes = idle
        .into_iter()
        .map(|s| tokio::spawn(time_to_close(s, flood_at, limit)))
        .collect::<Vec<_>>();
    let mut latest = Duration::ZERO;
    for c in closes {
        let t = c.await.unwrap().expect("an idle connection is still open");
        latest = latest.max(t);
    }
    eprintln!(
        "{flood} idle connections all closed {latest:?} after the flood began; {polls} polls saw the worker ready"
    );

    // Afterwards the API answers normally, nothing was evicted or failed.
    agent.api().get("/v1/health").await.expect_status(200);
    let w = agent
        .api()
        .worker(&id)
        .await
        .expect("the worker is still there");
    assert_eq!(status_of(&w), "ready", "{w}");
    let text = agent.api().metrics().await;
    for l in text
        .lines()
        .filter(|l| l.starts_with("probemesh_evictions_total{"))
    {
        assert!(l.ends_with(" 0"), "something was evicted: {l}");
    }
    assert!(
        metric_or_zero(&text, "probemesh_probes_total{result=\"ok\"}") > ok_before,
        "probes went on"
    );
    assert_eq!(
        metric(&text, "probemesh_admin_max_connections"),
        Some(128.0),
        "cap below 256 fds"
    );
    for s in text
        .lines()
        .filter(|l| l.starts_with("probemesh_probes_total{"))
    {
        assert!(s.contains("result=\"ok\""), "a probe failed: {s}");
    }
    assert!(
        metric_or_zero(
            &text,
            "probemesh_admin_connections_refused_total{reason=\"cap\"}"
        ) >= 1.0,
        "{text}"
    );
    assert!(
        metric_or_zero(
            &text,
            "probemesh_admin_connections_closed_total{reason=\"head_timeout\"}"
        ) >= 100.0,
        "{text}"
    );
    assert_eq!(
        metric_or_zero(
            &text,
            "probemesh_admin_connections_refused_total{reason=\"accept_error\"}"
        ),
        0.0,
        "{text}"
    );
    let log = agent.log();
    assert!(
        !log.contains("Too many open files"),
        "EMFILE in the agent log"
    );
    assert!(
        log.contains("lowered"),
        "no warning about the lowered cap in the log"
    );
}
