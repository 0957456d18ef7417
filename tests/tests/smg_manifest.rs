//! `--smg-manifest` against the real gateway (`smg==1.13.0` from PyPI, cached venv) on
//! loopback: smg's file discovery follows the agent's ready set through the manifest,
//! and a reader never sees a partial file.

use probemesh_tests::smg::{LlmWorker, Smg, smg_bin};
use probemesh_tests::{Agent, eventually, free_port, gateway_workers, id_of, require, wait_status};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(45);

async fn smg_workers(smg: &Smg) -> Vec<Value> {
    gateway_workers(&smg.url).await.unwrap_or_default()
}

async fn wait_smg(smg: &Smg, what: &str, pred: impl Fn(&[Value]) -> bool) {
    eventually(what, LONG, Duration::from_millis(100), || async {
        let ws = smg_workers(smg).await;
        if pred(&ws) {
            Ok(())
        } else {
            Err(format!("{ws:?}"))
        }
    })
    .await;
}

fn lists(ws: &[Value], url: &str) -> bool {
    ws.iter()
        .any(|w| w["url"] == url && w["status"] != "draining")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smg_file_discovery_follows_the_ready_set_through_the_manifest() {
    let need = format!("smg {}", probemesh_tests::smg::SMG_VERSION);
    if require::ok(smg_bin(), &need).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("workers.json");
    let manifest_arg = manifest.to_string_lossy().into_owned();
    let agent = Agent::start(&["--probe-interval", "100ms", "--smg-manifest", &manifest_arg]).await;
    eventually(
        "the agent writes an empty manifest at start",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            match std::fs::read_to_string(&manifest) {
                Ok(t)
                    if serde_json::from_str::<Value>(&t).ok()
                        == Some(json!({"version": 1, "workers": []})) =>
                {
                    Ok(())
                }
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;

    // A reader that parses the file as fast as it can while it changes: never partial.
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let reader = {
        let (stop, reads, path) = (Arc::clone(&stop), Arc::clone(&reads), manifest.clone());
        std::thread::spawn(move || -> Result<(), String> {
            while !stop.load(Ordering::Relaxed) {
                let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
                let v: Value = serde_json::from_str(&text)
                    .map_err(|e| format!("partial manifest {text:?}: {e}"))?;
                if v["version"] != 1 || !v["workers"].is_array() {
                    return Err(format!("unexpected manifest {v}"));
                }
                reads.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        })
    };

    let port = free_port();
    let smg = Smg::start(
        &[],
        "127.0.0.1",
        port,
        &[
            "--discovery-provider",
            "file",
            "--discovery-file",
            &manifest_arg,
        ],
        &dir.path().join("smg.log"),
    );
    let w1 = LlmWorker::start();
    let url = format!("http://127.0.0.1:{}", w1.port);
    let id = id_of(
        &agent
            .api()
            .register(&json!({"url": url, "model_id": probemesh_tests::smg::FAKE_MODEL}))
            .await,
    );
    wait_status(agent.api(), &id, "ready").await;
    wait_smg(&smg, "smg discovers the ready worker", |ws| lists(ws, &url)).await;
    let text = std::fs::read_to_string(&manifest).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        v["workers"],
        json!([{"id": id, "url": url, "worker_type": "regular", "model_id": probemesh_tests::smg::FAKE_MODEL}]),
        "{text}"
    );
    let listed = smg_workers(&smg).await;
    let w = listed.iter().find(|w| w["url"] == url.as_str()).unwrap();
    assert_eq!(w["labels"]["smg.ai/discovery-id"], id.as_str(), "{w}");
    assert_eq!(w["model_id"], probemesh_tests::smg::FAKE_MODEL);

    // The worker leaves ready: it leaves the manifest and smg drops it.
    w1.set_healthy(false);
    wait_status(agent.api(), &id, "not_ready").await;
    wait_smg(&smg, "smg drops the worker", |ws| !lists(ws, &url)).await;
    // Back to ready, then deleted.
    w1.set_healthy(true);
    wait_status(agent.api(), &id, "ready").await;
    wait_smg(&smg, "smg discovers it again", |ws| lists(ws, &url)).await;
    agent.api().delete(&format!("/v1/workers/{id}")).await;
    wait_smg(&smg, "smg drops the deleted worker", |ws| !lists(ws, &url)).await;

    stop.store(true, Ordering::Relaxed);
    let read = reader.join().expect("reader thread");
    read.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        reads.load(Ordering::Relaxed) > 100,
        "the reader read the file"
    );
    let metrics = agent.api().metrics().await;
    assert!(
        probemesh_tests::metric(
            &metrics,
            "probemesh_smg_manifest_writes_total{result=\"ok\"}"
        )
        .unwrap_or(0.0)
            >= 5.0,
        "{metrics}"
    );
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("probemesh-tmp"))
        .collect();
    assert!(names.is_empty(), "temp files left: {names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_in_a_missing_directory_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("no/such/dir/workers.json");
    let data = dir.path().join("data").to_string_lossy().into_owned();
    let admin = format!("127.0.0.1:{}", free_port());
    let bad = bad.to_string_lossy().into_owned();
    let mut args: Vec<String> = [
        "agent",
        "--data-dir",
        &data,
        "--admin-listen",
        &admin,
        "--smg-manifest",
        &bad,
    ]
    .map(String::from)
    .to_vec();
    args.extend(probemesh_tests::private_gossip_args(free_port()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = probemesh_tests::run_probemesh(&args).await;
    assert_ne!(out.code, Some(0), "{out}");
    assert!(out.stderr.contains("does not exist"), "{}", out.stderr);
}
