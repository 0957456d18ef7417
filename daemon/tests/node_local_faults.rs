//! Local faults are the node's own (SPEC S13): over a failing disk a refused change is
//! invisible and answered 507/503; an exhausted generation is a 409, never a 2xx whose
//! record is dropped; a probe that fails for lack of a local resource changes nothing
//! about the worker.

mod support;

use axum::http::StatusCode;
use probemesh::admin::error::ApiError;
use probemesh::node::NodeError;
use probemesh::probe::NextStep;
use probemesh::probe::check::{LocalResource, ProbeReport, ProbeResult};
use probemesh::store::{Mutation, Store};
use probemesh_gossip::model::Status;
use probemesh_gossip::model::{EvictionReason, Tombstone, WorkerSpec, WorkerUrl};
use std::time::Duration;
use support::{TestDisk, node};

fn spec(port: u16) -> WorkerSpec {
    WorkerSpec::new(WorkerUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap())
}

#[tokio::test]
async fn a_full_disk_answers_507_and_the_refused_worker_never_appears() {
    let dir = tempfile::tempdir().unwrap();
    let disk = TestDisk::default();
    let (store, _) = Store::open_with(dir.path(), Box::new(disk.clone())).unwrap();
    let n = node(store);
    n.register(spec(9001)).await.unwrap();
    disk.set_full(true);
    let err = n.register(spec(9002)).await.unwrap_err();
    assert!(matches!(err, NodeError::Store(_)), "{err}");
    let api = ApiError::from(err);
    assert_eq!(api.status, StatusCode::INSUFFICIENT_STORAGE);
    assert_eq!(api.code, "STORE_FULL");
    assert!(api.message.contains("free space"), "{}", api.message);
    assert!(n.registry().get(&spec(9002).url.id()).is_none());
    let text = n.metrics().render(&probemesh::registry::View::default());
    assert!(
        text.contains("probemesh_store_write_failures_total{kind=\"full\"} 1"),
        "{text}"
    );
    // Space returns: the next change is durable, the refused one stays absent.
    disk.set_full(false);
    n.register(spec(9003)).await.unwrap();
    assert!(n.store_stopped().is_none());
    drop(n);
    let (store, report) = Store::open(dir.path()).unwrap();
    assert_eq!(report.truncated_bytes, 0);
    let ids: Vec<_> = store.state().registrations.keys().cloned().collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&spec(9001).url.id()));
    assert!(ids.contains(&spec(9003).url.id()));
}

#[tokio::test]
async fn an_exhausted_generation_is_a_conflict_not_a_silent_201() {
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = Store::open(dir.path()).unwrap();
    let s = spec(9100);
    let _ = store
        .commit(Mutation::PutTombstone(Tombstone {
            id: s.url.id(),
            url: s.url.clone(),
            generation: u64::MAX,
            reason: EvictionReason::Deleted,
            writer: "forger".into(),
            deleted_at_ms: 1,
            expires_at_ms: u64::MAX,
        }))
        .unwrap();
    let n = node(store);
    let err = n.register(s.clone()).await.unwrap_err();
    assert!(matches!(err, NodeError::GenerationsExhausted(_)), "{err}");
    let api = ApiError::from(err);
    assert_eq!(api.status, StatusCode::CONFLICT);
    assert_eq!(api.code, "GENERATIONS_EXHAUSTED");
    assert!(n.registry().get(&s.url.id()).is_none());
}

fn report(result: ProbeResult) -> ProbeReport {
    ProbeReport {
        result,
        latency: Duration::from_millis(1),
    }
}

#[tokio::test]
async fn probes_failing_for_lack_of_descriptors_leave_a_ready_worker_ready() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path()).unwrap();
    let n = node(store);
    let (entry, _) = n.register(spec(9200)).await.unwrap();
    let (id, generation) = (entry.reg.id.clone(), entry.reg.generation);
    for _ in 0..2 {
        n.record_probe(&id, generation, report(ProbeResult::Ok(200)));
    }
    let before = n.registry().get(&id).unwrap();
    assert_eq!(before.status, Status::Ready);
    assert!(!n.local_fault_active());
    // Far more than failure_threshold x 4 (ready -> not_ready -> failed) would need.
    for resource in [
        LocalResource::Descriptors,
        LocalResource::Ports,
        LocalResource::Buffers,
        LocalResource::Memory,
    ] {
        for _ in 0..20 {
            let next = n.record_probe(&id, generation, report(ProbeResult::Local(resource)));
            assert_eq!(next, NextStep::Probe(Duration::from_secs(5)));
        }
    }
    let after = n.registry().get(&id).unwrap();
    assert_eq!(after.status, Status::Ready);
    assert_eq!(after.counters, before.counters, "counters untouched");
    assert_eq!(
        after.last_probe.as_ref().map(|p| p.result.clone()),
        before.last_probe.as_ref().map(|p| p.result.clone())
    );
    assert!(n.local_fault_active());
    let text = n.metrics().render(&probemesh::registry::View::default());
    for kind in ["descriptors", "ports", "buffers", "memory"] {
        let line = format!("probemesh_probe_local_errors_total{{kind=\"{kind}\"}} 20");
        assert!(text.contains(&line), "missing {line} in {text}");
    }
    // A real failure still counts.
    for _ in 0..3 {
        n.record_probe(&id, generation, report(ProbeResult::Refused));
    }
    assert_eq!(n.registry().get(&id).unwrap().status, Status::NotReady);
}
