//! One health check: `GET url + path` with a timeout. A failed probe is a value, not
//! an error; each kind of failure gets its own result name.

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
        }
    }

    /// The `last_result` shown in the API: the class, with the status code for HTTP
    /// errors (`http_503`).
    pub fn describe(self) -> String {
        match self {
            ProbeResult::HttpStatus(code) => format!("http_{code}"),
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

/// Makes health checks over one shared, keep-alive HTTP client.
#[derive(Clone, Debug)]
pub struct Checker {
    client: reqwest::Client,
}

impl Checker {
    /// A checker whose client keeps idle connections for reuse, follows no redirects
    /// (a 3xx is not healthy) and ignores proxy environment variables.
    pub fn new() -> Result<Checker, reqwest::Error> {
        crate::install_crypto_provider();
        let client = reqwest::Client::builder()
            .user_agent(concat!("probemesh/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1)
            .tcp_nodelay(true)
            .build()?;
        Ok(Checker { client })
    }

    /// Probes `url` once.
    pub async fn check(&self, url: &str, timeout: Duration) -> ProbeReport {
        let start = Instant::now();
        let result = match tokio::time::timeout(timeout, self.request(url)).await {
            Ok(r) => r,
            Err(_) => ProbeResult::Timeout,
        };
        ProbeReport {
            result,
            latency: start.elapsed(),
        }
    }

    async fn request(&self, url: &str) -> ProbeResult {
        let mut resp = match self.client.get(url).send().await {
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

/// Sorts a client error into a result by walking its cause chain.
fn classify(e: &reqwest::Error) -> ProbeResult {
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
        ];
        let names: std::collections::HashSet<String> = all.iter().map(|r| r.describe()).collect();
        assert_eq!(names.len(), all.len());
        assert_eq!(ProbeResult::HttpStatus(503).describe(), "http_503");
        assert!(all.iter().filter(|r| r.is_success()).count() == 1);
    }
}
