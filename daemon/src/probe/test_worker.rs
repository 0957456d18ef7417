//! A scripted HTTP worker on loopback for the probe tests: how it treats each
//! connection is set per worker, and it reports what it saw.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// How a scripted worker treats a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Answers every request with `answer` and keeps the connection open.
    KeepAlive,
    /// Answers with `Connection: close`, then closes.
    CloseWithHeader,
    /// Answers as keep-alive, then closes anyway (a restart, an idle timeout).
    CloseSilently,
    /// Answers the first request on a connection; on the second, closes without an
    /// answer (the worker's idle timeout fired just as the probe was sent).
    DropSecondRequest,
    /// Closes on the first request without an answer.
    DropEveryRequest,
    /// Reads requests and never answers.
    Hang,
    /// Answers as soon as any bytes arrive, whatever they are, then closes (a plain
    /// HTTP server sent a TLS hello).
    Eager,
}

/// What a scripted worker saw.
#[derive(Default, Debug)]
pub struct Seen {
    pub accepted: AtomicUsize,
    pub closed: AtomicUsize,
    pub requests: Mutex<Vec<String>>,
}

impl Seen {
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
    pub fn closed(&self) -> usize {
        self.closed.load(Ordering::SeqCst)
    }
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

pub const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

/// A worker on 127.0.0.1 answering `answer` (a whole HTTP response) as `mode` says.
pub async fn worker(mode: Mode, answer: &'static str) -> (reqwest::Url, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url =
        reqwest::Url::parse(&format!("http://{}/health", listener.local_addr().unwrap())).unwrap();
    let seen = Arc::new(Seen::default());
    let s = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            s.accepted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(conn, mode, answer, Arc::clone(&s)));
        }
    });
    (url, seen)
}

/// Serves one connection; counts it closed when it ends (either side closing).
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut conn: S,
    mode: Mode,
    answer: &'static str,
    seen: Arc<Seen>,
) {
    let mut buf = vec![0u8; 4096];
    let mut head = String::new();
    let mut served = 0;
    loop {
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.push_str(&String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase()),
        }
        if mode == Mode::Eager {
            let _ = conn.write_all(answer.as_bytes()).await;
            break;
        }
        if !head.ends_with("\r\n\r\n") {
            continue;
        }
        seen.requests
            .lock()
            .unwrap()
            .push(std::mem::take(&mut head));
        served += 1;
        match mode {
            Mode::Hang => continue,
            Mode::DropEveryRequest => break,
            Mode::DropSecondRequest if served == 2 => break,
            _ => {}
        }
        let reply = if mode == Mode::CloseWithHeader {
            answer.replacen("\r\n", "\r\nconnection: close\r\n", 1)
        } else {
            answer.to_string()
        };
        if conn.write_all(reply.as_bytes()).await.is_err() {
            break;
        }
        if matches!(mode, Mode::CloseWithHeader | Mode::CloseSilently) {
            break;
        }
    }
    drop(conn);
    seen.closed.fetch_add(1, Ordering::SeqCst);
}

/// Polls `cond` every 10 ms until it holds, failing after 10 s.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
