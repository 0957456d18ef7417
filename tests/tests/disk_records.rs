//! Records planted in a data directory (SPEC S11): `wal.log` is written byte for byte
//! as the agent writes it (`len u32 LE | crc32 u32 LE | payload`, the payload a
//! versioned postcard `Mutation`), with records the API would refuse. The real agent
//! starts, leaves them out of its state, counts and logs each one once, and never
//! shows or probes them; a valid record in the same log is loaded as usual.

use probemesh_gossip::codec;
use probemesh_gossip::model::{EvictionReason, Registration, Tombstone, WorkerSpec, WorkerUrl};
use probemesh_tests::*;
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

/// The store's `Mutation` as it is on disk: postcard writes an enum as its variant
/// index, so the variants must stay in the daemon's order (the control record below
/// proves they do).
#[derive(Serialize)]
enum Mutation {
    PutRegistration(Registration),
    PutTombstone(Tombstone),
}

fn reg(url: &str, edit: impl FnOnce(&mut WorkerSpec)) -> Registration {
    let url = WorkerUrl::parse(url).expect("url");
    let mut spec = WorkerSpec::new(url.clone());
    edit(&mut spec);
    Registration {
        id: url.id(),
        generation: 1,
        owner: "planted".into(),
        registered_at_ms: 1_700_000_000_000,
        revision: 1_700_000_000_000,
        spec,
    }
}

fn write_wal(data_dir: &Path, mutations: &[Mutation]) {
    let mut log = Vec::new();
    for m in mutations {
        let payload = codec::encode(m).expect("encode");
        log.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        log.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        log.extend_from_slice(&payload);
    }
    std::fs::create_dir_all(data_dir).expect("data dir");
    std::fs::write(data_dir.join("wal.log"), log).expect("write wal.log");
}

const DROPPED_LOG: &str = "left a stored record out of the loaded state";

#[tokio::test]
async fn records_planted_on_disk_are_dropped_at_load_and_never_shown() {
    let healthy = TestWorker::start(Health::Healthy);
    let always_503 = TestWorker::start(Health::Status(503));
    let pwned = TestWorker::start(Health::Healthy);
    let control = reg(&healthy.url_with("/control"), |_| {});
    let zero_success = reg(&always_503.url_with("/zero"), |s| {
        s.health.success_threshold = Some(0);
    });
    // The bypass: under string concatenation this probed `pwned` with Basic
    // auth instead of the worker's own (unreachable) address.
    let smuggled = reg("http://10.255.255.1:9", |s| {
        s.health.path = Some(format!("@127.0.0.1:{}/pwned", pwned.port()));
    });
    let slow = reg(&always_503.url_with("/slow"), |s| {
        s.health.timeout_ms = Some(60_000);
    });
    // A tombstone nobody could have written (no writer) must not evict the control.
    let forged_tomb = Tombstone {
        id: control.id.clone(),
        url: control.spec.url.clone(),
        generation: 1,
        reason: EvictionReason::Deleted,
        writer: String::new(),
        deleted_at_ms: 1,
        expires_at_ms: u64::MAX,
    };

    let scratch = tempfile::tempdir().expect("tempdir");
    let data = scratch.path().join("data");
    write_wal(
        &data,
        &[
            Mutation::PutRegistration(control.clone()),
            Mutation::PutRegistration(zero_success.clone()),
            Mutation::PutRegistration(smuggled.clone()),
            Mutation::PutRegistration(slow.clone()),
            Mutation::PutTombstone(forged_tomb),
        ],
    );
    let agent = Agent::builder()
        .data_dir(&data)
        .args(&["--probe-interval", "100ms"])
        .start()
        .await;
    let api = agent.api();

    // The valid record in the same log is loaded and verified by the agent's probes.
    let w = wait_status(api, control.id.as_str(), "ready").await;
    assert_eq!(w["origin"], "peer", "{w}");
    for r in [&zero_success, &smuggled, &slow] {
        assert!(
            api.worker(r.id.as_str()).await.is_none(),
            "{} is shown",
            r.spec.url
        );
    }
    let ids: Vec<String> = api
        .workers("")
        .await
        .iter()
        .map(|w| id_of(w).to_string())
        .collect();
    assert_eq!(ids, [control.id.to_string()]);

    let m = api.metrics().await;
    for reason in [
        "health_success_threshold",
        "health_path",
        "health_timeout",
        "writer",
    ] {
        assert_eq!(
            metric(
                &m,
                &format!("probemesh_store_records_rejected_total{{reason=\"{reason}\"}}")
            ),
            Some(1.0),
            "{reason}\n{m}"
        );
    }

    // Give the probe engine time to misbehave if it were going to.
    healthy.wait_requests(5, Duration::from_secs(10)).await;
    assert_eq!(pwned.requests(), 0, "a probe reached the smuggled target");
    assert_eq!(always_503.requests(), 0, "a dropped record was probed");

    // Logged once per record, at start.
    let log = agent.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(DROPPED_LOG)).collect();
    assert_eq!(lines.len(), 4, "{lines:#?}");
    for r in [&zero_success, &smuggled, &slow] {
        assert_eq!(
            lines.iter().filter(|l| l.contains(r.id.as_str())).count(),
            1,
            "{}: {lines:#?}",
            r.spec.url
        );
    }
}
