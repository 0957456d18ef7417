//! Validation of what the store reads back from disk (SPEC S11): a record in
//! `state.bin` or `wal.log` passes the same rules as API input and peers' records, or
//! it is left out of the loaded state, so it is never probed or shown.
//!
//! A file can hold such a record when it was written by hand or by another program,
//! copied from a compromised node, or written by an older probemesh with looser limits.
//! The checksum says the bytes are the ones written, not that they are sound.

use super::state::{DurableState, Mutation};
use probemesh_gossip::model::{InvalidField, WorkerId, validate};

/// A record left out of the loaded state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectedRecord {
    /// The file it was read from ([`super::SNAPSHOT_FILE`] or [`super::WAL_FILE`]).
    pub file: &'static str,
    /// `registration`, `tombstone` or `drain`.
    pub kind: &'static str,
    /// The worker it is about.
    pub id: WorkerId,
    /// Its generation.
    pub generation: u64,
    /// A bounded label for metrics (the invalid field's reason, or `id` for a record
    /// filed under another worker's id).
    pub reason: &'static str,
    /// Why, field first (bounded, escaped).
    pub error: String,
}

impl RejectedRecord {
    fn new(
        file: &'static str,
        kind: &'static str,
        id: &WorkerId,
        generation: u64,
        e: &InvalidField,
    ) -> RejectedRecord {
        RejectedRecord {
            file,
            kind,
            id: id.clone(),
            generation,
            reason: e.reason(),
            error: e.to_string(),
        }
    }

    fn misfiled(file: &'static str, kind: &'static str, key: &WorkerId, generation: u64) -> Self {
        RejectedRecord {
            file,
            kind,
            id: key.clone(),
            generation,
            reason: "id",
            error: "id: the record is filed under another worker's id".into(),
        }
    }
}

/// Removes every registration and tombstone of a loaded snapshot that fails validation
/// (or is filed under another id) and returns them.
pub fn drop_invalid(state: &mut DurableState, file: &'static str) -> Vec<RejectedRecord> {
    let mut out = Vec::new();
    state.registrations.retain(|key, r| {
        let verdict = if *key != r.id {
            Err(RejectedRecord::misfiled(
                file,
                "registration",
                key,
                r.generation,
            ))
        } else {
            validate::registration(r)
                .map_err(|e| RejectedRecord::new(file, "registration", key, r.generation, &e))
        };
        verdict.map_err(|x| out.push(x)).is_ok()
    });
    state.tombstones.retain(|key, t| {
        let verdict = if *key != t.id {
            Err(RejectedRecord::misfiled(
                file,
                "tombstone",
                key,
                t.generation,
            ))
        } else {
            validate::tombstone(t)
                .map_err(|e| RejectedRecord::new(file, "tombstone", key, t.generation, &e))
        };
        verdict.map_err(|x| out.push(x)).is_ok()
    });
    state.drains.retain(|key, d| {
        let verdict = if *key != d.id {
            Err(RejectedRecord::misfiled(file, "drain", key, d.generation))
        } else {
            validate::drain(d)
                .map_err(|e| RejectedRecord::new(file, "drain", key, d.generation, &e))
        };
        verdict.map_err(|x| out.push(x)).is_ok()
    });
    out
}

/// Whether a logged mutation may be replayed. A refused one is skipped, so the record
/// it would have replaced (an earlier, valid version) stays as it was.
pub fn check(m: &Mutation, file: &'static str) -> Result<(), RejectedRecord> {
    match m {
        Mutation::PutRegistration(r) => validate::registration(r)
            .map_err(|e| RejectedRecord::new(file, "registration", &r.id, r.generation, &e)),
        Mutation::PutTombstone(t) => validate::tombstone(t)
            .map_err(|e| RejectedRecord::new(file, "tombstone", &t.id, t.generation, &e)),
        Mutation::PutDrain(d) => validate::drain(d)
            .map_err(|e| RejectedRecord::new(file, "drain", &d.id, d.generation, &e)),
        Mutation::DropTombstone { .. } => Ok(()),
    }
}
