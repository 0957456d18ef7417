//! Probe failures caused by this node's own lack of resources (SPEC S13): descriptors,
//! socket buffers, local ports, memory. They change no worker's status; this tracker
//! keeps when the last one happened, so the degraded rule (SPEC S12) can use "the node
//! is short of resources now", and rate-limits their log lines.
//!
//! Time is passed in (milliseconds since the Unix epoch), so the rules are tested
//! without a clock.

use std::sync::atomic::{AtomicU64, Ordering};

/// A local fault counts as current for this long after it was last seen.
pub const ACTIVE_FOR_MS: u64 = 30_000;
/// At most one log line per this many milliseconds; the rest are counted in it.
pub const LOG_EVERY_MS: u64 = 10_000;

/// Lock-free record of local probe faults, shared by the probe engine and readers.
#[derive(Debug, Default)]
pub struct LocalFaults {
    /// When the last fault was seen; 0 before the first.
    last_ms: AtomicU64,
    /// Faults seen in all.
    total: AtomicU64,
    /// When a fault was last logged.
    logged_ms: AtomicU64,
    /// Faults since the last log line.
    unlogged: AtomicU64,
}

impl LocalFaults {
    /// Records one fault at `now_ms`. Returns `Some(n)` when it should be logged now,
    /// `n` being the faults (this one included) since the previous log line.
    pub fn record(&self, now_ms: u64) -> Option<u64> {
        self.last_ms.fetch_max(now_ms, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
        let unlogged = self.unlogged.fetch_add(1, Ordering::Relaxed) + 1;
        let logged = self.logged_ms.load(Ordering::Relaxed);
        let due = logged == 0 || now_ms.saturating_sub(logged) >= LOG_EVERY_MS;
        // Only the caller that wins the swap logs, so concurrent faults log once.
        if due
            && self
                .logged_ms
                .compare_exchange(logged, now_ms.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.unlogged.fetch_sub(unlogged, Ordering::Relaxed);
            return Some(unlogged);
        }
        None
    }

    /// Whether a fault was seen within [`ACTIVE_FOR_MS`] before `now_ms`: the node is
    /// short of a local resource now.
    pub fn active(&self, now_ms: u64) -> bool {
        let last = self.last_ms.load(Ordering::Relaxed);
        last != 0 && now_ms.saturating_sub(last) < ACTIVE_FOR_MS
    }

    /// Faults seen since start.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_while_faults_are_recent_then_clears_by_itself() {
        let f = LocalFaults::default();
        assert!(!f.active(1_000));
        f.record(1_000);
        assert!(f.active(1_000));
        assert!(f.active(1_000 + ACTIVE_FOR_MS - 1));
        assert!(!f.active(1_000 + ACTIVE_FOR_MS));
        assert_eq!(f.total(), 1);
    }

    #[test]
    fn logs_at_most_once_per_period_with_the_count_of_the_rest() {
        let f = LocalFaults::default();
        assert_eq!(f.record(5_000), Some(1));
        for t in 1..=9 {
            assert_eq!(f.record(5_000 + t * 100), None);
        }
        assert_eq!(f.record(5_000 + LOG_EVERY_MS), Some(10));
        assert_eq!(f.record(5_000 + LOG_EVERY_MS + 1), None);
        assert_eq!(f.total(), 12);
    }
}
