//! The store's error paths, driven by a [`Disk`] that fails on command: short writes,
//! `ENOSPC` on write and on fsync, failures during compaction and the snapshot rename,
//! and an undo that fails too.

use super::*;
use probemesh_gossip::model::{Registration, WorkerSpec, WorkerUrl};
use std::io;
use std::sync::Mutex;

/// A disk operation that can be made to fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Write,
    SyncData,
    SyncAll,
    SetLen,
    Create,
    Rename,
    Remove,
    SyncDir,
}

/// How an armed operation fails.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Fails with this errno.
    Errno(i32),
    /// A write that stores only this many bytes, then the next write fails with ENOSPC.
    Short(usize),
}

const ENOSPC: i32 = 28;
const EIO: i32 = 5;

#[derive(Debug, Default)]
struct Plan {
    /// Armed faults: the operation, how many more calls of it pass first, the fault.
    armed: Vec<(Op, usize, Fault)>,
    /// Set after a short write: the next write fails with ENOSPC.
    full_after_short: bool,
    calls: Vec<Op>,
}

/// The real disk, with faults armed from the test through a shared plan.
#[derive(Clone, Debug, Default)]
struct FaultyDisk(Arc<Mutex<Plan>>);

impl FaultyDisk {
    /// Makes the `skip`-th next call of `op` (0: the very next) fail with `fault`.
    fn arm(&self, op: Op, skip: usize, fault: Fault) {
        self.0.lock().unwrap().armed.push((op, skip, fault));
    }

    fn disarm(&self) {
        let mut p = self.0.lock().unwrap();
        p.armed.clear();
        p.full_after_short = false;
    }

    fn called(&self, op: Op) -> usize {
        self.0
            .lock()
            .unwrap()
            .calls
            .iter()
            .filter(|c| **c == op)
            .count()
    }

    /// The fault for this call of `op`, if one is due.
    fn due(&self, op: Op) -> Option<Fault> {
        let mut p = self.0.lock().unwrap();
        p.calls.push(op);
        if op == Op::Write && p.full_after_short {
            p.full_after_short = false;
            return Some(Fault::Errno(ENOSPC));
        }
        let i = p.armed.iter().position(|(o, _, _)| *o == op)?;
        if p.armed[i].1 > 0 {
            p.armed[i].1 -= 1;
            return None;
        }
        let (_, _, fault) = p.armed.remove(i);
        if matches!(fault, Fault::Short(_)) {
            p.full_after_short = true;
        }
        Some(fault)
    }

    fn check(&self, op: Op) -> io::Result<()> {
        match self.due(op) {
            Some(Fault::Errno(e)) => Err(io::Error::from_raw_os_error(e)),
            _ => Ok(()),
        }
    }
}

impl Disk for FaultyDisk {
    fn write(&mut self, file: &mut File, buf: &[u8]) -> io::Result<usize> {
        match self.due(Op::Write) {
            Some(Fault::Errno(e)) => Err(io::Error::from_raw_os_error(e)),
            Some(Fault::Short(n)) => RealDisk.write(file, &buf[..n.min(buf.len())]),
            None => RealDisk.write(file, buf),
        }
    }
    fn sync_data(&mut self, file: &File) -> io::Result<()> {
        self.check(Op::SyncData)?;
        RealDisk.sync_data(file)
    }
    fn sync_all(&mut self, file: &File) -> io::Result<()> {
        self.check(Op::SyncAll)?;
        RealDisk.sync_all(file)
    }
    fn set_len(&mut self, file: &File, len: u64) -> io::Result<()> {
        self.check(Op::SetLen)?;
        RealDisk.set_len(file, len)
    }
    fn create(&mut self, path: &Path) -> io::Result<File> {
        self.check(Op::Create)?;
        RealDisk.create(path)
    }
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        self.check(Op::Rename)?;
        RealDisk.rename(from, to)
    }
    fn remove(&mut self, path: &Path) -> io::Result<()> {
        self.check(Op::Remove)?;
        RealDisk.remove(path)
    }
    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        self.check(Op::SyncDir)?;
        RealDisk.sync_dir(dir)
    }
}

fn reg(n: u16) -> Registration {
    let url = WorkerUrl::parse(&format!("http://10.0.0.1:{n}")).unwrap();
    Registration {
        id: url.id(),
        generation: 1,
        owner: "node-a".into(),
        registered_at_ms: 1,
        revision: 1,
        spec: WorkerSpec::new(url),
    }
}

fn put(n: u16) -> Mutation {
    Mutation::PutRegistration(reg(n))
}

fn open(dir: &Path) -> (Store, FaultyDisk) {
    let disk = FaultyDisk::default();
    let (s, _) = Store::open_with(dir, Box::new(disk.clone())).unwrap();
    (s, disk)
}

fn wal_len(dir: &Path) -> u64 {
    fs::metadata(dir.join(WAL_FILE)).unwrap().len()
}

/// Reopens `dir` with the real disk and lists the registered ports.
fn reopened(dir: &Path) -> Vec<u16> {
    let (s, report) = Store::open(dir).unwrap();
    assert_eq!(
        report.truncated_bytes, 0,
        "the log had no torn tail: {report:?}"
    );
    let mut ports: Vec<u16> = s
        .state()
        .registrations
        .values()
        .map(|r| {
            let url = r.spec.url.as_str();
            url.rsplit(':').next().unwrap().parse().unwrap()
        })
        .collect();
    ports.sort_unstable();
    ports
}

#[test]
fn a_short_write_is_cut_back_and_the_next_commit_lands_on_good_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, disk) = open(dir.path());
    s.commit(put(1)).unwrap();
    let good = wal_len(dir.path());
    disk.arm(Op::Write, 0, Fault::Short(5));
    let err = s.commit(put(2)).unwrap_err();
    assert!(err.is_disk_full(), "{err}");
    assert_eq!(wal_len(dir.path()), good, "half-written frame removed");
    assert!(!s.state().registrations.contains_key(&reg(2).id));
    // Twice in a row, then space returns.
    disk.arm(Op::Write, 0, Fault::Errno(ENOSPC));
    assert!(s.commit(put(3)).unwrap_err().is_disk_full());
    s.commit(put(4)).unwrap();
    drop(s);
    assert_eq!(reopened(dir.path()), vec![1, 4]);
}

#[test]
fn enospc_on_fsync_undoes_the_append() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, disk) = open(dir.path());
    s.commit(put(1)).unwrap();
    let good = wal_len(dir.path());
    disk.arm(Op::SyncData, 0, Fault::Errno(ENOSPC));
    let err = s.commit(put(2)).unwrap_err();
    assert!(err.is_disk_full(), "{err}");
    assert_eq!(err.kind(), "full");
    assert_eq!(wal_len(dir.path()), good);
    s.commit(put(3)).unwrap();
    drop(s);
    assert_eq!(reopened(dir.path()), vec![1, 3]);
}

#[test]
fn an_io_error_is_not_reported_as_a_full_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, disk) = open(dir.path());
    disk.arm(Op::Write, 0, Fault::Errno(EIO));
    let err = s.commit(put(1)).unwrap_err();
    assert!(!err.is_disk_full());
    assert_eq!(err.kind(), "io");
    assert!(s.health().stopped().is_none(), "the undo worked");
}

#[test]
fn a_failed_undo_stops_the_store_and_nothing_lands_behind_the_damage() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, disk) = open(dir.path());
    s.commit(put(1)).unwrap();
    disk.arm(Op::Write, 0, Fault::Short(7));
    disk.arm(Op::SetLen, 0, Fault::Errno(EIO));
    assert!(s.commit(put(2)).is_err());
    let health = s.health();
    let why = health.stopped().expect("stopped").to_string();
    assert!(why.contains("restart the agent"), "{why}");
    disk.disarm();
    let err = s.commit(put(3)).unwrap_err();
    assert!(matches!(err, StoreError::Stopped(_)), "{err}");
    assert_eq!(err.kind(), "stopped");
    assert!(s.compact().is_err(), "no snapshot either");
    drop(s);
    // The torn frame is the last thing in the log, so a restart cuts it and starts.
    let (s, report) = Store::open(dir.path()).unwrap();
    assert_eq!(report.truncated_bytes, 7);
    assert_eq!(s.state().registrations.len(), 1);
}

#[test]
fn a_failed_compaction_never_fails_the_commit_and_leaves_no_temp_file() {
    for (op, skip) in [
        (Op::Create, 0),
        (Op::Write, 0),
        (Op::SyncAll, 0),
        (Op::Rename, 0),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, disk) = open(dir.path());
        for n in 0..(COMPACT_RECORDS - 1) as u16 {
            assert!(!s.commit(put(n)).unwrap().compacted);
        }
        // The commit that reaches the threshold is appended, then the snapshot fails.
        // Writes: the append passes (`skip`), the snapshot's first write fails.
        let skip = if op == Op::Write { skip + 1 } else { skip };
        disk.arm(op, skip, Fault::Errno(ENOSPC));
        let done = s.commit(put(60_000)).unwrap();
        assert!(done.compacted, "{op:?}");
        let err = done.compaction_error.expect("compaction failed");
        assert!(err.is_disk_full(), "{op:?}: {err}");
        assert!(
            !dir.path().join(SNAPSHOT_TMP_FILE).exists(),
            "{op:?}: temporary snapshot removed"
        );
        assert!(s.state().registrations.contains_key(&reg(60_000).id));
        // Not retried at every commit: only after the log grew further.
        let creates = disk.called(Op::Create);
        for n in 0..10u16 {
            assert!(!s.commit(put(61_000 + n)).unwrap().compacted);
        }
        assert_eq!(disk.called(Op::Create), creates);
        drop(s);
        let ports = reopened(dir.path());
        assert_eq!(ports.len(), COMPACT_RECORDS + 10, "{op:?}");
        assert!(ports.contains(&60_000));
    }
}

#[test]
fn a_compaction_that_fails_after_the_rename_keeps_the_log_and_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, disk) = open(dir.path());
    for n in 0..20 {
        s.commit(put(n)).unwrap();
    }
    let before = wal_len(dir.path());
    disk.arm(Op::SyncDir, 0, Fault::Errno(EIO));
    assert!(s.compact().is_err());
    assert_eq!(
        wal_len(dir.path()),
        before,
        "log kept until the rename is durable"
    );
    s.commit(put(100)).unwrap();
    // A later compaction succeeds and empties the log.
    s.compact().unwrap();
    assert_eq!(wal_len(dir.path()), 0);
    drop(s);
    assert_eq!(reopened(dir.path()).len(), 21);
}

#[test]
fn a_failed_compaction_is_retried_after_the_log_grows() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, disk) = open(dir.path());
    for n in 0..(COMPACT_RECORDS - 1) as u16 {
        let _ = s.commit(put(n)).unwrap();
    }
    disk.arm(Op::Create, 0, Fault::Errno(ENOSPC));
    assert!(s.commit(put(50_000)).unwrap().compaction_error.is_some());
    let mut retried = None;
    for n in 0..(RETRY_RECORDS as u16 + 1) {
        let done = s.commit(put(51_000 + n)).unwrap();
        if done.compacted {
            assert!(done.compaction_error.is_none());
            retried = Some(n);
            break;
        }
    }
    assert_eq!(retried, Some(RETRY_RECORDS as u16 - 1));
    assert_eq!(wal_len(dir.path()), 0);
}

#[test]
fn an_unfinished_snapshot_from_a_crash_is_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = open(dir.path());
    s.commit(put(1)).unwrap();
    drop(s);
    fs::write(dir.path().join(SNAPSHOT_TMP_FILE), b"half a snapshot").unwrap();
    let (s, report) = Store::open(dir.path()).unwrap();
    assert!(report.removed_temp_snapshot);
    assert!(!dir.path().join(SNAPSHOT_TMP_FILE).exists());
    assert_eq!(s.state().registrations.len(), 1);
}

#[test]
fn a_batch_is_one_append_and_one_fsync_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, disk) = open(dir.path());
    let syncs = disk.called(Op::SyncData);
    s.commit_all(&[put(1), put(2), put(3)]).unwrap();
    assert_eq!(disk.called(Op::SyncData), syncs + 1);
    disk.arm(Op::SyncData, 0, Fault::Errno(ENOSPC));
    assert!(s.commit_all(&[put(4), put(5)]).is_err());
    assert_eq!(s.state().registrations.len(), 3);
    drop(s);
    assert_eq!(reopened(dir.path()), vec![1, 2, 3]);
}
