//! A small client for the admin API, a raw HTTP/1.1 helper for requests reqwest will
//! not send, a Prometheus text reader, and the plain client and `GET /workers` reader
//! the gateway tests (smg, sglang-router, vllm-router) share.

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::Value;
use std::io::{Read, Write};
use std::time::Duration;

/// One answer of the admin API.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// The body as JSON; `Value::Null` when it was not JSON (see `text`).
    pub body: Value,
    /// The body as text.
    pub text: String,
}

impl Reply {
    /// A header as text, if present and printable.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `X-Probemesh-Index` header as a number.
    pub fn index(&self) -> Option<u64> {
        self.header("x-probemesh-index")?.parse().ok()
    }

    /// `error.code` of an error body.
    pub fn error_code(&self) -> Option<&str> {
        self.body.pointer("/error/code").and_then(Value::as_str)
    }

    /// Panics (with the body) unless the status is `want`; returns `self` for chaining.
    pub fn expect_status(self, want: u16) -> Reply {
        assert_eq!(
            self.status, want,
            "expected HTTP {want}, got {}: {}",
            self.status, self.text
        );
        self
    }
}

/// A request body with an explicit content type (or none).
#[derive(Debug, Clone, Default)]
pub struct Body {
    /// `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The bytes.
    pub bytes: Vec<u8>,
}

impl Body {
    /// `application/json` with `v` serialized.
    pub fn json(v: &Value) -> Body {
        Body::raw(Some("application/json"), v.to_string())
    }

    /// Arbitrary bytes with an optional content type.
    pub fn raw(content_type: Option<&str>, bytes: impl Into<Vec<u8>>) -> Body {
        Body {
            content_type: content_type.map(str::to_string),
            bytes: bytes.into(),
        }
    }
}

/// A client of one agent's admin API (`http://127.0.0.1:PORT`). Does not pool
/// connections, so it survives agent restarts on the same port.
#[derive(Debug, Clone)]
pub struct Api {
    base: String,
    token: Option<String>,
    client: reqwest::Client,
}

impl Api {
    /// A client for the API at `base` (e.g. `http://127.0.0.1:7801`).
    pub fn new(base: impl Into<String>) -> Api {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(120))
            .build()
            .expect("build reqwest client");
        Api {
            base: base.into().trim_end_matches('/').to_string(),
            token: None,
            client,
        }
    }

    /// The same client sending `Authorization: Bearer <token>` on every request.
    pub fn with_token(&self, token: &str) -> Api {
        Api {
            token: Some(token.to_string()),
            ..self.clone()
        }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends one request; `Err` only for transport failures (no answer at all).
    pub async fn try_send(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
    ) -> Result<Reply, String> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.client.request(method.clone(), &url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            if let Some(ct) = b.content_type {
                req = req.header(reqwest::header::CONTENT_TYPE, ct);
            }
            req = req.body(b.bytes);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("{method} {url}: {e:?}"))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp
            .text()
            .await
            .map_err(|e| format!("{method} {url}: reading body: {e}"))?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Reply {
            status,
            headers,
            body,
            text,
        })
    }

    /// Sends one request; panics when no answer arrives.
    pub async fn send(&self, method: Method, path: &str, body: Option<Body>) -> Reply {
        self.try_send(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("request failed: {e}"))
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.send(Method::POST, path, Some(Body::json(body))).await
    }

    /// `PATCH path` with a JSON body.
    pub async fn patch(&self, path: &str, body: &Value) -> Reply {
        self.send(Method::PATCH, path, Some(Body::json(body))).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Reply {
        self.send(Method::DELETE, path, None).await
    }

    /// `POST /v1/workers` with `spec`; panics unless the answer is 201. Returns the
    /// Worker JSON.
    pub async fn register(&self, spec: &Value) -> Value {
        self.post("/v1/workers", spec).await.expect_status(201).body
    }

    /// `GET /v1/workers/{id}`: `Some(worker)` on 200, `None` on 404, panics otherwise.
    pub async fn worker(&self, id: &str) -> Option<Value> {
        let r = self.get(&format!("/v1/workers/{id}")).await;
        match r.status {
            200 => Some(r.body),
            404 => None,
            s => panic!("GET /v1/workers/{id}: unexpected HTTP {s}: {}", r.text),
        }
    }

    /// The `workers` array of `GET /v1/workers{query}` (query like `?status=ready`).
    pub async fn workers(&self, query: &str) -> Vec<Value> {
        let r = self
            .get(&format!("/v1/workers{query}"))
            .await
            .expect_status(200);
        r.body["workers"]
            .as_array()
            .unwrap_or_else(|| panic!("no workers array in {}", r.text))
            .clone()
    }

    /// The text of `GET /metrics`.
    pub async fn metrics(&self) -> String {
        self.get("/metrics").await.expect_status(200).text
    }
}

/// The status of `worker` (a Worker JSON), or `"?"`.
pub fn status_of(worker: &Value) -> &str {
    worker["status"].as_str().unwrap_or("?")
}

/// The value of one series in Prometheus/OpenMetrics text, e.g.
/// `metric(&text, r#"probemesh_workers{status="ready"}"#)`. Labels must be written in
/// the order the agent renders them.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        let value = rest.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// Sends `request` verbatim to 127.0.0.1:`port` over a fresh connection and returns the
/// status code and the raw response (head and body), read until the server closes the
/// connection (so send `Connection: close`). For requests a normal client cannot
/// produce (chunked bodies, odd headers). Blocking.
pub fn raw_http(port: u16, request: &[u8]) -> Result<(u16, String), String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    // The server may answer (and close) before reading everything, e.g. for a body that
    // is too large; a failed write is then expected, so only the answer matters.
    let _ = s.write_all(request);
    let mut buf = Vec::new();
    let read = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no HTTP status in answer {text:?} (read: {read:?})"))?;
    Ok((status, text))
}

/// A reqwest client without proxies (the tests only talk to loopback, namespaces and
/// their own containers).
pub fn client(timeout: Duration) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .expect("http client")
}

/// `GET url` as JSON within 3 s; `None` when it does not answer or is not JSON.
pub async fn get_json(url: &str) -> Option<Value> {
    client(Duration::from_secs(3))
        .get(url)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// The `workers` array of a gateway's `GET {base}/workers` (smg and its lineage);
/// `None` when it does not answer.
pub async fn gateway_workers(base: &str) -> Option<Vec<Value>> {
    get_json(&format!("{base}/workers")).await?["workers"]
        .as_array()
        .cloned()
}
