//! Where the node reads the time of day. Injected so that every rule that depends on
//! wall-clock time (status timestamps, tombstone TTL, the change index's start) runs in
//! virtual time under simulation.
//!
//! Monotonic waits (probe intervals, backoff, adoption delay) already use
//! `tokio::time`, which tests pause and advance; [`Clock::Virtual`] ties the time of
//! day to that same clock, so a paused test moves both together.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of the time of day.
#[derive(Clone, Debug)]
pub enum Clock {
    /// The system's real-time clock (the agent).
    System,
    /// `epoch` plus the `tokio::time` elapsed since `origin` (simulations and
    /// paused-time tests: deterministic, and advanced by `tokio::time::advance`).
    Virtual {
        /// The time of day at `origin`.
        epoch: SystemTime,
        /// The tokio instant at which the clock read `epoch`.
        origin: tokio::time::Instant,
    },
}

impl Clock {
    /// A virtual clock reading `epoch` now, moving with `tokio::time`.
    pub fn virtual_at(epoch: SystemTime) -> Clock {
        Clock::Virtual {
            epoch,
            origin: tokio::time::Instant::now(),
        }
    }

    /// A virtual clock starting at a fixed date (2026-01-01T00:00:00Z), so that two
    /// runs of one simulation see the same timestamps.
    pub fn virtual_fixed() -> Clock {
        Clock::virtual_at(UNIX_EPOCH + Duration::from_secs(1_767_225_600))
    }

    /// The time of day.
    pub fn now(&self) -> SystemTime {
        match self {
            Clock::System => SystemTime::now(),
            Clock::Virtual { epoch, origin } => *epoch + origin.elapsed(),
        }
    }

    /// The time of day in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        unix_ms(self.now())
    }

    /// The time of day in microseconds since the Unix epoch (at least 1): the start of
    /// counters that must grow across restarts (view index, event ids).
    pub fn now_us(&self) -> u64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX / 2))
            .max(1)
    }
}

/// Milliseconds since the Unix epoch (0 before it, saturating far after).
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_virtual_clock_moves_with_paused_tokio_time() {
        let c = Clock::virtual_fixed();
        let t0 = c.now_ms();
        assert_eq!(t0, 1_767_225_600_000);
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(c.now_ms() - t0, 90_000);
    }

    #[test]
    fn the_system_clock_is_after_2020() {
        assert!(Clock::System.now_ms() > 1_577_836_800_000);
        assert_eq!(unix_ms(UNIX_EPOCH - Duration::from_secs(1)), 0);
    }
}
