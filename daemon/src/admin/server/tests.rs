//! The server against real sockets on 127.0.0.1, with a small router and short timers.

use super::*;
use crate::admin::error::ApiError;
use axum::routing::get;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Running {
    addr: SocketAddr,
    metrics: AdminMetrics,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn router() -> Router {
    Router::new()
        .route(
            "/ok",
            get(|| async { axum::Json(serde_json::json!({"ok": true})) }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                "done"
            }),
        )
        .route(
            "/ours",
            get(|| async { ApiError::bad_request("INVALID_QUERY", "ours") }),
        )
}

async fn start(config: ServerConfig) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let metrics = AdminMetrics::default();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve(
        listener,
        router(),
        config,
        metrics.clone(),
        shutdown.clone(),
    ));
    Running {
        addr,
        metrics,
        shutdown,
        task,
    }
}

fn short_timers(max_connections: usize) -> ServerConfig {
    ServerConfig {
        timeouts: Timeouts {
            head: Duration::from_millis(400),
            idle: Duration::from_millis(1200),
        },
        ..ServerConfig::new(max_connections, 4)
    }
}

/// Reads until the server closes (at most 5 s); returns the text.
async fn read_all(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

/// Reads one response with a content-length (keep-alive), at most 5 s.
async fn read_response(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let done = |b: &[u8]| {
        let text = String::from_utf8_lossy(b);
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            return false;
        };
        let len = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        body.len() >= len
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while !done(&buf) {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&buf).into_owned()
}

async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(request).await;
    read_all(&mut s).await
}

fn status_and_code(text: &str) -> (u16, String) {
    let status = text
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let code = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_string))
        .unwrap_or_default();
    if !code.is_empty() {
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{head}"
        );
    }
    (status, code)
}

/// Whether the server closed `s` (EOF or reset) within `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut b = [0u8; 64];
    matches!(
        tokio::time::timeout(within, s.read(&mut b)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn rejections_made_by_hyper_become_json_errors() {
    let srv = start(ServerConfig::new(64, 4)).await;
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70 * 1024));
    let long_target = format!("GET /{} HTTP/1.1\r\n", "a".repeat(100 * 1024));
    let huge_header = format!(
        "GET /ok HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(90 * 1024)
    );
    let many_headers = format!(
        "GET /ok HTTP/1.1\r\n{}\r\n",
        (0..150)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("garbage", b"hello\r\n\r\n".to_vec(), 400, "BAD_REQUEST"),
        (
            "bad method",
            b"G(T /ok HTTP/1.1\r\n\r\n".to_vec(),
            400,
            "BAD_REQUEST",
        ),
        (
            "bad header",
            b"GET /ok HTTP/1.1\r\nBad Header\r\n\r\n".to_vec(),
            400,
            "BAD_REQUEST",
        ),
        ("70 KB URI", long_uri.into_bytes(), 414, "URI_TOO_LONG"),
        (
            "endless target",
            long_target.into_bytes(),
            414,
            "URI_TOO_LONG",
        ),
        (
            "huge header",
            huge_header.into_bytes(),
            431,
            "HEADERS_TOO_LARGE",
        ),
        (
            "150 headers",
            many_headers.into_bytes(),
            431,
            "HEADERS_TOO_LARGE",
        ),
        (
            "HTTP/2.0 line",
            b"GET /ok HTTP/2.0\r\n\r\n".to_vec(),
            505,
            "HTTP_VERSION_NOT_SUPPORTED",
        ),
        (
            "HTTP/1.2 line",
            b"GET /ok HTTP/1.2\r\n\r\n".to_vec(),
            505,
            "HTTP_VERSION_NOT_SUPPORTED",
        ),
        (
            "h2 preface",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            505,
            "HTTP_VERSION_NOT_SUPPORTED",
        ),
    ];
    for (name, request, status, code) in cases {
        let text = exchange(srv.addr, &request).await;
        assert_eq!(
            status_and_code(&text),
            (status, code.to_string()),
            "{name}: {text:?}"
        );
    }
    assert_eq!(srv.metrics.connections_refused("cap"), 0);

    // The router's own 400 passes untouched, and a good request after a bad one on
    // another connection is served.
    let text = exchange(srv.addr, b"GET /ours HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert_eq!(
        status_and_code(&text),
        (400, "INVALID_QUERY".into()),
        "{text}"
    );
    let text = exchange(
        srv.addr,
        b"HEAD /ours HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("content-type: application/json"), "{text}");
    let text = exchange(srv.addr, b"GET /ok HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    srv.shutdown.cancel();
    srv.task.await.unwrap();
}

#[tokio::test]
async fn a_bad_head_after_a_good_request_on_one_connection_is_json_too() {
    let srv = start(ServerConfig::new(64, 4)).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"HEAD /ok HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let first = read_response(&mut s).await;
    assert!(first.starts_with("HTTP/1.1 200 OK"), "{first}");
    s.write_all(b"GET /ok HTTP/1.1\r\nBad Header\r\n\r\n")
        .await
        .unwrap();
    let text = read_all(&mut s).await;
    assert_eq!(
        status_and_code(&text),
        (400, "BAD_REQUEST".into()),
        "{text}"
    );
}

#[tokio::test]
async fn over_the_cap_a_connection_gets_a_fast_503_and_later_ones_are_served() {
    let srv = start(ServerConfig::new(2, 4)).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(srv.addr).await.unwrap();
        s.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert!(read_response(&mut s).await.starts_with("HTTP/1.1 200"));
        held.push(s);
    }
    let started = Instant::now();
    // No request sent: the answer must not wait for one.
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    let text = read_all(&mut s).await;
    let took = started.elapsed();
    assert_eq!(
        status_and_code(&text),
        (503, "TOO_MANY_CONNECTIONS".into()),
        "{text}"
    );
    assert!(text.contains("retry-after: 1\r\n") && text.contains("connection: close\r\n"));
    assert!(took < Duration::from_secs(1), "503 took {took:?}");
    // With a request sent first, the answer is the same and arrives whole.
    let text = exchange(srv.addr, b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status_and_code(&text).0, 503, "{text}");
    assert_eq!(srv.metrics.connections_refused("cap"), 2);
    assert_eq!(srv.metrics.connections_open().get(), 2);

    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = exchange(srv.addr, b"GET /ok HTTP/1.1\r\nConnection: close\r\n\r\n").await;
        if text.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "still refused: {text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn silent_and_slow_heads_are_closed_idle_keep_alive_lasts_longer() {
    let srv = start(short_timers(64)).await;
    let t = short_timers(64).timeouts;
    let margin = Duration::from_millis(600);

    // Silent: closed by the head timer.
    let started = Instant::now();
    let mut silent = TcpStream::connect(srv.addr).await.unwrap();
    assert!(
        closed_within(&mut silent, t.head + margin).await,
        "silent conn left open"
    );
    assert!(started.elapsed() >= t.head - Duration::from_millis(50));

    // Slowloris: a byte every 100 ms never completes a head; closed by the head timer
    // counted from its first byte, not from its last.
    let mut slow = TcpStream::connect(srv.addr).await.unwrap();
    let started = Instant::now();
    let closed = loop {
        if slow.write_all(b"X").await.is_err() {
            break true;
        }
        if closed_within(&mut slow, Duration::from_millis(100)).await {
            break true;
        }
        if started.elapsed() > t.head + margin {
            break false;
        }
    };
    assert!(
        closed,
        "slowloris conn left open for {:?}",
        started.elapsed()
    );

    // Keep-alive: after a request, idle past the head timer is fine...
    let mut ka = TcpStream::connect(srv.addr).await.unwrap();
    ka.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(read_response(&mut ka).await.starts_with("HTTP/1.1 200"));
    tokio::time::sleep(t.head + Duration::from_millis(200)).await;
    ka.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(
        read_response(&mut ka).await.starts_with("HTTP/1.1 200"),
        "idle conn closed too early"
    );
    // ...until the idle timer.
    let idle_from = Instant::now();
    assert!(
        closed_within(&mut ka, t.idle + margin).await,
        "idle conn left open"
    );
    assert!(idle_from.elapsed() >= t.idle - Duration::from_millis(50));

    // A request in flight longer than both timers is not cut.
    let text = exchange(srv.addr, b"GET /slow HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with("done"),
        "{text}"
    );

    assert_eq!(srv.metrics.connections_closed("head_timeout"), 2);
    assert_eq!(srv.metrics.connections_closed("idle_timeout"), 1);
}

#[tokio::test]
async fn shutdown_lets_requests_in_flight_finish_and_stops_accepting() {
    let srv = start(ServerConfig::new(64, 4)).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut idle = TcpStream::connect(srv.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    srv.shutdown.cancel();
    // The idle connection is closed at once; the slow request is answered.
    assert!(closed_within(&mut idle, Duration::from_secs(1)).await);
    let text = read_all(&mut s).await;
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with("done"),
        "{text}"
    );
    tokio::time::timeout(Duration::from_secs(3), srv.task)
        .await
        .expect("serve returns after the drain")
        .unwrap();
    assert!(
        TcpStream::connect(srv.addr).await.is_err(),
        "still accepting"
    );
}

/// A listener whose first `errors` accepts fail with EMFILE, as when the process is
/// out of descriptors; then the real one.
struct Exhausted {
    errors: u32,
    attempts: Arc<std::sync::atomic::AtomicU32>,
    real: TcpListener,
}

impl Acceptor for Exhausted {
    type Io = TcpStream;

    async fn accept(&mut self) -> std::io::Result<TcpStream> {
        self.attempts
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.errors > 0 {
            self.errors -= 1;
            return Err(std::io::Error::from_raw_os_error(libc::EMFILE));
        }
        Ok(self.real.accept().await?.0)
    }
}

#[tokio::test]
async fn accept_errors_back_off_are_counted_and_never_end_the_server() {
    let real = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = real.local_addr().unwrap();
    let attempts = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let listener = Exhausted {
        errors: 10,
        attempts: Arc::clone(&attempts),
        real,
    };
    let metrics = AdminMetrics::default();
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let task = tokio::spawn(serve(
        listener,
        router(),
        ServerConfig::new(8, 2),
        metrics.clone(),
        shutdown.clone(),
    ));
    // The connection waits in the backlog while accept fails, then is served.
    let text = exchange(addr, b"GET /ok HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let took = started.elapsed();
    assert_eq!(metrics.connections_refused("accept_error"), 10);
    // 10 failed, 1 served, 1 waiting for the next connection: no spinning.
    assert_eq!(attempts.load(std::sync::atomic::Ordering::SeqCst), 12);
    // 10 + 20 + 40 + 80 + 6 x 100 ms of back-off: the loop paused, not spun.
    assert!(took >= Duration::from_millis(700), "served after {took:?}");
    assert!(!task.is_finished());
    shutdown.cancel();
    task.await.unwrap();
}

#[test]
fn accept_backoff_is_short_and_bounded() {
    let pauses: Vec<u64> = (1..=7).map(|n| backoff(n).as_millis() as u64).collect();
    assert_eq!(pauses, [10, 20, 40, 80, 100, 100, 100]);
    let emfile = std::io::Error::from_raw_os_error(libc::EMFILE);
    assert_eq!(accept_error_kind(&emfile), "out_of_file_descriptors");
    let aborted = std::io::Error::from_raw_os_error(libc::ECONNABORTED);
    assert_eq!(accept_error_kind(&aborted), "connection_aborted");
}
