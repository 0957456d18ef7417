//! One sync round's imports commit with one append and one fsync (issue 13), all or
//! none, and the view shows exactly what the disk has.

mod support;

use probemesh::lifecycle::import::ImportAction;
use probemesh::store::Store;
use probemesh_gossip::model::{Registration, WorkerSpec, WorkerUrl};
use support::{TestDisk, node};

fn peer_reg(port: u16, generation: u64) -> Registration {
    let url = WorkerUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap();
    Registration {
        id: url.id(),
        generation,
        owner: "node-b".into(),
        registered_at_ms: 1,
        revision: 1,
        spec: WorkerSpec::new(url),
    }
}

#[tokio::test]
async fn a_round_of_imports_costs_one_fsync_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let disk = TestDisk::default();
    let (store, _) = Store::open_with(dir.path(), Box::new(disk.clone())).unwrap();
    let n = node(store);
    let before = disk.syncs();
    let actions = (0..200)
        .map(|i| ImportAction::Insert(peer_reg(20_000 + i, 1)))
        .collect();
    assert_eq!(n.apply_imports(actions).await.unwrap(), 200);
    assert_eq!(disk.syncs() - before, 1, "one fsync for the round");
    assert_eq!(n.registry().read().workers.len(), 200);
    drop(n);
    let (store, _) = Store::open(dir.path()).unwrap();
    assert_eq!(store.state().registrations.len(), 200);
}

#[tokio::test]
async fn two_actions_on_one_worker_are_applied_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path()).unwrap();
    let n = node(store);
    let actions = vec![
        ImportAction::Insert(peer_reg(21_000, 1)),
        ImportAction::Replace(peer_reg(21_000, 2)),
        ImportAction::Insert(peer_reg(21_001, 1)),
    ];
    assert_eq!(n.apply_imports(actions).await.unwrap(), 3);
    let id = peer_reg(21_000, 1).id;
    assert_eq!(n.registry().get(&id).unwrap().reg.generation, 2);
}

#[tokio::test]
async fn a_refused_round_changes_nothing_and_the_next_one_applies() {
    let dir = tempfile::tempdir().unwrap();
    let disk = TestDisk::default();
    let (store, _) = Store::open_with(dir.path(), Box::new(disk.clone())).unwrap();
    let n = node(store);
    let round = || -> Vec<ImportAction> {
        (0..10)
            .map(|i| ImportAction::Insert(peer_reg(22_000 + i, 1)))
            .collect()
    };
    disk.set_full(true);
    assert!(n.apply_imports(round()).await.is_err());
    assert!(
        n.registry().read().workers.is_empty(),
        "nothing of a refused batch is shown"
    );
    disk.set_full(false);
    assert_eq!(n.apply_imports(round()).await.unwrap(), 10);
    drop(n);
    let (store, report) = Store::open(dir.path()).unwrap();
    assert_eq!(report.truncated_bytes, 0);
    assert_eq!(store.state().registrations.len(), 10);
}
