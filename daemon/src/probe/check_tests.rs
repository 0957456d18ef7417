//! The checker against scripted workers on loopback: connection reuse, workers that
//! close, the one retry, forgetting, the idle and size bounds, the allowlist, TLS,
//! and every kind of result.

use super::*;
use crate::probe::conn::DialError;
use crate::probe::test_worker::{Mode, OK, Seen, serve, worker};
use std::sync::atomic::Ordering;
use tokio::net::TcpListener;

const T: Duration = Duration::from_secs(5);

fn checker() -> Checker {
    Checker::new(vec![]).unwrap()
}

use crate::probe::test_worker::eventually;

#[tokio::test]
async fn probes_reuse_one_connection() {
    let (url, seen) = worker(Mode::KeepAlive, OK).await;
    let c = checker();
    for _ in 0..20 {
        assert_eq!(c.probe(&url, T).await.result, ProbeResult::Ok(200));
    }
    assert_eq!(
        seen.accepted(),
        1,
        "the worker saw one connection for 20 probes"
    );
    assert_eq!(seen.requests().len(), 20);
    assert!(
        seen.requests()
            .iter()
            .all(|r| !r.contains("connection: close"))
    );
    assert!(seen.requests()[0].starts_with("get /health http/1.1\r\n"));
    assert_eq!(c.idle_connections(), 1);
    assert_eq!(seen.closed(), 0);
}

#[tokio::test]
async fn a_worker_that_closes_after_each_answer_still_gets_successful_probes() {
    for mode in [Mode::CloseWithHeader, Mode::CloseSilently] {
        let (url, seen) = worker(mode, OK).await;
        let c = checker();
        for i in 0..10 {
            let r = c.probe(&url, T).await;
            assert_eq!(r.result, ProbeResult::Ok(200), "{mode:?}, probe {i}");
        }
        assert_eq!(seen.accepted(), 10, "{mode:?}: a new connection per probe");
        if mode == Mode::CloseWithHeader {
            assert_eq!(
                c.idle_connections(),
                0,
                "an answer saying close is not kept"
            );
        }
    }
}

#[tokio::test]
async fn a_kept_connection_that_dies_under_the_request_is_retried_once() {
    let (url, seen) = worker(Mode::DropSecondRequest, OK).await;
    let c = checker();
    for i in 0..10 {
        let r = c.probe(&url, T).await;
        assert_eq!(r.result, ProbeResult::Ok(200), "probe {i}");
    }
    // Probe 1 on connection 1; every later probe finds its kept connection dropped
    // under the request and succeeds on the next one.
    assert_eq!(seen.accepted(), 10);
    assert_eq!(seen.requests().len(), 19);
}

#[tokio::test]
async fn a_new_connection_that_fails_is_not_retried() {
    let (url, seen) = worker(Mode::DropEveryRequest, OK).await;
    let c = checker();
    for _ in 0..3 {
        assert_eq!(c.probe(&url, T).await.result, ProbeResult::Error);
    }
    assert_eq!(seen.accepted(), 3, "one connection per probe, no retry");
}

#[tokio::test]
async fn forgetting_a_worker_closes_its_connection() {
    let (url, seen) = worker(Mode::KeepAlive, OK).await;
    let c = checker();
    assert_eq!(c.probe(&url, T).await.result, ProbeResult::Ok(200));
    assert_eq!(c.idle_connections(), 1);
    let other = reqwest::Url::parse("http://127.0.0.1:1/elsewhere").unwrap();
    c.forget_url(&other);
    assert_eq!(c.idle_connections(), 1, "another origin's forget keeps it");
    // Another path on the same origin is the same connection.
    c.forget_url(&url.join("/other").unwrap());
    assert_eq!(c.idle_connections(), 0);
    eventually("the worker sees its connection closed", || {
        seen.closed() == 1
    })
    .await;
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let (a, seen_a) = worker(Mode::KeepAlive, OK).await;
    let (b, _) = worker(Mode::KeepAlive, OK).await;
    let c = Checker::with_config(CheckerConfig {
        idle_timeout: Duration::from_millis(100),
        ..CheckerConfig::new(vec![])
    })
    .unwrap();
    assert_eq!(c.probe(&a, T).await.result, ProbeResult::Ok(200));
    // Probes of another worker run the sweep, which closes a's idle connection.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while seen_a.closed() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "a's connection never closed"
        );
        assert_eq!(c.probe(&b, T).await.result, ProbeResult::Ok(200));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(c.idle_connections(), 1, "only b's connection is kept");
}

#[tokio::test]
async fn past_the_pool_bound_probes_ask_the_worker_to_close() {
    let (a, seen_a) = worker(Mode::KeepAlive, OK).await;
    let (b, seen_b) = worker(Mode::KeepAlive, OK).await;
    let c = Checker::with_config(CheckerConfig {
        max_idle: 1,
        ..CheckerConfig::new(vec![])
    })
    .unwrap();
    for _ in 0..3 {
        assert_eq!(c.probe(&a, T).await.result, ProbeResult::Ok(200));
        assert_eq!(c.probe(&b, T).await.result, ProbeResult::Ok(200));
    }
    assert_eq!(c.idle_connections(), 1);
    assert_eq!(seen_a.accepted(), 1, "the first worker keeps the one slot");
    assert_eq!(seen_b.accepted(), 3);
    assert!(
        seen_b
            .requests()
            .iter()
            .all(|r| r.contains("connection: close")),
        "{:?}",
        seen_b.requests()
    );
    assert!(
        seen_a
            .requests()
            .iter()
            .all(|r| !r.contains("connection: close"))
    );
}

#[tokio::test]
async fn answers_map_to_their_results_and_redirects_are_not_followed() {
    let c = checker();
    for (answer, want) in [
        (
            "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
            ProbeResult::HttpStatus(503),
        ),
        (
            "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:1/\r\ncontent-length: 0\r\n\r\n",
            ProbeResult::HttpStatus(302),
        ),
        ("HTTP/1.1 204 No Content\r\n\r\n", ProbeResult::Ok(204)),
        (
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            ProbeResult::Ok(200),
        ),
        (
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1;ext=1\r\no\r\n1\r\nk\r\n0\r\nx-trailer: 1\r\n\r\n",
            ProbeResult::Ok(200),
        ),
        (
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            ProbeResult::Ok(200),
        ),
        ("garbage\r\n\r\n", ProbeResult::Error),
    ] {
        let (url, seen) = worker(Mode::KeepAlive, answer).await;
        for _ in 0..2 {
            assert_eq!(c.probe(&url, T).await.result, want, "{answer:?}");
        }
        if want != ProbeResult::Error {
            assert_eq!(seen.accepted(), 1, "kept after {answer:?}");
        }
    }
}

#[tokio::test]
async fn answers_that_end_at_close_or_are_http10_are_not_kept() {
    let c = checker();
    for answer in [
        "HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok",
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 2\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    ] {
        let (url, seen) = worker(Mode::KeepAlive, answer).await;
        for _ in 0..2 {
            assert_eq!(
                c.probe(&url, T).await.result,
                ProbeResult::Ok(200),
                "{answer:?}"
            );
        }
        assert_eq!(seen.accepted(), 2, "{answer:?}");
    }
    // No length: the body ends when the worker closes.
    let (url, seen) = worker(Mode::CloseSilently, "HTTP/1.1 200 OK\r\n\r\nok").await;
    for _ in 0..2 {
        assert_eq!(c.probe(&url, T).await.result, ProbeResult::Ok(200));
    }
    assert_eq!(seen.accepted(), 2);
    assert_eq!(c.idle_connections(), 0);
}

#[tokio::test]
async fn a_body_past_the_bound_is_not_read_and_its_connection_not_kept() {
    let big: &'static str = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{}",
            MAX_BODY * 2,
            "x".repeat(MAX_BODY * 2)
        )
        .into_boxed_str(),
    );
    let (url, seen) = worker(Mode::KeepAlive, big).await;
    let c = checker();
    for _ in 0..2 {
        assert_eq!(c.probe(&url, T).await.result, ProbeResult::Ok(200));
    }
    assert_eq!(seen.accepted(), 2);
    assert_eq!(c.idle_connections(), 0);
}

#[tokio::test]
async fn refused_and_timed_out_probes() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let c = checker();
    let url = reqwest::Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
    assert_eq!(c.probe(&url, T).await.result, ProbeResult::Refused);
    let (hang, seen) = worker(Mode::Hang, OK).await;
    let r = c.probe(&hang, Duration::from_millis(200)).await;
    assert_eq!(r.result, ProbeResult::Timeout);
    assert!(r.latency >= Duration::from_millis(200));
    eventually("the timed-out connection is closed", || seen.closed() == 1).await;
}

#[test]
fn local_resource_errors_are_local_in_every_phase() {
    let io = |errno| std::io::Error::from_raw_os_error(errno);
    assert_eq!(
        classify_dial(&DialError::Connect(io(24))),
        ProbeResult::Local(LocalResource::Descriptors)
    );
    assert_eq!(
        classify_dial(&DialError::Connect(io(99))),
        ProbeResult::Local(LocalResource::Ports)
    );
    assert_eq!(
        classify_dial(&DialError::Tls(io(105))),
        ProbeResult::Local(LocalResource::Buffers)
    );
    assert_eq!(
        classify_resolve(&ResolveError::Lookup {
            host: "w".into(),
            source: io(12)
        }),
        ProbeResult::Local(LocalResource::Memory)
    );
    assert_eq!(
        classify_dial(&DialError::Connect(io(111))),
        ProbeResult::Refused
    );
    assert_eq!(
        classify_dial(&DialError::Connect(io(113))),
        ProbeResult::ConnectError
    );
    assert_eq!(
        classify_dial(&DialError::Connect(io(110))),
        ProbeResult::Timeout
    );
}

/// A descriptor-exhausted process, for real: socket() fails with EMFILE while the
/// soft limit is squeezed. Run in a child process so the squeeze affects no other test.
#[test]
fn out_of_descriptors_a_new_connection_is_local() {
    if std::env::var_os("PROBEMESH_EMFILE_CHILD").is_none() {
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "probe::check::tests::out_of_descriptors_a_new_connection_is_local",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env("PROBEMESH_EMFILE_CHILD", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("EMFILE child: local_descriptors"), "{text}");
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (url, _) = worker(Mode::KeepAlive, OK).await;
        let c = checker();
        // Squeeze: the lowest free descriptor number (what `dup` returns) becomes the
        // limit, so no new descriptor can be had.
        // SAFETY: dup and close of a descriptor this process owns; no memory involved.
        let free = unsafe {
            let fd = libc::dup(0);
            assert!(fd >= 0);
            libc::close(fd);
            fd as u64
        };
        let (_, hard) = rlimit::Resource::NOFILE.get().unwrap();
        rlimit::Resource::NOFILE.set(free, hard).unwrap();
        let r = c.probe(&url, T).await;
        println!("EMFILE child: {}", r.result.describe());
    });
}

#[tokio::test]
async fn probes_outside_the_allowlist_never_connect() {
    let (url, seen) = worker(Mode::KeepAlive, OK).await;
    let port = url.port().unwrap();
    let checker = Checker::new(vec!["10.0.0.0/8".parse().unwrap()]).unwrap();
    for target in [
        format!("http://127.0.0.1:{port}/pwned"),
        // A name that resolves outside the list: refused by the resolver.
        format!("http://localhost:{port}/pwned"),
    ] {
        let url = reqwest::Url::parse(&target).unwrap();
        let r = checker.probe(&url, T).await;
        assert_eq!(r.result, ProbeResult::NotAllowed, "{target}");
        assert_eq!(r.result.describe(), "not_allowed");
    }
    assert_eq!(seen.accepted(), 0);
    // The dialler refuses on its own too, whatever path gave it the address.
    let dialer = Dialer::new(Allowlist::new(vec!["10.0.0.0/8".parse().unwrap()]), vec![]).unwrap();
    let origin = Origin::of(&url).unwrap();
    let refused = dialer
        .connect(&origin, &["127.0.0.1".parse().unwrap()])
        .await
        .err();
    assert!(
        matches!(refused, Some(DialError::NotAllowed(_))),
        "{refused:?}"
    );
    assert_eq!(seen.accepted(), 0);
    // Inside the list, the same probes go through (one origin each: two connections).
    let open = Checker::new(vec!["127.0.0.0/8".parse().unwrap()]).unwrap();
    for target in [
        format!("http://127.0.0.1:{port}/ok"),
        format!("http://localhost:{port}/ok"),
    ] {
        let url = reqwest::Url::parse(&target).unwrap();
        let r = open.probe(&url, T).await;
        assert_eq!(r.result, ProbeResult::Ok(200), "{target}");
    }
    assert_eq!(seen.accepted(), 2);
}

/// A TLS worker on 127.0.0.1 with a certificate for 127.0.0.1 from a fresh private
/// CA; returns its URL, what it saw, and the CA certificate.
async fn tls_worker(dir: &std::path::Path) -> (reqwest::Url, Arc<Seen>, CertificateDer<'static>) {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    let ca_dir = dir.join("ca");
    let (ca_cert, _) = probemesh_gossip::tls::create_ca(&ca_dir).unwrap();
    let (cert, key) = probemesh_gossip::tls::create_node_cert(
        &ca_dir,
        "worker",
        &["127.0.0.1".parse().unwrap()],
        &[],
        &dir.join("worker"),
    )
    .unwrap();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(&key).unwrap();
    let ca = CertificateDer::from_pem_file(&ca_cert).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = reqwest::Url::parse(&format!(
        "https://{}/health",
        listener.local_addr().unwrap()
    ))
    .unwrap();
    let seen = Arc::new(Seen::default());
    let s = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            s.accepted.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    serve(tls, Mode::KeepAlive, OK, s).await;
                }
            });
        }
    });
    (url, seen, ca)
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_tls_error() {
    let dir = tempfile::tempdir().unwrap();
    let (url, seen, _) = tls_worker(dir.path()).await;
    let r = checker().probe(&url, T).await;
    // UnknownIssuer: the platform's roots do not include the private CA.
    assert_eq!(r.result, ProbeResult::TlsError);
    assert_eq!(r.result.describe(), "tls_error");
    assert_eq!(seen.requests().len(), 0, "no request passed the handshake");
}

#[tokio::test]
async fn https_probes_verify_and_keep_their_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (url, seen, ca) = tls_worker(dir.path()).await;
    let c = Checker::with_config(CheckerConfig {
        extra_roots: vec![ca],
        ..CheckerConfig::new(vec![])
    })
    .unwrap();
    for _ in 0..5 {
        assert_eq!(c.probe(&url, T).await.result, ProbeResult::Ok(200));
    }
    assert_eq!(seen.accepted(), 1, "one TLS connection for five probes");
    assert_eq!(seen.requests().len(), 5);
    c.forget_url(&url);
    eventually("the TLS connection is closed", || seen.closed() == 1).await;
}

#[tokio::test]
async fn an_https_url_answered_in_plain_http_is_a_tls_error() {
    let (url, _) = worker(Mode::Eager, OK).await;
    let https = reqwest::Url::parse(&url.as_str().replacen("http:", "https:", 1)).unwrap();
    assert_eq!(
        checker().probe(&https, T).await.result,
        ProbeResult::TlsError
    );
}

fn models_target(url: &reqwest::Url, model: &str) -> Target {
    Target {
        url: url.clone(),
        timeout: T,
        expect: Expect::Model(Arc::from(model)),
    }
}

#[tokio::test]
async fn a_models_listing_is_read_in_every_framing_and_must_name_the_model() {
    let c = checker();
    const LISTING: &str = r#"{"object":"list","data":[{"id":"m"}]}"#;
    for (mode, answer) in [
        (
            Mode::KeepAlive,
            "HTTP/1.1 200 OK\r\ncontent-length: 37\r\n\r\n{\"object\":\"list\",\"data\":[{\"id\":\"m\"}]}",
        ),
        (
            Mode::KeepAlive,
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n10\r\n{\"object\":\"list\"\r\n15\r\n,\"data\":[{\"id\":\"m\"}]}\r\n0\r\n\r\n",
        ),
        (
            Mode::CloseSilently,
            "HTTP/1.1 200 OK\r\n\r\n{\"object\":\"list\",\"data\":[{\"id\":\"m\"}]}",
        ),
    ] {
        assert_eq!(LISTING.len(), 37);
        let (url, _) = worker(mode, answer).await;
        assert_eq!(
            c.check_target(&models_target(&url, "m")).await.result,
            ProbeResult::Ok(200),
            "{answer:?}"
        );
        assert_eq!(
            c.check_target(&models_target(&url, "other")).await.result,
            ProbeResult::ModelMismatch,
            "{answer:?}"
        );
    }
    // A non-2xx keeps its status; a 2xx that is no listing is a mismatch.
    let (url, _) = worker(
        Mode::KeepAlive,
        "HTTP/1.1 503 x\r\ncontent-length: 0\r\n\r\n",
    )
    .await;
    assert_eq!(
        c.check_target(&models_target(&url, "m")).await.result,
        ProbeResult::HttpStatus(503)
    );
    let (url, _) = worker(Mode::KeepAlive, OK).await;
    assert_eq!(
        c.check_target(&models_target(&url, "m")).await.result,
        ProbeResult::ModelMismatch
    );
    // A listing past the kept-body bound is not read whole: it cannot list the model.
    let big: &'static str = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {n}\r\n\r\n{{\"data\":[{{\"id\":\"m\"}}],\"x\":\"{pad}\"}}",
            n = http1::MAX_KEPT_BODY + 1,
            pad = "x".repeat(http1::MAX_KEPT_BODY + 1 - 27),
        )
        .into_boxed_str(),
    );
    let (url, seen) = worker(Mode::KeepAlive, big).await;
    let kept = c.idle_connections();
    assert_eq!(
        c.check_target(&models_target(&url, "m")).await.result,
        ProbeResult::ModelMismatch
    );
    assert_eq!(seen.accepted(), 1);
    assert_eq!(
        c.idle_connections(),
        kept,
        "the over-long answer's connection is not kept"
    );
}
