//! One member instance's key-value state as one node knows it, mirroring chitchat
//! 0.11's `NodeState`: versioned keys (deleted keys stay as versioned tombstones until
//! they are garbage-collected), the highest version seen, the version up to which
//! deletions were forgotten, and the member's heartbeat.
//!
//! Strings are `Arc<str>` shared by every replica that holds the same write, so a
//! simulation of N nodes holds each key and value once, not N times (the per-entry cost
//! that remains is the maps' own; see docs/scale.md).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// One key's latest write: its version and its value (`None`: deleted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned {
    /// The member's version counter when the write was made.
    pub version: u64,
    /// The value, or `None` for a deletion (a versioned tombstone).
    pub value: Option<Arc<str>>,
}

/// A member instance's state as one node holds it.
#[derive(Clone, Debug, Default)]
pub struct Replica {
    /// The member's heartbeat as last seen (0: never).
    pub heartbeat: u64,
    /// Highest version applied.
    pub max_version: u64,
    /// Deletions at or below this version were forgotten.
    pub last_gc_version: u64,
    keys: BTreeMap<Arc<str>, Versioned>,
    /// Version → key, for the scans of what is newer than a peer's floor.
    by_version: BTreeMap<u64, Arc<str>>,
    /// Version of each deletion → when this replica learned it (for the GC).
    deleted_since: BTreeMap<u64, Instant>,
}

/// One key-value change carried by a delta.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvChange {
    /// The key.
    pub key: Arc<str>,
    /// The write.
    pub write: Versioned,
}

impl Replica {
    /// The live (not deleted) key-values in key order, as chitchat's `key_values()`.
    pub fn key_values(&self) -> impl Iterator<Item = (&str, &str)> {
        self.keys
            .iter()
            .filter_map(|(k, v)| v.value.as_deref().map(|v| (k.as_ref(), v)))
    }

    /// How many live keys (chitchat's `num_key_values`).
    pub fn num_key_values(&self) -> usize {
        self.key_values().count()
    }

    /// How many entries, deleted ones included (memory accounting).
    pub fn entries(&self) -> usize {
        self.keys.len()
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.keys.get(key).and_then(|v| v.value.as_deref())
    }

    /// Writes made after `floor`, in version order (deleted keys included).
    pub fn stale_since(&self, floor: u64) -> impl Iterator<Item = KvChange> + '_ {
        self.by_version
            .range(floor.saturating_add(1)..)
            .filter_map(|(_, key)| {
                self.keys.get(key).map(|w| KvChange {
                    key: Arc::clone(key),
                    write: w.clone(),
                })
            })
    }

    /// How many writes were made after `floor`.
    pub fn stale_count(&self, floor: u64) -> usize {
        self.by_version.range(floor.saturating_add(1)..).count()
    }

    /// The owner sets `key` (chitchat's `NodeState::set`: an unchanged value is not a
    /// new version). Returns whether anything changed.
    pub fn set_own(&mut self, key: Arc<str>, value: Arc<str>, now: Instant) -> bool {
        if let Some(old) = self.keys.get(&key)
            && old.value.as_deref() == Some(&*value)
        {
            return false;
        }
        let version = self.max_version + 1;
        self.write(
            key,
            Versioned {
                version,
                value: Some(value),
            },
            now,
        );
        true
    }

    /// The owner deletes `key` (a versioned tombstone; nothing if the key is absent).
    pub fn delete_own(&mut self, key: &str, now: Instant) -> bool {
        let Some((k, _)) = self.keys.get_key_value(key) else {
            return false;
        };
        let k = Arc::clone(k);
        let version = self.max_version + 1;
        self.write(
            k,
            Versioned {
                version,
                value: None,
            },
            now,
        );
        true
    }

    /// Stores `write` under `key` if it is newer than what is held.
    fn write(&mut self, key: Arc<str>, write: Versioned, now: Instant) {
        self.max_version = self.max_version.max(write.version);
        if let Some(old) = self.keys.get(&key) {
            if old.version >= write.version {
                return;
            }
            self.by_version.remove(&old.version);
            self.deleted_since.remove(&old.version);
        }
        self.by_version.insert(write.version, Arc::clone(&key));
        if write.value.is_none() {
            self.deleted_since.insert(write.version, now);
        }
        self.keys.insert(key, write);
    }

    /// Applies a delta for this member (chitchat's `NodeState::apply_delta`): `from` is
    /// the floor the sender computed it from, `gc` the sender's `last_gc_version`,
    /// `max` the delta's max version. Returns `(applied, live_keys_changed)`.
    pub fn apply_delta(
        &mut self,
        from: u64,
        gc: u64,
        max: u64,
        kvs: Vec<KvChange>,
        now: Instant,
    ) -> (bool, bool) {
        if from > self.max_version {
            return (false, false); // from the future (we were reset)
        }
        let compatible = gc <= self.last_gc_version || gc <= self.max_version;
        if !compatible {
            if from != 0 {
                return (false, false);
            }
            // A reset: start over from the sender's GC point.
            // chitchat's `reset_node` starts a new state: the heartbeat too.
            *self = Replica {
                last_gc_version: gc,
                ..Replica::default()
            };
        } else if self.max_version >= max {
            return (false, false);
        }
        let current = self.max_version;
        let mut live_changed = false;
        for kv in kvs {
            if kv.write.version <= current {
                continue;
            }
            if kv.write.value.is_none() && kv.write.version <= self.last_gc_version {
                continue;
            }
            live_changed |= kv.write.value.is_some();
            self.write(kv.key, kv.write, now);
        }
        self.max_version = self.max_version.max(max);
        (true, live_changed)
    }

    /// Forgets deletions older than `grace` (chitchat's `gc_keys_marked_for_deletion`).
    pub fn gc_deleted(&mut self, grace: Duration, now: Instant) {
        let due: Vec<u64> = self
            .deleted_since
            .iter()
            .filter(|(_, since)| now >= **since + grace)
            .map(|(v, _)| *v)
            .collect();
        for version in due {
            self.deleted_since.remove(&version);
            if let Some(key) = self.by_version.remove(&version) {
                self.keys.remove(&key);
            }
            self.last_gc_version = self.last_gc_version.max(version);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Arc<str> {
        Arc::from(x)
    }

    #[tokio::test(start_paused = true)]
    async fn own_writes_bump_versions_and_deltas_carry_what_is_newer() {
        let now = Instant::now();
        let mut owner = Replica::default();
        assert!(owner.set_own(s("a"), s("1"), now));
        assert!(
            !owner.set_own(s("a"), s("1"), now),
            "same value, no version"
        );
        assert!(owner.set_own(s("b"), s("2"), now));
        assert!(owner.set_own(s("a"), s("3"), now));
        assert_eq!(owner.max_version, 3);
        let stale: Vec<_> = owner.stale_since(1).map(|kv| kv.write.version).collect();
        assert_eq!(stale, vec![2, 3]);

        let mut copy = Replica::default();
        let kvs: Vec<_> = owner.stale_since(0).collect();
        assert_eq!(copy.apply_delta(0, 0, 3, kvs, now), (true, true));
        assert_eq!(copy.get("a"), Some("3"));
        assert!(owner.delete_own("a", now));
        let kvs: Vec<_> = owner.stale_since(copy.max_version).collect();
        assert_eq!(copy.apply_delta(3, 0, 4, kvs, now), (true, false));
        assert_eq!(copy.get("a"), None);
        assert_eq!(copy.key_values().count(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn forgotten_deletions_force_a_reset_of_a_peer_that_fell_behind() {
        let now = Instant::now();
        let mut owner = Replica::default();
        owner.set_own(s("a"), s("1"), now);
        owner.set_own(s("b"), s("1"), now);
        owner.delete_own("a", now);
        owner.gc_deleted(Duration::from_secs(1), now + Duration::from_secs(2));
        assert_eq!(owner.last_gc_version, 3);
        assert_eq!(owner.entries(), 1);
        // A peer that knew version 1 gets a full state from 0 after a reset.
        let mut behind = Replica::default();
        behind.set_own(s("a"), s("1"), now);
        let kvs: Vec<_> = owner.stale_since(0).collect();
        assert_eq!(behind.apply_delta(0, 3, 3, kvs, now), (true, true));
        assert_eq!(behind.get("a"), None);
        assert_eq!(behind.get("b"), Some("1"));
        assert_eq!(behind.last_gc_version, 3);
    }
}
