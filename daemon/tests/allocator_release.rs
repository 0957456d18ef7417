//! `probemesh::memory` gives freed heap memory back to the kernel at once, under the
//! allocator the binary uses: this test binary installs mimalloc as `main.rs` does.
//! Without the release, mimalloc would keep the freed pages resident for at least its
//! purge delay (1 s), and for good on a thread that then goes quiet.

#![cfg(target_os = "linux")]

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// This process's anonymous resident memory, from `/proc/self/status`, in KiB.
fn rss_anon_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("RssAnon in /proc/self/status")
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
