//! Access to the admin API (SPEC section 2, `--admin-token`, `--admin-listen`): the token
//! guards every change and no read, and a non-loopback API without a token is refused.

use probemesh_tests::*;
use serde_json::json;

#[tokio::test]
async fn admin_token_is_required_for_changes_only() {
    let agent = Agent::start(&["--admin-token", "s3cret"]).await;
    let anon = agent.api();
    let wrong = anon.with_token("guess");
    let admin = anon.with_token("s3cret");
    let spec = json!({"url": refused_url(), "health": {"disable": true}});
    for api in [anon, &wrong] {
        let r = api.post("/v1/workers", &spec).await.expect_status(401);
        assert_eq!(r.error_code(), Some("UNAUTHORIZED"), "{}", r.text);
    }
    let id = id_of(&admin.register(&spec).await);
    let path = format!("/v1/workers/{id}");
    for api in [anon, &wrong] {
        let r = api
            .patch(&path, &json!({"priority": 1}))
            .await
            .expect_status(401);
        assert_eq!(r.error_code(), Some("UNAUTHORIZED"));
        let r = api.delete(&path).await.expect_status(401);
        assert_eq!(r.error_code(), Some("UNAUTHORIZED"));
    }
    // Path and method are checked before the token, the token before the body.
    let put = anon
        .send(reqwest::Method::PUT, "/v1/workers", Some(Body::json(&spec)))
        .await;
    assert_eq!(
        (put.status, put.error_code()),
        (405, Some("METHOD_NOT_ALLOWED")),
        "{}",
        put.text
    );
    let nope = anon.post("/v1/nope", &spec).await;
    assert_eq!(
        (nope.status, nope.error_code()),
        (404, Some("NOT_FOUND")),
        "{}",
        nope.text
    );
    let garbage = anon
        .send(
            reqwest::Method::POST,
            "/v1/workers",
            Some(Body::raw(None, "{")),
        )
        .await;
    assert_eq!(garbage.status, 401, "{}", garbage.text);
    // Spaces around the token are ignored; the scheme is case-insensitive (RFC 7235).
    let r = patch_with_authorization(agent.port(), &path, "Bearer  s3cret ").await;
    assert_eq!(r, 200, "extra spaces around the token should be ignored");
    for scheme in ["bearer", "BEARER"] {
        let r = patch_with_authorization(agent.port(), &path, &format!("{scheme} s3cret")).await;
        assert_eq!(r, 200, "`{scheme}` is the Bearer scheme");
    }
    let r = patch_with_authorization(agent.port(), &path, "Basic s3cret").await;
    assert_eq!(r, 401, "another scheme is refused");
    // Reads need no token.
    for p in [
        "/v1/workers",
        path.as_str(),
        "/v1/health",
        "/v1/ready",
        "/metrics",
    ] {
        anon.get(p).await.expect_status(200);
    }
    let w = anon.worker(&id).await.unwrap();
    assert_eq!(w["priority"], 3, "an unauthorized PATCH changed the worker");
    let r = admin
        .patch(&path, &json!({"priority": 1}))
        .await
        .expect_status(200);
    assert_eq!(r.body["priority"], 1);
    assert_eq!(anon.worker(&id).await.unwrap()["priority"], 1);
    admin.delete(&path).await.expect_status(200);
    assert!(anon.workers("").await.is_empty());
}

#[tokio::test]
async fn non_loopback_admin_without_token_refuses_to_start() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let port = free_port();
    let listen = format!("0.0.0.0:{port}");
    let out = run_probemesh(&[
        "agent",
        "--admin-listen",
        &listen,
        "--data-dir",
        data.to_str().unwrap(),
        "--node-id",
        "exposed",
    ])
    .await;
    assert_ne!(out.code, Some(0), "{out}");
    assert!(out.code.is_some(), "killed by a signal: {out}");
    assert!(out.stderr.contains("admin_token"), "{out}");
    assert!(!data.exists(), "the data directory was created: {out}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "something listens on the admin port"
    );
}

/// PATCHes `{"priority": 3}` to `path` with a raw `Authorization` header value; returns
/// the status.
async fn patch_with_authorization(port: u16, path: &str, authorization: &str) -> u16 {
    let body = r#"{"priority": 3}"#;
    let req = format!(
        "PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: {authorization}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (status, _) = tokio::task::spawn_blocking(move || raw_http(port, req.as_bytes()))
        .await
        .expect("raw request task")
        .expect("an answer");
    status
}
