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
    /// Hex digits naming a verdict bucket in the last publication (0 before the
    /// first); see [`keys::verdict_prefix_len`].
    verdict_prefix: usize,
    /// Records that could not be encoded, already logged (a bug; logged once each).
    unencodable: u64,
}

impl Publisher {
    /// The key changes that turn the last publication into `desired`: the keys set, in
    /// key order, then the keys deleted, in key order
    /// (deterministic for simulations). Remembers `desired` as published.
    pub fn changes(&mut self, desired: &Publication) -> Vec<KeyChange> {
        let mut next: HashMap<String, String> = HashMap::with_capacity(
            desired.verdicts.len() + desired.registrations.len() + desired.tombstones.len(),
        );
        self.verdict_prefix = keys::verdict_prefix_len(desired.verdicts.len(), self.verdict_prefix);
        // The map is in id order, so each bucket's verdicts come together.
        let mut bucket: Option<(&str, String)> = None;
        for (id, v) in &desired.verdicts {
            let prefix = &id.as_str()[..self.verdict_prefix];
            match &mut bucket {
                Some((p, value)) if *p == prefix => {
                    keys::push_verdict(value, id, v.generation, v.status, v.since_ms);
                }
                _ => {
                    if let Some((p, value)) = bucket.take() {
                        next.insert(keys::verdict_bucket_key(p), value);
                    }
                    let mut value = String::new();
                    keys::push_verdict(&mut value, id, v.generation, v.status, v.since_ms);
                    bucket = Some((prefix, value));
                }
            }
        }
        if let Some((p, value)) = bucket {
            next.insert(keys::verdict_bucket_key(p), value);
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
        out.sort();
        let mut deleted: Vec<KeyChange> = self
            .published
            .keys()
            .filter(|k| !next.contains_key(*k))
            .map(|k| (k.clone(), None))
            .collect();
        deleted.sort();
        // Sets before deletions: chitchat versions every change in order, and a peer
        // may hold a prefix of them, so when buckets are re-cut it sees a verdict in
        // both layouts for a moment (the newest wins) rather than in neither.
        out.extend(deleted);
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
            vec![(
                keys::verdict_bucket_key(&r.id.as_str()[..1]),
                Some(format!("{}:1:ready:5", r.id))
            )]
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
        assert!(third[0].1.is_some(), "sets come before deletions");
        let keys: Vec<&String> = third[1..].iter().map(|(k, _)| k).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "deletions come in key order");
    }

    fn verdicts(n: u16) -> Publication {
        let mut p = Publication::default();
        for port in 0..n {
            p.verdicts
                .insert(reg(8000 + port).id, verdict(Status::Ready));
        }
        p
    }

    #[test]
    fn verdicts_travel_in_buckets_and_one_change_rewrites_one_bucket() {
        let mut p = verdicts(1_000);
        let mut publisher = Publisher::default();
        let first = publisher.changes(&p);
        assert_eq!(
            first.len(),
            16,
            "1,000 verdicts in 16 buckets, not 1,000 keys"
        );
        let mut seen = 0;
        for (key, value) in &first {
            let prefix = key.strip_prefix(keys::VERDICTS_PREFIX).unwrap();
            let (got, dropped) = keys::decode_verdict_bucket(prefix, value.as_deref().unwrap());
            assert_eq!(dropped, 0);
            seen += got.len();
        }
        assert_eq!(seen, 1_000, "every verdict is in exactly one bucket");

        let id = reg(8007).id;
        p.verdicts.insert(id.clone(), verdict(Status::Failed));
        let second = publisher.changes(&p);
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].0, keys::verdict_bucket_key(&id.as_str()[..1]));
    }

    #[test]
    fn buckets_are_re_cut_past_the_target_with_sets_before_deletions() {
        let mut publisher = Publisher::default();
        publisher.changes(&verdicts(1_000));
        let grown = publisher.changes(&verdicts(2_000));
        let sets = grown.iter().take_while(|(_, v)| v.is_some()).count();
        assert_eq!(sets, 256, "two hex digits past 1,024 verdicts");
        assert_eq!(
            grown.len() - sets,
            16,
            "then the 16 old buckets are deleted"
        );
        assert!(grown[sets..].iter().all(|(_, v)| v.is_none()));
        // Back under the target but above a quarter of it: the layout stays.
        let kept = publisher.changes(&verdicts(1_000));
        assert!(
            kept.iter()
                .all(|(k, _)| k.len() == keys::VERDICTS_PREFIX.len() + 2)
        );
        assert_eq!(
            publisher
                .changes(&verdicts(200))
                .iter()
                .filter(|(_, v)| v.is_some())
                .count(),
            16
        );
    }
}
