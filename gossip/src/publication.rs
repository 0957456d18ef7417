//! What a node publishes, as typed records, and the diff that turns it into chitchat
//! key changes. The daemon says *what* it wants published (its verdicts, the
//! registrations it advertises, the tombstones it holds); only this module knows the
//! key layout ([`crate::keys`]) and what was published last.

use crate::cluster::Verdict;
use crate::keys;
use crate::model::{Drain, Registration, Tombstone, WorkerId};
use std::collections::{BTreeMap, HashMap};

/// Everything a node wants in its own gossip state, besides its version key.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Publication {
    /// This node's verdict on every worker it tracks.
    pub verdicts: BTreeMap<WorkerId, Verdict>,
    /// The registrations this node advertises (owned, adopted, or carrying a PATCH).
    pub registrations: BTreeMap<WorkerId, Registration>,
    /// Every tombstone this node holds.
    pub tombstones: BTreeMap<WorkerId, Tombstone>,
    /// Every drain this node holds (SPEC S14).
    pub drains: BTreeMap<WorkerId, Drain>,
    /// Why this node is degraded (SPEC S12), while it is.
    pub degraded: Option<String>,
}

/// One change to a node's own keys: set (`Some`) or delete (`None`).
pub type KeyChange = (String, Option<String>);

/// Remembers what was published last, so a round writes only differences.
#[derive(Debug, Default)]
pub struct Publisher {
    published: HashMap<String, String>,
    /// Records that could not be encoded, already logged (a bug; logged once each).
    unencodable: u64,
}

impl Publisher {
    /// The key changes that turn the last publication into `desired`, in key order
    /// (deterministic for simulations). Remembers `desired` as published.
    pub fn changes(&mut self, desired: &Publication) -> Vec<KeyChange> {
        let mut next: HashMap<String, String> = HashMap::with_capacity(
            desired.verdicts.len() + desired.registrations.len() + desired.tombstones.len(),
        );
        for (id, v) in &desired.verdicts {
            next.insert(
                keys::status_key(id),
                keys::encode_status(v.generation, v.status, v.since_ms),
            );
        }
        for (id, reg) in &desired.registrations {
            match keys::encode_registration(reg) {
                Ok(v) => {
                    next.insert(keys::reg_key(id), v);
                }
                Err(e) => self.unencodable(id, &e),
            }
        }
        for (id, t) in &desired.tombstones {
            match keys::encode_tombstone(t) {
                Ok(v) => {
                    next.insert(keys::tomb_key(id), v);
                }
                Err(e) => self.unencodable(id, &e),
            }
        }
        for (id, d) in &desired.drains {
            match keys::encode_drain(d) {
                Ok(v) => {
                    next.insert(keys::drain_key(id), v);
                }
                Err(e) => self.unencodable(id, &e),
            }
        }
        if let Some(reason) = &desired.degraded {
            next.insert(
                keys::DEGRADED_KEY.to_string(),
                reason.chars().take(keys::MAX_DEGRADED_REASON).collect(),
            );
        }
        let mut out: Vec<KeyChange> = next
            .iter()
            .filter(|(k, v)| self.published.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect();
        out.extend(
            self.published
                .keys()
                .filter(|k| !next.contains_key(*k))
                .map(|k| (k.clone(), None)),
        );
        out.sort();
        self.published = next;
        out
    }

    /// How many keys the last publication holds.
    pub fn len(&self) -> usize {
        self.published.len()
    }

    /// Whether nothing is published.
    pub fn is_empty(&self) -> bool {
        self.published.is_empty()
    }

    fn unencodable(&mut self, id: &WorkerId, e: &crate::codec::CodecError) {
        self.unencodable += 1;
        if self.unencodable <= 10 {
            tracing::error!(id = %id, error = %e, "a record could not be encoded for gossip; it is not published (a bug: please report it)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EvictionReason, Status, WorkerSpec, WorkerUrl};

    fn reg(port: u16) -> Registration {
        let url = WorkerUrl::parse(&format!("http://10.0.0.1:{port}")).unwrap();
        Registration {
            id: url.id(),
            generation: 1,
            owner: "a".into(),
            registered_at_ms: 1,
            revision: 1,
            spec: WorkerSpec::new(url),
        }
    }

    fn verdict(status: Status) -> Verdict {
        Verdict {
            generation: 1,
            status,
            since_ms: 5,
        }
    }

    #[test]
    fn only_differences_are_written_and_removed_records_are_deleted() {
        let r = reg(8000);
        let mut p = Publication::default();
        p.verdicts.insert(r.id.clone(), verdict(Status::Pending));
        p.registrations.insert(r.id.clone(), r.clone());
        let mut publisher = Publisher::default();
        let first = publisher.changes(&p);
        assert_eq!(first.len(), 2);
        assert!(first.iter().all(|(_, v)| v.is_some()));
        assert!(publisher.changes(&p).is_empty(), "nothing changed");

        p.verdicts.insert(r.id.clone(), verdict(Status::Ready));
        let second = publisher.changes(&p);
        assert_eq!(
            second,
            vec![(keys::status_key(&r.id), Some("1:ready:5".to_string()))]
        );

        let t = Tombstone {
            id: r.id.clone(),
            url: r.spec.url.clone(),
            generation: 1,
            reason: EvictionReason::Deleted,
            writer: "a".into(),
            deleted_at_ms: 1,
            expires_at_ms: 2,
        };
        let mut gone = Publication::default();
        gone.tombstones.insert(r.id.clone(), t);
        let third = publisher.changes(&gone);
        let deleted: Vec<_> = third.iter().filter(|(_, v)| v.is_none()).collect();
        assert_eq!(deleted.len(), 2, "verdict and registration keys deleted");
        assert_eq!(publisher.len(), 1);
        let keys: Vec<&String> = third.iter().map(|(k, _)| k).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "changes come in key order");
    }
}
