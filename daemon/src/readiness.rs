//! Readiness latches: each subsystem releases its latch once it is up; `/v1/ready`
//! answers 200 when all are released.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A set of named latches.
#[derive(Clone, Debug, Default)]
pub struct Readiness {
    latches: Arc<Vec<(&'static str, AtomicBool)>>,
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
    }
}
