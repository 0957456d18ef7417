//! Heap memory held per idle kept connection of the probe checker, measured with a
//! counting allocator: the socket's registration, the pool entry and the pool map's
//! share, and nothing of hyper's (no read or write buffers, no task between probes)
//! nor of the finished task that last used it (a readiness waker left registered
//! would keep it).
//!
//! The workers are one listener per connection (each its own origin) served by a
//! thread that allocates nothing per connection, so the count is the checker's alone.
//! Prints the figure (`--nocapture`); fails if a kept connection holds as much as a
//! buffer of hyper's would (8 KiB).

use probemesh::probe::check::{Checker, ProbeResult};
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::time::Duration;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards every call to the system allocator and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

/// `n` listeners on 127.0.0.1, served by one polling thread that answers every request
/// head and keeps every connection, with all its memory allocated up front.
fn workers(n: usize, stop: Arc<AtomicBool>) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.set_nonblocking(true).unwrap();
            l
        })
        .collect();
    let ports = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    std::thread::spawn(move || {
        // (connection, bytes of "\r\n\r\n" matched so far)
        let mut conns: Vec<(TcpStream, usize)> = Vec::with_capacity(4 * n);
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            let mut busy = false;
            for l in &listeners {
                while conns.len() < conns.capacity()
                    && let Ok((s, _)) = l.accept()
                {
                    s.set_nonblocking(true).unwrap();
                    conns.push((s, 0));
                    busy = true;
                }
            }
            for (s, matched) in conns.iter_mut() {
                let Ok(k) = s.read(&mut buf) else { continue };
                for b in &buf[..k] {
                    let want = b"\r\n\r\n"[*matched];
                    *matched = if *b == want {
                        *matched + 1
                    } else {
                        usize::from(*b == b'\r')
                    };
                    if *matched == 4 {
                        *matched = 0;
                        let _ = s.write_all(ANSWER);
                        busy = true;
                    }
                }
            }
            if !busy {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        drop(conns);
    });
    ports
}

#[test]
fn an_idle_kept_connection_holds_no_buffers() {
    let n = match rlimit::increase_nofile_limit(4096) {
        Ok(limit) if limit >= 4096 => 1000,
        _ => 200,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let ports = workers(n + 4, Arc::clone(&stop));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (per_kept, per_released) = rt.block_on(async {
        let checker = Checker::new(vec![]).unwrap();
        let url = |port: u16| reqwest::Url::parse(&format!("http://127.0.0.1:{port}/h")).unwrap();
        // Each probe in a task of its own, as the engine runs them: what a kept
        // connection retains of the task that used it counts too.
        let probe = |port: u16| {
            let checker = checker.clone();
            async move {
                let r = tokio::spawn(async move {
                    checker.probe(&url(port), Duration::from_secs(10)).await
                })
                .await
                .unwrap();
                assert_eq!(r.result, ProbeResult::Ok(200), "port {port}");
            }
        };
        // Warm up everything created once (runtime driver, hyper's statics), then
        // start from an empty pool.
        for &port in &ports[n..] {
            probe(port).await;
            probe(port).await;
            checker.forget_url(&url(port));
        }
        assert_eq!(checker.idle_connections(), 0);
        let before = LIVE.load(Ordering::SeqCst);
        for &port in &ports[..n] {
            probe(port).await;
        }
        assert_eq!(checker.idle_connections(), n);
        let kept = LIVE.load(Ordering::SeqCst);
        // Probing them again allocates nothing that stays.
        for &port in &ports[..n] {
            probe(port).await;
        }
        let again = LIVE.load(Ordering::SeqCst);
        for &port in &ports[..n] {
            checker.forget_url(&url(port));
        }
        // The runtime frees a closed socket's registration on its next turn.
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let released = LIVE.load(Ordering::SeqCst);
        let per = |bytes: isize| bytes as f64 / n as f64;
        eprintln!(
            "{n} idle kept connections: {:.0} bytes of heap each while kept ({:.0} after a second round), {:.0} bytes each released by forgetting them (the rest is the pool map's capacity)",
            per(kept - before),
            per(again - before),
            per(kept - released),
        );
        (per(kept - before), per(kept - released))
    });
    stop.store(true, Ordering::Relaxed);
    assert!(
        per_kept < 2048.0,
        "an idle connection holds {per_kept:.0} bytes: are hyper's buffers kept?"
    );
    assert!(per_released > 0.0);
}
