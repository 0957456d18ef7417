//! One member's published records, decoded and validated: what a snapshot merges.

use super::Verdict;
use crate::keys::{
    self, DEGRADED_KEY, DRAIN_PREFIX, REG_PREFIX, STATUS_PREFIX, TOMB_PREFIX, VERDICTS_PREFIX,
    VERSION_KEY,
};
use crate::model::{Drain, Registration, Status, Tombstone, WorkerId};
use std::collections::HashMap;
use std::sync::Arc;

/// A registration or tombstone a member publishes that was dropped: it does not
/// decode, or fails validation (SPEC S11). Kept so the daemon can count and log each
/// one once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The chitchat key, cut to [`MAX_KEY_SHOWN`] characters.
    pub key: String,
    /// A hash of the key and the value: a new value under the same key is a new record.
    pub fingerprint: u64,
    /// A bounded label for metrics ([`keys::ValueError::reason`]).
    pub reason: &'static str,
    /// Why, for the log (bounded; input in it is escaped).
    pub error: String,
}

/// Longest key quoted in a [`Rejection`].
pub const MAX_KEY_SHOWN: usize = 64;

impl Rejection {
    fn new(key: &str, value: &str, e: &keys::ValueError) -> Rejection {
        use std::hash::{Hash, Hasher};
        // DefaultHasher::new() has fixed keys: the same record hashes the same in every
        // snapshot, which is all the daemon's "already reported" set needs.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        value.hash(&mut h);
        Rejection {
            key: key
                .chars()
                .take(MAX_KEY_SHOWN)
                .flat_map(char::escape_debug)
                .collect(),
            fingerprint: h.finish(),
            reason: e.reason(),
            error: e.to_string(),
        }
    }
}

/// One member's records, decoded once per version of its state.
#[derive(Debug, Default)]
pub struct NodeRecords {
    pub(super) registrations: Vec<Arc<Registration>>,
    pub(super) tombstones: Vec<Tombstone>,
    pub(super) drains: Vec<Drain>,
    pub(super) verdicts: HashMap<WorkerId, Verdict>,
    pub(super) malformed: u64,
    pub(super) rejected: Vec<Rejection>,
    pub(super) newer_format: bool,
    pub(super) version: Option<String>,
    /// The member's degraded reason, while it says it is degraded (SPEC S12).
    pub(super) degraded: Option<String>,
}

impl NodeRecords {
    pub(super) fn decode<'a>(key_values: impl Iterator<Item = (&'a str, &'a str)>) -> NodeRecords {
        let mut r = NodeRecords::default();
        for (key, value) in key_values {
            if key == DEGRADED_KEY {
                // A peer's text: bounded, and shown escaped wherever it is printed.
                r.degraded = Some(value.chars().take(keys::MAX_DEGRADED_REASON).collect());
            } else if key == VERSION_KEY {
                r.version = Some(value.to_string());
                continue;
            }
            if let Some(id) = key.strip_prefix(REG_PREFIX) {
                match keys::decode_registration(id, value) {
                    Ok(reg) => r.registrations.push(Arc::new(reg)),
                    Err(e) => r.note_bad(key, value, &e),
                }
            } else if let Some(id) = key.strip_prefix(TOMB_PREFIX) {
                match keys::decode_tombstone(id, value) {
                    Ok(t) => r.tombstones.push(t),
                    Err(e) => r.note_bad(key, value, &e),
                }
            } else if let Some(id) = key.strip_prefix(DRAIN_PREFIX) {
                match keys::decode_drain(id, value) {
                    Ok(d) => r.drains.push(d),
                    Err(e) => r.note_bad(key, value, &e),
                }
            } else if let Some(prefix) = key.strip_prefix(VERDICTS_PREFIX) {
                let (verdicts, dropped) = keys::decode_verdict_bucket(prefix, value);
                r.malformed += dropped;
                for (id, generation, status, since_ms) in verdicts {
                    r.add_verdict(id, generation, status, since_ms);
                }
            } else if let Some(id) = key.strip_prefix(STATUS_PREFIX) {
                match (WorkerId::parse(id), keys::decode_status(value)) {
                    (Some(wid), Ok((generation, status, since_ms))) => {
                        r.add_verdict(wid, generation, status, since_ms);
                    }
                    _ => r.malformed += 1,
                }
            }
        }
        r
    }

    /// Keeps the newest verdict on `id`: a member re-cutting its buckets (or one still
    /// publishing the old layout) is briefly seen with a verdict in two keys.
    fn add_verdict(&mut self, id: WorkerId, generation: u64, status: Status, since_ms: u64) {
        let v = Verdict {
            generation,
            status,
            since_ms,
        };
        match self.verdicts.entry(id) {
            std::collections::hash_map::Entry::Occupied(mut old) => {
                if (v.generation, v.since_ms) > (old.get().generation, old.get().since_ms) {
                    old.insert(v);
                }
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(v);
            }
        }
    }

    fn note_bad(&mut self, key: &str, value: &str, e: &keys::ValueError) {
        self.malformed += 1;
        self.rejected.push(Rejection::new(key, value, e));
        if matches!(
            e,
            keys::ValueError::Codec(crate::codec::CodecError::NewerMajor { .. })
        ) {
            self.newer_format = true;
        }
    }
}
