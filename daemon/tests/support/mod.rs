//! Shared by the node-level test files: a disk that fills on command and counts log
//! fsyncs, and a single node over a given store.

#![allow(dead_code)]

use probemesh::config::ProbeDefaults;
use probemesh::metrics::Metrics;
use probemesh::node::{Node, NodeSettings};
use probemesh::store::{Disk, RealDisk, Store};
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// `ENOSPC` on Linux.
const ENOSPC: i32 = 28;

/// The real disk, whose log appends fail with ENOSPC while `full` is set, counting
/// log fsyncs (`fdatasync`).
#[derive(Debug, Clone, Default)]
pub struct TestDisk {
    /// While set, every write fails with ENOSPC.
    pub full: Arc<AtomicBool>,
    /// `sync_data` calls so far.
    pub syncs: Arc<AtomicUsize>,
}

impl TestDisk {
    /// Makes writes fail (`true`) or succeed again.
    pub fn set_full(&self, full: bool) {
        self.full.store(full, Ordering::SeqCst);
    }

    /// Log fsyncs so far.
    pub fn syncs(&self) -> usize {
        self.syncs.load(Ordering::SeqCst)
    }
}

impl Disk for TestDisk {
    fn write(&mut self, file: &mut File, buf: &[u8]) -> io::Result<usize> {
        if self.full.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(ENOSPC));
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

/// A node `node-a` with default settings over `store`; its probe commands are dropped.
pub fn node(store: Store) -> Node {
    let (probe_tx, _probe_rx) = tokio::sync::mpsc::unbounded_channel();
    let settings = NodeSettings {
        node_id: "node-a".into(),
        probe: ProbeDefaults::default(),
        remove_failed: true,
        tombstone_ttl: Duration::from_secs(3600),
        allow: Vec::new(),
        clock: probemesh::clock::Clock::System,
        fence_ratio: 0.8,
    };
    Node::new(settings, store, Arc::new(Metrics::new()), probe_tx)
}
