//! The command line (SPEC section 2): client commands against a running agent, exit
//! codes, `version`, and configuration errors and precedence of the agent.

use probemesh_tests::*;
use serde_json::{Value, json};

/// Runs `probemesh ARGS` and asserts the exit code.
async fn pm(args: &[&str], want: i32) -> CmdOutput {
    let out = run_probemesh(args).await;
    assert_eq!(
        out.code,
        Some(want),
        "`probemesh {}`:\n{out}",
        args.join(" ")
    );
    out
}

#[tokio::test]
async fn workers_commands_drive_the_agent() {
    let agent = Agent::start(&["--probe-interval", "50ms"]).await;
    let api = agent.api();
    let admin = agent.url();
    let worker = TestWorker::start(Health::Healthy);
    let url = worker.url();

    let out = pm(
        &[
            "workers", "add", &url, "--model", "m", "--label", "k=v", "--admin", admin,
        ],
        0,
    )
    .await;
    let w = api
        .workers("")
        .await
        .pop()
        .unwrap_or_else(|| panic!("nothing registered: {out}"));
    let id = id_of(&w);
    assert!(out.stdout.contains(&id), "{out}");
    assert_eq!(w["url"], url.as_str());
    assert_eq!(w["model_id"], "m");
    assert_eq!(w["labels"], json!({"k": "v"}));
    wait_status(api, &id, "ready").await;

    let out = pm(&["workers", "list", "--admin", admin], 0).await;
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains(&url))
        .unwrap_or_else(|| panic!("no row for {url}: {out}"));
    assert!(line.contains(&id) && line.contains("ready"), "{line}");
    let out = pm(
        &["workers", "list", "--status", "pending", "--admin", admin],
        0,
    )
    .await;
    assert!(!out.stdout.contains(&url), "filtered list shows it: {out}");

    let out = pm(&["workers", "list", "--json", "--admin", admin], 0).await;
    let v: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["workers"][0]["id"], id.as_str(), "{out}");

    for key in [id.as_str(), url.as_str()] {
        let out = pm(&["workers", "get", key, "--admin", admin], 0).await;
        assert!(
            out.stdout.contains(&id) && out.stdout.contains(&url),
            "{out}"
        );
        assert!(out.stdout.contains(agent.node_id()), "views missing: {out}");
    }
    let out = pm(&["workers", "get", &id, "--json", "--admin", admin], 0).await;
    let v: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["model_id"], "m");

    pm(
        &[
            "workers",
            "update",
            &id,
            "--priority",
            "7",
            "--admin",
            admin,
        ],
        0,
    )
    .await;
    let w = api.worker(&id).await.unwrap();
    assert_eq!(w["priority"], 7);
    assert_eq!(w["status"], "ready", "update kept the status");

    pm(&["workers", "remove", &id, "--admin", admin], 0).await;
    assert!(api.worker(&id).await.is_none());

    let out = pm(&["workers", "get", &id, "--admin", admin], 1).await;
    assert!(out.stderr.contains("WORKER_NOT_FOUND"), "{out}");
    assert!(out.stdout.trim().is_empty(), "{out}");
    let out = pm(
        &["workers", "remove", "0123456789abcdef", "--admin", admin],
        1,
    )
    .await;
    assert!(!out.stderr.trim().is_empty(), "{out}");
}

#[tokio::test]
async fn client_uses_token_and_environment() {
    let agent = Agent::start(&["--admin-token", "s3cret"]).await;
    let admin = agent.url();
    let url = refused_url();
    let out = pm(
        &["workers", "add", &url, "--disable-health", "--admin", admin],
        1,
    )
    .await;
    assert!(out.stderr.contains("UNAUTHORIZED"), "{out}");
    pm(
        &[
            "workers",
            "add",
            &url,
            "--disable-health",
            "--admin",
            admin,
            "--token",
            "s3cret",
        ],
        0,
    )
    .await;
    // PROBEMESH_ADMIN and PROBEMESH_ADMIN_TOKEN stand in for the flags.
    let env = [
        ("PROBEMESH_ADMIN", admin),
        ("PROBEMESH_ADMIN_TOKEN", "s3cret"),
    ];
    let out = run_probemesh_env(&["workers", "remove", &url], &env).await;
    assert_eq!(out.code, Some(0), "{out}");
    assert!(agent.api().workers("").await.is_empty());
}

#[tokio::test]
async fn unreachable_agent_is_exit_1_and_bad_usage_is_exit_2() {
    let nowhere = refused_url();
    let out = pm(&["workers", "list", "--admin", &nowhere], 1).await;
    assert!(!out.stderr.trim().is_empty(), "{out}");
    for args in [
        &["workers", "list", "--bogus"][..],
        &["workers"],
        &["workers", "add"],
        &["workers", "update", "abc", "--priority", "high"],
        &["no-such-command"],
        &["agent", "--no-such-flag"],
    ] {
        let out = pm(args, 2).await;
        assert!(!out.stderr.trim().is_empty(), "{args:?}: {out}");
    }
}

/// SPEC section 2: exit code 2 on bad usage, also when the client itself finds the
/// arguments unusable (nothing to send, an id argument that is no usable URL).
#[tokio::test]
async fn client_side_usage_errors_are_exit_2() {
    let agent = Agent::start(&[]).await;
    let admin = agent.url();
    let out = run_probemesh(&["workers", "update", "0123456789abcdef", "--admin", admin]).await;
    assert_eq!(out.code, Some(2), "update without any field:\n{out}");
    let out = run_probemesh(&["workers", "get", "ftp://127.0.0.1:1", "--admin", admin]).await;
    assert_eq!(out.code, Some(2), "get of an unusable URL:\n{out}");
}

#[tokio::test]
async fn version_prints_version_and_protocol() {
    let out = pm(&["version"], 0).await;
    let line = out.stdout.trim();
    assert!(line.contains(env!("CARGO_PKG_VERSION")), "{out}");
    let protocol = line
        .split("protocol")
        .nth(1)
        .unwrap_or_else(|| panic!("no protocol: {out}"));
    assert!(
        protocol.chars().any(|c| c.is_ascii_digit()),
        "protocol version missing: {out}"
    );
}

/// An agent started with `args` (and `env`) must refuse to start and name `needle`.
async fn refuses(args: &[&str], env: &[(&str, &str)], needle: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let listen = format!("127.0.0.1:{}", free_port());
    let mut all = vec![
        "agent",
        "--data-dir",
        data.to_str().unwrap(),
        "--admin-listen",
        &listen,
    ];
    all.extend_from_slice(args);
    let out = run_probemesh_env(&all, env).await;
    assert!(
        out.code.is_some_and(|c| c != 0),
        "{args:?} {env:?} started:\n{out}"
    );
    assert!(
        out.stderr.contains(needle),
        "{args:?} {env:?}: stderr does not name {needle}:\n{out}"
    );
    assert!(
        !data.exists(),
        "{args:?}: data directory created before validation"
    );
}

#[tokio::test]
async fn invalid_configuration_stops_start_up_and_names_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let unknown = tmp.path().join("unknown.toml");
    std::fs::write(&unknown, "probe_interval = \"1s\"\ncolour = \"red\"\n").unwrap();
    let bad_value = tmp.path().join("bad.toml");
    std::fs::write(&bad_value, "probe_interval = \"fast\"\n").unwrap();
    let (unknown, bad_value) = (unknown.to_str().unwrap(), bad_value.to_str().unwrap());

    refuses(&["--probe-interval", "fast"], &[], "probe-interval").await;
    refuses(&["--success-threshold", "0"], &[], "success").await;
    refuses(&["--log-format", "xml"], &[], "log-format").await;
    refuses(&["--config", unknown], &[], "colour").await;
    refuses(&["--config", bad_value], &[], "probe_interval").await;
    refuses(
        &[],
        &[("PROBEMESH_PROBE_INTERVAL", "fast")],
        "PROBEMESH_PROBE_INTERVAL",
    )
    .await;
    refuses(&["--worker", "ftp://127.0.0.1:1"], &[], "worker").await;
    refuses(&["--node-id", "has space"], &[], "node-id").await;
    refuses(&["--tombstone-ttl", "10ms"], &[], "tombstone-ttl").await;
    refuses(&["--remove-failed=maybe"], &[], "remove-failed").await;
    refuses(
        &[],
        &[("PROBEMESH_REMOVE_FAILED", "maybe")],
        "PROBEMESH_REMOVE_FAILED",
    )
    .await;
    let missing = tmp.path().join("missing.toml");
    let missing = missing.to_str().unwrap();
    refuses(&["--config", missing], &[], missing).await;
}

/// Flags, environment and file go through one parse path, so one start-up reports
/// them all: a flag value of the wrong type, an unknown file key, a file value of the
/// wrong TOML type and a bad environment value, each with its key and source (exit 2,
/// nothing created).
#[tokio::test]
async fn every_bad_value_is_reported_in_one_start_up_error() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("agent.toml");
    std::fs::write(&file, "colour = \"red\"\nremove_failed = \"yes\"\n").unwrap();
    let data = tmp.path().join("data");
    let out = run_probemesh_env(
        &[
            "agent",
            "--data-dir",
            data.to_str().unwrap(),
            "--config",
            file.to_str().unwrap(),
            "--probe-interval",
            "fast",
            "--success-threshold",
            "-1",
            "--log-format",
            "xml",
        ],
        &[("PROBEMESH_TOMBSTONE_TTL", "10ms")],
    )
    .await;
    assert_eq!(out.code, Some(2), "{out}");
    for needle in [
        "config file key `colour`",
        "config file key `remove_failed`",
        "flag --probe-interval: `fast`",
        "flag --success-threshold: `-1`",
        "flag --log-format: `xml`",
        "environment variable PROBEMESH_TOMBSTONE_TTL",
    ] {
        assert!(out.stderr.contains(needle), "missing {needle}:\n{out}");
    }
    assert!(!data.exists(), "data directory created before validation");
}

#[tokio::test]
async fn declarative_workers_come_from_flag_env_or_file() {
    let worker = TestWorker::start(Health::Healthy);
    let (a, b, c) = (
        worker.url_with("/a"),
        worker.url_with("/b"),
        worker.url_with("/c"),
    );
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("agent.toml");
    std::fs::write(&file, format!("worker = [\"{c}\"]\n")).unwrap();
    let urls = |list: Vec<Value>| {
        let mut v: Vec<String> = list
            .iter()
            .map(|w| w["url"].as_str().unwrap_or("?").to_string())
            .collect();
        v.sort();
        v
    };
    // The environment holds a comma list.
    let agent = Agent::builder()
        .env("PROBEMESH_WORKER", &format!("{a},{b}"))
        .start()
        .await;
    assert_eq!(
        urls(agent.api().workers("").await),
        [a.as_str(), b.as_str()]
    );
    let agent = Agent::builder()
        .args(&["--config", file.to_str().unwrap()])
        .start()
        .await;
    assert_eq!(urls(agent.api().workers("").await), [c.as_str()]);
    // Flags win over the file.
    let agent = Agent::builder()
        .args(&["--config", file.to_str().unwrap(), "--worker", &a])
        .start()
        .await;
    assert_eq!(urls(agent.api().workers("").await), [a.as_str()]);
}

#[tokio::test]
async fn configuration_precedence_is_flag_then_env_then_file() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("agent.toml");
    std::fs::write(
        &file,
        "probe_path = \"/from-file\"\nprobe_interval = \"7s\"\nprobe_timeout = \"4s\"\n",
    )
    .unwrap();
    let agent = Agent::builder()
        .args(&["--config", file.to_str().unwrap(), "--probe-timeout", "3s"])
        .env("PROBEMESH_PROBE_PATH", "/from-env")
        .env("PROBEMESH_PROBE_TIMEOUT", "9s")
        .env("PROBEMESH_FAILURE_THRESHOLD", "5")
        .start()
        .await;
    let w = agent
        .api()
        .register(&json!({"url": refused_url(), "health": {"disable": true}}))
        .await;
    assert_eq!(
        w["health"],
        json!({"path": "/from-env", "interval": "7s", "timeout": "3s",
               "success_threshold": 2, "failure_threshold": 5, "disable": true, "kind": "http"})
    );
}

/// Sends a request head that cannot be parsed to the agent's admin port: the agent
/// answers 400 and logs `rejected a malformed request head` at debug level.
async fn send_malformed_head(agent: &Agent) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", agent.port()))
        .await
        .expect("connect to the admin port");
    conn.write_all(b"NOT A REQUEST\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer).await;
}

#[tokio::test]
async fn rust_log_sets_the_levels_and_a_typo_is_reported_not_fatal() {
    // A per-target debug level shows that target's debug lines.
    let debug = Agent::builder()
        .env("RUST_LOG", "warn,probemesh::admin=debug")
        .start()
        .await;
    send_malformed_head(&debug).await;
    eventually(
        "the debug line of a malformed request head",
        scaled(std::time::Duration::from_secs(10)),
        std::time::Duration::from_millis(20),
        || async {
            let log = debug.log();
            if log.contains("rejected a malformed request head") {
                Ok(())
            } else {
                Err(log)
            }
        },
    )
    .await;
    // The bare level applies to the rest: start-up's info lines are gone.
    assert!(
        !debug.log().contains("probemesh agent starting"),
        "{}",
        debug.log()
    );

    // At info (the default) the same request logs nothing; an invalid filter is
    // reported and replaced by the default, and the agent still starts.
    let typo = Agent::builder()
        .env("RUST_LOG", "probemesh=loud")
        .start()
        .await;
    send_malformed_head(&typo).await;
    typo.api().get("/v1/health").await.expect_status(200);
    let log = typo.log();
    assert!(log.contains("RUST_LOG is not a valid log filter"), "{log}");
    assert!(log.contains("probemesh agent starting"), "{log}");
    assert!(!log.contains("rejected a malformed request head"), "{log}");
}
