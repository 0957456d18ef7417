//! Store tests: durability across reopen, torn tails, compaction, locking, versions.

use super::*;
use frame::write_frame;
use probemesh_gossip::model::{EvictionReason, Registration, Tombstone, WorkerSpec, WorkerUrl};

fn reg(n: u16, generation: u64) -> Registration {
    let url = WorkerUrl::parse(&format!("http://10.0.0.1:{n}")).unwrap();
    Registration {
        id: url.id(),
        generation,
        owner: "node-a".into(),
        registered_at_ms: 1,
        revision: 1,
        spec: WorkerSpec::new(url),
    }
}

fn tomb(r: &Registration) -> Tombstone {
    Tombstone {
        id: r.id.clone(),
        url: r.spec.url.clone(),
        generation: r.generation,
        reason: EvictionReason::Deleted,
        writer: "node-a".into(),
        deleted_at_ms: 2,
        expires_at_ms: 3,
    }
}

#[test]
fn committed_mutations_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = Store::open(dir.path()).unwrap();
    for n in 0..10 {
        s.commit(Mutation::PutRegistration(reg(n, 1))).unwrap();
    }
    s.commit(Mutation::PutTombstone(tomb(&reg(3, 1)))).unwrap();
    let before = s.state().clone();
    drop(s);
    let (s, report) = Store::open(dir.path()).unwrap();
    assert_eq!(report.replayed, 11);
    assert_eq!(s.state(), &before);
    assert_eq!(s.state().registrations.len(), 9);
    assert!(s.state().is_tombstoned(&reg(3, 1).id, 1));
    assert_eq!(s.state().next_generation(&reg(3, 1).id), Some(2));
}

#[test]
fn a_torn_tail_is_cut_and_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = Store::open(dir.path()).unwrap();
    s.commit(Mutation::PutRegistration(reg(1, 1))).unwrap();
    s.commit(Mutation::PutRegistration(reg(2, 1))).unwrap();
    drop(s);
    let wal = dir.path().join(WAL_FILE);
    let len = fs::metadata(&wal).unwrap().len();
    // Simulate a crash in the middle of the second append.
    OpenOptions::new()
        .write(true)
        .open(&wal)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let (mut s, report) = Store::open(dir.path()).unwrap();
    assert_eq!(report.replayed, 1);
    assert!(report.truncated_bytes > 0);
    assert_eq!(s.state().registrations.len(), 1);
    // New appends after the cut are readable.
    s.commit(Mutation::PutRegistration(reg(3, 1))).unwrap();
    drop(s);
    let (s, _) = Store::open(dir.path()).unwrap();
    assert_eq!(s.state().registrations.len(), 2);
}

#[test]
fn compaction_keeps_everything_and_empties_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = Store::open(dir.path()).unwrap();
    for n in 0..50 {
        s.commit(Mutation::PutRegistration(reg(n, 1))).unwrap();
    }
    s.compact().unwrap();
    assert_eq!(fs::metadata(dir.path().join(WAL_FILE)).unwrap().len(), 0);
    s.commit(Mutation::PutTombstone(tomb(&reg(7, 1)))).unwrap();
    let before = s.state().clone();
    drop(s);
    let (s, report) = Store::open(dir.path()).unwrap();
    assert_eq!(report.replayed, 1);
    assert_eq!(s.state(), &before);
}

#[test]
fn replaying_a_log_over_a_snapshot_that_contains_it_is_harmless() {
    // A crash after the snapshot rename but before the log truncation.
    let mut state = DurableState::default();
    let log = vec![
        Mutation::PutRegistration(reg(1, 1)),
        Mutation::PutTombstone(tomb(&reg(1, 1))),
        Mutation::PutRegistration(reg(1, 2)),
        Mutation::PutRegistration(reg(2, 1)),
        Mutation::DropTombstone {
            id: reg(1, 1).id,
            generation: 1,
        },
    ];
    for m in &log {
        state.apply(m);
    }
    let mut replayed = state.clone();
    for m in &log {
        replayed.apply(m);
    }
    assert_eq!(replayed, state);
    assert_eq!(state.registrations[&reg(1, 2).id].generation, 2);
}

#[test]
fn tombstones_block_their_generation_but_not_newer_ones() {
    let mut s = DurableState::default();
    s.apply(&Mutation::PutTombstone(tomb(&reg(1, 3))));
    s.apply(&Mutation::PutRegistration(reg(1, 2)));
    assert!(s.registrations.is_empty(), "older generation stays dead");
    s.apply(&Mutation::PutRegistration(reg(1, 4)));
    assert_eq!(s.registrations.len(), 1);
    // An older tombstone arriving late does not replace the newer one.
    s.apply(&Mutation::PutTombstone(tomb(&reg(1, 1))));
    assert_eq!(s.tombstones[&reg(1, 1).id].generation, 3);
}

#[test]
fn a_second_agent_cannot_open_the_same_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (_s, _) = Store::open(dir.path()).unwrap();
    assert!(matches!(
        Store::open(dir.path()),
        Err(StoreError::Locked(_))
    ));
}

#[test]
fn a_snapshot_from_a_newer_major_version_is_refused_not_misread() {
    let dir = tempfile::tempdir().unwrap();
    let mut payload = codec::encode(&DurableState::default()).unwrap();
    payload[codec::MAGIC.len()] = codec::FORMAT_MAJOR + 1;
    let mut f = File::create(dir.path().join(SNAPSHOT_FILE)).unwrap();
    write_frame(&mut f, &payload).unwrap();
    drop(f);
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::NewerFormat { .. }), "{err}");
    assert!(err.to_string().contains("newer probemesh"));
}

#[test]
fn a_damaged_snapshot_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join(SNAPSHOT_FILE),
        b"garbage that is not a frame",
    )
    .unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
}

#[test]
fn damage_before_acknowledged_records_is_refused_not_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = Store::open(dir.path()).unwrap();
    for n in 0..3 {
        s.commit(Mutation::PutRegistration(reg(n, 1))).unwrap();
    }
    drop(s);
    let wal = dir.path().join(WAL_FILE);
    let mut bytes = fs::read(&wal).unwrap();
    bytes[10] ^= 0xff; // inside the first record's payload
    fs::write(&wal, &bytes).unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert_eq!(fs::read(&wal).unwrap(), bytes, "nothing was cut");
}

#[test]
fn generations_run_out_at_the_top_instead_of_wrapping_or_reusing() {
    let mut s = DurableState::default();
    let r = reg(1, u64::MAX);
    s.apply(&Mutation::PutTombstone(tomb(&r)));
    assert_eq!(s.next_generation(&r.id), None);
    let mut t = DurableState::default();
    t.apply(&Mutation::PutTombstone(tomb(&reg(1, u64::MAX - 1))));
    assert_eq!(t.next_generation(&r.id), Some(u64::MAX));
}
