//! A bounded memory of what was already reported, so that a record seen in every sync
//! round is counted and logged once, not once per round.
//!
//! Keys are 64-bit hashes (of the member, the key and the value of a record): a
//! collision only costs a missing log line. When full, the oldest key is forgotten,
//! so memory stays at [`ReportedOnce::capacity`] keys whatever peers publish; a record
//! forgotten that way is reported again if it is still there, which takes more distinct
//! bad records than the capacity.

use std::collections::{HashSet, VecDeque};
use std::hash::{Hash, Hasher};

/// Keys remembered by default: 4,096 keys are 32 KiB plus the set's overhead.
pub const DEFAULT_CAPACITY: usize = 4096;

/// Remembers up to `capacity` keys, forgetting the oldest first.
#[derive(Debug)]
pub struct ReportedOnce {
    seen: HashSet<u64>,
    order: VecDeque<u64>,
    capacity: usize,
}

impl Default for ReportedOnce {
    fn default() -> Self {
        ReportedOnce::with_capacity(DEFAULT_CAPACITY)
    }
}

impl ReportedOnce {
    /// An empty memory of `capacity` keys (at least 1).
    pub fn with_capacity(capacity: usize) -> ReportedOnce {
        ReportedOnce {
            seen: HashSet::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// The most keys held.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Records `key`; true when it was not remembered yet (report it now).
    pub fn first_time(&mut self, key: impl Hash) -> bool {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        let k = h.finish();
        if !self.seen.insert(k) {
            return false;
        }
        self.order.push_back(k);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_is_reported_once_and_memory_is_bounded() {
        let mut r = ReportedOnce::with_capacity(3);
        assert!(r.first_time(("a", 1)));
        assert!(!r.first_time(("a", 1)));
        assert!(r.first_time(("a", 2)));
        for i in 0..100u32 {
            r.first_time(i);
            assert!(r.len() <= 3);
        }
        // The oldest were forgotten: "a" is new again.
        assert!(r.first_time(("a", 1)));
        assert_eq!(r.capacity(), 3);
    }
}
