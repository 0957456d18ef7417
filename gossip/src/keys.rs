//! How cluster state is laid out in chitchat's key-value store, and the value codecs.
//!
//! Each node publishes only its own keys:
//! - `reg:<worker id>`: a registration this node advertises (base64 of the versioned
//!   postcard [`Registration`]);
//! - `sv:<hex prefix>`: this node's verdicts on every worker it tracks whose id starts
//!   with that prefix, `<id>:<generation>:<status>:<since, ms>` joined by `,` (a
//!   *verdict bucket*; see [`verdict_prefix_len`] for why verdicts are grouped);
//! - `st:<worker id>`: one verdict, `<generation>:<status>:<since, ms>`: the layout of
//!   earlier releases, still read (a cluster in a rolling upgrade) but not written;
//! - `tomb:<worker id>`: a tombstone this node holds (every node republishes the
//!   tombstones it knows, so they outlive their writer);
//! - `drain:<worker id>`: a drain this node holds (SPEC S14; republished by every node
//!   that learns it, like tombstones);
//! - `meta:version`: the probemesh version of the node;
//! - `meta:degraded`: present while the node is degraded (SPEC S12), with the reason.
//!
//! chitchat values are strings, hence base64 for the binary records.

use crate::codec::{self, CodecError};
use crate::model::{Drain, InvalidField, Registration, Status, Tombstone, WorkerId, validate};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;

/// Prefix of registration keys.
pub const REG_PREFIX: &str = "reg:";
/// Prefix of the single-verdict keys of earlier releases (read, never written).
pub const STATUS_PREFIX: &str = "st:";
/// Prefix of verdict bucket keys.
pub const VERDICTS_PREFIX: &str = "sv:";
/// Verdicts per bucket on average above which buckets split by one more hex digit.
pub const BUCKET_TARGET: usize = 64;
/// Longest bucket prefix this node writes (16^4 buckets: over 4 million workers).
pub const MAX_VERDICT_PREFIX: usize = 4;
/// Prefix of tombstone keys.
pub const TOMB_PREFIX: &str = "tomb:";
/// Prefix of drain keys (SPEC S14).
pub const DRAIN_PREFIX: &str = "drain:";
/// Key of the node's probemesh version.
pub const VERSION_KEY: &str = "meta:version";
/// Key present while the node is degraded (SPEC S12); its value is the reason.
pub const DEGRADED_KEY: &str = "meta:degraded";
/// Longest degraded reason kept from a peer (longer ones are cut).
pub const MAX_DEGRADED_REASON: usize = 512;

/// Why a gossiped value was dropped.
#[derive(Debug, thiserror::Error)]
pub enum ValueError {
    /// Not base64.
    #[error("value is not base64")]
    Base64,
    /// The record does not decode.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The key and the record disagree, or the text is malformed.
    #[error("inconsistent or malformed value: {0}")]
    Inconsistent(&'static str),
    /// The record decodes but fails validation (SPEC S11).
    #[error("invalid record: {0}")]
    Invalid(#[from] InvalidField),
}

impl ValueError {
    /// A bounded label for metrics: the invalid field's reason, or what kept the value
    /// from decoding (`base64`, `decode`, `newer_format`, `key_mismatch`).
    pub fn reason(&self) -> &'static str {
        match self {
            ValueError::Base64 => "base64",
            ValueError::Codec(CodecError::NewerMajor { .. }) => "newer_format",
            ValueError::Codec(_) => "decode",
            ValueError::Inconsistent(_) => "key_mismatch",
            ValueError::Invalid(e) => e.reason(),
        }
    }
}

/// The registration key of `id`.
pub fn reg_key(id: &WorkerId) -> String {
    format!("{REG_PREFIX}{id}")
}

/// The verdict key of `id` in the single-verdict layout of earlier releases.
pub fn status_key(id: &WorkerId) -> String {
    format!("{STATUS_PREFIX}{id}")
}

/// Encodes any record as a chitchat value (base64 of the versioned postcard bytes).
pub fn encode_value<T: serde::Serialize>(record: &T) -> Result<String, CodecError> {
    Ok(STANDARD_NO_PAD.encode(codec::encode(record)?))
}

/// Encodes a registration as a chitchat value.
pub fn encode_registration(r: &Registration) -> Result<String, CodecError> {
    encode_value(r)
}

/// Decodes a registration published under `key_id`, checking that the record is the
/// worker the key names (a peer cannot smuggle one worker under another's id) and that
/// it passes [`validate::registration`], the API's own rules.
pub fn decode_registration(key_id: &str, value: &str) -> Result<Registration, ValueError> {
    let bytes = STANDARD_NO_PAD
        .decode(value.as_bytes())
        .map_err(|_| ValueError::Base64)?;
    let r: Registration = codec::decode_evolving(&bytes)?;
    if r.id.as_str() != key_id {
        return Err(ValueError::Inconsistent(
            "registration id does not match its key",
        ));
    }
    validate::registration(&r)?;
    Ok(r)
}

/// The tombstone key of `id`.
pub fn tomb_key(id: &WorkerId) -> String {
    format!("{TOMB_PREFIX}{id}")
}

/// Encodes a tombstone as a chitchat value.
pub fn encode_tombstone(t: &Tombstone) -> Result<String, CodecError> {
    encode_value(t)
}

/// Decodes a tombstone published under `key_id` and validates it
/// ([`validate::tombstone`]).
pub fn decode_tombstone(key_id: &str, value: &str) -> Result<Tombstone, ValueError> {
    let bytes = STANDARD_NO_PAD
        .decode(value.as_bytes())
        .map_err(|_| ValueError::Base64)?;
    let t: Tombstone = codec::decode(&bytes)?;
    if t.id.as_str() != key_id {
        return Err(ValueError::Inconsistent(
            "tombstone id does not match its key",
        ));
    }
    validate::tombstone(&t)?;
    Ok(t)
}

/// The drain key of `id`.
pub fn drain_key(id: &WorkerId) -> String {
    format!("{DRAIN_PREFIX}{id}")
}

/// Encodes a drain as a chitchat value.
pub fn encode_drain(d: &Drain) -> Result<String, CodecError> {
    encode_value(d)
}

/// Decodes a drain published under `key_id` and validates it ([`validate::drain`]).
pub fn decode_drain(key_id: &str, value: &str) -> Result<Drain, ValueError> {
    let bytes = STANDARD_NO_PAD
        .decode(value.as_bytes())
        .map_err(|_| ValueError::Base64)?;
    let d: Drain = codec::decode(&bytes)?;
    if d.id.as_str() != key_id {
        return Err(ValueError::Inconsistent("drain id does not match its key"));
    }
    validate::drain(&d)?;
    Ok(d)
}

/// Encodes a verdict: generation, status and when the status was entered (ms since
/// the Unix epoch).
pub fn encode_status(generation: u64, status: Status, since_ms: u64) -> String {
    format!("{generation}:{status}:{since_ms}")
}

/// Decodes a verdict into (generation, status, since_ms).
pub fn decode_status(value: &str) -> Result<(u64, Status, u64), ValueError> {
    let mut parts = value.splitn(3, ':');
    let (Some(g), Some(s), Some(t)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(ValueError::Inconsistent(
            "verdict is not generation:status:since",
        ));
    };
    let g = g
        .parse()
        .map_err(|_| ValueError::Inconsistent("verdict generation"))?;
    let s = Status::parse(s).ok_or(ValueError::Inconsistent("verdict status"))?;
    let t = t
        .parse()
        .map_err(|_| ValueError::Inconsistent("verdict time"))?;
    Ok((g, s, t))
}

/// How many leading hex digits of the worker id name a verdict bucket, for a node
/// publishing `count` verdicts whose buckets are `current` digits long now (0 before
/// the first publication).
///
/// Why buckets: chitchat keeps, scans and garbage-collects state per key, several
/// times per gossip round (`gc_keys_marked_for_deletion` walks every key of every
/// member each round; every delta scans and sorts the stale keys of each member it
/// covers). One key per verdict made N members x W workers keys: at 32 x 1,000 that
/// work alone saturated two cores. A bucket of about [`BUCKET_TARGET`] verdicts keeps
/// the key count near N x W / 64 while a single verdict change resends only its own
/// bucket (about 3 KB before compression), not the node's whole verdict set. Ids are
/// hashes, so buckets fill evenly. The length grows as soon as the average bucket
/// passes the target and shrinks only below a quarter of the shorter length's target,
/// so a count near a threshold does not rewrite every bucket back and forth.
pub fn verdict_prefix_len(count: usize, current: usize) -> usize {
    let holds = |len: usize| BUCKET_TARGET << (4 * len);
    let mut len = current.clamp(1, MAX_VERDICT_PREFIX);
    while len < MAX_VERDICT_PREFIX && count > holds(len) {
        len += 1;
    }
    while len > 1 && count <= holds(len - 1) / 4 {
        len -= 1;
    }
    len
}

/// The key of the verdict bucket of the ids starting with `prefix`.
pub fn verdict_bucket_key(prefix: &str) -> String {
    format!("{VERDICTS_PREFIX}{prefix}")
}

/// Appends one verdict to a bucket value under construction.
pub fn push_verdict(
    bucket: &mut String,
    id: &WorkerId,
    generation: u64,
    status: Status,
    since_ms: u64,
) {
    use std::fmt::Write;
    if !bucket.is_empty() {
        bucket.push(',');
    }
    // Writing into a String cannot fail.
    let _ = write!(bucket, "{id}:{generation}:{status}:{since_ms}");
}

/// One verdict as a bucket of its own (its whole id as the prefix): the key and value
/// a member publishing a single verdict writes (tests and tools play such members).
pub fn single_verdict(
    id: &WorkerId,
    generation: u64,
    status: Status,
    since_ms: u64,
) -> (String, String) {
    let mut value = String::new();
    push_verdict(&mut value, id, generation, status, since_ms);
    (verdict_bucket_key(id.as_str()), value)
}

/// Decodes a verdict bucket published under `prefix` (the key without
/// [`VERDICTS_PREFIX`]): the verdicts that parse and whose id starts with `prefix` (a
/// peer cannot file a verdict under another bucket), and how many entries were dropped.
pub fn decode_verdict_bucket(
    prefix: &str,
    value: &str,
) -> (Vec<(WorkerId, u64, Status, u64)>, u64) {
    let mut verdicts = Vec::new();
    let mut dropped = 0;
    let valid_prefix = !prefix.is_empty() && WorkerId::parse(&format!("{prefix:0<16}")).is_some();
    for entry in value.split(',').filter(|e| !e.is_empty()) {
        let parsed = entry.split_once(':').and_then(|(id, rest)| {
            let id =
                WorkerId::parse(id).filter(|id| valid_prefix && id.as_str().starts_with(prefix))?;
            let (g, s, t) = decode_status(rest).ok()?;
            Some((id, g, s, t))
        });
        match parsed {
            Some(v) => verdicts.push(v),
            None => dropped += 1,
        }
    }
    (verdicts, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{WorkerSpec, WorkerUrl};

    fn reg() -> Registration {
        let url = WorkerUrl::parse("http://10.1.1.1:8000").unwrap();
        Registration {
            id: url.id(),
            generation: 3,
            owner: "a".into(),
            registered_at_ms: 5,
            revision: 5,
            spec: WorkerSpec::new(url),
        }
    }

    #[test]
    fn registrations_round_trip_and_are_bound_to_their_key() {
        let r = reg();
        let v = encode_registration(&r).unwrap();
        assert_eq!(decode_registration(r.id.as_str(), &v).unwrap(), r);
        assert!(matches!(
            decode_registration("0000000000000000", &v),
            Err(ValueError::Inconsistent(_))
        ));
        let mut bad = r.clone();
        bad.spec.health.success_threshold = Some(0);
        let e =
            decode_registration(r.id.as_str(), &encode_registration(&bad).unwrap()).unwrap_err();
        assert_eq!(e.reason(), "health_success_threshold", "{e}");
        let mut forged = r.clone();
        forged.id = WorkerUrl::parse("http://10.1.1.2:8000").unwrap().id();
        let e = decode_registration(forged.id.as_str(), &encode_registration(&forged).unwrap())
            .unwrap_err();
        assert_eq!(e.reason(), "id", "{e}");
        assert!(matches!(
            decode_registration(r.id.as_str(), "!!!"),
            Err(ValueError::Base64)
        ));
        assert!(decode_registration(r.id.as_str(), "UE1TSA").is_err());
    }

    #[test]
    fn bucket_prefixes_grow_with_the_count_and_shrink_with_hysteresis() {
        assert_eq!(verdict_prefix_len(0, 0), 1);
        assert_eq!(verdict_prefix_len(1_000, 0), 1, "16 buckets of about 62");
        assert_eq!(verdict_prefix_len(1_025, 1), 2);
        assert_eq!(verdict_prefix_len(10_000, 0), 2, "256 buckets of about 39");
        assert_eq!(verdict_prefix_len(16_385, 2), 3);
        // Down only below a quarter of the shorter length's capacity.
        assert_eq!(verdict_prefix_len(1_000, 2), 2);
        assert_eq!(verdict_prefix_len(257, 2), 2);
        assert_eq!(verdict_prefix_len(256, 2), 1);
        assert_eq!(verdict_prefix_len(usize::MAX, 0), MAX_VERDICT_PREFIX);
    }

    #[test]
    fn verdict_buckets_round_trip_and_drop_entries_that_do_not_belong() {
        let a = WorkerUrl::parse("http://10.1.1.1:8000").unwrap().id();
        let b = WorkerUrl::parse("http://10.1.1.2:8000").unwrap().id();
        let mut value = String::new();
        push_verdict(&mut value, &a, 3, Status::Ready, 11);
        push_verdict(&mut value, &b, 4, Status::Failed, 12);
        let prefix = &a.as_str()[..1];
        let (got, dropped) = decode_verdict_bucket(prefix, &value);
        if b.as_str().starts_with(prefix) {
            assert_eq!(got.len(), 2);
            assert_eq!(dropped, 0);
        } else {
            assert_eq!(got, vec![(a.clone(), 3, Status::Ready, 11)]);
            assert_eq!(dropped, 1, "another bucket's id is not taken from this one");
        }
        let (got, dropped) = decode_verdict_bucket("", &value);
        assert!(
            got.is_empty() && dropped == 2,
            "an empty prefix holds nothing"
        );
        let (got, dropped) = decode_verdict_bucket("x", &value);
        assert!(
            got.is_empty() && dropped == 2,
            "a prefix that is not hex holds nothing"
        );
        let forged = format!("{}:1:ready:1,{}:bogus,garbage,,{}:1:ready", a, a, a);
        let (got, dropped) = decode_verdict_bucket(a.as_str(), &forged);
        assert_eq!(got, vec![(a.clone(), 1, Status::Ready, 1)]);
        assert_eq!(dropped, 3);
    }

    #[test]
    fn verdicts_round_trip_and_reject_garbage() {
        assert_eq!(
            decode_status(&encode_status(7, Status::NotReady, 9)).unwrap(),
            (7, Status::NotReady, 9)
        );
        for bad in [
            "",
            "7",
            "x:ready:1",
            "7:bogus:1",
            ":ready:1",
            "7:ready",
            "7:ready:x",
        ] {
            assert!(decode_status(bad).is_err(), "{bad}");
        }
    }
}
