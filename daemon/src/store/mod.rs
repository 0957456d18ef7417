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
//! log (a crash mid-append, never acknowledged) is cut off. Replay is idempotent, so a
//! crash between writing a snapshot and truncating the log is harmless.

mod frame;
mod state;

pub use state::{DurableState, Mutation};

use frame::{read_frames, write_frame};
use probemesh_gossip::codec::{self, CodecError};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Name of the snapshot file.
pub const SNAPSHOT_FILE: &str = "state.bin";
/// Name of the mutation log.
pub const WAL_FILE: &str = "wal.log";
/// Name of the lock file.
pub const LOCK_FILE: &str = "LOCK";

/// Compact when the log holds this many records…
const COMPACT_RECORDS: usize = 4096;
/// …or this many bytes.
const COMPACT_BYTES: u64 = 8 << 20;

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
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The open data directory.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    wal: File,
    wal_records: usize,
    wal_bytes: u64,
    state: DurableState,
    /// Held for the life of the store; the OS releases the lock when it is closed.
    _lock: File,
}

/// What `open` found, for the start-up log.
#[derive(Debug, Default, Clone, Copy)]
pub struct OpenReport {
    /// Records replayed from the log.
    pub replayed: usize,
    /// Bytes of a torn tail that were cut off.
    pub truncated_bytes: u64,
}

impl Store {
    /// Opens (creating if needed) the data directory, takes its lock and loads the state.
    pub fn open(dir: &Path) -> Result<(Store, OpenReport), StoreError> {
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

        let snap_path = dir.join(SNAPSHOT_FILE);
        let mut state = match fs::read(&snap_path) {
            Ok(bytes) => decode_snapshot(&snap_path, &bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => DurableState::default(),
            Err(e) => return Err(io("cannot read snapshot", &snap_path)(e)),
        };

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
        let mut report = OpenReport::default();
        for payload in &frames.payloads {
            let m: Mutation = decode_checked(&wal_path, payload)?;
            state.apply(&m);
            report.replayed += 1;
        }
        let wal = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&wal_path)
            .map_err(io("cannot open log", &wal_path))?;
        if frames.valid_len < bytes.len() as u64 {
            report.truncated_bytes = bytes.len() as u64 - frames.valid_len;
            wal.set_len(frames.valid_len)
                .map_err(io("cannot truncate torn log tail", &wal_path))?;
            wal.sync_all().map_err(io("cannot sync log", &wal_path))?;
        }
        sync_dir(dir)?;
        let store = Store {
            dir: dir.to_path_buf(),
            wal,
            wal_records: frames.payloads.len(),
            wal_bytes: frames.valid_len,
            state,
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

    /// Makes `m` durable (appended and fsynced), then applies it. When this returns
    /// `Ok`, the mutation survives a crash.
    pub fn commit(&mut self, m: Mutation) -> Result<(), StoreError> {
        let payload = codec::encode(&m).map_err(StoreError::Encode)?;
        let wal_path = self.dir.join(WAL_FILE);
        let written =
            write_frame(&mut self.wal, &payload).map_err(io("cannot append to log", &wal_path))?;
        self.wal
            .sync_data()
            .map_err(io("cannot sync log", &wal_path))?;
        self.wal_records += 1;
        self.wal_bytes += written;
        self.state.apply(&m);
        if self.wal_records >= COMPACT_RECORDS || self.wal_bytes >= COMPACT_BYTES {
            self.compact()?;
        }
        Ok(())
    }

    /// Writes the whole state as a new snapshot and empties the log.
    pub fn compact(&mut self) -> Result<(), StoreError> {
        let payload = codec::encode(&self.state).map_err(StoreError::Encode)?;
        let tmp = self.dir.join(format!("{SNAPSHOT_FILE}.tmp"));
        let snap = self.dir.join(SNAPSHOT_FILE);
        {
            let mut f = File::create(&tmp).map_err(io("cannot create", &tmp))?;
            write_frame(&mut f, &payload).map_err(io("cannot write", &tmp))?;
            f.flush().map_err(io("cannot write", &tmp))?;
            f.sync_all().map_err(io("cannot sync", &tmp))?;
        }
        fs::rename(&tmp, &snap).map_err(io("cannot replace snapshot", &snap))?;
        sync_dir(&self.dir)?;
        let wal_path = self.dir.join(WAL_FILE);
        self.wal
            .set_len(0)
            .map_err(io("cannot truncate log", &wal_path))?;
        self.wal
            .sync_all()
            .map_err(io("cannot sync log", &wal_path))?;
        self.wal_records = 0;
        self.wal_bytes = 0;
        Ok(())
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

fn decode_checked<T: serde::de::DeserializeOwned>(
    path: &Path,
    payload: &[u8],
) -> Result<T, StoreError> {
    codec::decode(payload).map_err(|e| match e {
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

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("cannot sync directory", dir))
}

#[cfg(test)]
mod tests;
