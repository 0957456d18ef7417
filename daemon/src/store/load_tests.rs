//! Validation at load (SPEC S11): records on disk that fail the cluster's validator are
//! left out of the loaded state and reported, whatever file they are in.

use super::*;
use frame::push_frame;
use probemesh_gossip::model::validate::cases::{Case, RawRegistration, cases, valid_registration};
use probemesh_gossip::model::{EvictionReason, Registration, Tombstone};
use serde::Serialize;

/// The log's on-disk form of `Mutation::PutRegistration`, for registrations the model
/// cannot hold (a URL it refuses): postcard writes an enum as its variant index.
#[derive(Serialize)]
enum RawMutation {
    PutRegistration(RawRegistration),
}

fn case_registration(c: &Case) -> Registration {
    let mut r = valid_registration();
    (c.apply)(&mut r);
    r
}

/// A log holding exactly `payloads`, framed as the store frames them.
fn write_wal(dir: &Path, payloads: &[Vec<u8>]) {
    let mut buf = Vec::new();
    for p in payloads {
        push_frame(&mut buf, p).unwrap();
    }
    fs::write(dir.join(WAL_FILE), buf).unwrap();
}

fn payload(c: &Case) -> Vec<u8> {
    match c.raw_url {
        Some(url) => codec::encode(&RawMutation::PutRegistration(RawRegistration::new(
            &valid_registration(),
            url,
        ))),
        None => codec::encode(&Mutation::PutRegistration(case_registration(c))),
    }
    .unwrap()
}

/// The shared boundary cases, written into `wal.log` one per directory: accepted ones
/// are loaded, refused ones are left out and reported naming the same field.
#[test]
fn shared_boundary_cases_hold_for_the_log() {
    for c in cases() {
        let dir = tempfile::tempdir().unwrap();
        write_wal(dir.path(), &[payload(&c)]);
        let opened = Store::open(dir.path());
        match (c.refused, c.raw_url) {
            (None, _) => {
                let (s, report) = opened.unwrap();
                assert!(
                    report.rejected.is_empty(),
                    "{}: {:?}",
                    c.name,
                    report.rejected
                );
                assert_eq!(s.state().registrations.len(), 1, "{}", c.name);
            }
            // A URL the model refuses does not even decode: the log is corrupt, and
            // the agent refuses to start rather than guess (as before).
            (Some(_), Some(_)) => {
                assert!(
                    matches!(opened, Err(StoreError::Corrupt { .. })),
                    "{}: {opened:?}",
                    c.name
                );
            }
            (Some(field), None) => {
                let (s, report) = opened.unwrap();
                assert!(s.state().registrations.is_empty(), "{}: loaded", c.name);
                assert_eq!(report.rejected.len(), 1, "{}", c.name);
                let r = &report.rejected[0];
                assert_eq!(r.reason, field.reason(), "{}: {}", c.name, r.error);
                assert!(r.error.starts_with(field.as_str()), "{}", r.error);
                assert_eq!((r.file, r.kind), (WAL_FILE, "registration"));
            }
        }
    }
}

fn tomb(r: &Registration, writer: &str) -> Tombstone {
    Tombstone {
        id: r.id.clone(),
        url: r.spec.url.clone(),
        generation: r.generation,
        reason: EvictionReason::Deleted,
        writer: writer.into(),
        deleted_at_ms: 2,
        expires_at_ms: u64::MAX,
    }
}

#[test]
fn an_invalid_patch_in_the_log_leaves_the_earlier_version() {
    let dir = tempfile::tempdir().unwrap();
    let good = valid_registration();
    let mut bad = good.clone();
    bad.revision += 1;
    bad.spec.health.success_threshold = Some(0);
    write_wal(
        dir.path(),
        &[
            codec::encode(&Mutation::PutRegistration(good.clone())).unwrap(),
            codec::encode(&Mutation::PutRegistration(bad)).unwrap(),
        ],
    );
    let (s, report) = Store::open(dir.path()).unwrap();
    assert_eq!(report.replayed, 2);
    assert_eq!(report.rejected.len(), 1);
    assert_eq!(s.state().registrations.get(&good.id), Some(&good));
}

#[test]
fn invalid_records_in_the_snapshot_are_dropped_and_compaction_forgets_them() {
    let dir = tempfile::tempdir().unwrap();
    let good = valid_registration();
    let mut smuggled = valid_registration();
    smuggled.id = probemesh_gossip::model::WorkerUrl::parse("http://10.0.0.9:1")
        .unwrap()
        .id();
    smuggled.spec = good.spec.clone();
    let mut other = valid_registration();
    other.spec.url = probemesh_gossip::model::WorkerUrl::parse("http://10.0.0.3:1").unwrap();
    other.id = other.spec.url.id();
    other.spec.health.interval_ms = Some(0);
    let mut state = DurableState::default();
    state.registrations.insert(good.id.clone(), good.clone());
    state.registrations.insert(smuggled.id.clone(), smuggled);
    state.registrations.insert(other.id.clone(), other.clone());
    state.tombstones.insert(other.id.clone(), tomb(&other, ""));
    let mut buf = Vec::new();
    push_frame(&mut buf, &codec::encode(&state).unwrap()).unwrap();
    fs::write(dir.path().join(SNAPSHOT_FILE), buf).unwrap();

    let (mut s, report) = Store::open(dir.path()).unwrap();
    let mut reasons: Vec<(&str, &str)> =
        report.rejected.iter().map(|r| (r.kind, r.reason)).collect();
    reasons.sort_unstable();
    assert_eq!(
        reasons,
        [
            ("registration", "health_interval"),
            ("registration", "id"),
            ("tombstone", "writer")
        ]
    );
    assert_eq!(s.state().registrations.len(), 1);
    assert!(s.state().tombstones.is_empty());
    s.compact().unwrap();
    drop(s);
    let (s, report) = Store::open(dir.path()).unwrap();
    assert!(
        report.rejected.is_empty(),
        "compaction wrote only what was loaded"
    );
    assert_eq!(s.state().registrations.get(&good.id), Some(&good));
}

#[test]
fn invalid_tombstones_in_the_log_are_not_applied() {
    let dir = tempfile::tempdir().unwrap();
    let r = valid_registration();
    let mut zero = tomb(&r, "node-b");
    zero.generation = 0;
    write_wal(
        dir.path(),
        &[
            codec::encode(&Mutation::PutRegistration(r.clone())).unwrap(),
            codec::encode(&Mutation::PutTombstone(tomb(&r, "a b"))).unwrap(),
            codec::encode(&Mutation::PutTombstone(zero)).unwrap(),
        ],
    );
    let (s, report) = Store::open(dir.path()).unwrap();
    let reasons: Vec<&str> = report.rejected.iter().map(|x| x.reason).collect();
    assert_eq!(reasons, ["writer", "generation"]);
    assert!(
        s.state().registrations.contains_key(&r.id),
        "not evicted by a bad tombstone"
    );
    assert!(s.state().tombstones.is_empty());
}

/// A data directory written by format 1.0 (minor 0: registrations without
/// `health.kind`): its snapshot and its log open, and a compaction rewrites them in the
/// current format.
#[test]
fn a_data_directory_of_format_1_0_opens() {
    use probemesh_gossip::model::RegistrationV0;
    use std::collections::BTreeMap;
    #[derive(Serialize)]
    enum OldMutation {
        PutRegistration(RegistrationV0),
    }
    #[derive(Serialize)]
    struct OldState {
        registrations: BTreeMap<probemesh_gossip::model::WorkerId, RegistrationV0>,
        tombstones: BTreeMap<probemesh_gossip::model::WorkerId, Tombstone>,
        last_generation: BTreeMap<probemesh_gossip::model::WorkerId, u64>,
    }
    fn at_minor_0<T: Serialize>(v: &T) -> Vec<u8> {
        let mut out = codec::MAGIC.to_vec();
        out.extend([codec::FORMAT_MAJOR, 0]);
        postcard::to_extend(v, out).unwrap()
    }
    let dir = tempfile::tempdir().unwrap();
    let in_snapshot = valid_registration();
    let mut in_log = valid_registration();
    in_log.spec.url = probemesh_gossip::model::WorkerUrl::parse("http://10.0.0.9:1").unwrap();
    in_log.id = in_log.spec.url.id();
    in_log.spec.health.interval_ms = Some(750);
    let state = OldState {
        registrations: [(
            in_snapshot.id.clone(),
            RegistrationV0::from_current(&in_snapshot),
        )]
        .into_iter()
        .collect(),
        tombstones: BTreeMap::new(),
        last_generation: [(in_snapshot.id.clone(), 1)].into_iter().collect(),
    };
    let mut buf = Vec::new();
    push_frame(&mut buf, &at_minor_0(&state)).unwrap();
    fs::write(dir.path().join(SNAPSHOT_FILE), buf).unwrap();
    write_wal(
        dir.path(),
        &[at_minor_0(&OldMutation::PutRegistration(
            RegistrationV0::from_current(&in_log),
        ))],
    );
    let (mut s, report) = Store::open(dir.path()).unwrap();
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    assert_eq!(
        s.state().registrations.get(&in_snapshot.id),
        Some(&in_snapshot)
    );
    assert_eq!(s.state().registrations.get(&in_log.id), Some(&in_log));
    s.compact().unwrap();
    drop(s);
    let (s, _) = Store::open(dir.path()).unwrap();
    assert_eq!(
        s.state().registrations.len(),
        2,
        "rewritten in the current format"
    );
}
