//! `TestWorker`: an in-test HTTP server standing in for an inference worker, whose
//! health answer the test changes at run time.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;

/// How a [`TestWorker`] answers. Every path and method answers the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// 200 `ok`.
    Healthy,
    /// This status code (e.g. 503).
    Status(u16),
    /// No answer: the request is held open. When the mode changes, held requests answer
    /// according to the new mode.
    Hang,
    /// 200 and 503 alternately, per request received in this mode (first 200).
    Flap,
    /// Each request takes the next status code queued with [`TestWorker::allow`], in
    /// arrival order, and is held until one is queued. Lets a test advance the probe
    /// sequence one exact step at a time.
    Gated,
}

#[derive(Debug)]
struct Inner {
    mode: Mutex<Health>,
    flap: AtomicU64,
    tokens: Mutex<VecDeque<u16>>,
    requests: AtomicU64,
    per_path: Mutex<HashMap<String, u64>>,
    answers: Mutex<HashMap<u16, u64>>,
    /// The model ids `GET …/v1/models` lists (an OpenAI-style listing); `None`: that
    /// path answers like any other.
    models: Mutex<Option<Vec<String>>>,
    changed: watch::Sender<u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    fn bump(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    /// The answer for one request now, or `None` to keep holding it.
    fn decide(&self) -> Option<u16> {
        match *lock(&self.mode) {
            Health::Healthy => Some(200),
            Health::Status(code) => Some(code),
            Health::Hang => None,
            Health::Flap => {
                let n = self.flap.fetch_add(1, Ordering::SeqCst);
                Some(if n.is_multiple_of(2) { 200 } else { 503 })
            }
            Health::Gated => lock(&self.tokens).pop_front(),
        }
    }
}

async fn handle(State(inner): State<Arc<Inner>>, uri: Uri) -> Response {
    inner.requests.fetch_add(1, Ordering::SeqCst);
    *lock(&inner.per_path)
        .entry(uri.path().to_string())
        .or_insert(0) += 1;
    loop {
        // Subscribe before deciding, so a change right after the decision still wakes us.
        let mut rx = inner.changed.subscribe();
        if let Some(code) = inner.decide() {
            *lock(&inner.answers).entry(code).or_insert(0) += 1;
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if status.is_success()
                && uri.path().ends_with("/v1/models")
                && let Some(models) = lock(&inner.models).clone()
            {
                let data: Vec<serde_json::Value> = models
                    .iter()
                    .map(|id| serde_json::json!({"id": id, "object": "model", "owned_by": "test"}))
                    .collect();
                let listing = serde_json::json!({"object": "list", "data": data});
                return (status, axum::Json(listing)).into_response();
            }
            let body = if status.is_success() {
                "ok"
            } else {
                "unhealthy"
            };
            return (status, body).into_response();
        }
        if rx.changed().await.is_err() {
            // The worker is shutting down.
            std::future::pending::<()>().await;
        }
    }
}

/// An HTTP server on 127.0.0.1 (random port) on its own runtime thread. Counts the
/// requests it receives, in total and per path. Stopped on drop.
#[derive(Debug)]
pub struct TestWorker {
    inner: Arc<Inner>,
    port: u16,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TestWorker {
    /// Starts a worker answering as `mode`.
    pub fn start(mode: Health) -> TestWorker {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind test worker");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("local_addr").port();
        let (changed, _) = watch::channel(0);
        let inner = Arc::new(Inner {
            mode: Mutex::new(mode),
            flap: AtomicU64::new(0),
            tokens: Mutex::new(VecDeque::new()),
            requests: AtomicU64::new(0),
            per_path: Mutex::new(HashMap::new()),
            answers: Mutex::new(HashMap::new()),
            models: Mutex::new(None),
            changed,
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("test-worker")
            .enable_all()
            .build()
            .expect("test worker runtime");
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&inner));
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("from_std");
            let _ = axum::serve(listener, app).await;
        });
        TestWorker {
            inner,
            port,
            runtime: Some(runtime),
        }
    }

    /// Base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Base URL with a path, `http://127.0.0.1:PORT{path}` (path starts with `/`), for
    /// registering several workers served by this one server.
    pub fn url_with(&self, path: &str) -> String {
        format!("{}{path}", self.url())
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Makes `GET …/v1/models` list exactly `ids` (while the mode answers 2xx).
    pub fn set_models(&self, ids: &[&str]) {
        *lock(&self.inner.models) = Some(ids.iter().map(|s| s.to_string()).collect());
    }

    /// Changes how requests are answered, including requests held right now.
    pub fn set(&self, mode: Health) {
        *lock(&self.inner.mode) = mode;
        self.inner.flap.store(0, Ordering::SeqCst);
        self.inner.bump();
    }

    /// The current mode.
    pub fn mode(&self) -> Health {
        *lock(&self.inner.mode)
    }

    /// In [`Health::Gated`] mode: lets the next `codes.len()` requests answer with these
    /// codes, in order.
    pub fn allow(&self, codes: &[u16]) {
        lock(&self.inner.tokens).extend(codes.iter().copied());
        self.inner.bump();
    }

    /// Requests received so far (counted on arrival, answered or not).
    pub fn requests(&self) -> u64 {
        self.inner.requests.load(Ordering::SeqCst)
    }

    /// Answers given so far with status `code`.
    pub fn answers(&self, code: u16) -> u64 {
        lock(&self.inner.answers).get(&code).copied().unwrap_or(0)
    }

    /// Requests received so far for exactly this path (e.g. `/a/health`).
    pub fn requests_to(&self, path: &str) -> u64 {
        lock(&self.inner.per_path).get(path).copied().unwrap_or(0)
    }

    /// Waits until at least `n` requests arrived in total (deadline scaled by patience).
    pub async fn wait_requests(&self, n: u64, deadline: Duration) {
        crate::wait::eventually(
            &format!("test worker on port {} to receive {n} requests", self.port),
            deadline,
            Duration::from_millis(5),
            || async {
                let got = self.requests();
                if got >= n {
                    Ok(())
                } else {
                    Err(format!("{got} requests"))
                }
            },
        )
        .await
    }

    /// Waits until at least `n` requests arrived for `path`.
    pub async fn wait_requests_to(&self, path: &str, n: u64, deadline: Duration) {
        crate::wait::eventually(
            &format!("test worker to receive {n} requests for {path}"),
            deadline,
            Duration::from_millis(5),
            || async {
                let got = self.requests_to(path);
                if got >= n {
                    Ok(())
                } else {
                    Err(format!("{got} requests for {path}"))
                }
            },
        )
        .await
    }
}

impl Drop for TestWorker {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            // Safe inside an async test: does not block on held requests.
            rt.shutdown_background();
        }
    }
}
