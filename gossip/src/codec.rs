//! Versioned binary encoding of records, for disk now and for gossip later.
//!
//! An encoded value is `MAGIC (4 bytes) | major (1) | minor (1) | postcard payload`.
//! A reader accepts any minor version of its own major version and refuses a newer
//! major version with [`CodecError::NewerMajor`] instead of misreading it (SPEC
//! section 5). postcard was chosen over bincode, which is discontinued
//! (`docs/decisions.md`).

use serde::{Serialize, de::DeserializeOwned};

/// Marks probemesh-encoded data.
pub const MAGIC: [u8; 4] = *b"PMSH";
/// Major format version: bumped when old readers would misread new data.
pub const FORMAT_MAJOR: u8 = 1;
/// Minor format version: bumped for compatible additions.
///
/// - 0: the first edition;
/// - 1: `health.kind` at the end of a worker spec (so at the end of a registration:
///   a 1.0 reader ignores it), drains (a new gossip key and a new store mutation).
///
/// postcard is not self-describing, so a reader of minor N decodes older minors with
/// their own types ([`Evolving`]); an older reader of a registration ignores the
/// trailing additions.
pub const FORMAT_MINOR: u8 = 1;
/// Bytes before the payload.
pub const HEADER_LEN: usize = MAGIC.len() + 2;

/// Why bytes could not be decoded. Callers drop the value and count it.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Shorter than the header, or not starting with [`MAGIC`].
    #[error("not probemesh data (missing or wrong header)")]
    BadHeader,
    /// Written by a newer, incompatible version of probemesh.
    #[error(
        "format version {found}.x is newer than this build understands ({FORMAT_MAJOR}.x); upgrade probemesh"
    )]
    NewerMajor {
        /// Major version found in the data.
        found: u8,
    },
    /// The payload does not decode as the expected type.
    #[error("malformed payload: {0}")]
    Payload(#[from] postcard::Error),
}

/// Encodes `value` with the current header.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&MAGIC);
    out.push(FORMAT_MAJOR);
    out.push(FORMAT_MINOR);
    Ok(postcard::to_extend(value, out)?)
}

/// A record whose encoding grew in a minor version: how to read older encodings.
pub trait Evolving: DeserializeOwned {
    /// Decodes a payload written at `minor`, older than [`FORMAT_MINOR`].
    fn decode_older(minor: u8, payload: &[u8]) -> Result<Self, postcard::Error>;
}

/// Decodes a value written by [`encode`] at any minor version of this major version.
pub fn decode_evolving<T: Evolving>(bytes: &[u8]) -> Result<T, CodecError> {
    let minor = check_header(bytes)?;
    let payload = &bytes[HEADER_LEN..];
    if minor < FORMAT_MINOR {
        Ok(T::decode_older(minor, payload)?)
    } else {
        Ok(postcard::from_bytes(payload)?)
    }
}

/// Checks the header; returns the minor version.
fn check_header(bytes: &[u8]) -> Result<u8, CodecError> {
    if bytes.len() < HEADER_LEN || bytes[..MAGIC.len()] != MAGIC {
        return Err(CodecError::BadHeader);
    }
    let major = bytes[MAGIC.len()];
    if major > FORMAT_MAJOR {
        return Err(CodecError::NewerMajor { found: major });
    }
    Ok(bytes[MAGIC.len() + 1])
}

/// Decodes a value written by [`encode`], checking the header first. For a type whose
/// encoding changed in a minor version, use [`decode_evolving`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    check_header(bytes)?;
    Ok(postcard::from_bytes(&bytes[HEADER_LEN..])?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        EvictionReason, Registration, Tombstone, WorkerSpec, WorkerType, WorkerUrl,
    };

    fn registration() -> Registration {
        let url = WorkerUrl::parse("http://10.0.0.5:8000").unwrap();
        let mut spec = WorkerSpec::new(url.clone());
        spec.model_id = Some("llama-3-8b".into());
        spec.worker_type = WorkerType::Prefill;
        spec.labels.insert("zone".into(), "a".into());
        spec.health.interval_ms = Some(500);
        spec.health.disable = true;
        Registration {
            id: url.id(),
            generation: 7,
            owner: "node-a".into(),
            registered_at_ms: 1_700_000_000_000,
            revision: 1_700_000_000_000,
            spec,
        }
    }

    #[test]
    fn records_round_trip() {
        let reg = registration();
        let bytes = encode(&reg).unwrap();
        assert_eq!(decode::<Registration>(&bytes).unwrap(), reg);
        let tomb = Tombstone {
            id: reg.id.clone(),
            url: reg.spec.url.clone(),
            generation: 7,
            reason: EvictionReason::Failed,
            writer: "node-b".into(),
            deleted_at_ms: 1,
            expires_at_ms: 2,
        };
        assert_eq!(decode::<Tombstone>(&encode(&tomb).unwrap()).unwrap(), tomb);
    }

    #[test]
    fn encoding_is_compact() {
        // 99 bytes at minor 0; `health.kind` (minor 1) adds one byte when unset.
        let bytes = encode(&registration()).unwrap();
        assert!(bytes.len() <= 100, "{} bytes", bytes.len());
    }

    #[test]
    fn refuses_newer_major_and_foreign_data() {
        let mut bytes = encode(&registration()).unwrap();
        bytes[MAGIC.len()] = FORMAT_MAJOR + 1;
        assert!(matches!(
            decode::<Registration>(&bytes),
            Err(CodecError::NewerMajor { found }) if found == FORMAT_MAJOR + 1
        ));
        assert!(matches!(
            decode::<Registration>(b"PMS"),
            Err(CodecError::BadHeader)
        ));
        assert!(matches!(
            decode::<Registration>(b"XXXX\x01\x00"),
            Err(CodecError::BadHeader)
        ));
    }

    #[test]
    fn garbage_payloads_are_errors_not_panics() {
        let good = encode(&registration()).unwrap();
        // Every truncation and a sweep of single-byte corruptions must decode or fail
        // cleanly; none may panic.
        for cut in HEADER_LEN..good.len() {
            let _ = decode::<Registration>(&good[..cut]);
        }
        for i in HEADER_LEN..good.len() {
            for v in [0u8, 0x7f, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[i] = v;
                let _ = decode::<Registration>(&bad);
            }
        }
        let mut invalid_url = encode(&registration()).unwrap();
        // The URL string starts right after id, generation, owner, timestamp; corrupt
        // its scheme so the validating deserializer must reject it.
        let pos = invalid_url.windows(4).position(|w| w == b"http").unwrap();
        invalid_url[pos] = b'f';
        assert!(decode::<Registration>(&invalid_url).is_err());
    }
}
