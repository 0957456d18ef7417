//! One sync round's imports commit with one append and one fsync (issue 13), all or
//! none, and the view shows exactly what the disk has.

use probemesh::config::ProbeDefaults;
use probemesh::lifecycle::import::ImportAction;
use probemesh::metrics::Metrics;
use probemesh::node::{Node, NodeSettings};
use probemesh::store::{Disk, RealDisk, Store};
use probemesh_gossip::model::{Registration, WorkerSpec, WorkerUrl};
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// The real disk, counting log fsyncs; appends fail with ENOSPC while `full` is set.
#[derive(Debug, Clone, Default)]
struct CountingDisk {
    syncs: Arc<AtomicUsize>,
    full: Arc<AtomicBool>,
}

impl Disk for CountingDisk {
    fn write(&mut self, file: &mut File, buf: &[u8]) -> io::Result<usize> {
        if self.full.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(28));
        }
        RealDisk.write(file, buf)
    }
    fn sync_data(&mut self, file: &File) -> io::Result<()> {
        self.syncs.fetch_add(1, Ordering::SeqCst);
        RealDisk.sync_data(file)
    }
    fn sync_all(&mut self, file: &File) -> io::Result<()> {
        RealDisk.sync_all(file)
    }
    fn set_len(&mut self, file: &File, len: u64) -> io::Result<()> {
        RealDisk.set_len(file, len)
    }
    fn create(&mut self, path: &Path) -> io::Result<File> {
        RealDisk.create(path)
    }
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        RealDisk.rename(from, to)
    }
    fn remove(&mut self, path: &Path) -> io::Result<()> {
        RealDisk.remove(path)
    }
    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        RealDisk.sync_dir(dir)
    }
}

fn node(store: Store) -> Node {
    let (probe_tx, _probe_rx) = tokio::sync::mpsc::unbounded_channel();
    let settings = NodeSettings {
        node_id: "node-a".into(),
        probe: ProbeDefaults::default(),
        remove_failed: true,
        tombstone_ttl: Duration::from_secs(3600),
        allow: Vec::new(),
    };
    Node::new(settings, store, Arc::new(Metrics::new()), probe_tx)
}

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
    let disk = CountingDisk::default();
    let (store, _) = Store::open_with(dir.path(), Box::new(disk.clone())).unwrap();
    let n = node(store);
    let before = disk.syncs.load(Ordering::SeqCst);
    let actions = (0..200)
        .map(|i| ImportAction::Insert(peer_reg(20_000 + i, 1)))
        .collect();
    assert_eq!(n.apply_imports(actions).await.unwrap(), 200);
    assert_eq!(
        disk.syncs.load(Ordering::SeqCst) - before,
        1,
        "one fsync for the round"
    );
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
    let disk = CountingDisk::default();
    let (store, _) = Store::open_with(dir.path(), Box::new(disk.clone())).unwrap();
    let n = node(store);
    let round = || -> Vec<ImportAction> {
        (0..10)
            .map(|i| ImportAction::Insert(peer_reg(22_000 + i, 1)))
            .collect()
    };
    disk.full.store(true, Ordering::SeqCst);
    assert!(n.apply_imports(round()).await.is_err());
    assert!(
        n.registry().read().workers.is_empty(),
        "nothing of a refused batch is shown"
    );
    disk.full.store(false, Ordering::SeqCst);
    assert_eq!(n.apply_imports(round()).await.unwrap(), 10);
    drop(n);
    let (store, report) = Store::open(dir.path()).unwrap();
    assert_eq!(report.truncated_bytes, 0);
    assert_eq!(store.state().registrations.len(), 10);
}
