//! The durable state and the mutations that change it.

use probemesh_gossip::codec::Evolving;
use probemesh_gossip::model::{Drain, Registration, RegistrationV0, Tombstone, WorkerId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Everything the agent must not lose.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DurableState {
    /// Live registrations, one generation per worker.
    pub registrations: BTreeMap<WorkerId, Registration>,
    /// The newest tombstone per worker; it kills every generation up to its own.
    pub tombstones: BTreeMap<WorkerId, Tombstone>,
    /// Highest generation ever used per worker, so a new registration never reuses a
    /// generation even after its tombstone expired.
    pub last_generation: BTreeMap<WorkerId, u64>,
    /// Drains in progress (SPEC S14), one per worker: its live generation's. Last, so a
    /// format 1.0 layout is a prefix of this one.
    pub drains: BTreeMap<WorkerId, Drain>,
}

/// One change to the durable state. Applying a mutation twice, or replaying a log
/// suffix over a state that already contains it, gives the same state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Mutation {
    /// Adds or replaces a registration (new worker, new generation or PATCH).
    PutRegistration(Registration),
    /// Evicts a generation: stores the tombstone and removes the registration if it is
    /// that generation or older.
    PutTombstone(Tombstone),
    /// Forgets an expired tombstone.
    DropTombstone {
        /// Worker whose tombstone expired.
        id: WorkerId,
        /// Generation of the expired tombstone; a newer one is kept.
        generation: u64,
    },
    /// Starts draining a generation (SPEC S14); of two drains of one generation, the
    /// one that ends first is kept. Added in format 1.1, after the older variants.
    PutDrain(Drain),
}

impl DurableState {
    /// Applies one mutation.
    pub fn apply(&mut self, m: &Mutation) {
        match m {
            Mutation::PutRegistration(r) => {
                if self.is_tombstoned(&r.id, r.generation) {
                    return;
                }
                self.bump_generation(&r.id, r.generation);
                // A newer generation is not the one being drained.
                if self
                    .drains
                    .get(&r.id)
                    .is_some_and(|d| d.generation < r.generation)
                {
                    self.drains.remove(&r.id);
                }
                self.registrations.insert(r.id.clone(), r.clone());
            }
            Mutation::PutDrain(d) => {
                let drains_it = self
                    .registrations
                    .get(&d.id)
                    .is_some_and(|r| r.generation == d.generation);
                let earlier = self.drains.get(&d.id).is_none_or(|old| {
                    old.generation < d.generation || old.ends_at_ms > d.ends_at_ms
                });
                if drains_it && earlier {
                    self.drains.insert(d.id.clone(), d.clone());
                }
            }
            Mutation::PutTombstone(t) => {
                self.bump_generation(&t.id, t.generation);
                if self
                    .registrations
                    .get(&t.id)
                    .is_some_and(|r| r.generation <= t.generation)
                {
                    self.registrations.remove(&t.id);
                }
                let newer_exists = self
                    .tombstones
                    .get(&t.id)
                    .is_some_and(|old| old.generation > t.generation);
                if !newer_exists {
                    self.tombstones.insert(t.id.clone(), t.clone());
                }
                if self
                    .drains
                    .get(&t.id)
                    .is_some_and(|d| d.generation <= t.generation)
                {
                    self.drains.remove(&t.id);
                }
            }
            Mutation::DropTombstone { id, generation } => {
                if self
                    .tombstones
                    .get(id)
                    .is_some_and(|t| t.generation == *generation)
                {
                    self.tombstones.remove(id);
                }
            }
        }
    }

    /// Whether `generation` of `id` is covered by a tombstone.
    pub fn is_tombstoned(&self, id: &WorkerId, generation: u64) -> bool {
        self.tombstones
            .get(id)
            .is_some_and(|t| t.generation >= generation)
    }

    /// The generation a new registration of `id` gets, or `None` when every generation
    /// was used (a tombstone at `u64::MAX`, possible only through a forged record):
    /// reusing one would be silently dropped as tombstoned.
    pub fn next_generation(&self, id: &WorkerId) -> Option<u64> {
        let next = self
            .last_generation
            .get(id)
            .copied()
            .unwrap_or(0)
            .checked_add(1)?;
        (!self.is_tombstoned(id, next)).then_some(next)
    }

    fn bump_generation(&mut self, id: &WorkerId, generation: u64) {
        let g = self.last_generation.entry(id.clone()).or_insert(0);
        *g = (*g).max(generation);
    }
}

/// [`Mutation`] as format 1.0 (minor 0) encoded it: registrations without
/// `health.kind`.
#[derive(Deserialize)]
enum MutationV0 {
    PutRegistration(RegistrationV0),
    PutTombstone(Tombstone),
    DropTombstone { id: WorkerId, generation: u64 },
}

impl From<MutationV0> for Mutation {
    fn from(m: MutationV0) -> Mutation {
        match m {
            MutationV0::PutRegistration(r) => Mutation::PutRegistration(r.into()),
            MutationV0::PutTombstone(t) => Mutation::PutTombstone(t),
            MutationV0::DropTombstone { id, generation } => {
                Mutation::DropTombstone { id, generation }
            }
        }
    }
}

impl Evolving for Mutation {
    fn decode_older(_minor: u8, payload: &[u8]) -> Result<Mutation, postcard::Error> {
        postcard::from_bytes::<MutationV0>(payload).map(Mutation::from)
    }
}

/// [`DurableState`] as format 1.0 (minor 0) encoded it.
#[derive(Deserialize)]
struct DurableStateV0 {
    registrations: BTreeMap<WorkerId, RegistrationV0>,
    tombstones: BTreeMap<WorkerId, Tombstone>,
    last_generation: BTreeMap<WorkerId, u64>,
}

impl Evolving for DurableState {
    fn decode_older(_minor: u8, payload: &[u8]) -> Result<DurableState, postcard::Error> {
        postcard::from_bytes::<DurableStateV0>(payload).map(|s| DurableState {
            registrations: s
                .registrations
                .into_iter()
                .map(|(id, r)| (id, r.into()))
                .collect(),
            tombstones: s.tombstones,
            last_generation: s.last_generation,
            drains: BTreeMap::new(),
        })
    }
}
