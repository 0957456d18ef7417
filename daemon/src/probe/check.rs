//! One health check: `GET url + path` with a timeout. A failed probe is a value, not
//! an error; each kind of failure gets its own result name. The URL comes from
//! `WorkerUrl::probe_url` (the worker's own scheme, host and port), and the allowlist
//! is checked on the address dialled ([`super::allow`]).

use super::allow::{Allowlist, AllowlistResolver, NotAllowed};
use std::error::Error as StdError;
use std::time::{Duration, Instant};

/// Largest health body read; the rest is not read (the connection is then not reused).
const MAX_BODY: usize = 64 * 1024;

/// What a probe found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeResult {
    /// A 2xx answer.
    Ok(u16),
    /// A non-2xx answer.
    HttpStatus(u16),
    /// No complete answer within the timeout.
    Timeout,
    /// The connection was refused.
    Refused,
    /// Another connection failure (unreachable, reset, DNS).
    ConnectError,
    /// The TLS handshake failed (bad certificate, protocol error).
    TlsError,
    /// Anything else (malformed response, body error).
    Error,
    /// The address it would dial is outside `--allow-worker-cidr`: nothing was sent.
    NotAllowed,
    /// This node ran out of a local resource before the worker was reached: the node's
    /// fault, never counted against the worker (SPEC S13).
    Local(LocalResource),
}

/// A local resource whose exhaustion fails a probe on this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LocalResource {
    /// `EMFILE`/`ENFILE`: the process or the system is out of file descriptors.
    Descriptors,
    /// `ENOBUFS`: the kernel is out of socket buffers.
    Buffers,
    /// `EADDRNOTAVAIL` on connect: no local port is free.
    Ports,
    /// `ENOMEM`.
    Memory,
}

impl LocalResource {
    /// A bounded label (`probemesh_probe_local_errors_total{kind}`).
    pub fn as_str(self) -> &'static str {
        match self {
            LocalResource::Descriptors => "descriptors",
            LocalResource::Buffers => "buffers",
            LocalResource::Ports => "ports",
            LocalResource::Memory => "memory",
        }
    }

    /// The resource an OS error number says is exhausted, if it is one of ours.
    pub fn from_errno(errno: i32) -> Option<LocalResource> {
        // Linux numbers; probemesh runs on Linux (docs/operations.md).
        match errno {
            23 | 24 => Some(LocalResource::Descriptors), // ENFILE, EMFILE
            105 => Some(LocalResource::Buffers),         // ENOBUFS
            99 => Some(LocalResource::Ports),            // EADDRNOTAVAIL
            12 => Some(LocalResource::Memory),           // ENOMEM
            _ => None,
        }
    }
}

impl ProbeResult {
    /// Whether this counts as a success for the state machine.
    pub fn is_success(self) -> bool {
        matches!(self, ProbeResult::Ok(_))
    }

    /// A bounded label for metrics.
    pub fn class(self) -> &'static str {
        match self {
            ProbeResult::Ok(_) => "ok",
            ProbeResult::HttpStatus(_) => "http_error",
            ProbeResult::Timeout => "timeout",
            ProbeResult::Refused => "refused",
            ProbeResult::ConnectError => "connect_error",
            ProbeResult::TlsError => "tls_error",
            ProbeResult::Error => "error",
            ProbeResult::NotAllowed => "not_allowed",
            ProbeResult::Local(_) => "local_error",
        }
    }

    /// The `last_result` shown in the API: the class, with the status code for HTTP
    /// errors (`http_503`).
    pub fn describe(self) -> String {
        match self {
            ProbeResult::HttpStatus(code) => format!("http_{code}"),
            ProbeResult::Local(r) => format!("local_{}", r.as_str()),
            other => other.class().to_string(),
        }
    }
}

/// A probe's result and how long it took.
#[derive(Clone, Copy, Debug)]
pub struct ProbeReport {
    /// What was found.
    pub result: ProbeResult,
    /// Time from request start to the end of the body (or the failure).
    pub latency: Duration,
}

/// Makes health checks over two shared HTTP clients: plain-HTTP workers get a new
/// connection per probe, HTTPS workers keep one idle connection each.
///
/// A kept-alive connection costs about 24 KiB of buffers in this process, so 10,000
/// plain-HTTP workers held about 240 MiB of idle connections between probes; a
/// loopback or LAN TCP connect costs far less than that memory is worth (Kubernetes
/// and Consul probe the same way). A TLS handshake, on the other hand, costs real CPU
/// at every probe, so HTTPS workers keep their connection.
#[derive(Clone, Debug)]
pub struct Checker {
    plain: reqwest::Client,
    tls: reqwest::Client,
    allow: Allowlist,
}

impl Checker {
    /// A checker that follows no redirects (a 3xx is not healthy), ignores proxy
    /// environment variables and, with a non-empty `allow` (`--allow-worker-cidr`),
    /// dials only addresses inside it.
    pub fn new(allow: Vec<ipnet::IpNet>) -> Result<Checker, reqwest::Error> {
        crate::install_crypto_provider();
        let allow = Allowlist::new(allow);
        let builder = || {
            let b = reqwest::Client::builder()
                .user_agent(concat!("probemesh/", env!("CARGO_PKG_VERSION")))
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .tcp_nodelay(true);
            if allow.is_empty() {
                b
            } else {
                b.dns_resolver(AllowlistResolver::new(allow.clone()))
            }
        };
        // `Connection: close` makes the worker close first, so the closed connection's
        // TIME_WAIT state stays on the worker, not in this node's port range.
        let mut close = reqwest::header::HeaderMap::new();
        close.insert(
            reqwest::header::CONNECTION,
            reqwest::header::HeaderValue::from_static("close"),
        );
        let plain = builder()
            .pool_max_idle_per_host(0)
            .default_headers(close)
            .build()?;
        let tls = builder()
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1)
            .build()?;
        Ok(Checker { plain, tls, allow })
    }

    /// Probes `url` once.
    pub async fn probe(&self, url: &reqwest::Url, timeout: Duration) -> ProbeReport {
        let start = Instant::now();
        if !self.allow.permits(url) {
            return ProbeReport {
                result: ProbeResult::NotAllowed,
                latency: start.elapsed(),
            };
        }
        let result = match tokio::time::timeout(timeout, self.request(url)).await {
            Ok(r) => r,
            Err(_) => ProbeResult::Timeout,
        };
        ProbeReport {
            result,
            latency: start.elapsed(),
        }
    }

    async fn request(&self, url: &reqwest::Url) -> ProbeResult {
        let client = if url.scheme() == "https" {
            &self.tls
        } else {
            &self.plain
        };
        let mut resp = match client.get(url.clone()).send().await {
            Ok(r) => r,
            Err(e) => return classify(&e),
        };
        let code = resp.status().as_u16();
        // Drain a bounded body so the connection can go back to the pool.
        let mut read = 0usize;
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    read += chunk.len();
                    if read > MAX_BODY {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => return classify(&e),
            }
        }
        if resp.status().is_success() {
            ProbeResult::Ok(code)
        } else {
            ProbeResult::HttpStatus(code)
        }
    }
}

impl super::ports::Check for Checker {
    async fn check(&self, target: &super::ports::Target) -> ProbeReport {
        self.probe(&target.url, target.timeout).await
    }
}

/// The local resource whose exhaustion caused `e`, found in its cause chain.
pub fn local_resource(e: &(dyn StdError + 'static)) -> Option<LocalResource> {
    let mut source = Some(e);
    while let Some(s) = source {
        if let Some(r) = s
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
            .and_then(LocalResource::from_errno)
        {
            return Some(r);
        }
        source = s.source();
    }
    None
}

/// Sorts a client error into a result by walking its cause chain.
fn classify(e: &reqwest::Error) -> ProbeResult {
    if let Some(r) = local_resource(e) {
        return ProbeResult::Local(r);
    }
    let mut source: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<NotAllowed>().is_some() {
            return ProbeResult::NotAllowed;
        }
        source = s.source();
    }
    if e.is_timeout() {
        return ProbeResult::Timeout;
    }
    let mut source: Option<&(dyn StdError + 'static)> = e.source();
    let mut refused = false;
    let mut tls = false;
    while let Some(s) = source {
        if s.downcast_ref::<rustls::Error>().is_some() {
            tls = true;
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => refused = true,
                std::io::ErrorKind::TimedOut => return ProbeResult::Timeout,
                _ => {}
            }
            if io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
            {
                tls = true;
            }
        }
        source = s.source();
    }
    if tls {
        ProbeResult::TlsError
    } else if refused {
        ProbeResult::Refused
    } else if e.is_connect() {
        ProbeResult::ConnectError
    } else {
        ProbeResult::Error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_have_distinct_names_and_only_2xx_succeeds() {
        let all = [
            ProbeResult::Ok(204),
            ProbeResult::HttpStatus(503),
            ProbeResult::Timeout,
            ProbeResult::Refused,
            ProbeResult::ConnectError,
            ProbeResult::TlsError,
            ProbeResult::Error,
            ProbeResult::NotAllowed,
            ProbeResult::Local(LocalResource::Descriptors),
            ProbeResult::Local(LocalResource::Ports),
        ];
        let names: std::collections::HashSet<String> = all.iter().map(|r| r.describe()).collect();
        assert_eq!(names.len(), all.len());
        assert_eq!(ProbeResult::HttpStatus(503).describe(), "http_503");
        assert!(all.iter().filter(|r| r.is_success()).count() == 1);
    }

    /// An error that wraps another, as hyper and reqwest do.
    #[derive(Debug)]
    struct Wrapped(Box<dyn StdError + Send + Sync>);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("client error")
        }
    }

    impl StdError for Wrapped {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(self.0.as_ref())
        }
    }

    #[test]
    fn resource_exhaustion_deep_in_the_cause_chain_is_local() {
        for (errno, want) in [
            (24, Some(LocalResource::Descriptors)),
            (23, Some(LocalResource::Descriptors)),
            (105, Some(LocalResource::Buffers)),
            (99, Some(LocalResource::Ports)),
            (12, Some(LocalResource::Memory)),
            (111, None), // ECONNREFUSED: the worker's answer
            (113, None), // EHOSTUNREACH: the network's
        ] {
            let e = Wrapped(Box::new(Wrapped(Box::new(
                std::io::Error::from_raw_os_error(errno),
            ))));
            assert_eq!(local_resource(&e), want, "errno {errno}");
        }
        assert_eq!(
            ProbeResult::Local(LocalResource::Descriptors).describe(),
            "local_descriptors"
        );
    }

    /// A worker that answers 200 to every request and keeps the connection open unless
    /// the request says `Connection: close`; reports each connection's requests.
    async fn worker() -> (reqwest::Url, tokio::sync::mpsc::UnboundedReceiver<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = reqwest::Url::parse(&format!("http://{}/health", listener.local_addr().unwrap()))
            .unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut seen = String::new();
                    while let Ok(n) = conn.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        seen.push_str(&String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase());
                        if !seen.ends_with("\r\n\r\n") {
                            continue;
                        }
                        let close = seen.contains("connection: close");
                        let reply = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if conn.write_all(reply.as_bytes()).await.is_err() {
                            break;
                        }
                        let _ = tx.send(std::mem::take(&mut seen));
                        if close {
                            break;
                        }
                    }
                    let _ = tx.send("closed".into());
                });
            }
        });
        (url, rx)
    }

    #[tokio::test]
    async fn plain_http_probes_open_a_connection_each_and_ask_the_worker_to_close() {
        let (url, mut events) = worker().await;
        let checker = Checker::new(vec![]).unwrap();
        for _ in 0..2 {
            let report = checker.probe(&url, Duration::from_secs(5)).await;
            assert_eq!(report.result, ProbeResult::Ok(200));
        }
        // Each probe: one request on its own connection, which the worker then closed.
        for _ in 0..2 {
            let request = events.recv().await.unwrap();
            assert!(request.contains("connection: close"), "{request}");
            assert_eq!(events.recv().await.unwrap(), "closed");
        }
    }
}

#[cfg(test)]
mod allow_tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A listener that counts the connections it accepts (and answers 200).
    async fn counting_listener() -> (u16, Arc<AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let n = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&n);
        tokio::spawn(async move {
            while let Ok((mut c, _)) = listener.accept().await {
                seen.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.ends_with(b"\r\n\r\n") {
                        match c.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = c
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await;
                });
            }
        });
        (port, n)
    }

    #[tokio::test]
    async fn probes_outside_the_allowlist_never_connect() {
        let (port, connections) = counting_listener().await;
        let checker = Checker::new(vec!["10.0.0.0/8".parse().unwrap()]).unwrap();
        for target in [
            format!("http://127.0.0.1:{port}/pwned"),
            // A name that resolves outside the list: refused by the resolver.
            format!("http://localhost:{port}/pwned"),
        ] {
            let url = reqwest::Url::parse(&target).unwrap();
            let r = checker.probe(&url, Duration::from_secs(5)).await;
            assert_eq!(r.result, ProbeResult::NotAllowed, "{target}");
            assert_eq!(r.result.describe(), "not_allowed");
        }
        assert_eq!(connections.load(Ordering::SeqCst), 0);
        // Inside the list, the same probes go through.
        let open = Checker::new(vec!["127.0.0.0/8".parse().unwrap()]).unwrap();
        for target in [
            format!("http://127.0.0.1:{port}/ok"),
            format!("http://localhost:{port}/ok"),
        ] {
            let url = reqwest::Url::parse(&target).unwrap();
            let r = open.probe(&url, Duration::from_secs(5)).await;
            assert_eq!(r.result, ProbeResult::Ok(200), "{target}");
        }
        assert_eq!(connections.load(Ordering::SeqCst), 2);
    }
}
