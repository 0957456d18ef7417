//! How long the gossip thread lets events gather before it handles them: a short window
//! while the cluster state is changing, a longer one once nothing has changed for a
//! while.
//!
//! Each wake-up of the gossip thread costs a context switch and, on a virtual machine,
//! an exit to the hypervisor; a converged cluster's gossip is a stream of small messages
//! that change nothing (digests carrying heartbeats), and at 64 members most of an
//! agent's CPU went to being woken for them. A longer window halves the wake-ups but
//! makes every message wait longer, which slows the spreading of news: a registration
//! or a verdict crosses several members, each hop paying the window on both sides. So
//! the window depends on whether there is news: any change to a key, a peer's
//! (applied by chitchat) or this node's own, makes the thread use the short window for
//! [`Pace::hold`]; otherwise it uses the long one. The first hop into an idle member
//! pays the long window once (the Syn that brings the news), every later message of the
//! exchange the short one (docs/decisions.md).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// The longest the short window gets (gossip interval / 5 below 100 ms rounds).
pub const MAX_BUSY_WINDOW: Duration = Duration::from_millis(20);
/// The longest the long window gets (gossip interval / 2 below 100 ms rounds): half of
/// the receive queue's Syn deadline (one round) is left for chitchat to answer.
pub const MAX_IDLE_WINDOW: Duration = Duration::from_millis(50);
/// Rounds the short window stays in use after the last change.
pub const HOLD_ROUNDS: u32 = 20;

/// The coalescing window of the gossip thread and the wake-up counts.
#[derive(Debug)]
pub struct Pace {
    origin: Instant,
    /// Nanoseconds after `origin` until which the short window is used.
    busy_until: AtomicU64,
    busy_window: Duration,
    idle_window: Duration,
    hold: Duration,
    wakes_busy: AtomicU64,
    wakes_idle: AtomicU64,
    news: AtomicU64,
}

/// Counters of a [`Pace`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PaceStats {
    /// Wake-ups of the gossip thread with the short window in use.
    pub wakes_busy: u64,
    /// Wake-ups of the gossip thread with the long window in use.
    pub wakes_idle: u64,
    /// Changes that selected the short window (key changes applied or published).
    pub news: u64,
}

impl Pace {
    /// The pace for gossip rounds of `interval`: a short window of a fifth of a round
    /// (at most [`MAX_BUSY_WINDOW`]), a long one of half a round (at most
    /// [`MAX_IDLE_WINDOW`]), the short one held for [`HOLD_ROUNDS`] rounds (at least
    /// 2 s) after each change. A new node starts with the short window: joining is all
    /// news.
    pub fn for_gossip_interval(interval: Duration) -> Pace {
        Pace::new(
            (interval / 5).min(MAX_BUSY_WINDOW),
            (interval / 2).min(MAX_IDLE_WINDOW),
            (interval * HOLD_ROUNDS).max(Duration::from_secs(2)),
            Instant::now(),
        )
    }

    /// A pace with the given windows and hold, in the short window from `now`.
    pub fn new(busy_window: Duration, idle_window: Duration, hold: Duration, now: Instant) -> Pace {
        let pace = Pace {
            origin: now,
            busy_until: AtomicU64::new(0),
            busy_window,
            idle_window: idle_window.max(busy_window),
            hold,
            wakes_busy: AtomicU64::new(0),
            wakes_idle: AtomicU64::new(0),
            news: AtomicU64::new(0),
        };
        pace.extend(now);
        pace
    }

    /// How long the short window stays in use after a change.
    pub fn hold(&self) -> Duration {
        self.hold
    }

    /// Records a change to the cluster state at `now`: the short window is used until
    /// `now + hold`. Called under chitchat's lock (its key listener) and from any thread;
    /// one atomic store.
    pub fn news(&self, now: Instant) {
        self.news.fetch_add(1, Relaxed);
        self.extend(now);
    }

    fn extend(&self, now: Instant) {
        let until = nanos(now.saturating_duration_since(self.origin) + self.hold);
        self.busy_until.fetch_max(until, Relaxed);
    }

    /// Whether the short window is in use at `now`.
    pub fn is_busy(&self, now: Instant) -> bool {
        nanos(now.saturating_duration_since(self.origin)) < self.busy_until.load(Relaxed)
    }

    /// The window in use at `now`.
    pub fn window(&self, now: Instant) -> Duration {
        if self.is_busy(now) {
            self.busy_window
        } else {
            self.idle_window
        }
    }

    /// Counts a wake-up of the gossip thread at `now`.
    pub(crate) fn woke(&self, now: Instant) {
        let counter = if self.is_busy(now) {
            &self.wakes_busy
        } else {
            &self.wakes_idle
        };
        counter.fetch_add(1, Relaxed);
    }

    /// The counters.
    pub fn stats(&self) -> PaceStats {
        PaceStats {
            wakes_busy: self.wakes_busy.load(Relaxed),
            wakes_idle: self.wakes_idle.load(Relaxed),
            news: self.news.load(Relaxed),
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_short_window_holds_after_each_change_then_the_long_one_returns() {
        let t0 = Instant::now();
        let pace = Pace::new(20 * MS, 50 * MS, 2000 * MS, t0);
        // A new node: short window, for the hold.
        assert_eq!(pace.window(t0), 20 * MS);
        assert_eq!(pace.window(t0 + 1999 * MS), 20 * MS);
        assert_eq!(pace.window(t0 + 2000 * MS), 50 * MS);
        // A change renews the hold from its own time.
        pace.news(t0 + 5000 * MS);
        assert_eq!(pace.window(t0 + 5000 * MS), 20 * MS);
        assert_eq!(pace.window(t0 + 6999 * MS), 20 * MS);
        assert_eq!(pace.window(t0 + 7000 * MS), 50 * MS);
        // A change reported late (an earlier instant) never shortens the hold.
        pace.news(t0 + 6000 * MS);
        pace.news(t0 + 4000 * MS);
        assert!(pace.is_busy(t0 + 7999 * MS));
        assert!(!pace.is_busy(t0 + 8000 * MS));
        assert_eq!(pace.stats().news, 3);
    }

    #[test]
    fn windows_follow_the_gossip_interval() {
        let at = |ms: u32| {
            let p = Pace::for_gossip_interval(ms * MS);
            (p.busy_window, p.idle_window, p.hold)
        };
        assert_eq!(at(100), (20 * MS, 50 * MS, 2000 * MS));
        assert_eq!(at(50), (10 * MS, 25 * MS, 2000 * MS));
        assert_eq!(at(1000), (20 * MS, 50 * MS, 20_000 * MS));
        assert_eq!(at(0), (Duration::ZERO, Duration::ZERO, 2000 * MS));
        // The long window is never shorter than the short one.
        let p = Pace::new(30 * MS, 10 * MS, MS, Instant::now());
        assert_eq!(p.idle_window, 30 * MS);
    }

    #[test]
    fn wake_ups_are_counted_by_the_window_in_use() {
        let t0 = Instant::now();
        let pace = Pace::new(MS, 2 * MS, 10 * MS, t0);
        pace.woke(t0);
        pace.woke(t0 + 20 * MS);
        pace.woke(t0 + 30 * MS);
        let s = pace.stats();
        assert_eq!((s.wakes_busy, s.wakes_idle, s.news), (1, 2, 0));
    }
}
