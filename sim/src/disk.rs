//! The simulator's data directory: real files in a temp dir, never synced. Its
//! [`Disk::may_block`] answers `false`, so the node commits inline instead of on a
//! blocking thread, and paused time stays paused (a blocking thread would let tokio
//! advance the clock while the runtime waits on it).

use probemesh::store::{Disk, RealDisk};
use std::fs::File;
use std::io;
use std::path::Path;

/// Writes through to the file system, skips every fsync.
#[derive(Debug, Default, Clone, Copy)]
pub struct SimDisk;

impl Disk for SimDisk {
    fn write(&mut self, file: &mut File, buf: &[u8]) -> io::Result<usize> {
        RealDisk.write(file, buf)
    }
    fn sync_data(&mut self, _: &File) -> io::Result<()> {
        Ok(())
    }
    fn sync_all(&mut self, _: &File) -> io::Result<()> {
        Ok(())
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
    fn sync_dir(&mut self, _: &Path) -> io::Result<()> {
        Ok(())
    }
    fn may_block(&self) -> bool {
        false
    }
}
