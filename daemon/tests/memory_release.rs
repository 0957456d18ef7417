//! `probemesh::memory` gives freed heap memory back to the kernel at once, under the
//! allocator the binary uses: this test binary installs mimalloc as `main.rs` does.
//! Without the release, mimalloc would keep the freed pages resident for at least its
//! purge delay (1 s), and for good on a thread that then goes quiet. And it takes the
//! binary's code and constants out of the resident set, while code keeps running (it is
//! mapped back in on use).

#![cfg(target_os = "linux")]

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A `kB` field of `/proc/self/status` (`RssAnon`, `RssFile`), in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"))
}

fn rss_anon_kib() -> u64 {
    status_kib("RssAnon")
}

#[test]
fn start_up_garbage_goes_back_to_the_kernel_when_released() {
    // Many small blocks (the shape of start-up garbage: documents, maps, strings), each
    // written so that its page is resident.
    const BLOCKS: usize = 200_000;
    const SIZE: usize = 96;
    let before = rss_anon_kib();
    let blocks: Vec<Box<[u8; SIZE]>> = (0..BLOCKS).map(|i| Box::new([i as u8; SIZE])).collect();
    let held = rss_anon_kib();
    let grown = held.saturating_sub(before);
    assert!(
        grown >= 12 * 1024,
        "the blocks should take about 19 MiB; RssAnon grew by {grown} KiB"
    );
    drop(blocks);
    let freed = rss_anon_kib();
    probemesh::memory::release_now();
    let released = rss_anon_kib();
    // Freeing alone hands back little (the pages wait for the purge delay); the release
    // hands back most of what was taken.
    assert!(
        freed.saturating_sub(released) >= grown / 2,
        "RssAnon {before} KiB before, {held} KiB holding the blocks, {freed} KiB after \
         freeing them, {released} KiB after release_now: the release gave back too little"
    );
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
    let before = status_kib("RssFile");
    let covered = probemesh::memory::unmap_start_up_code().expect("read /proc/self/smaps");
    let after = status_kib("RssFile");
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
