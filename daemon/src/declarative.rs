//! Declarative registrations (`--worker`, config): re-registered after an eviction with
//! a backoff from one minute to one hour (SPEC S7). Pure bookkeeping; the caller does
//! the registering.

use crate::lifecycle::eviction::backoff;
use probemesh_gossip::model::{Status, WorkerId, WorkerUrl};
use std::collections::HashMap;
use tokio::time::Instant;

/// Tracks which declarative workers are missing and when to register them again.
#[derive(Debug)]
pub struct Reasserter {
    urls: Vec<(WorkerId, WorkerUrl)>,
    /// When a missing worker is due to be registered again.
    due: HashMap<WorkerId, Instant>,
    /// Re-registrations since the worker was last seen ready.
    attempts: HashMap<WorkerId, u32>,
}

impl Reasserter {
    /// Tracks `urls`.
    pub fn new(urls: &[WorkerUrl]) -> Reasserter {
        Reasserter {
            urls: urls.iter().map(|u| (u.id(), u.clone())).collect(),
            due: HashMap::new(),
            attempts: HashMap::new(),
        }
    }

    /// The declarative URLs.
    pub fn urls(&self) -> impl Iterator<Item = &WorkerUrl> {
        self.urls.iter().map(|(_, u)| u)
    }

    /// The URLs to register now. `status` looks a worker up in the local view.
    /// A worker seen missing gets a due time `backoff(attempts)` later; a worker seen
    /// ready resets its attempts.
    pub fn due(
        &mut self,
        now: Instant,
        status: impl Fn(&WorkerId) -> Option<Status>,
    ) -> Vec<WorkerUrl> {
        let mut out = Vec::new();
        for (id, url) in &self.urls {
            match status(id) {
                Some(s) => {
                    self.due.remove(id);
                    if s == Status::Ready {
                        self.attempts.remove(id);
                    }
                }
                None => match self.due.get(id) {
                    Some(at) if *at <= now => {
                        self.due.remove(id);
                        out.push(url.clone());
                    }
                    Some(_) => {}
                    None => {
                        let a = self.attempts.entry(id.clone()).or_insert(0);
                        self.due.insert(id.clone(), now + backoff(*a));
                        *a = a.saturating_add(1);
                    }
                },
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn evicted_workers_come_back_after_a_growing_backoff() {
        let url = WorkerUrl::parse("http://w:1").unwrap();
        let mut r = Reasserter::new(std::slice::from_ref(&url));
        let t0 = Instant::now();
        let gone = |_: &WorkerId| None;
        assert!(r.due(t0, gone).is_empty(), "first sighting only schedules");
        assert!(r.due(t0 + Duration::from_secs(59), gone).is_empty());
        assert_eq!(r.due(t0 + Duration::from_secs(60), gone), vec![url.clone()]);
        // Registered again, failed again, evicted again: now two minutes.
        let t1 = t0 + Duration::from_secs(100);
        assert!(r.due(t1, |_| Some(Status::Pending)).is_empty());
        assert!(r.due(t1, gone).is_empty());
        assert!(r.due(t1 + Duration::from_secs(119), gone).is_empty());
        assert_eq!(r.due(t1 + Duration::from_secs(120), gone).len(), 1);
        // Once ready, the backoff starts over at one minute.
        let t2 = t1 + Duration::from_secs(500);
        r.due(t2, |_| Some(Status::Ready));
        r.due(t2, gone);
        assert_eq!(r.due(t2 + Duration::from_secs(60), gone).len(), 1);
    }
}
