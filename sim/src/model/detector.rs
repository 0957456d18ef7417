//! The phi-accrual failure detector of chitchat 0.11 (`failure_detector.rs`), with the
//! configuration the daemon gives it ([`probemesh_gossip::node::failure_detector`]):
//! a member is live while the time since its heartbeat last advanced, divided by the
//! smoothed mean of the gaps between advances, stays at or under the threshold (8).
//! Gaps longer than `max_interval` (10 rounds or 2 s) are not sampled; the mean starts
//! from `initial_interval` with a weight of 5 samples. A member with fewer than two
//! observed advances has no phi and counts as dead. Dead members are forgotten after
//! the grace period; from half of it on they are left out of digests and deltas.
//!
//! Kept in `BTreeMap`s and a `VecDeque` per member, so that nothing here depends on
//! hash order.

use chitchat::{ChitchatId, FailureDetectorConfig};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
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
    windows: BTreeMap<ChitchatId, Window>,
    live: BTreeSet<ChitchatId>,
    dead: BTreeMap<ChitchatId, Instant>,
}

impl Detector {
    /// A detector with `config`.
    pub fn new(config: FailureDetectorConfig) -> Detector {
        Detector {
            config,
            windows: BTreeMap::new(),
            live: BTreeSet::new(),
            dead: BTreeMap::new(),
        }
    }

    /// The member's heartbeat advanced (chitchat's `report_heartbeat`).
    pub fn report(&mut self, id: &ChitchatId, now: Instant) {
        let capacity = self.config.sampling_window_size.max(1);
        let max_interval = self.config.max_interval;
        let w = self.windows.entry(id.clone()).or_default();
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

    fn phi(&self, id: &ChitchatId, now: Instant) -> Option<f64> {
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
    pub fn update(&mut self, id: &ChitchatId, now: Instant) {
        let alive = self
            .phi(id, now)
            .is_some_and(|phi| phi <= self.config.phi_threshold);
        if alive {
            self.live.insert(id.clone());
            self.dead.remove(id);
        } else {
            self.live.remove(id);
            self.dead.entry(id.clone()).or_insert(now);
            if let Some(w) = self.windows.get_mut(id) {
                w.intervals.clear();
                w.sum = 0.0;
            }
        }
    }

    /// Members dead for the whole grace period: removed here and returned, for the
    /// caller to forget their state.
    pub fn garbage_collect(&mut self, now: Instant) -> Vec<ChitchatId> {
        let grace = self.config.dead_node_grace_period;
        let gone: Vec<ChitchatId> = self
            .dead
            .iter()
            .filter(|(_, died)| now >= **died + grace)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            self.dead.remove(id);
            self.windows.remove(id);
        }
        gone
    }

    /// Whether `id` is live.
    pub fn is_live(&self, id: &ChitchatId) -> bool {
        self.live.contains(id)
    }

    /// The live members (this node excluded).
    pub fn live(&self) -> impl Iterator<Item = &ChitchatId> {
        self.live.iter()
    }

    /// The dead members.
    pub fn dead(&self) -> impl Iterator<Item = &ChitchatId> {
        self.dead.keys()
    }

    /// Dead members past half of the grace period: left out of digests and deltas.
    pub fn scheduled_for_deletion(&self, now: Instant) -> BTreeSet<ChitchatId> {
        let half = self.config.dead_node_grace_period.div_f32(2.0);
        self.dead
            .iter()
            .filter(|(_, died)| **died + half < now)
            .map(|(id, _)| id.clone())
            .collect()
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

    fn id() -> ChitchatId {
        ChitchatId::new("n".into(), 1, ([127, 0, 0, 1], 1).into())
    }

    #[tokio::test(start_paused = true)]
    async fn live_after_two_gaps_dead_after_silence_forgotten_after_grace() {
        let interval = Duration::from_millis(100);
        let grace = Duration::from_secs(10);
        let mut d = Detector::new(probemesh_gossip::node::failure_detector(interval, grace));
        let t0 = Instant::now();
        d.report(&id(), t0);
        d.update(&id(), t0);
        assert!(!d.is_live(&id()), "one heartbeat gives no phi");
        for k in 1..20 {
            d.report(&id(), t0 + interval * k);
        }
        let t = t0 + interval * 19;
        d.update(&id(), t);
        assert!(d.is_live(&id()));
        // phi = silence / mean; the mean is pulled towards the prior (2 intervals).
        d.update(&id(), t + Duration::from_millis(900));
        assert!(d.is_live(&id()), "a short silence is tolerated");
        d.update(&id(), t + Duration::from_secs(3));
        assert!(!d.is_live(&id()), "a long silence is death");
        assert!(d.garbage_collect(t + Duration::from_secs(5)).is_empty());
        assert!(
            !d.scheduled_for_deletion(t + Duration::from_secs(9))
                .is_empty()
        );
        assert_eq!(d.garbage_collect(t + Duration::from_secs(14)), vec![id()]);
    }
}
