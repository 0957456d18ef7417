//! Pure probe scheduling: what is due at `now`, with at most one pending task per worker.
//!
//! Pushing a task for a worker supersedes the one it had, so a PATCH, a retry and a
//! finished probe can never make a worker be probed twice as often. Superseded entries
//! stay in the heap and are skipped when they surface.

use probemesh_gossip::model::WorkerId;
use rand::Rng;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Duration;
use tokio::time::Instant;

/// What to do when a task comes due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    /// Probe the worker.
    Probe,
    /// Start a fresh pending cycle for a locally failed worker (SPEC S6b).
    Retry,
}

/// A task that came due.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Due {
    /// The worker.
    pub id: WorkerId,
    /// The generation the task was scheduled for.
    pub generation: u64,
    /// What to do.
    pub task: Task,
}

/// The pending tasks, ordered by time.
#[derive(Debug, Default)]
pub struct Schedule {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    tasks: HashMap<u64, Due>,
    current: HashMap<WorkerId, u64>,
    next_token: u64,
}

impl Schedule {
    /// Schedules `due` at `at`, replacing the worker's pending task if it had one.
    pub fn push(&mut self, due: Due, at: Instant) {
        let token = self.next_token;
        self.next_token += 1;
        if let Some(old) = self.current.insert(due.id.clone(), token) {
            self.tasks.remove(&old);
        }
        self.tasks.insert(token, due);
        self.heap.push(Reverse((at, token)));
    }

    /// Drops the worker's pending task.
    pub fn cancel(&mut self, id: &WorkerId) {
        if let Some(token) = self.current.remove(id) {
            self.tasks.remove(&token);
        }
    }

    /// When the earliest live task is due.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, token))) = self.heap.peek().copied() {
            if self.tasks.contains_key(&token) {
                return Some(at);
            }
            self.heap.pop();
        }
        None
    }

    /// Removes and returns every task due at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Vec<Due> {
        let mut out = Vec::new();
        while let Some(Reverse((at, token))) = self.heap.peek().copied() {
            if at > now {
                break;
            }
            self.heap.pop();
            if let Some(due) = self.tasks.remove(&token) {
                if self.current.get(&due.id) == Some(&token) {
                    self.current.remove(&due.id);
                }
                out.push(due);
            }
        }
        out
    }

    /// Workers with a pending task.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether no task is pending.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

/// Delay before the first probe of a newly known worker: almost at once, with a little
/// jitter so that thousands of workers loaded at start-up do not fire in one instant.
pub fn first_delay(interval: Duration, rng: &mut impl Rng) -> Duration {
    let cap = (interval / 5).min(Duration::from_millis(200));
    cap.mul_f64(rng.random::<f64>())
}

/// Delay until the next probe: the interval ±10%, so that workers drift apart instead
/// of being probed in lock-step.
pub fn next_delay(interval: Duration, rng: &mut impl Rng) -> Duration {
    interval.mul_f64(rng.random_range(0.9..=1.1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use probemesh_gossip::model::WorkerUrl;
    use rand::SeedableRng;

    fn id(n: u16) -> WorkerId {
        WorkerUrl::parse(&format!("http://h:{n}")).unwrap().id()
    }

    fn due(n: u16) -> Due {
        Due {
            id: id(n),
            generation: 1,
            task: Task::Probe,
        }
    }

    #[test]
    fn pops_in_time_order_and_only_what_is_due() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.push(due(2), t0 + Duration::from_secs(2));
        s.push(due(1), t0 + Duration::from_secs(1));
        s.push(due(3), t0 + Duration::from_secs(3));
        assert_eq!(s.next_deadline(), Some(t0 + Duration::from_secs(1)));
        let popped = s.pop_due(t0 + Duration::from_secs(2));
        assert_eq!(popped, vec![due(1), due(2)]);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn a_new_task_supersedes_the_old_one() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.push(due(1), t0 + Duration::from_secs(10));
        s.push(
            Due {
                task: Task::Retry,
                ..due(1)
            },
            t0 + Duration::from_secs(1),
        );
        assert_eq!(s.len(), 1);
        let popped = s.pop_due(t0 + Duration::from_secs(20));
        assert_eq!(popped.len(), 1);
        assert_eq!(popped[0].task, Task::Retry);
        assert!(s.is_empty());
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn cancel_removes_the_pending_task() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.push(due(1), t0);
        s.cancel(&id(1));
        assert!(s.pop_due(t0 + Duration::from_secs(1)).is_empty());
    }

    #[test]
    fn jitter_stays_in_bounds_and_spreads() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let iv = Duration::from_secs(5);
        let firsts: Vec<Duration> = (0..1000).map(|_| first_delay(iv, &mut rng)).collect();
        assert!(firsts.iter().all(|d| *d <= Duration::from_millis(200)));
        let nexts: Vec<Duration> = (0..1000).map(|_| next_delay(iv, &mut rng)).collect();
        assert!(
            nexts
                .iter()
                .all(|d| *d >= Duration::from_millis(4500) && *d <= Duration::from_millis(5500))
        );
        let distinct: std::collections::HashSet<_> = nexts.iter().collect();
        assert!(distinct.len() > 900, "not spread: {}", distinct.len());
    }
}
