//! Gossip on a thread of its own.
//!
//! Every gossip message passes through three or four tasks on each side: chitchat's
//! loop, the transport's per-peer writer, quinn's connection and endpoint drivers, the
//! per-connection reader. On a multi-threaded runtime each hand-off may wake the other
//! worker thread (a futex call and a context switch) and move the task between caches;
//! at 64 members and 100 ms rounds a node handles about 180 messages a second, and a
//! runtime of its own took a fifth off the agents' CPU (docs/benchmarks.md). On a single-threaded
//! runtime of its own, gossip's hand-offs stay on one thread, and the admin API, the
//! reconciler and a greedy local client cannot delay a heartbeat: the failure detector
//! of every peer depends on this node answering on time.
//!
//! On its own thread, gossip can also trade a little latency for far fewer wake-ups
//! ([`coalescing_runtime`], paced by [`crate::pace`]) without slowing the admin API or
//! the probes.
//!
//! The rest of the process talks to gossip through [`GossipHandle`], whose calls only
//! take chitchat's lock (a `tokio::sync::Mutex`, usable from any runtime) and decode on
//! the caller's thread, so large cluster states are never decoded on the gossip thread.

use crate::node::{GossipConfig, GossipError, GossipHandle, GossipThread, spawn_paced_gossip};
use crate::pace::Pace;
use chitchat::transport::Transport;
use std::cell::Cell;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

/// The name of the gossip thread (shown by `top -H`, `perf` and panics).
pub const THREAD_NAME: &str = "probemesh-gossip";

/// A single-threaded runtime whose thread, before it blocks waiting for events, first
/// sleeps out the rest of the window `pace` has in use since it last woke, so that the
/// messages, packets and timers that arrive meanwhile are handled in one wake-up
/// instead of one each. `pace` counts the wake-ups.
///
/// Why: each wake-up of an idle thread costs a context switch and, on a virtual
/// machine, an exit to the hypervisor, and a gossip thread at 100 ms rounds is woken
/// by about 170 events a second, each with a few microseconds of work. Measured at 64
/// agents on two cores, the wake-ups were about a quarter of the agents' CPU
/// (docs/benchmarks.md). Sleeping in the park hook blocks no task: the scheduler calls
/// it only when nothing is ready to run, and the thread runs nothing but gossip. Under
/// load (a wake-up whose work takes longer than the window) it does not sleep at all.
pub fn coalescing_runtime(pace: Arc<Pace>) -> std::io::Result<tokio::runtime::Runtime> {
    // The callbacks run on the runtime's one thread; the instant is that thread's own.
    thread_local! {
        static WOKE: Cell<Option<Instant>> = const { Cell::new(None) };
    }
    let on_unpark = Arc::clone(&pace);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_unpark(move || {
            let now = Instant::now();
            on_unpark.woke(now);
            WOKE.with(|w| w.set(Some(now)));
        })
        .on_thread_park(move || {
            if let Some(woke) = WOKE.with(Cell::get) {
                let now = Instant::now();
                let awake = now.saturating_duration_since(woke);
                let window = pace.window(now);
                if awake < window {
                    std::thread::sleep(window - awake);
                }
            }
        })
        .build()
}

/// Starts gossip ([`spawn_gossip`]) on `transport`, on a thread of its own with a
/// single-threaded runtime (see the module documentation). The returned handle is used
/// from any runtime; [`GossipHandle::shutdown`] stops chitchat, then the thread.
pub async fn spawn_gossip_thread<T>(
    config: GossipConfig,
    transport: T,
) -> Result<GossipHandle, GossipError>
where
    T: Transport + Send + Sync + 'static,
{
    let pace = Arc::new(Pace::for_gossip_interval(config.interval));
    let runtime = coalescing_runtime(Arc::clone(&pace))
        .map_err(|e| GossipError::Start(format!("cannot build the gossip runtime: {e}").into()))?;
    let (started_tx, started_rx) = oneshot::channel();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (exited_tx, exited_rx) = oneshot::channel::<()>();
    std::thread::Builder::new()
        .name(THREAD_NAME.to_string())
        .spawn(move || {
            runtime.block_on(async move {
                let started = spawn_paced_gossip(config, &transport, Some(pace)).await;
                let running = started.is_ok();
                if started_tx.send(started).is_err() || !running {
                    return;
                }
                // Until the handle is shut down or dropped (a dropped sender ends the
                // wait as well).
                let _ = stop_rx.await;
            });
            drop(runtime);
            let _ = exited_tx.send(());
        })
        .map_err(|e| GossipError::Start(format!("cannot start the gossip thread: {e}").into()))?;
    let mut handle = started_rx.await.map_err(|_| {
        GossipError::Start("the gossip thread ended before gossip started".into())
    })??;
    handle.set_thread(GossipThread::new(stop_tx, exited_rx));
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use chitchat::ChitchatMessage;
    use chitchat::transport::{ChannelTransport, Socket};
    use std::net::SocketAddr;
    use std::sync::Mutex;
    use std::time::Duration;

    /// chitchat's in-memory transport, recording the thread of every call and when
    /// its socket is dropped.
    #[derive(Clone)]
    struct Recording {
        inner: ChannelTransport,
        threads: Arc<Mutex<Vec<String>>>,
        dropped: Arc<std::sync::atomic::AtomicBool>,
    }

    fn record(threads: &Mutex<Vec<String>>) {
        let name = std::thread::current().name().unwrap_or("").to_string();
        threads.lock().unwrap().push(name);
    }

    #[async_trait]
    impl Transport for Recording {
        async fn open(&self, addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
            record(&self.threads);
            Ok(Box::new(RecordingSocket {
                inner: self.inner.open(addr).await?,
                threads: Arc::clone(&self.threads),
                dropped: Arc::clone(&self.dropped),
            }))
        }
    }

    struct RecordingSocket {
        inner: Box<dyn Socket>,
        threads: Arc<Mutex<Vec<String>>>,
        dropped: Arc<std::sync::atomic::AtomicBool>,
    }

    impl Drop for RecordingSocket {
        fn drop(&mut self) {
            self.dropped
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[async_trait]
    impl Socket for RecordingSocket {
        async fn send(&mut self, to: SocketAddr, msg: ChitchatMessage) -> anyhow::Result<()> {
            record(&self.threads);
            self.inner.send(to, msg).await
        }
        async fn recv(&mut self) -> anyhow::Result<(SocketAddr, ChitchatMessage)> {
            let got = self.inner.recv().await;
            record(&self.threads);
            got
        }
    }

    fn config(node: &str, port: u16, seeds: &[u16]) -> GossipConfig {
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        GossipConfig {
            node_id: node.into(),
            generation: 1,
            cluster_id: "test".into(),
            listen: addr,
            advertise: addr,
            seeds: seeds.iter().map(|p| format!("127.0.0.1:{p}")).collect(),
            interval: Duration::from_millis(20),
            dead_node_grace_period: Duration::from_secs(60),
            version: "test".into(),
            identities: None,
            verdict_hold: crate::publication::MIN_VERDICT_HOLD,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn gossip_runs_on_its_own_thread_and_stops_with_its_handle() {
        let network = ChannelTransport::with_mtu(65_000);
        let transport = |dropped: &Arc<std::sync::atomic::AtomicBool>| Recording {
            inner: network.clone(),
            threads: Default::default(),
            dropped: Arc::clone(dropped),
        };
        let (dropped_a, dropped_b) = (Arc::default(), Arc::default());
        let (ta, tb) = (transport(&dropped_a), transport(&dropped_b));
        let threads = Arc::clone(&ta.threads);
        let a = spawn_gossip_thread(config("a", 1, &[]), ta).await.unwrap();
        let b = spawn_gossip_thread(config("b", 2, &[1]), tb).await.unwrap();

        // The two nodes find each other, and the handle works from this runtime.
        let end = Instant::now() + Duration::from_secs(10);
        while a.snapshot().await.members.len() < 2 {
            assert!(Instant::now() < end, "the nodes did not meet");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let seen = threads.lock().unwrap().clone();
        assert!(seen.len() > 2, "{seen:?}");
        assert!(seen.iter().all(|t| t == THREAD_NAME), "{seen:?}");

        // Shutting down stops chitchat and then the thread: its socket is gone.
        a.shutdown().await.unwrap();
        assert!(dropped_a.load(std::sync::atomic::Ordering::SeqCst));
        // A handle dropped without shutdown stops its thread too.
        drop(b);
        let end = Instant::now() + Duration::from_secs(10);
        while !dropped_b.load(std::sync::atomic::Ordering::SeqCst) {
            assert!(
                Instant::now() < end,
                "the dropped handle's gossip thread kept running"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A hundred events a millisecond apart, as packets arrive at a busy gossip thread:
    /// without coalescing each would wake the thread; with a 20 ms window they are
    /// handled in a handful of wake-ups, each event within the window.
    /// A pace that always uses `window` (no hold, both windows equal).
    fn fixed(window: Duration) -> Arc<Pace> {
        Arc::new(Pace::new(window, window, Duration::ZERO, Instant::now()))
    }

    /// Sends 100 events a millisecond apart to a runtime paced by `pace`, as packets
    /// arrive at a busy gossip thread; returns the wake-ups and the longest wait.
    fn hundred_events(pace: &Arc<Pace>) -> (u64, Duration) {
        let rt = coalescing_runtime(Arc::clone(pace)).unwrap();
        let before = pace.stats();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
        let sender = std::thread::spawn(move || {
            for _ in 0..100 {
                std::thread::sleep(Duration::from_millis(1));
                let _ = tx.send(Instant::now());
            }
        });
        let (waited, handled) = rt.block_on(async {
            let mut longest = Duration::ZERO;
            let mut n = 0;
            while let Some(sent) = rx.recv().await {
                longest = longest.max(sent.elapsed());
                n += 1;
            }
            (longest, n)
        });
        sender.join().unwrap();
        assert_eq!(handled, 100);
        let after = pace.stats();
        let wakes = after.wakes_busy + after.wakes_idle - before.wakes_busy - before.wakes_idle;
        (wakes, waited)
    }

    /// Without coalescing each event would wake the thread; with a 20 ms window they
    /// are handled in a handful of wake-ups, each event within the window.
    #[test]
    fn events_that_arrive_close_together_share_a_wake_up() {
        let window = Duration::from_millis(20);
        let (wakes, waited) = hundred_events(&fixed(window));
        // 100 ms or more of sending (1 ms sleeps overshoot) in 20 ms windows: about 6
        // to 10 wake-ups; one per event would be 100.
        assert!(wakes <= 40, "{wakes} wake-ups for 100 events");
        // Each event waited at most about one window (generous: a loaded machine).
        assert!(waited < window + Duration::from_secs(1), "{waited:?}");
    }

    /// With no news the long window is in use and the same events wake the thread far
    /// less often; news switches to the short window, and the wake-ups are counted
    /// under the window in use.
    #[test]
    fn news_selects_the_short_window() {
        let (short, long) = (Duration::from_millis(2), Duration::from_millis(40));
        let pace = Arc::new(Pace::new(short, long, Duration::ZERO, Instant::now()));
        let (idle_wakes, _) = hundred_events(&pace);
        assert_eq!(pace.stats().wakes_busy, 0);
        pace.news(Instant::now() + Duration::from_secs(3600));
        let (busy_wakes, _) = hundred_events(&pace);
        assert!(pace.stats().wakes_busy > 0);
        // About 3 to 8 wake-ups in 40 ms windows, against 30 to 60 in 2 ms ones.
        assert!(
            idle_wakes * 2 < busy_wakes,
            "{idle_wakes} wake-ups with the long window, {busy_wakes} with the short one"
        );
    }

    #[test]
    fn an_idle_thread_is_not_kept_awake() {
        // No events: the thread sleeps in the runtime until the timer, not in a loop.
        let pace = fixed(Duration::from_millis(20));
        let rt = coalescing_runtime(Arc::clone(&pace)).unwrap();
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(300)).await });
        let s = pace.stats();
        let wakes = s.wakes_busy + s.wakes_idle;
        assert!(wakes <= 3, "{wakes} wake-ups while idle");
    }

    /// A peer's key change, applied by chitchat, and this node's own publication are
    /// news; heartbeats alone are not, so a quiet cluster reaches the long window.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn key_changes_are_news_and_heartbeats_are_not() {
        let network = ChannelTransport::with_mtu(65_000);
        let transport = || Recording {
            inner: network.clone(),
            threads: Default::default(),
            dropped: Default::default(),
        };
        let a = spawn_gossip_thread(config("a", 1, &[]), transport())
            .await
            .unwrap();
        let b = spawn_gossip_thread(config("b", 2, &[1]), transport())
            .await
            .unwrap();
        let news = |h: &GossipHandle| h.pace().unwrap().stats().news;
        let end = Instant::now() + Duration::from_secs(10);
        while a.snapshot().await.members.len() < 2 || b.snapshot().await.members.len() < 2 {
            assert!(Instant::now() < end, "the nodes did not meet");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Once the two agree, rounds of heartbeats (20 ms each) bring no news.
        let settled = Instant::now() + Duration::from_secs(10);
        let quiet = loop {
            let n = news(&a);
            tokio::time::sleep(Duration::from_millis(500)).await;
            if news(&a) == n {
                break n;
            }
            assert!(Instant::now() < settled, "news kept coming without changes");
        };
        let own = news(&b);
        b.update_keys(vec![("k".into(), Some("v".into()))]).await;
        assert!(news(&b) > own, "a node's own publication is news");
        let end = Instant::now() + Duration::from_secs(10);
        while news(&a) == quiet {
            assert!(Instant::now() < end, "a peer's key change was not news");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
