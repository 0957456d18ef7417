//! The shipped container image, for real, under Docker (issue 17): built by
//! `deploy/container/build.sh`, started with no flags and with environment variables
//! only, and three agent containers on a private Docker network forming a cluster that
//! survives `docker kill`, a `docker network disconnect` and a restart.
//!
//! Needs a Docker daemon: without one it prints SKIPPED, or fails under
//! `PROBEMESH_REQUIRE_ROOT_TESTS=1` (CI). Everything it makes (containers with their
//! volumes, networks, images) is named `pmtest-<start>-<random>-…`, labelled
//! `io.probemesh.test=containers`, and removed by the [`DockerRun`] guard, also when a
//! test fails; left-overs of killed runs are swept at the next start.
//!
//! No address outside the machine is used: the networks are private bridges in
//! 10.213.0.0/16 made by the test, the HTTPS worker listens on the bridge's own address,
//! and containers get `--dns 127.0.0.1` so that Docker's embedded DNS never forwards
//! a query (see `probemesh_tests::docker`).

use probemesh_tests::docker::{DockerRun, available, docker, docker_output};
use probemesh_tests::tls_worker::TlsWorker;
use probemesh_tests::{Api, eventually, scaled, status_of, worker_id_for};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(100);
/// Image size budget of issue 17.
const IMAGE_BUDGET: u64 = 15_000_000;
const TOKEN: &str = "container-test-token";

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1_048_576.0)
}

/// Runs the static probemesh binary of the build context on this machine (for
/// `probemesh tls`), panicking with its output on failure.
fn probemesh_host(bin: &Path, args: &[&str]) {
    let out = std::process::Command::new(bin)
        .args(args)
        .output()
        .expect("run the static probemesh binary");
    assert!(
        out.status.success(),
        "probemesh {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes `path` (file or directory, recursively) readable by the image's user 65532:
/// owned by it when the tests run as root, else world-readable.
fn give_to_container_user(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let root = probemesh_tests::require::is_root();
    let mut todo = vec![path.to_path_buf()];
    while let Some(p) = todo.pop() {
        if root {
            std::os::unix::fs::chown(&p, Some(65532), Some(65532)).expect("chown");
        } else {
            let mode = if p.is_dir() { 0o755 } else { 0o644 };
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        }
        if p.is_dir() {
            for e in std::fs::read_dir(&p).expect("read_dir") {
                todo.push(e.expect("dir entry").path());
            }
        }
    }
}

/// Seconds since midnight of an RFC 3339 UTC log timestamp at the start of `line`.
fn log_time(line: &str) -> Option<f64> {
    let t = line.split_whitespace().next()?.split('T').nth(1)?;
    let t = t.trim_end_matches('Z');
    let mut parts = t.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// From the agent's first log line to "admin API listening", in the agent's own clock.
fn startup_from_logs(logs: &str) -> Option<Duration> {
    let start = logs
        .lines()
        .find(|l| l.contains("probemesh agent starting"))?;
    let up = logs.lines().find(|l| l.contains("admin API listening"))?;
    let mut d = log_time(up)? - log_time(start)?;
    if d < 0.0 {
        d += 86_400.0;
    }
    Some(Duration::from_secs_f64(d))
}

/// `docker exec C probemesh ARGS --json` parsed.
async fn exec_json(run: &DockerRun, container: &str, args: &[&str]) -> Result<Value, String> {
    let mut all = vec!["probemesh"];
    all.extend_from_slice(args);
    all.push("--json");
    let out = run.exec(container, &all).await?;
    if !out.ok() {
        return Err(format!("exit {:?}: {}{}", out.code, out.stderr, out.stdout));
    }
    serde_json::from_str(&out.stdout).map_err(|e| format!("{e}: {}", out.stdout))
}

/// The state (`alive`, `dead`) of each member in a `/v1/members` answer.
fn member_states(members: &Value) -> Vec<(String, String)> {
    members["members"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| {
                    (
                        m["node_id"].as_str().unwrap_or("?").to_string(),
                        m["state"].as_str().unwrap_or("?").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn is_alive(members: &Value, node: &str) -> bool {
    member_states(members)
        .iter()
        .any(|(n, st)| n == node && st == "alive")
}

fn is_dead_or_gone(members: &Value, node: &str) -> bool {
    !is_alive(members, node)
}

/// A worker's entry in a `/v1/workers` answer.
fn find_worker<'a>(list: &'a Value, id: &str) -> Option<&'a Value> {
    list["workers"]
        .as_array()?
        .iter()
        .find(|w| w["id"].as_str() == Some(id))
}

async fn members(api: &Api) -> Result<Value, String> {
    let r = api
        .try_send(reqwest::Method::GET, "/v1/members", None)
        .await?;
    if r.status == 200 {
        Ok(r.body)
    } else {
        Err(format!("HTTP {}: {}", r.status, r.text))
    }
}

async fn workers(api: &Api) -> Result<Value, String> {
    let r = api
        .try_send(reqwest::Method::GET, "/v1/workers", None)
        .await?;
    if r.status == 200 {
        Ok(r.body)
    } else {
        Err(format!("HTTP {}: {}", r.status, r.text))
    }
}

/// Waits until `api`'s view holds worker `id` with status `status`.
async fn wait_status_on(api: &Api, id: &str, status: &str, deadline: Duration, what: &str) {
    eventually(what, deadline, POLL, || async {
        let list = workers(api).await?;
        match find_worker(&list, id) {
            Some(w) if status_of(w) == status => Ok(()),
            Some(w) => Err(w.to_string()),
            None => Err(format!("{id} not in the view")),
        }
    })
    .await;
}

/// Waits until every node of `nodes` lists every id of `ids` as alive.
async fn wait_all_alive(nodes: &[Node], ids: &[String], what: &str) {
    for n in nodes {
        eventually(
            &format!("{} to see {} alive {what}", n.id, ids.len()),
            Duration::from_secs(60),
            POLL,
            || async {
                let m = members(&n.api).await?;
                if ids.iter().all(|id| is_alive(&m, id)) {
                    Ok(())
                } else {
                    Err(m.to_string())
                }
            },
        )
        .await;
    }
}

/// Waits until `api`'s view has each `(worker id, status)` of `want`, where the status
/// `absent` means the worker is not in the view.
async fn wait_view(api: &Api, want: &[(&str, &str)], what: &str) {
    eventually(what, Duration::from_secs(60), POLL, || async {
        let list = workers(api).await?;
        let seen: Vec<(&str, &str)> = want
            .iter()
            .map(|(id, _)| (*id, find_worker(&list, id).map_or("absent", status_of)))
            .collect();
        if seen.as_slice() == want {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        }
    })
    .await;
}

/// Builds the probemesh image with the documented script and checks what issue 17 asks
/// of it: FROM scratch contents, size, user, volume, ports, entrypoint, labels, no
/// HEALTHCHECK.
async fn build_and_check_image(run: &mut DockerRun) -> probemesh_tests::docker::BuiltImage {
    let image = match run.build_probemesh_image().await {
        Ok(i) => i,
        Err(e) => panic!("{e}"),
    };
    println!("{}", image.report.trim_end());
    println!(
        "FIGURE image {}: {} ({} bytes), binary {} ({} bytes), build.sh took {:.1} s",
        image.tag,
        mb(image.size),
        image.size,
        mb(image.binary_size),
        image.binary_size,
        image.took.as_secs_f64()
    );
    assert!(
        image.size < IMAGE_BUDGET,
        "image is {} bytes, over the {IMAGE_BUDGET} budget",
        image.size
    );
    let config: Value = serde_json::from_str(
        &docker(&[
            "image",
            "inspect",
            "--format",
            "{{json .Config}}",
            &image.tag,
        ])
        .await
        .expect("inspect image"),
    )
    .expect("image config JSON");
    assert_eq!(
        config["User"], "65532:65532",
        "numeric non-root user: {config}"
    );
    assert_eq!(
        config["Entrypoint"],
        json!(["probemesh", "agent"]),
        "{config}"
    );
    assert!(
        config["Volumes"].get("/data").is_some(),
        "/data volume: {config}"
    );
    assert_eq!(config["WorkingDir"], "/data", "{config}");
    for port in ["7800/udp", "7801/tcp"] {
        assert!(
            config["ExposedPorts"].get(port).is_some(),
            "{port}: {config}"
        );
    }
    assert!(
        config["Healthcheck"].is_null(),
        "no HEALTHCHECK by design: {config}"
    );
    let labels = &config["Labels"];
    assert_eq!(
        labels["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION"),
        "{labels}"
    );
    let revision = labels["org.opencontainers.image.revision"]
        .as_str()
        .unwrap_or_default();
    let head = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(probemesh_tests::binary::workspace_root())
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if !head.is_empty() {
        assert!(
            revision.starts_with(&head),
            "revision {revision} vs HEAD {head}"
        );
    }
    assert!(
        labels["org.opencontainers.image.source"]
            .as_str()
            .is_some_and(|s| s.starts_with("http")),
        "{labels}"
    );
    // FROM scratch: exactly the files build.sh puts in, nothing from a base image (no
    // shell, no libc). `docker export` of a created container lists its filesystem.
    let probe = run.name("files");
    run.create(&probe, &image.tag).await.expect("docker create");
    let tar = tempfile::NamedTempFile::new().expect("temp file");
    let tar_path = tar.path().to_string_lossy().into_owned();
    docker(&["export", "--output", &tar_path, &probe])
        .await
        .expect("docker export");
    let listing = std::process::Command::new("tar")
        .args(["-tf", &tar_path])
        .output()
        .expect("tar -t");
    let mut files: Vec<String> = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .map(|l| l.trim_end_matches('/').to_string())
        .filter(|l| !l.is_empty())
        .collect();
    files.sort();
    // What Docker itself adds to every container's filesystem.
    let docker_adds = [
        ".dockerenv",
        "dev",
        "dev/console",
        "dev/pts",
        "dev/shm",
        "etc/hostname",
        "etc/hosts",
        "etc/mtab",
        "etc/resolv.conf",
        "proc",
        "sys",
    ];
    let ours: Vec<&str> = files
        .iter()
        .map(String::as_str)
        .filter(|f| !docker_adds.contains(f))
        .collect();
    assert_eq!(
        ours,
        [
            "data",
            "etc",
            "etc/group",
            "etc/nsswitch.conf",
            "etc/passwd",
            "etc/ssl",
            "etc/ssl/certs",
            "etc/ssl/certs/ca-certificates.crt",
            "usr",
            "usr/local",
            "usr/local/bin",
            "usr/local/bin/probemesh",
        ],
        "the image's files"
    );
    image
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_starts_with_no_flags_and_with_environment_variables_only() {
    if !available("build and run the probemesh image").await {
        return;
    }
    let mut run = DockerRun::new().await;
    let image = build_and_check_image(&mut run).await;
    let worker_image = run
        .build_tiny_worker_image()
        .await
        .expect("tiny worker image");
    let net = run.network("single").await.expect("network");
    let w0 = run.name("single-w0");
    run.run(
        &w0,
        &s(&["--network", &net.name, "--read-only"]),
        &worker_image,
        &[],
    )
    .await
    .expect("start tiny worker");

    // 1. No flags, no environment: a single-node cluster, state in the /data volume.
    let plain = run.name("plain");
    let started = Instant::now();
    run.run(
        &plain,
        &s(&["--network", &net.name, "--ip", &net.ip(10), "--read-only"]),
        &image.tag,
        &[],
    )
    .await
    .expect("docker run with no flags");
    let ready = eventually(
        "the flag-less agent to be ready",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || async {
            let out = run.exec(&plain, &["probemesh", "check", "ready"]).await?;
            if out.ok() {
                Ok(out.stdout)
            } else {
                Err(format!(
                    "{:?} {}{}",
                    out.code,
                    out.stderr,
                    run.logs(&plain).await
                ))
            }
        },
    )
    .await;
    let to_ready = started.elapsed();
    assert!(ready.contains("\"ready\""), "{ready}");
    let logs = run.logs(&plain).await;
    let own = startup_from_logs(&logs);
    println!(
        "FIGURE start-up in the container: docker run -> `probemesh check ready` ok in {:.0} ms; agent's own log, start -> admin API listening: {}",
        to_ready.as_secs_f64() * 1000.0,
        own.map_or_else(
            || "?".into(),
            |d| format!("{:.0} ms", d.as_secs_f64() * 1000.0)
        )
    );
    let m = exec_json(&run, &plain, &["members"])
        .await
        .expect("members");
    let list = m["members"].as_array().expect("members array");
    assert_eq!(list.len(), 1, "{m}");
    assert_eq!(list[0]["state"], "alive", "{m}");
    assert_eq!(list[0]["is_self"], true, "{m}");
    // The advertise address is derived from the container's interface.
    assert_eq!(
        list[0]["gossip_addr"],
        format!("{}:7800", net.ip(10)),
        "{m}"
    );
    // The generated CA landed in the volume (working directory /data).
    let tls_dir = docker_output(&["cp", &format!("{plain}:/data/probemesh-data/tls"), "-"])
        .await
        .expect("docker cp");
    assert!(
        tls_dir.ok() && tls_dir.stdout.contains("ca.pem"),
        "no CA under /data: {}",
        tls_dir.stderr
    );
    // A worker given by container name: glibc's resolver inside the static binary asks
    // Docker's DNS through the mounted /etc/resolv.conf.
    let w0_url = format!("http://{w0}:8000");
    let add = run
        .exec(&plain, &["probemesh", "workers", "add", &w0_url])
        .await
        .expect("workers add");
    assert!(add.ok(), "workers add: {}{}", add.stderr, add.stdout);
    let w0_id = worker_id_for(&w0_url);
    eventually(
        "the worker named by DNS to be ready",
        Duration::from_secs(30),
        POLL,
        || async {
            let list = exec_json(&run, &plain, &["workers", "list"]).await?;
            match find_worker(&list, &w0_id) {
                Some(w) if status_of(w) == "ready" => Ok(()),
                Some(w) => Err(w.to_string()),
                None => Err(list.to_string()),
            }
        },
    )
    .await;

    // 2. TLS roots. An HTTPS worker with a certificate from a private CA: the image's
    // Debian bundle does not trust it (tls_error, never ready) ...
    let certs = tempfile::Builder::new()
        .prefix("probemesh-ct-")
        .tempdir()
        .expect("tempdir");
    let ca_dir = certs.path().join("ca");
    let bin = image.binary.clone();
    probemesh_host(
        &bin,
        &["tls", "ca", "create", "--out", &ca_dir.to_string_lossy()],
    );
    let https_dir = certs.path().join("https");
    probemesh_host(
        &bin,
        &[
            "tls",
            "cert",
            "create",
            "--ca",
            &ca_dir.to_string_lossy(),
            "--node",
            "https-worker",
            "--ip",
            &net.gateway(),
            "--out",
            &https_dir.to_string_lossy(),
        ],
    );
    let https = TlsWorker::start(
        &net.gateway(),
        &https_dir.join("https-worker.pem"),
        &https_dir.join("https-worker-key.pem"),
    )
    .expect("HTTPS worker");
    let https_id = worker_id_for(&https.url());
    let add = run
        .exec(&plain, &["probemesh", "workers", "add", &https.url()])
        .await
        .expect("workers add https");
    assert!(add.ok(), "{}{}", add.stderr, add.stdout);
    eventually(
        "the untrusted HTTPS worker to fail 3 probes",
        Duration::from_secs(40),
        POLL,
        || async {
            let list = exec_json(&run, &plain, &["workers", "list"]).await?;
            match find_worker(&list, &https_id) {
                Some(w) if w["probe"]["consecutive_failures"].as_u64() >= Some(3) => Ok(()),
                Some(w) => Err(w.to_string()),
                None => Err(list.to_string()),
            }
        },
    )
    .await;
    let list = exec_json(&run, &plain, &["workers", "list"])
        .await
        .expect("list");
    let w = find_worker(&list, &https_id).expect("https worker");
    assert_eq!(status_of(w), "pending", "{w}");
    assert_eq!(
        https.requests(),
        0,
        "a request passed the TLS handshake with an untrusted certificate"
    );
    assert!(
        run.logs(&plain).await.contains("UnknownIssuer"),
        "the refusal is the certificate check's"
    );

    // 3. Environment variables only, and the private CA mounted as the image's root
    // bundle: the same worker is verified and ready; the admin API on 0.0.0.0 with a
    // token, reachable from this machine.
    let ca_pem = ca_dir.join("ca.pem");
    give_to_container_user(&ca_pem);
    let envnode = run.name("env");
    run.run(
        &envnode,
        &s(&[
            "--network",
            &net.name,
            "--ip",
            &net.ip(11),
            "--read-only",
            "-v",
            &format!("{}:/etc/ssl/certs/ca-certificates.crt:ro", ca_pem.display()),
            "-e",
            "PROBEMESH_NODE_ID=env-node",
            "-e",
            "PROBEMESH_ADMIN_LISTEN=0.0.0.0:7801",
            "-e",
            &format!("PROBEMESH_ADMIN_TOKEN={TOKEN}"),
            "-e",
            "PROBEMESH_PROBE_INTERVAL=200ms",
            "-e",
            &format!("PROBEMESH_WORKER={w0_url}"),
            "-e",
            "PROBEMESH_LOG_FORMAT=json",
        ]),
        &image.tag,
        &[],
    )
    .await
    .expect("docker run with environment only");
    let api = Api::new(format!("http://{}:7801", net.ip(11)));
    let health = eventually(
        "GET /v1/health of the env-only agent",
        Duration::from_secs(30),
        POLL,
        || async {
            let r = api
                .try_send(reqwest::Method::GET, "/v1/health", None)
                .await?;
            if r.status == 200 {
                Ok(r.body)
            } else {
                Err(r.text)
            }
        },
    )
    .await;
    assert_eq!(health["node_id"], "env-node", "{health}");
    wait_status_on(
        &api,
        &w0_id,
        "ready",
        Duration::from_secs(30),
        "the PROBEMESH_WORKER worker to be ready",
    )
    .await;
    let refused = api.post("/v1/workers", &json!({"url": https.url()})).await;
    assert_eq!(
        refused.status, 401,
        "a mutation without the token: {}",
        refused.text
    );
    api.with_token(TOKEN)
        .register(&json!({"url": https.url()}))
        .await;
    wait_status_on(
        &api,
        &https_id,
        "ready",
        Duration::from_secs(30),
        "the HTTPS worker trusted through the mounted root bundle",
    )
    .await;
    assert!(
        https.requests() >= 2,
        "the HTTPS worker saw {} requests",
        https.requests()
    );
    let env_logs = run.logs(&envnode).await;
    assert!(
        env_logs
            .lines()
            .any(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| v.is_object())),
        "PROBEMESH_LOG_FORMAT=json: {env_logs}"
    );

    // 4. A non-loopback admin address without a token is refused at start-up (exit 2).
    let refused_c = run.name("refused");
    run.run(
        &refused_c,
        &s(&[
            "--network",
            &net.name,
            "--read-only",
            "-e",
            "PROBEMESH_ADMIN_LISTEN=0.0.0.0:7801",
        ]),
        &image.tag,
        &[],
    )
    .await
    .expect("docker run (refused)");
    let code = docker(&["wait", &refused_c]).await.expect("docker wait");
    assert_eq!(code, "2", "exit code of a refused configuration");
    assert!(run.logs(&refused_c).await.contains("PROBEMESH_ADMIN_TOKEN"));

    // 5. Memory at rest, and a graceful stop on SIGTERM.
    if let Ok(mem) = docker(&["stats", "--no-stream", "--format", "{{.MemUsage}}", &plain]).await {
        println!("FIGURE memory of the flag-less agent with 2 workers (docker stats): {mem}");
    }
    let stopping = Instant::now();
    docker(&["stop", "--time", "20", &plain])
        .await
        .expect("docker stop");
    let stop_took = stopping.elapsed();
    let exit = docker(&["inspect", "--format", "{{.State.ExitCode}}", &plain])
        .await
        .expect("inspect");
    assert_eq!(
        exit,
        "0",
        "exit code after SIGTERM: {}",
        run.logs(&plain).await
    );
    println!(
        "FIGURE docker stop (SIGTERM) -> exit 0 in {:.0} ms",
        stop_took.as_secs_f64() * 1000.0
    );
    assert!(
        stop_took < scaled(Duration::from_secs(15)),
        "stop took {stop_took:?}"
    );
}

/// One agent container of the cluster test.
struct Node {
    id: String,
    container: String,
    ip: String,
    api: Api,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_agent_containers_form_a_cluster_adopt_a_killed_members_workers_and_heal_a_partition()
{
    if !available("run a cluster of probemesh containers").await {
        return;
    }
    let test_start = Instant::now();
    let mut run = DockerRun::new().await;
    let image = build_and_check_image(&mut run).await;
    let worker_image = run
        .build_tiny_worker_image()
        .await
        .expect("tiny worker image");
    let net = run.network("cluster").await.expect("network");

    // Certificates from `probemesh tls`, one read-only directory per node.
    let certs = tempfile::Builder::new()
        .prefix("probemesh-cc-")
        .tempdir()
        .expect("tempdir");
    let ca_dir = certs.path().join("ca");
    probemesh_host(
        &image.binary,
        &["tls", "ca", "create", "--out", &ca_dir.to_string_lossy()],
    );
    let mut nodes = Vec::new();
    for i in 0..3u8 {
        let id = format!("n{i}");
        let container = run.name(&id);
        let ip = net.ip(10 + i);
        let dir: PathBuf = certs.path().join(&id);
        probemesh_host(
            &image.binary,
            &[
                "tls",
                "cert",
                "create",
                "--ca",
                &ca_dir.to_string_lossy(),
                "--node",
                &id,
                "--ip",
                &ip,
                "--dns",
                &container,
                "--out",
                &dir.to_string_lossy(),
            ],
        );
        std::fs::copy(ca_dir.join("ca.pem"), dir.join("ca.pem")).expect("copy ca.pem");
        give_to_container_user(&dir);
        let api = Api::new(format!("http://{ip}:7801"));
        nodes.push(Node {
            id,
            container,
            ip,
            api,
        });
    }
    let seeds: Vec<String> = nodes
        .iter()
        .map(|n| format!("{}:7800", n.container))
        .collect();
    let seeds = seeds.join(",");

    let mut workers_c = Vec::new();
    for w in ["w0", "w1", "w2"] {
        let name = run.name(w);
        run.run(
            &name,
            &s(&["--network", &net.name, "--read-only"]),
            &worker_image,
            &[],
        )
        .await
        .expect("start tiny worker");
        workers_c.push(name);
    }
    let url_of = |i: usize| format!("http://{}:8000", workers_c[i]);

    // Environment only, seeds by container name (Docker's DNS), like a headless
    // Service: every node lists all three, itself included.
    let node_opts = |n: &Node| {
        let dir = certs.path().join(&n.id);
        s(&[
            "--network",
            &net.name,
            "--ip",
            &n.ip,
            "--hostname",
            &n.id,
            "--read-only",
            "-v",
            &format!("{}:/certs:ro", dir.display()),
            "-e",
            &format!("PROBEMESH_NODE_ID={}", n.id),
            "-e",
            "PROBEMESH_TLS_CA=/certs/ca.pem",
            "-e",
            &format!("PROBEMESH_TLS_CERT=/certs/{}.pem", n.id),
            "-e",
            &format!("PROBEMESH_TLS_KEY=/certs/{}-key.pem", n.id),
            "-e",
            &format!("PROBEMESH_SEEDS={seeds}"),
            "-e",
            "PROBEMESH_ADMIN_LISTEN=0.0.0.0:7801",
            "-e",
            &format!("PROBEMESH_ADMIN_TOKEN={TOKEN}"),
            "-e",
            "PROBEMESH_PROBE_INTERVAL=500ms",
        ])
    };
    let formed_from = Instant::now();
    for n in &nodes {
        run.run(&n.container, &node_opts(n), &image.tag, &[])
            .await
            .expect("start agent container");
    }
    let all_ids: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
    wait_all_alive(&nodes, &all_ids, "members").await;
    let formed = formed_from.elapsed();
    println!(
        "FIGURE cluster of 3 containers formed (3 alive on each) {:.2} s after the first docker run",
        formed.as_secs_f64()
    );

    // A worker registered on n0 becomes ready on all three, each by its own probes.
    let w0 = worker_id_for(&url_of(0));
    let registered = Instant::now();
    nodes[0]
        .api
        .with_token(TOKEN)
        .register(&json!({"url": url_of(0)}))
        .await;
    for n in &nodes {
        wait_status_on(
            &n.api,
            &w0,
            "ready",
            Duration::from_secs(30),
            &format!("w0 ready on {}", n.id),
        )
        .await;
    }
    let ready_everywhere = registered.elapsed();
    println!(
        "FIGURE worker registered on n0 -> ready on all 3 in {:.2} s",
        ready_everywhere.as_secs_f64()
    );
    let seen = nodes[2].api.worker(&w0).await.expect("w0 on n2");
    assert_eq!(seen["origin"], "peer", "{seen}");
    assert_eq!(seen["owner"], "n0", "{seen}");
    for (i, n) in nodes.iter().enumerate() {
        let probed = run.logs(&workers_c[0]).await;
        assert!(
            probed.contains(&format!("{}:", n.ip)),
            "{} (node {i}) never probed w0 itself:\n{probed}",
            n.id
        );
    }

    // A worker owned by n2, then n2 is killed: seen dead, its registration adopted.
    let w1 = worker_id_for(&url_of(1));
    nodes[2]
        .api
        .with_token(TOKEN)
        .register(&json!({"url": url_of(1)}))
        .await;
    for n in &nodes {
        wait_status_on(
            &n.api,
            &w1,
            "ready",
            Duration::from_secs(30),
            &format!("w1 ready on {}", n.id),
        )
        .await;
    }
    let killed = Instant::now();
    docker(&["kill", &nodes[2].container])
        .await
        .expect("docker kill n2");
    for n in &nodes[..2] {
        eventually(
            &format!("{} to see n2 dead", n.id),
            Duration::from_secs(60),
            POLL,
            || async {
                let m = members(&n.api).await?;
                if is_dead_or_gone(&m, "n2") {
                    Ok(())
                } else {
                    Err(m.to_string())
                }
            },
        )
        .await;
    }
    let seen_dead = killed.elapsed();
    // Adoption: the survivors advertise both registrations between them.
    eventually(
        "n2's registration to be adopted",
        Duration::from_secs(60),
        POLL,
        || async {
            let m = members(&nodes[1].api).await?;
            let owned: u64 = m["members"]
                .as_array()
                .map(|ms| {
                    ms.iter()
                        .filter(|x| x["state"] == "alive")
                        .map(|x| x["workers_owned"].as_u64().unwrap_or(0))
                        .sum()
                })
                .unwrap_or(0);
            if owned == 2 {
                Ok(())
            } else {
                Err(m.to_string())
            }
        },
    )
    .await;
    let adopted = killed.elapsed();
    for n in &nodes[..2] {
        let w = n
            .api
            .worker(&w1)
            .await
            .expect("w1 kept after its owner died");
        assert_eq!(status_of(&w), "ready", "{} after n2 died: {w}", n.id);
    }
    println!(
        "FIGURE docker kill n2 -> dead on n0 and n1 after {:.2} s; its registration adopted after {:.2} s",
        seen_dead.as_secs_f64(),
        adopted.as_secs_f64()
    );

    // Partition: n1 leaves the network. Each side sees the other dead, and n1 can no
    // longer verify any worker.
    let cut = Instant::now();
    docker(&["network", "disconnect", &net.name, &nodes[1].container])
        .await
        .expect("disconnect n1");
    eventually(
        "n0 to see n1 dead",
        Duration::from_secs(60),
        POLL,
        || async {
            let m = members(&nodes[0].api).await?;
            if is_dead_or_gone(&m, "n1") {
                Ok(())
            } else {
                Err(m.to_string())
            }
        },
    )
    .await;
    eventually(
        "n1 (cut off) to see n0 dead and w0 not ready",
        Duration::from_secs(60),
        POLL,
        || async {
            let m = exec_json(&run, &nodes[1].container, &["members"]).await?;
            let list = exec_json(&run, &nodes[1].container, &["workers", "list"]).await?;
            let w = find_worker(&list, &w0).map(status_of).unwrap_or("absent");
            if is_dead_or_gone(&m, "n0") && w != "ready" {
                Ok(())
            } else {
                Err(format!("{m} w0={w}"))
            }
        },
    )
    .await;
    println!(
        "FIGURE network disconnect of n1 -> both sides see the other dead after {:.2} s",
        cut.elapsed().as_secs_f64()
    );
    // While cut off, the majority side changes state: w0 evicted, w2 registered.
    let w2 = worker_id_for(&url_of(2));
    let del = nodes[0]
        .api
        .with_token(TOKEN)
        .delete(&format!("/v1/workers/{w0}"))
        .await;
    assert_eq!(del.status, 200, "{}", del.text);
    nodes[0]
        .api
        .with_token(TOKEN)
        .register(&json!({"url": url_of(2)}))
        .await;
    wait_status_on(
        &nodes[0].api,
        &w2,
        "ready",
        Duration::from_secs(30),
        "w2 ready on n0",
    )
    .await;

    // Heal: the same address again. n1 converges: n0 alive, w0 gone, w1 and w2 ready.
    let healed = Instant::now();
    docker(&[
        "network",
        "connect",
        "--ip",
        &nodes[1].ip,
        &net.name,
        &nodes[1].container,
    ])
    .await
    .expect("reconnect n1");
    eventually(
        "n1 and n0 to see each other alive",
        Duration::from_secs(60),
        POLL,
        || async {
            let a = members(&nodes[0].api).await?;
            let b = members(&nodes[1].api).await?;
            if is_alive(&a, "n1") && is_alive(&b, "n0") {
                Ok(())
            } else {
                Err(format!("{a}\n{b}"))
            }
        },
    )
    .await;
    wait_view(
        &nodes[1].api,
        &[(&w0, "absent"), (&w1, "ready"), (&w2, "ready")],
        "n1 to converge after the partition",
    )
    .await;
    println!(
        "FIGURE network connect of n1 -> converged (tombstone and new worker learned, all ready) after {:.2} s",
        healed.elapsed().as_secs_f64()
    );

    // Restart of the killed container (its volume kept): it rejoins and agrees.
    let restarted = Instant::now();
    docker(&["start", &nodes[2].container])
        .await
        .expect("docker start n2");
    wait_all_alive(&nodes, &all_ids, "after the restart").await;
    wait_view(
        &nodes[2].api,
        &[(&w0, "absent"), (&w1, "ready"), (&w2, "ready")],
        "n2 to agree after its restart",
    )
    .await;
    println!(
        "FIGURE docker start n2 -> rejoined and agreeing after {:.2} s; whole test {:.0} s",
        restarted.elapsed().as_secs_f64(),
        test_start.elapsed().as_secs_f64()
    );
}
