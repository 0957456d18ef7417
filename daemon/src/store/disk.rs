//! The file-system operations the store makes, behind one trait so that tests can make
//! any of them fail (a short write, `ENOSPC` on fsync, a failed rename) and check that
//! the store undoes what it started.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// `ENOSPC` on Linux: no space left on the device.
const ENOSPC: i32 = 28;
/// `EDQUOT` on Linux: the disk quota is exhausted.
const EDQUOT: i32 = 122;

/// The calls the store makes on the data directory. Each maps one-to-one onto a
/// `std::fs` call in [`RealDisk`].
pub trait Disk: Send + fmt::Debug {
    /// One `write(2)`: may write fewer bytes than given.
    fn write(&mut self, file: &mut File, buf: &[u8]) -> io::Result<usize>;
    /// `fdatasync(2)`.
    fn sync_data(&mut self, file: &File) -> io::Result<()>;
    /// `fsync(2)`.
    fn sync_all(&mut self, file: &File) -> io::Result<()>;
    /// `ftruncate(2)`.
    fn set_len(&mut self, file: &File, len: u64) -> io::Result<()>;
    /// Creates (or truncates) a file for writing.
    fn create(&mut self, path: &Path) -> io::Result<File>;
    /// `rename(2)`.
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()>;
    /// `unlink(2)`.
    fn remove(&mut self, path: &Path) -> io::Result<()>;
    /// `fsync(2)` on a directory, so that renames and new files in it are durable.
    fn sync_dir(&mut self, dir: &Path) -> io::Result<()>;
    /// Whether a commit may wait on the device (an fsync): then it runs on a blocking
    /// thread. A disk that never syncs (a simulation's) answers `false`, and commits run
    /// inline, which keeps a paused-time simulation deterministic.
    fn may_block(&self) -> bool {
        true
    }
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealDisk;

impl Disk for RealDisk {
    fn write(&mut self, file: &mut File, buf: &[u8]) -> io::Result<usize> {
        file.write(buf)
    }

    fn sync_data(&mut self, file: &File) -> io::Result<()> {
        file.sync_data()
    }

    fn sync_all(&mut self, file: &File) -> io::Result<()> {
        file.sync_all()
    }

    fn set_len(&mut self, file: &File, len: u64) -> io::Result<()> {
        file.set_len(len)
    }

    fn create(&mut self, path: &Path) -> io::Result<File> {
        File::create(path)
    }

    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove(&mut self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// Writes all of `buf` through `disk`, retrying short writes and interrupts.
pub fn write_all(disk: &mut dyn Disk, file: &mut File, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match disk.write(file, buf) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "the file system accepted no more bytes",
                ));
            }
            Ok(n) => buf = &buf[n.min(buf.len())..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Whether `e` says the disk (or the quota) is full.
pub fn is_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull
        || e.kind() == io::ErrorKind::QuotaExceeded
        || matches!(e.raw_os_error(), Some(ENOSPC | EDQUOT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_disk_errors_are_recognised_by_kind_and_by_errno() {
        assert!(is_full(&io::Error::from_raw_os_error(ENOSPC)));
        assert!(is_full(&io::Error::from_raw_os_error(EDQUOT)));
        assert!(is_full(&io::Error::from(io::ErrorKind::StorageFull)));
        assert!(!is_full(&io::Error::from_raw_os_error(5))); // EIO
        assert!(!is_full(&io::Error::from(io::ErrorKind::PermissionDenied)));
    }

    /// Writes at most `max` bytes per call.
    #[derive(Debug)]
    struct Dribble(usize);

    impl Disk for Dribble {
        fn write(&mut self, file: &mut File, buf: &[u8]) -> io::Result<usize> {
            file.write(&buf[..buf.len().min(self.0)])
        }
        fn sync_data(&mut self, _: &File) -> io::Result<()> {
            Ok(())
        }
        fn sync_all(&mut self, _: &File) -> io::Result<()> {
            Ok(())
        }
        fn set_len(&mut self, f: &File, len: u64) -> io::Result<()> {
            f.set_len(len)
        }
        fn create(&mut self, p: &Path) -> io::Result<File> {
            File::create(p)
        }
        fn rename(&mut self, a: &Path, b: &Path) -> io::Result<()> {
            fs::rename(a, b)
        }
        fn remove(&mut self, p: &Path) -> io::Result<()> {
            fs::remove_file(p)
        }
        fn sync_dir(&mut self, _: &Path) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn write_all_completes_over_short_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut f = File::create(&path).unwrap();
        write_all(&mut Dribble(3), &mut f, b"hello, world").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"hello, world");
    }
}
