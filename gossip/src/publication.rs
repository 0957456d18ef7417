//! What a node publishes, as typed records, and the diff that turns it into chitchat
//! key changes. The daemon says *what* it wants published (its verdicts, the
//! registrations it advertises, the tombstones it holds); only this module knows the
//! key layout ([`crate::keys`]) and what was published last.

use crate::cluster::Verdict;
use crate::keys;
use crate::model::{Drain, Registration, Tombstone, WorkerId};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tokio::time::Instant;

/// The shortest time between two writes of one verdict bucket, for a node whose
/// default probe interval is `probe_interval`: one interval, between 1 s and 10 s.
///
/// Every write of a bucket resends all of its verdicts (about 3 KB) to every member.
/// Without a bound, a node whose workers change status in many rounds in a row (a
/// registration burst: pending, then ready, on every member; probes timing out on an
/// overloaded host) rewrote each of its buckets every gossip round: at 16 members x
/// 1,000 workers that was 1.1-1.9 MB/s of gossip per member, whose CPU starved the
/// probes and made more workers flap, which kept the rewrites going. A worker's verdict
/// changes at most once per probe, so one interval's hold carries a whole probe cycle's
/// changes of a bucket in one write, and a node's verdict traffic stays below its
/// buckets' size per interval however many workers flap. A bucket untouched for the
/// hold is written at once (an isolated change travels as fast as before). Peers see a
/// verdict up to one hold later; every decision on peers' verdicts (eviction, fencing)
/// waits for several consecutive probe failures, so for one more interval at most.
pub fn verdict_hold(probe_interval: Duration) -> Duration {
    probe_interval.clamp(MIN_VERDICT_HOLD, MAX_VERDICT_HOLD)
}

/// The shortest [`verdict_hold`] (and the hold of [`Publisher::default`]).
pub const MIN_VERDICT_HOLD: Duration = Duration::from_secs(1);
/// The longest [`verdict_hold`].
pub const MAX_VERDICT_HOLD: Duration = Duration::from_secs(10);

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

/// What one publication did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Published {
    /// Keys set or deleted.
    pub changed: usize,
    /// Changed verdict buckets kept at their published value for now
    /// ([`verdict_hold`]).
    pub held: usize,
    /// When the earliest of those may be written: publish again then.
    pub held_until: Option<Instant>,
}

/// One change to a node's own keys: set (`Some`) or delete (`None`).
pub type KeyChange = (String, Option<String>);

/// Remembers what was published last, so a round writes only differences.
#[derive(Debug)]
pub struct Publisher {
    /// The shortest time between two writes of one verdict bucket ([`verdict_hold`]).
    hold: Duration,
    published: HashMap<String, String>,
    /// Hex digits naming a verdict bucket in the last publication (0 before the
    /// first); see [`keys::verdict_prefix_len`].
    verdict_prefix: usize,
    /// When each published verdict bucket was last written.
    bucket_written: HashMap<String, Instant>,
    /// The earliest time a bucket held back by the hold may be written,
    /// after the last [`Publisher::changes`]; `None` when none is held back.
    held_until: Option<Instant>,
    /// Buckets the last [`Publisher::changes`] held back.
    held: usize,
    /// Records that could not be encoded, already logged (a bug; logged once each).
    unencodable: u64,
}

impl Default for Publisher {
    fn default() -> Self {
        Publisher::new(MIN_VERDICT_HOLD)
    }
}

impl Publisher {
    /// A publisher that writes each verdict bucket at most once per `hold`.
    pub fn new(hold: Duration) -> Publisher {
        Publisher {
            hold,
            published: HashMap::new(),
            verdict_prefix: 0,
            bucket_written: HashMap::new(),
            held_until: None,
            held: 0,
            unencodable: 0,
        }
    }

    /// The key changes that turn the last publication into `desired` at `now`: the
    /// keys set, in key order, then the keys deleted, in key order (deterministic for
    /// simulations). Remembers what it returns as published. A verdict bucket written
    /// less than [`verdict_hold`] ago keeps its published value for now (see
    /// [`Publisher::held_until`]); everything else is written at once.
    pub fn changes(&mut self, desired: &Publication, now: Instant) -> Vec<KeyChange> {
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
        self.hold_recent_buckets(&mut next, now);
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

    /// Keeps the published value of every verdict bucket that changed but was written
    /// less than the hold before `now`, and stamps the buckets written now.
    fn hold_recent_buckets(&mut self, next: &mut HashMap<String, String>, now: Instant) {
        self.held_until = None;
        self.held = 0;
        self.bucket_written.retain(|k, _| next.contains_key(k));
        for (key, value) in next.iter_mut() {
            if !key.starts_with(keys::VERDICTS_PREFIX) {
                continue;
            }
            let Some(old) = self.published.get(key) else {
                // A new bucket (first verdicts under its prefix, or buckets re-cut).
                self.bucket_written.insert(key.clone(), now);
                continue;
            };
            if old == value {
                continue;
            }
            match self.bucket_written.get(key) {
                Some(at) if now < *at + self.hold => {
                    let due = *at + self.hold;
                    self.held_until = Some(self.held_until.map_or(due, |d| d.min(due)));
                    self.held += 1;
                    value.clone_from(old);
                }
                _ => {
                    self.bucket_written.insert(key.clone(), now);
                }
            }
        }
    }

    /// When the earliest verdict bucket held back by the last [`Publisher::changes`]
    /// may be written; the caller publishes again then (a later call writes it with
    /// whatever it holds by then). `None` when nothing is held back.
    pub fn held_until(&self) -> Option<Instant> {
        self.held_until
    }

    /// What the last [`Publisher::changes`] wrote and held back, given the number of
    /// changes it returned.
    pub fn published(&self, changed: usize) -> Published {
        Published {
            changed,
            held: self.held,
            held_until: self.held_until,
        }
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

    /// `s` seconds after a fixed origin (10 s apart is past any hold).
    fn at(s: u64) -> Instant {
        static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *ORIGIN.get_or_init(Instant::now) + Duration::from_secs(s)
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
        let first = publisher.changes(&p, at(0));
        assert_eq!(first.len(), 2);
        assert!(first.iter().all(|(_, v)| v.is_some()));
        assert!(publisher.changes(&p, at(10)).is_empty(), "nothing changed");

        p.verdicts.insert(r.id.clone(), verdict(Status::Ready));
        let second = publisher.changes(&p, at(20));
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
        let third = publisher.changes(&gone, at(30));
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
        let first = publisher.changes(&p, at(40));
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
        let second = publisher.changes(&p, at(50));
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].0, keys::verdict_bucket_key(&id.as_str()[..1]));
    }

    #[test]
    fn buckets_are_re_cut_past_the_target_with_sets_before_deletions() {
        let mut publisher = Publisher::default();
        publisher.changes(&verdicts(1_000), at(60));
        let grown = publisher.changes(&verdicts(2_000), at(70));
        let sets = grown.iter().take_while(|(_, v)| v.is_some()).count();
        assert_eq!(sets, 256, "two hex digits past 1,024 verdicts");
        assert_eq!(
            grown.len() - sets,
            16,
            "then the 16 old buckets are deleted"
        );
        assert!(grown[sets..].iter().all(|(_, v)| v.is_none()));
        // Back under the target but above a quarter of it: the layout stays.
        let kept = publisher.changes(&verdicts(1_000), at(80));
        assert!(
            kept.iter()
                .all(|(k, _)| k.len() == keys::VERDICTS_PREFIX.len() + 2)
        );
        assert_eq!(
            publisher
                .changes(&verdicts(200), at(90))
                .iter()
                .filter(|(_, v)| v.is_some())
                .count(),
            16
        );
    }

    #[test]
    fn a_bucket_is_written_at_most_once_per_hold_and_carries_what_changed_meanwhile() {
        let hold = Duration::from_secs(5);
        let mut publisher = Publisher::new(hold);
        let mut p = verdicts(1_000);
        assert_eq!(
            publisher.changes(&p, at(0)).len(),
            16,
            "new buckets at once"
        );
        let first = reg(8007).id;
        let bucket = keys::verdict_bucket_key(&first.as_str()[..1]);
        // A bucket untouched for the hold is written at once ...
        p.verdicts.insert(first.clone(), verdict(Status::NotReady));
        assert_eq!(publisher.changes(&p, at(5)).len(), 1);
        assert_eq!(publisher.published(1).held_until, None);
        // ... and then not again until the hold is over, however often it changes.
        let same_bucket: Vec<WorkerId> = (0..1_000)
            .map(|port| reg(8000 + port).id)
            .filter(|id| id != &first && keys::verdict_bucket_key(&id.as_str()[..1]) == bucket)
            .take(3)
            .collect();
        for (i, id) in same_bucket.iter().enumerate() {
            p.verdicts.insert(id.clone(), verdict(Status::NotReady));
            assert!(publisher.changes(&p, at(6 + i as u64)).is_empty());
            let held = publisher.published(0);
            assert_eq!(held.held, 1, "one bucket held back");
            assert_eq!(held.held_until, Some(at(10)), "due when the hold ends");
        }
        // Another bucket is not held back by this one's hold.
        let other = (0..1_000)
            .map(|port| reg(8000 + port).id)
            .find(|id| keys::verdict_bucket_key(&id.as_str()[..1]) != bucket)
            .unwrap();
        p.verdicts.insert(other.clone(), verdict(Status::Failed));
        let now = publisher.changes(&p, at(9));
        assert_eq!(now.len(), 1);
        assert_ne!(now[0].0, bucket);
        // When the hold is over, one write carries every change made meanwhile.
        let due = publisher.changes(&p, at(10));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].0, bucket);
        let prefix = bucket.strip_prefix(keys::VERDICTS_PREFIX).unwrap();
        let (got, _) = keys::decode_verdict_bucket(prefix, due[0].1.as_deref().unwrap());
        let not_ready = got
            .iter()
            .filter(|(_, _, status, _)| *status == Status::NotReady)
            .count();
        assert_eq!(not_ready, 4, "the first change and the three held back");
        assert_eq!(publisher.published(1).held_until, None);
        assert!(
            publisher.changes(&p, at(20)).is_empty(),
            "nothing left over"
        );
        // Deleting a bucket's last verdicts is never held back.
        let mut gone = p.clone();
        gone.verdicts
            .retain(|id, _| keys::verdict_bucket_key(&id.as_str()[..1]) != bucket);
        p.verdicts.insert(first.clone(), verdict(Status::Ready));
        publisher.changes(&p, at(21));
        let deleted = publisher.changes(&gone, at(22));
        assert_eq!(deleted, vec![(bucket, None)]);
    }
}
