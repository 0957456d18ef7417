//! A small tmpfs mounted for one test (root only), so that a test can run an agent on a
//! disk that fills up: [`Tmpfs::mount`], a filler file that takes all but a chosen
//! number of bytes ([`Tmpfs::fill_leaving`]) and is deleted to free space again, and the
//! free space as the file system reports it. Unmounted on drop, also when the test
//! panics; drop every process using it first (declare the [`Tmpfs`] before the agent,
//! so the agent is dropped, and killed, first).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted tmpfs.
#[derive(Debug)]
pub struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` bytes (rounded up to pages by the kernel) at `dir`,
    /// creating the directory. `Err` says why not (not root, no `mount`, not allowed in
    /// this container), for [`crate::require::ok`].
    pub fn mount(dir: &Path, size: u64) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs at {} failed: {}",
                dir.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs {
            dir: dir.to_path_buf(),
        })
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Bytes available to a writer, as `statfs` reports them (`stat -f`).
    pub fn free_bytes(&self) -> u64 {
        let out = Command::new("stat")
            .args(["-f", "-c", "%a %S"])
            .arg(&self.dir)
            .output()
            .expect("run stat -f");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut it = text.split_whitespace().map(|n| n.parse::<u64>().ok());
        match (it.next().flatten(), it.next().flatten()) {
            (Some(blocks), Some(bsize)) => blocks * bsize,
            _ => panic!(
                "stat -f {}: unexpected output {text:?} {}",
                self.dir.display(),
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }

    /// Creates file `name` at the top of the tmpfs taking all the space but about
    /// `leave` bytes (it is written until the disk is full, then cut back, which frees
    /// whole pages). Returns its path; delete it to free the space.
    pub fn fill_leaving(&self, name: &str, leave: u64) -> PathBuf {
        let path = self.dir.join(name);
        let mut f = std::fs::File::create(&path).expect("create filler");
        let chunk = vec![0xa5u8; 64 << 10];
        let mut written = 0u64;
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => panic!("writing filler {}: {e}", path.display()),
            }
        }
        f.set_len(written.saturating_sub(leave))
            .expect("cut filler back");
        f.sync_all().expect("sync filler");
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Still busy (a process that outlived the test): detach it now, the kernel
            // frees it when the last user goes.
            eprintln!(
                "umount {} failed; detaching it with umount -l",
                self.dir.display()
            );
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}
