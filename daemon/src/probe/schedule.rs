//! Pure probe scheduling: what is due at `now`, with at most one pending task per worker.
//!
//! Pushing a task for a worker supersedes the one it had, so a PATCH, a retry and a
//! finished probe can never make a worker be probed twice as often. Superseded entries
//! stay in the heap and are skipped when they surface.
//!
//! Each task has a deadline and a slack ([`slack`]): it may start up to that much
//! before its deadline. The engine wakes at the earliest deadline and starts every
//! task whose slack has begun, so that 2,000 probes a second start in about ten
//! batches instead of 2,000 wake-ups (each a context switch and an `epoll_wait`,
//! which cost more than the probe; `docs/benchmarks.md`). No task starts after its
//! deadline or before its slack.

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

/// Most slack a task gets.
pub const MAX_SLACK: Duration = Duration::from_millis(100);

/// The slack of a task that recurs every `interval`: 2% of it, at most [`MAX_SLACK`]
/// (100 ms at the default 5 s; 2 ms at 100 ms). The ±10% interval jitter is five times
/// as wide.
pub fn slack(interval: Duration) -> Duration {
    (interval / 50).min(MAX_SLACK)
}

/// The pending tasks, ordered by deadline.
#[derive(Debug, Default)]
pub struct Schedule {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Token -> (task, slack).
    tasks: HashMap<u64, (Due, Duration)>,
    current: HashMap<WorkerId, u64>,
    next_token: u64,
}

impl Schedule {
    /// Schedules `due` at `at` exactly (no slack), replacing the worker's pending task
    /// if it had one.
    pub fn push(&mut self, due: Due, at: Instant) {
        self.push_with_slack(due, at, Duration::ZERO);
    }

    /// Schedules `due` for `at` at the latest and `at - slack` at the earliest,
    /// replacing the worker's pending task if it had one.
    pub fn push_with_slack(&mut self, due: Due, at: Instant, slack: Duration) {
        let token = self.next_token;
        self.next_token += 1;
        if let Some(old) = self.current.insert(due.id.clone(), token) {
            self.tasks.remove(&old);
        }
        self.tasks.insert(token, (due, slack.min(MAX_SLACK)));
        self.heap.push(Reverse((at, token)));
    }

    /// Drops the worker's pending task.
    pub fn cancel(&mut self, id: &WorkerId) {
        if let Some(token) = self.current.remove(id) {
            self.tasks.remove(&token);
        }
    }

    /// The earliest deadline of a live task.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, token))) = self.heap.peek().copied() {
            if self.tasks.contains_key(&token) {
                return Some(at);
            }
            self.heap.pop();
        }
        None
    }

    /// Removes and returns every task whose slack has begun at `now` (deadline minus
    /// slack at or before `now`), in deadline order.
    pub fn pop_due(&mut self, now: Instant) -> Vec<Due> {
        let mut out = Vec::new();
        let mut not_yet = Vec::new();
        while let Some(Reverse((at, token))) = self.heap.peek().copied() {
            if at > now + MAX_SLACK {
                break;
            }
            self.heap.pop();
            let Some((_, slack)) = self.tasks.get(&token) else {
                continue; // superseded or cancelled
            };
            if at.checked_sub(*slack).is_some_and(|start| start > now) {
                not_yet.push(Reverse((at, token)));
                continue;
            }
            if let Some((due, _)) = self.tasks.remove(&token) {
                if self.current.get(&due.id) == Some(&token) {
                    self.current.remove(&due.id);
                }
                out.push(due);
            }
        }
        self.heap.extend(not_yet);
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
    fn tasks_start_within_their_slack_never_before_it_nor_after_the_deadline() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut s = Schedule::default();
        // Deadlines 200, 250, 280 and 400 ms; slack 100 ms, except 250 with 10 ms.
        s.push_with_slack(due(1), t0 + ms(200), ms(100));
        s.push_with_slack(due(2), t0 + ms(250), ms(10));
        s.push_with_slack(due(3), t0 + ms(280), ms(100));
        s.push_with_slack(due(4), t0 + ms(400), ms(100));
        assert_eq!(s.next_deadline(), Some(t0 + ms(200)));
        assert!(s.pop_due(t0 + ms(50)).is_empty(), "before every slack");
        // At the first deadline: 1, and 3 whose slack began at 180 ms; not 2 (240 ms).
        assert_eq!(s.pop_due(t0 + ms(200)), vec![due(1), due(3)]);
        assert_eq!(s.next_deadline(), Some(t0 + ms(250)));
        assert_eq!(s.pop_due(t0 + ms(250)), vec![due(2)]);
        assert!(s.pop_due(t0 + ms(299)).is_empty());
        assert_eq!(s.pop_due(t0 + ms(300)), vec![due(4)], "slack began at 300");
        assert!(s.is_empty());
        assert_eq!(slack(Duration::from_secs(5)), ms(100));
        assert_eq!(slack(ms(100)), ms(2));
        assert_eq!(slack(Duration::from_secs(600)), MAX_SLACK);
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
