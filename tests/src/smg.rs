//! The real `smg` gateway for end-to-end tests: installed from PyPI into a cached
//! virtual environment on first use, started on loopback (or inside a network
//! namespace), and a fake OpenAI-compatible worker it accepts.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The smg release the tests run against.
pub const SMG_VERSION: &str = "1.13.0";

/// The cached virtual environment (override with `PROBEMESH_SMG_VENV`).
pub fn venv_dir() -> PathBuf {
    if let Ok(d) = std::env::var("PROBEMESH_SMG_VENV") {
        return PathBuf::from(d);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home).join(".cache/probemesh/smg-venv")
}

/// Path of the `smg` executable, installing smg on first use. Errors say why it is not
/// available (no python3, no network), so callers can skip with a reason.
pub fn smg_bin() -> Result<PathBuf, String> {
    let dir = venv_dir();
    let bin = dir.join("bin/smg");
    let marker = dir.join(format!(".probemesh-smg-{SMG_VERSION}"));
    if bin.exists() && marker.exists() {
        return Ok(bin);
    }
    std::fs::create_dir_all(dir.parent().unwrap_or(&dir)).map_err(|e| e.to_string())?;
    // One installer at a time across test processes.
    let lock_path = dir.with_extension("lock");
    let lock =
        std::fs::File::create(&lock_path).map_err(|e| format!("{}: {e}", lock_path.display()))?;
    lock.lock().map_err(|e| e.to_string())?;
    if bin.exists() && marker.exists() {
        return Ok(bin);
    }
    let run = |cmd: &mut Command| -> Result<(), String> {
        let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{cmd:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    if !dir.join("bin/pip").exists() {
        run(Command::new("python3").args(["-m", "venv"]).arg(&dir))?;
    }
    run(Command::new(dir.join("bin/pip")).args(["install", "-q", &format!("smg=={SMG_VERSION}")]))?;
    std::fs::write(&marker, SMG_VERSION).map_err(|e| e.to_string())?;
    Ok(bin)
}

/// A running smg gateway, killed on drop.
#[derive(Debug)]
pub struct Smg {
    child: Child,
    /// Base URL, e.g. `http://127.0.0.1:30000`.
    pub url: String,
}

impl Smg {
    /// Starts `smg launch` listening on `host:port`; `prefix` runs it through a command
    /// such as `ip netns exec NS`; `extra` adds flags. Waits until `/workers` answers.
    pub fn start(
        prefix: &[&str],
        host: &str,
        port: u16,
        extra: &[&str],
        log: &std::path::Path,
    ) -> Smg {
        let bin = smg_bin().expect("smg available");
        let prom = crate::wait::free_port();
        let mut args: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
        args.push(bin.to_string_lossy().into_owned());
        args.extend(
            [
                "launch",
                "--host",
                host,
                "--port",
                &port.to_string(),
                "--prometheus-port",
                &prom.to_string(),
                "--prometheus-host",
                host,
            ]
            .map(String::from),
        );
        args.extend(extra.iter().map(|s| s.to_string()));
        let logf = std::fs::File::create(log).expect("smg log");
        let child = Command::new(&args[0])
            .args(&args[1..])
            .stdout(logf.try_clone().expect("log"))
            .stderr(logf)
            .spawn()
            .expect("start smg");
        Smg {
            child,
            url: format!("http://{host}:{port}"),
        }
    }

    /// Waits until `/workers` answers, using `get` (which may run inside a namespace).
    pub async fn wait_up(&self, get: impl AsyncFn(&str) -> Option<Value>) {
        let end = Instant::now() + crate::wait::scaled(Duration::from_secs(60));
        while Instant::now() < end {
            if get(&format!("{}/workers", self.url)).await.is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("smg at {} did not come up", self.url);
    }
}

impl Drop for Smg {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fake OpenAI-compatible inference server that smg accepts: `/health` answers 200
/// or 503 as the test says, `/v1/models` names one model, chat completions answer
/// (after [`LlmWorker::set_chat_delay`], and as server-sent events when the request
/// asks for `"stream": true`).
#[derive(Debug)]
pub struct LlmWorker {
    state: Arc<LlmState>,
    runtime: Option<tokio::runtime::Runtime>,
    /// Its port on 127.0.0.1 (or on the namespace address it was bound to).
    pub port: u16,
}

#[derive(Debug, Default)]
struct LlmState {
    unhealthy: AtomicBool,
    chats: AtomicU64,
    answered: AtomicU64,
    chat_delay_ms: AtomicU64,
    health_checks: AtomicU64,
}

/// Content chunks of a streamed chat completion (`t0 ` … `t9 `, then `[DONE]`).
pub const STREAM_CHUNKS: u32 = 10;

/// The model the fake worker serves.
pub const FAKE_MODEL: &str = "fake-model";

impl LlmWorker {
    /// Serves on `listener` (bound by the caller, possibly inside a namespace).
    pub fn serve(listener: std::net::TcpListener) -> LlmWorker {
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(LlmState::default());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let app = Router::new()
            .route("/health", get(health))
            .route("/v1/models", get(|| async { axum::Json(json!({"object": "list", "data": [{"id": FAKE_MODEL, "object": "model", "owned_by": "test"}]})) }))
            .route("/get_model_info", get(|| async { axum::Json(json!({"model_path": FAKE_MODEL, "is_generation": true})) }))
            .route("/get_server_info", get(|| async { axum::Json(json!({"model_path": FAKE_MODEL})) }))
            .route("/v1/chat/completions", post(chat))
            .fallback(|| async { axum::Json(json!({})) })
            .with_state(Arc::clone(&state));
        runtime.spawn(async move {
            let l = tokio::net::TcpListener::from_std(listener).expect("listener");
            let _ = axum::serve(l, app).await;
        });
        LlmWorker {
            state,
            runtime: Some(runtime),
            port,
        }
    }

    /// Serves on 127.0.0.1 at a random port.
    pub fn start() -> LlmWorker {
        LlmWorker::serve(std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
    }

    /// Makes `/health` answer 503 (`false`) or 200 (`true`).
    pub fn set_healthy(&self, healthy: bool) {
        self.state.unhealthy.store(!healthy, Ordering::SeqCst);
    }

    /// Chat completions received.
    pub fn chats(&self) -> u64 {
        self.state.chats.load(Ordering::SeqCst)
    }

    /// Chat completions answered in full (for a stream: its last chunk produced).
    pub fn answered(&self) -> u64 {
        self.state.answered.load(Ordering::SeqCst)
    }

    /// Makes every chat completion take `delay` (default none): a plain one answers
    /// after it, a streamed one spreads its [`STREAM_CHUNKS`] chunks over it.
    pub fn set_chat_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.state.chat_delay_ms.store(ms, Ordering::SeqCst);
    }
}

impl Drop for LlmWorker {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

async fn health(State(s): State<Arc<LlmState>>) -> StatusCode {
    s.health_checks.fetch_add(1, Ordering::SeqCst);
    if s.unhealthy.load(Ordering::SeqCst) {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    }
}

async fn chat(State(s): State<Arc<LlmState>>, body: axum::body::Bytes) -> Response {
    s.chats.fetch_add(1, Ordering::SeqCst);
    let delay = Duration::from_millis(s.chat_delay_ms.load(Ordering::SeqCst));
    let stream = serde_json::from_slice::<Value>(&body).is_ok_and(|v| v["stream"] == true);
    if stream {
        return streamed(s, delay);
    }
    tokio::time::sleep(delay).await;
    s.answered.fetch_add(1, Ordering::SeqCst);
    axum::Json(json!({
        "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": FAKE_MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    }))
    .into_response()
}

/// A streamed chat completion: chunk `i` after `i / STREAM_CHUNKS` of `delay`, then
/// `[DONE]`. A client that goes away stops the stream (the body is dropped).
fn streamed(s: Arc<LlmState>, delay: Duration) -> Response {
    let gap = delay / STREAM_CHUNKS;
    let chunks = futures_util::stream::unfold(0u32, move |i| {
        let s = Arc::clone(&s);
        async move {
            if i > STREAM_CHUNKS {
                return None;
            }
            if i > 0 {
                tokio::time::sleep(gap).await;
            }
            let text = if i == STREAM_CHUNKS {
                s.answered.fetch_add(1, Ordering::SeqCst);
                "data: [DONE]\n\n".to_string()
            } else {
                let chunk = json!({
                    "id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 0, "model": FAKE_MODEL,
                    "choices": [{"index": 0, "delta": {"content": format!("t{i} ")}, "finish_reason": null}]
                });
                format!("data: {chunk}\n\n")
            };
            Some((Ok::<_, std::convert::Infallible>(text), i + 1))
        }
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(axum::body::Body::from_stream(chunks))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
