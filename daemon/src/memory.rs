//! Handing freed heap memory back to the operating system.
//!
//! The binary's allocator is mimalloc (`main.rs`, docs/decisions.md). mimalloc returns
//! ("purges") the pages of freed memory to the kernel a delay after they became free,
//! and only when some thread next calls into the allocator's slow path. A thread that
//! goes quiet after start-up therefore keeps what it freed resident for good: start-up
//! builds the whole OpenAPI document to make the router, decodes the state, loads the
//! certificates, and most of that is garbage a moment later. Measured on an idle agent:
//! 3.1 MiB of anonymous memory without the release below, 2.4 MiB with it.
//!
//! The same holds for the binary's own code: start-up runs code that never runs again
//! (flag and file parsing, certificate generation, the OpenAPI document), and the
//! kernel maps a page of code in with the pages around it (fault-around, 64 KiB), so
//! an idle agent kept 6.3 MiB of its 8.8 MB of text mapped. [`unmap_start_up_code`]
//! unmaps it once; what runs afterwards is mapped back in on first use, from the page
//! cache.
//!
//! The allocator calls here only ask the allocator to do what it would do on its own later; they
//! take no lock of ours and block on nothing but a few `madvise` calls. With another
//! global allocator (the test binaries'), mimalloc owns nothing and they do nothing.

use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often [`run`] hands back memory that has stayed free past the allocator's purge
/// delay (1 s).
pub const RELEASE_PERIOD: Duration = Duration::from_secs(10);

/// Frees the calling thread's empty allocator pages and returns every page that is
/// free anywhere in the allocator to the kernel now, without waiting for the purge
/// delay. Meant for once, after start-up: forcing it often would make busy threads
/// fault their pages back in.
pub fn release_now() {
    // SAFETY: `mi_collect` has no preconditions; it may be called from any thread at
    // any time, also when mimalloc holds no memory.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// Returns the pages that have been free for longer than the purge delay. Cheap: a
/// walk of the allocator's bitmaps.
pub fn release_expired() {
    // SAFETY: as in `release_now`.
    unsafe { libmimalloc_sys::mi_collect(false) }
}

/// Unmaps this binary's read-only file-backed pages (its code and constants), so that
/// only what runs after start-up is mapped back in, on first use, from the page cache;
/// returns how many bytes of mappings it covered. Meant for once, after start-up, on a
/// blocking thread: it reads `/proc/self/smaps`.
///
/// Why it is safe: a private mapping that is not writable and holds no anonymous
/// (copied-on-write) page consists only of pages of the file, and `MADV_DONTNEED` on
/// such a mapping drops them from this process's page tables the way reclaim would;
/// the next access faults the same bytes back in. The relocated read-only data
/// (RELRO), which the loader wrote, holds anonymous pages and is left alone. Nothing is
/// written to the file, and other processes mapping it keep their pages.
pub fn unmap_start_up_code() -> std::io::Result<usize> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let mut covered = 0;
    for m in file_mappings(&smaps) {
        let clean = m.anonymous_kib == Some(0);
        if !clean || !m.private_read_only() || std::path::Path::new(m.path) != exe {
            continue;
        }
        // SAFETY: the range is a whole mapping of this process, read-only, private and
        // without anonymous pages (see above): dropping its pages loses no data, and
        // every later access faults them back in from the file.
        let rc = unsafe {
            libc::madvise(
                m.start as *mut libc::c_void,
                m.end - m.start,
                libc::MADV_DONTNEED,
            )
        };
        if rc == 0 {
            covered += m.end - m.start;
        }
    }
    Ok(covered)
}

/// One mapping of `/proc/self/smaps`, as far as [`unmap_start_up_code`] reads it.
#[derive(Debug)]
struct Mapping<'a> {
    start: usize,
    end: usize,
    perms: &'a str,
    path: &'a str,
    /// The `Anonymous:` field; `None` when the entry has none (then it is not touched).
    anonymous_kib: Option<u64>,
}

impl Mapping<'_> {
    fn private_read_only(&self) -> bool {
        let p = self.perms.as_bytes();
        p.len() == 4 && p[0] == b'r' && p[1] == b'-' && p[3] == b'p'
    }
}

/// The mappings of a `/proc/PID/smaps` text: a header line (`start-end perms offset dev
/// inode path`) followed by `Field: value` lines. A line that fits neither is skipped.
fn file_mappings(smaps: &str) -> Vec<Mapping<'_>> {
    let mut out: Vec<Mapping<'_>> = Vec::new();
    for line in smaps.lines() {
        if let Some(kib) = line.strip_prefix("Anonymous:") {
            if let Some(last) = out.last_mut() {
                last.anonymous_kib = kib.trim().trim_end_matches("kB").trim().parse().ok();
            }
            continue;
        }
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (
            usize::from_str_radix(start, 16),
            usize::from_str_radix(end, 16),
        ) else {
            continue;
        };
        // offset, device, inode, then the path (which may hold spaces).
        let path = fields.nth(3).map_or("", |first| {
            let at = line.find(first).unwrap_or(line.len());
            line[at..].trim_end()
        });
        out.push(Mapping {
            start,
            end,
            perms,
            path,
            anonymous_kib: None,
        });
    }
    out
}

/// Calls [`release_expired`] every `period` until `stop`, so that memory freed by
/// threads that then go quiet (an admin request's, a burst of imports') does not stay
/// resident.
pub async fn run(period: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => release_expired(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0c0a00000-55d0c0b4a000 r--p 00000000 fd:01 1234 /usr/bin/probe mesh
Size:               1320 kB
Anonymous:             0 kB
55d0c0b4a000-55d0c1400000 r-xp 0014a000 fd:01 1234 /usr/bin/probe mesh
Size:               8920 kB
Anonymous:             0 kB
55d0c1400000-55d0c1455000 r--p 00a00000 fd:01 1234 /usr/bin/probe mesh
Anonymous:           340 kB
55d0c1455000-55d0c1460000 rw-p 00a55000 fd:01 1234 /usr/bin/probe mesh
Anonymous:            44 kB
7ffd1000-7ffd2000 rw-p 00000000 00:00 0
Anonymous:             4 kB
garbage line
";

    #[test]
    fn smaps_entries_are_read_with_their_paths_and_anonymous_pages() {
        let maps = file_mappings(SMAPS);
        assert_eq!(maps.len(), 5);
        assert_eq!(maps[1].start, 0x55d0c0b4a000);
        assert_eq!(maps[1].end, 0x55d0c1400000);
        assert_eq!(maps[1].path, "/usr/bin/probe mesh");
        assert_eq!(maps[1].anonymous_kib, Some(0));
        assert_eq!(maps[2].anonymous_kib, Some(340));
        assert_eq!(maps[4].path, "");
    }

    #[test]
    fn only_private_read_only_mappings_qualify() {
        let maps = file_mappings(SMAPS);
        let qualify: Vec<bool> = maps.iter().map(Mapping::private_read_only).collect();
        // The RELRO mapping qualifies by its permissions; its anonymous pages exclude it.
        assert_eq!(qualify, [true, true, true, false, false]);
    }
}
