//! Readiness latches: each subsystem releases its latch once it is up; `/v1/ready`
//! answers 200 when all are released. A node can also be *refused* for good (another
//! process has its node id, SPEC S10): then it is never ready again in this run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A set of named latches.
#[derive(Clone, Debug, Default)]
pub struct Readiness {
    latches: Arc<Vec<(&'static str, AtomicBool)>>,
    refused: Arc<Mutex<Option<String>>>,
}

/// Releases one latch.
#[derive(Clone, Debug)]
pub struct Latch {
    readiness: Readiness,
    index: usize,
}

impl Readiness {
    /// Latches with these names, all held. Returns the set and one releaser per name.
    pub fn new(names: &[&'static str]) -> (Readiness, Vec<Latch>) {
        let r = Readiness {
            latches: Arc::new(names.iter().map(|n| (*n, AtomicBool::new(false))).collect()),
            refused: Arc::default(),
        };
        let latches = (0..names.len())
            .map(|index| Latch {
                readiness: r.clone(),
                index,
            })
            .collect();
        (r, latches)
    }

    /// Names of the latches still held.
    pub fn waiting(&self) -> Vec<&'static str> {
        self.latches
            .iter()
            .filter(|(_, up)| !up.load(Ordering::Acquire))
            .map(|(n, _)| *n)
            .collect()
    }

    /// Marks the node refused, with the reason `/v1/ready` gives. The first reason stays.
    pub fn refuse(&self, reason: String) {
        self.refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(reason);
    }

    /// Why the node was refused, if it was.
    pub fn refused(&self) -> Option<String> {
        self.refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Latch {
    /// Marks the subsystem as up.
    pub fn release(&self) {
        if let Some((_, up)) = self.readiness.latches.get(self.index) {
            up.store(true, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_latch_is_released() {
        let (r, latches) = Readiness::new(&["state", "admin"]);
        assert_eq!(r.waiting(), vec!["state", "admin"]);
        latches[1].release();
        assert_eq!(r.waiting(), vec!["state"]);
        latches[0].release();
        assert!(r.waiting().is_empty());
        assert_eq!(r.refused(), None);
        r.clone().refuse("first".into());
        r.refuse("second".into());
        assert_eq!(r.refused().as_deref(), Some("first"));
    }
}
