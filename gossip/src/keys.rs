//! How cluster state is laid out in chitchat's key-value store, and the value codecs.
//!
//! Each node publishes only its own keys:
//! - `reg:<worker id>`: a registration this node advertises (base64 of the versioned
//!   postcard [`Registration`]);
//! - `st:<worker id>`: this node's verdict, `<generation>:<status>:<since, ms>`;
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
/// Prefix of verdict keys.
pub const STATUS_PREFIX: &str = "st:";
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

/// The verdict key of `id`.
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
