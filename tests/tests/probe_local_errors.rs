//! A node that runs out of file descriptors must not blame its workers (SPEC S13).
//!
//! The agent's open-file limit is squeezed, while it runs, to the descriptors it holds,
//! so every probe that needs a new connection fails with EMFILE at `socket()`. The
//! workers here close their connection after each answer, so every probe of theirs
//! needs one; a worker that keeps its connection is probed over it all along (the
//! probe client keeps one connection per worker), which the test checks too. Without
//! S13 the healthy workers would go ready → not_ready → failed → tombstoned within a
//! few hundred milliseconds; with it they stay ready, and the faults are counted. The
//! API is read over one keep-alive connection opened before the squeeze, since the
//! agent cannot accept a new one then.

use probemesh_tests::{Agent, Health, TestWorker, eventually, id_of, metric, require, scaled};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A worker that answers every request 200 with `Connection: close` and closes, so
/// every probe of it needs a new connection. Stops when dropped.
struct ClosingWorker {
    port: u16,
    requests: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl ClosingWorker {
    fn start() -> ClosingWorker {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let requests = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (Arc::clone(&requests), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let Ok((mut c, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                };
                let _ = c.set_nonblocking(false);
                let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.ends_with(b"\r\n\r\n") {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                if head.ends_with(b"\r\n\r\n") {
                    r.fetch_add(1, Ordering::SeqCst);
                    let _ = c.write_all(
                        b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
                    );
                }
            }
        });
        ClosingWorker {
            port,
            requests,
            stop,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for ClosingWorker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// HTTP/1.1 GETs over one kept-alive connection (bodies framed by Content-Length).
struct KeepAlive {
    reader: BufReader<TcpStream>,
}

impl KeepAlive {
    fn connect(port: u16) -> KeepAlive {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the admin API");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        KeepAlive {
            reader: BufReader::new(s),
        }
    }

    fn get(&mut self, path: &str) -> (u16, String) {
        let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        self.reader
            .get_mut()
            .write_all(req.as_bytes())
            .expect("send");
        let mut status_line = String::new();
        self.reader
            .read_line(&mut status_line)
            .expect("status line");
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).expect("header");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().expect("content-length");
            }
        }
        let mut body = vec![0u8; len];
        self.reader.read_exact(&mut body).expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    fn worker(&mut self, id: &str) -> Value {
        let (status, body) = self.get(&format!("/v1/workers/{id}"));
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("worker JSON")
    }
}

/// The lowest descriptor number `pid` does not use: the number its next `open` or
/// `socket` would get. A soft limit at that number makes every new descriptor fail.
fn lowest_free_fd(pid: u32) -> u64 {
    let used: std::collections::BTreeSet<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("list the agent's descriptors")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    (0..).find(|n| !used.contains(n)).unwrap_or(0)
}

/// Sets the soft open-file limit of `pid` (the hard limit stays).
fn set_soft_nofile(pid: u32, soft: &str) {
    let out = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--nofile={soft}:")])
        .output()
        .expect("run prlimit");
    assert!(
        out.status.success(),
        "prlimit: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn soft_nofile(pid: u32) -> String {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files");
    line.split_whitespace().nth(3).unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_healthy_workers_stay_ready_and_faults_are_counted() {
    if !require::tool(
        "prlimit",
        "change the agent's open-file limit while it runs",
    ) {
        return;
    }
    let mut agent = Agent::start(&["--probe-interval", "100ms", "--probe-timeout", "500ms"]).await;
    let workers: Vec<ClosingWorker> = (0..3).map(|_| ClosingWorker::start()).collect();
    let kept = TestWorker::start(Health::Healthy);
    let mut ids = Vec::new();
    for url in workers.iter().map(ClosingWorker::url).chain([kept.url()]) {
        ids.push(id_of(&agent.api().register(&json!({"url": url})).await));
    }
    for id in &ids {
        probemesh_tests::wait_status(agent.api(), id, "ready").await;
    }
    let pid = agent.pid().expect("agent pid");
    let port = agent.port();
    let before_soft = soft_nofile(pid);
    let mut conn = KeepAlive::connect(port);
    assert_eq!(conn.get("/v1/health").0, 200);

    // No descriptor left: the limit is the lowest free descriptor number, so every new
    // socket fails with EMFILE. A probe in flight at that moment frees a lower number
    // when it ends, so the squeeze is repeated until no such hole is left.
    for _ in 0..5 {
        set_soft_nofile(pid, &lowest_free_fd(pid).to_string());
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let hold = scaled(Duration::from_secs(3));
    let kept_before = kept.requests();
    let started = Instant::now();
    let mut checks = 0;
    let mut local = 0.0;
    while started.elapsed() < hold {
        for id in &ids {
            let w = conn.worker(id);
            assert_eq!(
                w["status"],
                "ready",
                "a worker left ready because this node ran out of descriptors: {w}\n{}",
                agent.log()
            );
        }
        let (_, text) = conn.get("/metrics");
        local = metric(
            &text,
            r#"probemesh_probe_local_errors_total{kind="descriptors"}"#,
        )
        .unwrap_or(0.0);
        checks += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let kept_probes = kept.requests() - kept_before;
    set_soft_nofile(pid, &before_soft);
    eprintln!(
        "out of descriptors for {:.1} s: {checks} checks, all 4 workers stayed ready; {local} probes failed locally; {kept_probes} probes of the worker that keeps its connection went through",
        hold.as_secs_f64()
    );
    assert!(
        kept_probes >= 5,
        "a kept connection needs no new descriptor: its worker should have been probed over it ({kept_probes} probes)"
    );
    assert!(
        local >= 10.0,
        "probes should have hit EMFILE (got {local}); log:\n{}",
        agent.log()
    );
    let (_, text) = conn.get("/metrics");
    assert_eq!(
        metric(&text, r#"probemesh_evictions_total{reason="failed"}"#).unwrap_or(0.0),
        0.0
    );

    // Descriptors are back: probes reach the workers again and the API takes new
    // connections.
    for w in &workers {
        let seen = w.requests();
        eventually(
            "a closing worker to be probed again",
            scaled(Duration::from_secs(5)),
            Duration::from_millis(5),
            || async {
                if w.requests() >= seen + 2 {
                    Ok(())
                } else {
                    Err(format!("{} requests", w.requests()))
                }
            },
        )
        .await;
    }
    eventually(
        "new admin connections accepted",
        Duration::from_secs(5),
        Duration::from_millis(50),
        || async {
            agent
                .api()
                .try_send(reqwest::Method::GET, "/v1/health", None)
                .await
                .map(|_| ())
        },
    )
    .await;
    assert!(
        agent.log().contains("lack of a local resource"),
        "the fault was logged"
    );
    assert!(agent.is_running());
}
