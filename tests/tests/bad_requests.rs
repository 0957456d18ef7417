//! Bad input (SPEC S11): every malformed request gets a 4xx JSON error of the shape
//! `{"error": {"code", "message"}}`, and none of them stops the agent or changes state.

use probemesh_tests::*;
use reqwest::Method;
use serde_json::{Value, json};

struct Case {
    name: &'static str,
    method: Method,
    path: String,
    body: Option<Body>,
    status: u16,
    code: &'static str,
}

fn case(
    name: &'static str,
    method: Method,
    path: &str,
    body: Option<Body>,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        name,
        method,
        path: path.to_string(),
        body,
        status,
        code,
    }
}

fn post(name: &'static str, body: Value, status: u16, code: &'static str) -> Case {
    case(
        name,
        Method::POST,
        "/v1/workers",
        Some(Body::json(&body)),
        status,
        code,
    )
}

fn post_raw(
    name: &'static str,
    content_type: Option<&str>,
    body: &str,
    status: u16,
    code: &'static str,
) -> Case {
    case(
        name,
        Method::POST,
        "/v1/workers",
        Some(Body::raw(content_type, body)),
        status,
        code,
    )
}

fn table(existing: &str) -> Vec<Case> {
    let u = "http://127.0.0.1:1";
    let w = format!("/v1/workers/{existing}");
    let unknown = "/v1/workers/0123456789abcdef";
    let huge = json!({"url": u, "labels": {"big": "x".repeat(70 * 1024)}});
    let long_url = format!("http://127.0.0.1:1/{}", "a".repeat(3000));
    let json_ct = Some("application/json");
    vec![
        post_raw(
            "malformed JSON",
            json_ct,
            r#"{"url": "#,
            400,
            "INVALID_JSON",
        ),
        post_raw("not JSON at all", json_ct, "hello", 400, "INVALID_JSON"),
        post_raw("empty body", json_ct, "", 400, "INVALID_JSON"),
        post(
            "unknown top-level field",
            json!({"url": u, "colour": "red"}),
            400,
            "INVALID_SPEC",
        ),
        post(
            "unknown field in health",
            json!({"url": u, "health": {"intervall": "1s"}}),
            400,
            "INVALID_SPEC",
        ),
        post("missing url", json!({"model_id": "m"}), 400, "INVALID_SPEC"),
        post("array instead of object", json!([u]), 400, "INVALID_SPEC"),
        post(
            "url without host",
            json!({"url": "http://"}),
            400,
            "INVALID_URL",
        ),
        post(
            "relative url",
            json!({"url": "/just/a/path"}),
            400,
            "INVALID_URL",
        ),
        post(
            "ftp scheme",
            json!({"url": "ftp://127.0.0.1:21"}),
            400,
            "INVALID_URL",
        ),
        post(
            "userinfo in url",
            json!({"url": "http://user:pw@127.0.0.1:1"}),
            400,
            "INVALID_URL",
        ),
        post(
            "query string in url",
            json!({"url": "http://127.0.0.1:1/?a=1"}),
            400,
            "INVALID_URL",
        ),
        post(
            "fragment in url",
            json!({"url": "http://127.0.0.1:1/#x"}),
            400,
            "INVALID_URL",
        ),
        post("url too long", json!({"url": long_url}), 400, "INVALID_URL"),
        post_raw(
            "text/plain body",
            Some("text/plain"),
            &json!({"url": u}).to_string(),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        post_raw(
            "no content type",
            None,
            &json!({"url": u}).to_string(),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        post("body over 64 KiB", huge, 413, "BODY_TOO_LARGE"),
        post(
            "priority as a word",
            json!({"url": u, "priority": "high"}),
            400,
            "INVALID_SPEC",
        ),
        post(
            "negative priority",
            json!({"url": u, "priority": -1}),
            400,
            "INVALID_SPEC",
        ),
        post(
            "negative cost",
            json!({"url": u, "cost": -1.0}),
            400,
            "INVALID_SPEC",
        ),
        post(
            "unknown worker_type",
            json!({"url": u, "worker_type": "gpu"}),
            400,
            "INVALID_SPEC",
        ),
        post(
            "bootstrap_port out of range",
            json!({"url": u, "bootstrap_port": 70000}),
            400,
            "INVALID_SPEC",
        ),
        post(
            "labels not an object",
            json!({"url": u, "labels": ["a"]}),
            400,
            "INVALID_SPEC",
        ),
        post(
            "priority above u32",
            json!({"url": u, "priority": 1u64 << 40}),
            400,
            "INVALID_SPEC",
        ),
        post(
            "cost beyond f32",
            json!({"url": u, "cost": 1e39}),
            400,
            "INVALID_SPEC",
        ),
        post(
            "control character in a label key",
            json!({"url": u, "labels": {"a\u{7}b": "v"}}),
            400,
            "INVALID_SPEC",
        ),
        post(
            "empty model_id",
            json!({"url": u, "model_id": ""}),
            400,
            "INVALID_SPEC",
        ),
        post(
            "bad duration",
            json!({"url": u, "health": {"interval": "soon"}}),
            400,
            "INVALID_SPEC",
        ),
        post(
            "interval below the minimum",
            json!({"url": u, "health": {"interval": "1ms"}}),
            400,
            "INVALID_SPEC",
        ),
        post(
            "success threshold 0",
            json!({"url": u, "health": {"success_threshold": 0}}),
            400,
            "INVALID_SPEC",
        ),
        post(
            "failure threshold 0",
            json!({"url": u, "health": {"failure_threshold": 0}}),
            400,
            "INVALID_SPEC",
        ),
        post(
            "probe path without slash",
            json!({"url": u, "health": {"path": "health"}}),
            400,
            "INVALID_SPEC",
        ),
        post(
            "probe path smuggling an authority",
            json!({"url": u, "health": {"path": "@127.0.0.1:47860/pwned"}}),
            400,
            "INVALID_SPEC",
        ),
        post(
            "probe path with user information",
            json!({"url": u, "health": {"path": "/@127.0.0.1:47860/pwned"}}),
            400,
            "INVALID_SPEC",
        ),
        post(
            "probe path with a .. segment",
            json!({"url": u, "health": {"path": "/a/../b"}}),
            400,
            "INVALID_SPEC",
        ),
        post(
            "probe path with a query",
            json!({"url": u, "health": {"path": "/health?x=1"}}),
            400,
            "INVALID_SPEC",
        ),
        post(
            "interval just below 100ms",
            json!({"url": u, "health": {"interval": "99ms"}}),
            400,
            "INVALID_SPEC",
        ),
        post(
            "interval above 1h",
            json!({"url": u, "health": {"interval": "61m"}}),
            400,
            "INVALID_SPEC",
        ),
        post(
            "timeout of a minute",
            json!({"url": u, "health": {"timeout": "60s"}}),
            400,
            "INVALID_SPEC",
        ),
        post(
            "success threshold above 1000",
            json!({"url": u, "health": {"success_threshold": 1001}}),
            400,
            "INVALID_SPEC",
        ),
        case(
            "GET unknown id",
            Method::GET,
            unknown,
            None,
            404,
            "WORKER_NOT_FOUND",
        ),
        case(
            "GET id of the wrong shape",
            Method::GET,
            "/v1/workers/not-an-id",
            None,
            404,
            "WORKER_NOT_FOUND",
        ),
        case(
            "PATCH unknown id",
            Method::PATCH,
            unknown,
            Some(Body::json(&json!({"priority": 1}))),
            404,
            "WORKER_NOT_FOUND",
        ),
        case(
            "DELETE unknown id",
            Method::DELETE,
            unknown,
            None,
            404,
            "WORKER_NOT_FOUND",
        ),
        case(
            "unknown path",
            Method::GET,
            "/v1/nope",
            None,
            404,
            "NOT_FOUND",
        ),
        case(
            "unknown version",
            Method::GET,
            "/v2/workers",
            None,
            404,
            "NOT_FOUND",
        ),
        case(
            "PUT /v1/workers",
            Method::PUT,
            "/v1/workers",
            Some(Body::json(&json!({"url": u}))),
            405,
            "METHOD_NOT_ALLOWED",
        ),
        case(
            "DELETE /v1/workers",
            Method::DELETE,
            "/v1/workers",
            None,
            405,
            "METHOD_NOT_ALLOWED",
        ),
        case(
            "POST /v1/workers/{id}",
            Method::POST,
            &w,
            Some(Body::json(&json!({"url": u}))),
            405,
            "METHOD_NOT_ALLOWED",
        ),
        case(
            "status=bogus",
            Method::GET,
            "/v1/workers?status=bogus",
            None,
            400,
            "INVALID_QUERY",
        ),
        case(
            "unknown query parameter",
            Method::GET,
            "/v1/workers?colour=red",
            None,
            400,
            "INVALID_QUERY",
        ),
        case(
            "negative index",
            Method::GET,
            "/v1/workers?index=-1",
            None,
            400,
            "INVALID_QUERY",
        ),
        case(
            "bad wait",
            Method::GET,
            "/v1/workers?index=1&wait=forever",
            None,
            400,
            "INVALID_QUERY",
        ),
        case(
            "url filter with ftp scheme",
            Method::GET,
            "/v1/workers?url=ftp%3A%2F%2Fh",
            None,
            400,
            "INVALID_QUERY",
        ),
        case(
            "PATCH changing the url",
            Method::PATCH,
            &w,
            Some(Body::json(&json!({"url": "http://127.0.0.1:2"}))),
            400,
            "INVALID_URL",
        ),
        case(
            "PATCH unknown field",
            Method::PATCH,
            &w,
            Some(Body::json(&json!({"status": "ready"}))),
            400,
            "INVALID_SPEC",
        ),
        case(
            "PATCH malformed JSON",
            Method::PATCH,
            &w,
            Some(Body::raw(json_ct, "{")),
            400,
            "INVALID_JSON",
        ),
        case(
            "PATCH threshold 0",
            Method::PATCH,
            &w,
            Some(Body::json(&json!({"health": {"failure_threshold": 0}}))),
            400,
            "INVALID_SPEC",
        ),
        case(
            "PATCH without content type",
            Method::PATCH,
            &w,
            Some(Body::raw(None, r#"{"priority": 1}"#)),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
    ]
}

fn check_error_shape(name: &str, r: &Reply) {
    let obj = r
        .body
        .as_object()
        .unwrap_or_else(|| panic!("{name}: body is not a JSON object: {:?}", r.text));
    assert_eq!(
        obj.keys().collect::<Vec<_>>(),
        ["error"],
        "{name}: {}",
        r.text
    );
    let err = obj["error"]
        .as_object()
        .unwrap_or_else(|| panic!("{name}: error is not an object: {}", r.text));
    let mut keys: Vec<_> = err.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["code", "message"], "{name}: {}", r.text);
    let message = err["message"].as_str().unwrap_or("");
    assert!(
        !message.trim().is_empty(),
        "{name}: empty message: {}",
        r.text
    );
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{name}: content type {:?}",
        r.header("content-type")
    );
}

#[tokio::test]
async fn bad_requests_get_json_errors_and_change_nothing() {
    let mut agent = Agent::start(&[]).await;
    let api = agent.api().clone();
    let existing = id_of(
        &api.register(&json!({"url": refused_url(), "labels": {"k": "v"},
                              "health": {"disable": true}}))
            .await,
    );
    let before = api.get("/v1/workers").await.expect_status(200);

    let cases = table(&existing);
    assert!(cases.len() >= 15);
    let mut failures = Vec::new();
    for c in cases {
        let r = api.send(c.method.clone(), &c.path, c.body).await;
        if r.status != c.status || r.error_code() != Some(c.code) {
            failures.push(format!(
                "{}: {} {} expected {} {}, got {} {}",
                c.name, c.method, c.path, c.status, c.code, r.status, r.text
            ));
            continue;
        }
        check_error_shape(c.name, &r);
    }
    assert!(
        failures.is_empty(),
        "{} bad requests answered wrongly:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // The agent is alive, and its view did not change at all.
    assert!(agent.is_running(), "the agent died");
    api.get("/v1/health").await.expect_status(200);
    let after = api.get("/v1/workers").await.expect_status(200);
    assert_eq!(after.body, before.body, "bad requests changed the view");
    assert_eq!(after.index(), before.index());
}

#[tokio::test]
async fn oversized_chunked_body_is_413_and_the_agent_survives() {
    let mut agent = Agent::start(&[]).await;
    let chunk = format!("{:x}\r\n{}\r\n", 8192, "x".repeat(8192));
    let mut req = String::from(
        "POST /v1/workers HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    );
    for _ in 0..10 {
        req.push_str(&chunk);
    }
    req.push_str("0\r\n\r\n");
    let (status, text) = raw_http(agent.port(), req.as_bytes()).expect("an answer");
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("BODY_TOO_LARGE"), "{text}");
    assert!(agent.is_running());
    agent.api().get("/v1/health").await.expect_status(200);
    assert!(agent.api().workers("").await.is_empty());
}

/// The limit is 65,536 bytes: a body of exactly that size is read, one byte more is 413.
#[tokio::test]
async fn body_limit_is_exactly_64_kib() {
    let agent = Agent::start(&[]).await;
    let api = agent.api();
    let padded = |len: usize| {
        let head = format!(
            r#"{{"url": "{}", "health": {{"disable": true}}"#,
            refused_url()
        );
        let mut body = head.clone();
        body.push_str(&" ".repeat(len - head.len() - 1));
        body.push('}');
        assert_eq!(body.len(), len);
        Body::raw(Some("application/json"), body)
    };
    let r = api
        .send(Method::POST, "/v1/workers", Some(padded(64 * 1024)))
        .await;
    assert_eq!(r.status, 201, "a body of exactly 64 KiB: {}", r.text);
    let r = api
        .send(Method::POST, "/v1/workers", Some(padded(64 * 1024 + 1)))
        .await;
    assert_eq!(r.status, 413, "{}", r.text);
    assert_eq!(r.error_code(), Some("BODY_TOO_LARGE"));
    assert_eq!(api.workers("").await.len(), 1);
}
