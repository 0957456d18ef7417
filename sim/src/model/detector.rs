//! The phi-accrual failure detector of chitchat 0.11 (`failure_detector.rs`), with the
//! configuration the daemon gives it ([`probemesh_gossip::node::failure_detector`]):
//! a member is live while the time since its heartbeat last advanced, divided by the
//! smoothed mean of the gaps between advances, stays at or under the threshold (8).
//! Gaps longer than `max_interval` (10 rounds or 2 s) are not sampled; the mean starts
//! from `initial_interval` with a weight of 5 samples. A member with fewer than two
//! observed advances has no phi and counts as dead. Dead members are forgotten after
//! the grace period; from half of it on they are left out of digests and deltas.
//!
//! Kept in [`ByMid`] maps and a `VecDeque` per member, so that nothing here depends on
//! hash order.

use super::Mid;
use super::bymid::ByMid;
use chitchat::FailureDetectorConfig;
use std::collections::VecDeque;
use tokio::time::Instant;

/// Prior weight of the additive smoothing (chitchat's constant).
const PRIOR_WEIGHT: f64 = 5.0;

/// Heartbeat arrival gaps of one member.
#[derive(Debug, Default)]
struct Window {
    intervals: VecDeque<f64>,
    sum: f64,
    last: Option<Instant>,
}

/// One node's failure detector.
#[derive(Debug)]
pub struct Detector {
    config: FailureDetectorConfig,
    windows: ByMid<Window>,
    live: ByMid<()>,
    dead: ByMid<Instant>,
}

impl Detector {
    /// A detector with `config`.
    pub fn new(config: FailureDetectorConfig) -> Detector {
        Detector {
            config,
            windows: ByMid::default(),
            live: ByMid::default(),
            dead: ByMid::default(),
        }
    }

    /// The member's heartbeat advanced (chitchat's `report_heartbeat`).
    pub fn report(&mut self, id: Mid, now: Instant) {
        let capacity = self.config.sampling_window_size.max(1);
        let max_interval = self.config.max_interval;
        let w = self.windows.entry_or_default(id);
        if let Some(last) = w.last {
            let gap = now.duration_since(last);
            if gap <= max_interval {
                if w.intervals.len() == capacity
                    && let Some(old) = w.intervals.pop_front()
                {
                    w.sum -= old;
                }
                let secs = gap.as_secs_f64();
                w.intervals.push_back(secs);
                w.sum += secs;
            }
        }
        w.last = Some(now);
    }

    fn phi(&self, id: Mid, now: Instant) -> Option<f64> {
        let w = self.windows.get(id)?;
        if w.intervals.is_empty() {
            return None;
        }
        let last = w.last?;
        let prior = self.config.initial_interval.as_secs_f64();
        let mean = (w.sum + PRIOR_WEIGHT * prior) / (w.intervals.len() as f64 + PRIOR_WEIGHT);
        Some(now.duration_since(last).as_secs_f64() / mean)
    }

    /// Re-evaluates one member (chitchat's `update_node_liveness`).
    pub fn update(&mut self, id: Mid, now: Instant) {
        let alive = self
            .phi(id, now)
            .is_some_and(|phi| phi <= self.config.phi_threshold);
        if alive {
            self.live.insert(id, ());
            self.dead.remove(id);
        } else {
            self.live.remove(id);
            self.dead.get_or_insert_with(id, || now);
            if let Some(w) = self.windows.get_mut(id) {
                w.intervals.clear();
                w.sum = 0.0;
            }
        }
    }

    /// Members dead for the whole grace period: removed here and returned, for the
    /// caller to forget their state.
    pub fn garbage_collect(&mut self, now: Instant) -> Vec<Mid> {
        let grace = self.config.dead_node_grace_period;
        let gone: Vec<Mid> = self
            .dead
            .iter()
            .filter(|(_, died)| now >= **died + grace)
            .map(|(id, _)| id)
            .collect();
        for id in &gone {
            self.dead.remove(*id);
            self.windows.remove(*id);
        }
        gone
    }

    /// Whether `id` is live.
    pub fn is_live(&self, id: Mid) -> bool {
        self.live.contains(id)
    }

    /// The live members (this node excluded).
    pub fn live(&self) -> impl Iterator<Item = Mid> + '_ {
        self.live.keys()
    }

    /// The dead members.
    pub fn dead(&self) -> impl Iterator<Item = Mid> + '_ {
        self.dead.keys()
    }

    /// Dead members past half of the grace period: left out of digests and deltas.
    pub fn scheduled_for_deletion(&self, now: Instant) -> ByMid<()> {
        let half = self.config.dead_node_grace_period.div_f32(2.0);
        let mut out = ByMid::default();
        if self.dead.is_empty() {
            return out;
        }
        for (id, died) in self.dead.iter() {
            if *died + half < now {
                out.insert(id, ());
            }
        }
        out
    }

    /// How many members have a sampling window (memory accounting).
    pub fn windows(&self) -> usize {
        self.windows.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn id() -> Mid {
        7
    }

    #[tokio::test(start_paused = true)]
    async fn live_after_two_gaps_dead_after_silence_forgotten_after_grace() {
        let interval = Duration::from_millis(100);
        let grace = Duration::from_secs(10);
        let mut d = Detector::new(probemesh_gossip::node::failure_detector(interval, grace));
        let t0 = Instant::now();
        d.report(id(), t0);
        d.update(id(), t0);
        assert!(!d.is_live(id()), "one heartbeat gives no phi");
        for k in 1..20 {
            d.report(id(), t0 + interval * k);
        }
        let t = t0 + interval * 19;
        d.update(id(), t);
        assert!(d.is_live(id()));
        // phi = silence / mean; the mean is pulled towards the prior (2 intervals).
        d.update(id(), t + Duration::from_millis(900));
        assert!(d.is_live(id()), "a short silence is tolerated");
        d.update(id(), t + Duration::from_secs(3));
        assert!(!d.is_live(id()), "a long silence is death");
        assert!(d.garbage_collect(t + Duration::from_secs(5)).is_empty());
        assert!(
            !d.scheduled_for_deletion(t + Duration::from_secs(9))
                .is_empty()
        );
        assert_eq!(d.garbage_collect(t + Duration::from_secs(14)), vec![id()]);
    }
}
