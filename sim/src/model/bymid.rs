//! A map keyed by [`Mid`], stored densely: the model names every member instance by a
//! small index, so a vector of slots is a map whose look-ups cost an index, and whose
//! iteration is in `Mid` order (deterministic) like a `BTreeMap`'s.

use super::Mid;

/// A map from member instance to `T`.
#[derive(Clone, Debug)]
pub struct ByMid<T> {
    slots: Vec<Option<T>>,
    len: usize,
}

impl<T> Default for ByMid<T> {
    fn default() -> Self {
        ByMid {
            slots: Vec::new(),
            len: 0,
        }
    }
}

impl<T> ByMid<T> {
    /// An empty map with room for `Mid`s below `n`.
    pub fn with_room(n: usize) -> ByMid<T> {
        let mut slots = Vec::with_capacity(n);
        slots.resize_with(n, || None);
        ByMid { slots, len: 0 }
    }

    /// One more than the highest `Mid` this map has room for.
    pub fn room(&self) -> usize {
        self.slots.len()
    }

    /// The value of `m`.
    pub fn get(&self, m: Mid) -> Option<&T> {
        self.slots.get(m).and_then(Option::as_ref)
    }

    /// The value of `m`, mutably.
    pub fn get_mut(&mut self, m: Mid) -> Option<&mut T> {
        self.slots.get_mut(m).and_then(Option::as_mut)
    }

    /// Whether `m` has a value.
    pub fn contains(&self, m: Mid) -> bool {
        self.get(m).is_some()
    }

    /// Sets the value of `m`; returns the old one.
    pub fn insert(&mut self, m: Mid, value: T) -> Option<T> {
        if self.slots.len() <= m {
            self.slots.resize_with(m + 1, || None);
        }
        let old = self.slots[m].replace(value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes the value of `m`.
    pub fn remove(&mut self, m: Mid) -> Option<T> {
        let old = self.slots.get_mut(m).and_then(Option::take);
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// The value of `m`, inserted by `make` if absent.
    pub fn get_or_insert_with(&mut self, m: Mid, make: impl FnOnce() -> T) -> &mut T {
        if !self.contains(m) {
            self.insert(m, make());
        }
        match self.slots[m].as_mut() {
            Some(v) => v,
            None => unreachable!("inserted above"),
        }
    }

    /// How many values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The values in `Mid` order.
    pub fn iter(&self) -> impl Iterator<Item = (Mid, &T)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(m, v)| v.as_ref().map(|v| (m, v)))
    }

    /// The values in `Mid` order.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().filter_map(Option::as_ref)
    }

    /// The values in `Mid` order, mutably.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.slots.iter_mut().filter_map(Option::as_mut)
    }

    /// The keys in order.
    pub fn keys(&self) -> impl Iterator<Item = Mid> + '_ {
        self.iter().map(|(m, _)| m)
    }

    /// Keeps the values for which `keep` holds.
    pub fn retain(&mut self, mut keep: impl FnMut(Mid, &mut T) -> bool) {
        for (m, slot) in self.slots.iter_mut().enumerate() {
            if let Some(v) = slot
                && !keep(m, v)
            {
                *slot = None;
                self.len -= 1;
            }
        }
    }
}

impl<T: Default> ByMid<T> {
    /// The value of `m`, a default one inserted if absent.
    pub fn entry_or_default(&mut self, m: Mid) -> &mut T {
        self.get_or_insert_with(m, T::default)
    }
}
