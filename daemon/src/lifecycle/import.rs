//! What a node does with the cluster's registrations and tombstones (SPEC S2, S6, S7,
//! S8). Pure: the caller supplies the local view, the cluster snapshot and the
//! allowlist, and applies the returned actions.

use probemesh_gossip::cluster::Advertised;
use probemesh_gossip::model::{Drain, Registration, Tombstone, WorkerId, WorkerSpec};
use std::collections::BTreeMap;

/// One local worker, as the planner needs it.
#[derive(Clone, Debug)]
pub struct LocalWorker<'a> {
    /// Its generation.
    pub generation: u64,
    /// Its revision (time of the last spec change).
    pub revision: u64,
    /// Its spec.
    pub spec: &'a WorkerSpec,
}

/// A change to make to the local view.
#[derive(Clone, Debug, PartialEq)]
pub enum ImportAction {
    /// A worker this node did not know: enters as `pending` (S2).
    Insert(Registration),
    /// A newer generation replaces the local one: `pending` again (S7).
    Replace(Registration),
    /// Same generation, newer revision (a PATCH made elsewhere): status kept (S9).
    UpdateSpec(Registration),
    /// A tombstone this node has not applied yet: record it and drop the worker (S6).
    Tombstone(Tombstone),
    /// A drain of a generation this node tracks (S14): record it, status `draining`.
    Drain(Drain),
}

/// Plans the import. `tombstones` holds the newest tombstone per worker known anywhere
/// (locally stored or gossiped); `allowed` says whether a worker may be probed here.
/// A tombstone that has expired at `now_ms` is not taken: every node forgets it at its
/// expiry, and one still in gossip (this node's own key until the next publication, or
/// a peer's that has not expired it yet) must not bring it back.
/// Every record here passed the cluster validator when it was decoded.
///
/// A registration that names this node as its `owner` but is not in this node's view
/// at that generation was not registered here (or this node lost its data and no
/// longer knows it): it is imported as the advertiser's, so this node never takes it
/// for its own and never advertises it as such (see [`claims_self`]).
pub fn plan(
    self_id: &str,
    local: &BTreeMap<WorkerId, LocalWorker<'_>>,
    advertised: &BTreeMap<WorkerId, Advertised>,
    gossiped_tombstones: &BTreeMap<WorkerId, Tombstone>,
    stored_tombstone_gen: impl Fn(&WorkerId) -> Option<u64>,
    allowed: impl Fn(&WorkerSpec) -> bool,
    now_ms: u64,
) -> Vec<ImportAction> {
    let mut out = Vec::new();
    let dead_up_to = |id: &WorkerId| {
        let gossiped = gossiped_tombstones.get(id).map(|t| t.generation);
        gossiped.max(stored_tombstone_gen(id))
    };
    for (id, t) in gossiped_tombstones {
        if t.expires_at_ms > now_ms && stored_tombstone_gen(id).is_none_or(|g| g < t.generation) {
            out.push(ImportAction::Tombstone(t.clone()));
        }
    }
    for (id, adv) in advertised {
        let reg = &adv.reg;
        if adv.by == self_id
            || dead_up_to(id).is_some_and(|g| g >= reg.generation)
            || !allowed(&reg.spec)
        {
            continue;
        }
        let attributed = || {
            let mut r = Registration::clone(reg);
            if claims_self(self_id, &r) {
                r.owner = adv.by.clone();
            }
            r
        };
        match local.get(id) {
            None => out.push(ImportAction::Insert(attributed())),
            Some(l) if l.generation < reg.generation => {
                out.push(ImportAction::Replace(attributed()))
            }
            Some(l) if l.generation == reg.generation && l.revision < reg.revision => {
                out.push(ImportAction::UpdateSpec(Registration::clone(reg)));
            }
            Some(_) => {}
        }
    }
    out
}

/// Whether a peer's registration names this node as its owner. Only this node's own
/// store can say that truthfully; gossip cannot, because any member can write any owner
/// (SPEC S10): such a claim is a forged or stale owner.
pub fn claims_self(self_id: &str, reg: &Registration) -> bool {
    reg.owner == self_id
}

/// Whether this node must advertise registrations that no live member advertises any
/// more (their owner died, S8): the live member with the smallest node id does, so the
/// cluster agrees on one adopter without a vote.
pub fn is_adopter<'a>(self_id: &str, live_members: impl IntoIterator<Item = &'a str>) -> bool {
    live_members.into_iter().min().is_none_or(|m| m >= self_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use probemesh_gossip::model::{EvictionReason, WorkerUrl};

    fn reg(port: u16, generation: u64, owner: &str) -> Registration {
        let url = WorkerUrl::parse(&format!("http://10.0.0.1:{port}")).unwrap();
        Registration {
            id: url.id(),
            generation,
            owner: owner.into(),
            registered_at_ms: 0,
            revision: 0,
            spec: WorkerSpec::new(url),
        }
    }

    fn adv(r: &Registration, by: &str) -> (WorkerId, Advertised) {
        (
            r.id.clone(),
            Advertised {
                reg: std::sync::Arc::new(r.clone()),
                by: by.into(),
            },
        )
    }

    fn tomb(r: &Registration) -> Tombstone {
        Tombstone {
            id: r.id.clone(),
            url: r.spec.url.clone(),
            generation: r.generation,
            reason: EvictionReason::Deleted,
            writer: "x".into(),
            deleted_at_ms: 0,
            expires_at_ms: u64::MAX,
        }
    }

    fn run(
        local: &BTreeMap<WorkerId, LocalWorker<'_>>,
        advertised: &[(WorkerId, Advertised)],
        tombs: &[Tombstone],
    ) -> Vec<ImportAction> {
        let advertised: BTreeMap<_, _> = advertised.iter().cloned().collect();
        let tombs: BTreeMap<_, _> = tombs.iter().map(|t| (t.id.clone(), t.clone())).collect();
        plan("me", local, &advertised, &tombs, |_| None, |_| true, 0)
    }

    #[test]
    fn unknown_peer_workers_are_inserted_and_own_ones_skipped() {
        let a = reg(1, 1, "peer");
        let mine = reg(2, 1, "me");
        let actions = run(&BTreeMap::new(), &[adv(&a, "peer"), adv(&mine, "me")], &[]);
        assert_eq!(actions, vec![ImportAction::Insert(a)]);
    }

    #[test]
    fn newer_generations_replace_and_newer_revisions_update_the_spec() {
        let old = reg(1, 1, "peer");
        let newer = reg(1, 2, "peer");
        let mut local = BTreeMap::new();
        local.insert(
            old.id.clone(),
            LocalWorker {
                generation: 1,
                revision: 0,
                spec: &old.spec,
            },
        );
        assert_eq!(
            run(&local, &[adv(&newer, "peer")], &[]),
            vec![ImportAction::Replace(newer.clone())]
        );
        let mut patched = old.clone();
        patched.spec.priority = 9;
        patched.revision = 5;
        assert_eq!(
            run(&local, &[adv(&patched, "peer")], &[]),
            vec![ImportAction::UpdateSpec(patched.clone())]
        );
        let mut stale = old.clone();
        stale.spec.priority = 3;
        assert!(
            run(&local, &[adv(&stale, "peer")], &[]).is_empty(),
            "an equal (or older) revision changes nothing"
        );
    }

    #[test]
    fn tombstoned_generations_are_never_imported_and_tombstones_are_applied_once() {
        let r = reg(1, 3, "peer");
        let t = tomb(&r);
        assert_eq!(
            run(
                &BTreeMap::new(),
                &[adv(&r, "peer")],
                std::slice::from_ref(&t)
            ),
            vec![ImportAction::Tombstone(t.clone())]
        );
        let advertised: BTreeMap<_, _> = [adv(&r, "peer")].into_iter().collect();
        let tombs: BTreeMap<_, _> = [(t.id.clone(), t.clone())].into_iter().collect();
        let stored = plan(
            "me",
            &BTreeMap::new(),
            &advertised,
            &tombs,
            |_| Some(3),
            |_| true,
            0,
        );
        assert!(stored.is_empty(), "already stored: nothing");
        let newer = reg(1, 4, "peer");
        assert_eq!(
            run(
                &BTreeMap::new(),
                &[adv(&newer, "peer")],
                std::slice::from_ref(&t)
            )[1],
            ImportAction::Insert(newer)
        );
    }

    #[test]
    fn an_expired_tombstone_is_never_taken_again() {
        let r = reg(1, 3, "peer");
        let mut t = tomb(&r);
        t.expires_at_ms = 1_000;
        let tombs: BTreeMap<_, _> = [(t.id.clone(), t.clone())].into_iter().collect();
        let plan_at = |now| {
            plan(
                "me",
                &BTreeMap::new(),
                &BTreeMap::new(),
                &tombs,
                |_| None,
                |_| true,
                now,
            )
        };
        assert_eq!(plan_at(999), vec![ImportAction::Tombstone(t.clone())]);
        assert!(
            plan_at(1_000).is_empty(),
            "expired: forgotten, not re-imported"
        );
    }

    #[test]
    fn disallowed_workers_are_ignored() {
        let a = reg(1, 1, "peer");
        let advertised: BTreeMap<_, _> = [adv(&a, "peer")].into_iter().collect();
        assert!(
            plan(
                "me",
                &BTreeMap::new(),
                &advertised,
                &BTreeMap::new(),
                |_| None,
                |_| false,
                0,
            )
            .is_empty()
        );
    }

    #[test]
    fn a_registration_claiming_this_node_as_owner_is_imported_as_the_advertisers() {
        let forged = reg(1, 1, "me");
        let actions = run(&BTreeMap::new(), &[adv(&forged, "rogue")], &[]);
        let ImportAction::Insert(imported) = &actions[0] else {
            panic!("{actions:?}")
        };
        assert_eq!(imported.owner, "rogue");
        assert!(!claims_self("me", imported));
        // A newer generation in this node's name, while it holds an older one: the same.
        let old = reg(1, 1, "me");
        let mut local = BTreeMap::new();
        local.insert(
            old.id.clone(),
            LocalWorker {
                generation: 1,
                revision: 0,
                spec: &old.spec,
            },
        );
        let newer = reg(1, 2, "me");
        let actions = run(&local, &[adv(&newer, "rogue")], &[]);
        assert!(
            matches!(&actions[..], [ImportAction::Replace(r)] if r.owner == "rogue"),
            "{actions:?}"
        );
        // Owners other than this node are kept as advertised.
        let theirs = reg(2, 1, "peer");
        assert_eq!(
            run(&BTreeMap::new(), &[adv(&theirs, "relay")], &[]),
            vec![ImportAction::Insert(theirs)]
        );
    }

    /// The cluster's shared boundary cases, as a peer publishes them: a refused record
    /// never gets past decoding (it is dropped there, naming the same field the API
    /// names), so the import rules never see it; an accepted one is imported.
    #[test]
    fn shared_boundary_cases_hold_for_gossiped_records() {
        use probemesh_gossip::keys::{self, ValueError};
        use probemesh_gossip::model::validate::cases::{
            RawRegistration, cases, valid_registration,
        };
        for c in cases() {
            let mut r = valid_registration();
            (c.apply)(&mut r);
            let value = match c.raw_url {
                Some(url) => keys::encode_value(&RawRegistration::new(&r, url)),
                None => keys::encode_value(&r),
            }
            .unwrap();
            let decoded = keys::decode_registration(r.id.as_str(), &value);
            match (c.refused, decoded) {
                (None, Ok(reg)) => {
                    let advertised: BTreeMap<_, _> = [adv(&reg, "peer")].into_iter().collect();
                    let actions = plan(
                        "me",
                        &BTreeMap::new(),
                        &advertised,
                        &BTreeMap::new(),
                        |_| None,
                        |_| true,
                        0,
                    );
                    assert_eq!(actions, vec![ImportAction::Insert(reg)], "{}", c.name);
                }
                (Some(_), Err(ValueError::Codec(_))) if c.raw_url.is_some() => {}
                (Some(field), Err(ValueError::Invalid(e))) => {
                    assert_eq!(e.field(), field, "{}: {e}", c.name);
                }
                (want, got) => panic!("{}: wanted {want:?}, got {got:?}", c.name),
            }
        }
    }

    #[test]
    fn the_smallest_live_node_id_adopts() {
        assert!(is_adopter("a", ["b", "c", "a"]));
        assert!(!is_adopter("b", ["b", "c", "a"]));
        assert!(is_adopter("solo", []));
    }
}
