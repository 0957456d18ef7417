//! `probemesh::memory::unmap_start_up_code` takes the binary's code and constants out of
//! the resident set, and code keeps running afterwards (it is mapped back in on use).

#![cfg(target_os = "linux")]

/// This process's file-backed resident memory, from `/proc/self/status`, in KiB.
fn rss_file_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssFile:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("RssFile in /proc/self/status")
}

#[test]
fn the_binarys_mapped_code_leaves_the_resident_set_and_still_runs() {
    // Touch a good part of this binary's code first (formatting, parsing, collections).
    let warm: Vec<String> = (0..10_000)
        .map(|i| format!("{i:>8}:{:.3}", f64::from(i).sqrt()))
        .collect();
    let parsed: u64 = warm
        .iter()
        .filter_map(|s| s.split(':').next()?.trim().parse::<u64>().ok())
        .sum();
    assert_eq!(parsed, (0..10_000u64).sum::<u64>());
    let before = rss_file_kib();
    let covered = probemesh::memory::unmap_start_up_code().expect("read /proc/self/smaps");
    let after = rss_file_kib();
    assert!(
        covered >= 1 << 20,
        "the test binary has megabytes of code; only {covered} bytes of mappings were covered"
    );
    let dropped = before.saturating_sub(after);
    assert!(
        dropped >= 128,
        "RssFile should fall by at least 128 KiB once the code is unmapped: {before} KiB before, {after} KiB after"
    );
    // The same code runs again, mapped back in from the page cache.
    let again: u64 = (0..10_000u64)
        .map(|i| format!("{i}").parse::<u64>().unwrap_or(0))
        .sum();
    assert_eq!(again, parsed);
}
