//! Durable local state in `--data-dir`: registrations, tombstones and generation
//! counters (SPEC S8, section 5).
//!
//! Layout of the directory:
//! - `LOCK`: held with an exclusive file lock while an agent uses the directory;
//! - `state.bin`: the last snapshot, replaced atomically (write, fsync, rename, fsync
//!   directory);
//! - `wal.log`: mutations since that snapshot, each framed with its length and CRC and
//!   fsynced before the mutation is acknowledged.
//!
//! On open, the snapshot is loaded and the log replayed; a torn record at the end of the
//! log (a crash mid-append, never acknowledged) is cut off, and a `state.bin.tmp` left
//! by a crash during compaction is removed. Replay is idempotent, so a crash between
//! writing a snapshot and truncating the log is harmless.
//!
//! Failures (SPEC S13): a failed append or fsync cuts the log back to its last good
//! length (and fsyncs that) before the error is returned, so nothing acknowledged later
//! is ever placed behind damaged bytes. If even that fails, the store stops taking
//! writes until the agent is restarted ([`StoreHealth`]). A failed compaction never
//! fails the change that triggered it: it is reported beside the success, its
//! temporary file is removed, and it is tried again after the log has grown further.
//! Every file-system call goes through [`Disk`], so tests can make any of them fail.
//!
//! Loading validates (SPEC S11, [`loaded`]): a registration or tombstone that fails the
//! cluster's validator is left out of the loaded state and listed in [`OpenReport`].

mod disk;
mod frame;
mod loaded;
mod state;

pub use disk::{Disk, RealDisk};
pub use loaded::RejectedRecord;
pub use state::{DurableState, Mutation};

use frame::{push_frame, read_frames};
use probemesh_gossip::codec::{self, CodecError};
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// Name of the snapshot file.
pub const SNAPSHOT_FILE: &str = "state.bin";
/// Name of the snapshot being written during a compaction.
pub const SNAPSHOT_TMP_FILE: &str = "state.bin.tmp";
/// Name of the mutation log.
pub const WAL_FILE: &str = "wal.log";
/// Name of the lock file.
pub const LOCK_FILE: &str = "LOCK";

/// Compact when the log holds this many records…
const COMPACT_RECORDS: usize = 4096;
/// …or this many bytes.
const COMPACT_BYTES: u64 = 8 << 20;
/// After a failed compaction, the next try waits for this many more records…
const RETRY_RECORDS: usize = 512;
/// …or this many more bytes, so a full disk is not hit by a snapshot per mutation.
const RETRY_BYTES: u64 = 1 << 20;

/// What can go wrong with the data directory. Messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file-system operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Another agent holds the directory.
    #[error(
        "data directory {0} is in use by another probemesh agent; stop it or choose another --data-dir"
    )]
    Locked(PathBuf),
    /// Written by a newer probemesh.
    #[error(
        "{path} was written by a newer probemesh (format {found}.x); run that version or a newer one, or move the directory away"
    )]
    NewerFormat {
        /// The file.
        path: PathBuf,
        /// Its major format version.
        found: u8,
    },
    /// Content that passed its checksum but does not decode.
    #[error(
        "{path} is corrupt ({detail}); restore it from a backup, or move it away to start empty and relearn from peers"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// A value could not be encoded (a bug, never input-dependent).
    #[error("cannot encode state: {0}")]
    Encode(CodecError),
    /// An earlier failed write could not be undone; the store takes no more writes.
    #[error("{0}")]
    Stopped(String),
}

impl StoreError {
    /// Whether the disk (or a quota) is full: the operator must free space.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StoreError::Io { source, .. } if disk::is_full(source))
    }

    /// A bounded label for metrics: `full`, `stopped` or `io`.
    pub fn kind(&self) -> &'static str {
        match self {
            _ if self.is_disk_full() => "full",
            StoreError::Stopped(_) => "stopped",
            _ => "io",
        }
    }
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Whether the store still takes writes; cheap to read from any thread (no lock).
#[derive(Clone, Debug, Default)]
pub struct StoreHealth(Arc<OnceLock<String>>);

impl StoreHealth {
    /// Why the store stopped taking writes, if it did.
    pub fn stopped(&self) -> Option<&str> {
        self.0.get().map(String::as_str)
    }
}

/// The open data directory.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    wal_path: PathBuf,
    wal: File,
    wal_records: usize,
    /// Length of the log's intact, acknowledged part: where the next append starts.
    wal_len: u64,
    /// Compact once the log reaches this many records or bytes.
    compact_at: (usize, u64),
    state: DurableState,
    disk: Box<dyn Disk>,
    health: StoreHealth,
    /// Held for the life of the store; the OS releases the lock when it is closed.
    _lock: File,
}

/// What `open` found, for the start-up log.
#[derive(Debug, Default, Clone)]
pub struct OpenReport {
    /// Records replayed from the log (refused ones included).
    pub replayed: usize,
    /// Registrations and tombstones that failed validation and were left out of the
    /// loaded state: never probed or shown.
    pub rejected: Vec<RejectedRecord>,
    /// Bytes of a torn tail that were cut off.
    pub truncated_bytes: u64,
    /// Whether a snapshot left half-written by a crash was removed.
    pub removed_temp_snapshot: bool,
}

/// A mutation that became durable, and what happened to the compaction it triggered.
#[derive(Debug, Default)]
pub struct Committed {
    /// Whether a compaction ran after the commit.
    pub compacted: bool,
    /// Why that compaction failed (the commit itself succeeded); tried again later.
    pub compaction_error: Option<StoreError>,
}

impl Store {
    /// Opens (creating if needed) the data directory, takes its lock and loads the state.
    pub fn open(dir: &Path) -> Result<(Store, OpenReport), StoreError> {
        Store::open_with(dir, Box::new(RealDisk))
    }

    /// [`Store::open`] with the writes made through `disk`.
    pub fn open_with(
        dir: &Path,
        mut disk: Box<dyn Disk>,
    ) -> Result<(Store, OpenReport), StoreError> {
        fs::create_dir_all(dir).map_err(io("cannot create data directory", dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io("cannot open lock file", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(StoreError::Locked(dir.to_path_buf())),
            Err(fs::TryLockError::Error(e)) => return Err(io("cannot lock", &lock_path)(e)),
        }
        let mut report = OpenReport::default();
        let tmp_path = dir.join(SNAPSHOT_TMP_FILE);
        match disk.remove(&tmp_path) {
            Ok(()) => report.removed_temp_snapshot = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("cannot remove the unfinished snapshot", &tmp_path)(e)),
        }

        let snap_path = dir.join(SNAPSHOT_FILE);
        let mut state = match fs::read(&snap_path) {
            Ok(bytes) => decode_snapshot(&snap_path, &bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => DurableState::default(),
            Err(e) => return Err(io("cannot read snapshot", &snap_path)(e)),
        };
        report.rejected = loaded::drop_invalid(&mut state, SNAPSHOT_FILE);

        let wal_path = dir.join(WAL_FILE);
        let bytes = match fs::read(&wal_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io("cannot read log", &wal_path)(e)),
        };
        let frames = read_frames(&bytes);
        if !frame::is_torn_tail(&bytes, &frames) {
            return Err(StoreError::Corrupt {
                path: wal_path.clone(),
                detail: format!(
                    "record at byte {} is damaged ({:?}) but intact data follows it, so this is not an interrupted write",
                    frames.valid_len, frames.stop
                ),
            });
        }
        for payload in &frames.payloads {
            let m: Mutation = decode_checked(&wal_path, payload)?;
            match loaded::check(&m, WAL_FILE) {
                Ok(()) => state.apply(&m),
                Err(rejected) => report.rejected.push(rejected),
            }
            report.replayed += 1;
        }
        let wal = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&wal_path)
            .map_err(io("cannot open log", &wal_path))?;
        if frames.valid_len < bytes.len() as u64 {
            report.truncated_bytes = bytes.len() as u64 - frames.valid_len;
            disk.set_len(&wal, frames.valid_len)
                .map_err(io("cannot truncate torn log tail", &wal_path))?;
            disk.sync_all(&wal)
                .map_err(io("cannot sync log", &wal_path))?;
        }
        disk.sync_dir(dir)
            .map_err(io("cannot sync directory", dir))?;
        let store = Store {
            dir: dir.to_path_buf(),
            wal_path,
            wal,
            wal_records: frames.payloads.len(),
            wal_len: frames.valid_len,
            compact_at: (COMPACT_RECORDS, COMPACT_BYTES),
            state,
            disk,
            health: StoreHealth::default(),
            _lock: lock,
        };
        Ok((store, report))
    }

    /// The current durable state.
    pub fn state(&self) -> &DurableState {
        &self.state
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the store still takes writes (shared, readable without the store).
    pub fn health(&self) -> StoreHealth {
        self.health.clone()
    }

    /// Whether a commit may wait on the device ([`Disk::may_block`]).
    pub fn may_block(&self) -> bool {
        self.disk.may_block()
    }

    /// Makes `m` durable (appended and fsynced), then applies it. When this returns
    /// `Ok`, the mutation survives a crash; when it returns `Err`, nothing of it is
    /// visible, now or after a restart.
    pub fn commit(&mut self, m: Mutation) -> Result<Committed, StoreError> {
        self.commit_all(std::slice::from_ref(&m))
    }

    /// Makes every mutation of `ms` durable with one append and one fsync, then applies
    /// them in order. All or none.
    pub fn commit_all(&mut self, ms: &[Mutation]) -> Result<Committed, StoreError> {
        if let Some(why) = self.health.stopped() {
            return Err(StoreError::Stopped(why.to_string()));
        }
        if ms.is_empty() {
            return Ok(Committed::default());
        }
        let mut buf = Vec::new();
        for m in ms {
            let payload = codec::encode(m).map_err(StoreError::Encode)?;
            push_frame(&mut buf, &payload)
                .map_err(io("cannot frame a record for", &self.wal_path))?;
        }
        let good = self.wal_len;
        if let Err(e) = self.append(&buf) {
            self.undo_append(good);
            return Err(e);
        }
        self.wal_len += buf.len() as u64;
        self.wal_records += ms.len();
        for m in ms {
            self.state.apply(m);
        }
        let mut done = Committed::default();
        if self.wal_records >= self.compact_at.0 || self.wal_len >= self.compact_at.1 {
            done.compacted = true;
            done.compaction_error = self.compact().err();
        }
        Ok(done)
    }

    fn append(&mut self, buf: &[u8]) -> Result<(), StoreError> {
        disk::write_all(self.disk.as_mut(), &mut self.wal, buf)
            .map_err(io("cannot append to log", &self.wal_path))?;
        self.disk
            .sync_data(&self.wal)
            .map_err(io("cannot sync log", &self.wal_path))
    }

    /// Cuts the log back to `good` bytes after a failed append, so the next append does
    /// not land behind a torn frame. If that fails, the store stops taking writes.
    fn undo_append(&mut self, good: u64) {
        let undone = self
            .disk
            .set_len(&self.wal, good)
            .and_then(|()| self.disk.sync_all(&self.wal));
        if let Err(e) = undone {
            let why = format!(
                "the data directory takes no more writes: a failed append to {} could not be undone ({e}), and a later change would land behind damaged bytes; free space or repair the disk, then restart the agent (every acknowledged change is safe)",
                self.wal_path.display()
            );
            tracing::error!(reason = %why, "store stopped");
            let _ = self.health.0.set(why);
        }
    }

    /// Writes the whole state as a new snapshot and empties the log. On failure the
    /// state on disk is what it was (the log still holds everything), the temporary
    /// file is gone, and the next try waits until the log has grown further.
    pub fn compact(&mut self) -> Result<(), StoreError> {
        if let Some(why) = self.health.stopped() {
            return Err(StoreError::Stopped(why.to_string()));
        }
        let res = self.write_snapshot();
        if res.is_err() {
            self.compact_at = (
                self.wal_records.saturating_add(RETRY_RECORDS),
                self.wal_len.saturating_add(RETRY_BYTES),
            );
        } else {
            self.compact_at = (COMPACT_RECORDS, COMPACT_BYTES);
        }
        res
    }

    fn write_snapshot(&mut self) -> Result<(), StoreError> {
        let payload = codec::encode(&self.state).map_err(StoreError::Encode)?;
        let tmp = self.dir.join(SNAPSHOT_TMP_FILE);
        let snap = self.dir.join(SNAPSHOT_FILE);
        let mut buf = Vec::new();
        push_frame(&mut buf, &payload).map_err(io("cannot frame", &snap))?;
        let written = (|| {
            let mut f = self.disk.create(&tmp).map_err(io("cannot create", &tmp))?;
            disk::write_all(self.disk.as_mut(), &mut f, &buf).map_err(io("cannot write", &tmp))?;
            self.disk.sync_all(&f).map_err(io("cannot sync", &tmp))?;
            drop(f);
            self.disk
                .rename(&tmp, &snap)
                .map_err(io("cannot replace snapshot", &snap))
        })();
        if let Err(e) = written {
            match self.disk.remove(&tmp) {
                Ok(()) => {}
                Err(r) if r.kind() == std::io::ErrorKind::NotFound => {}
                Err(r) => {
                    tracing::warn!(file = %tmp.display(), error = %r, "could not remove an unfinished snapshot; it is removed at the next start")
                }
            }
            return Err(e);
        }
        // Until the directory is synced the rename may not survive a crash: keep the log.
        self.disk
            .sync_dir(&self.dir)
            .map_err(io("cannot sync directory", &self.dir))?;
        // The snapshot holds everything the log held. Replaying an old log over it is
        // harmless, so a failure from here on leaves a consistent directory.
        self.disk
            .set_len(&self.wal, 0)
            .map_err(io("cannot truncate log", &self.wal_path))?;
        self.wal_records = 0;
        self.wal_len = 0;
        self.disk
            .sync_all(&self.wal)
            .map_err(io("cannot sync log", &self.wal_path))
    }
}

fn decode_snapshot(path: &Path, bytes: &[u8]) -> Result<DurableState, StoreError> {
    let frames = read_frames(bytes);
    match frames.payloads.as_slice() {
        [payload] if frames.valid_len == bytes.len() as u64 => decode_checked(path, payload),
        _ => Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: "the snapshot frame is damaged (bad length or checksum)".into(),
        }),
    }
}

fn decode_checked<T: codec::Evolving>(path: &Path, payload: &[u8]) -> Result<T, StoreError> {
    codec::decode_evolving(payload).map_err(|e| match e {
        CodecError::NewerMajor { found } => StoreError::NewerFormat {
            path: path.to_path_buf(),
            found,
        },
        other => StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: other.to_string(),
        },
    })
}

#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod load_tests;
#[cfg(test)]
mod tests;
