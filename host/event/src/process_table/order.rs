//! The table's eviction order: three ordered sets, one per [`Class`], each keyed by a unique
//! stamp so moving an image is a remove and an insert (O(log n)), never a scan.

use std::collections::BTreeMap;

pub(super) type Key = (i32, i32);

/// `(when, uid)`: `when` orders the set, the image's unique id breaks ties.
pub(super) type Stamp = (u64, u64);

/// Which set an image is in, in the order they are evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    /// Exited or retired, and no live image descends from it. Ordered by when it ended:
    /// these expire after the grace and go first under pressure.
    Ended,
    /// Live, and no live image descends from it. Ordered by when it was last seen.
    Leaf,
    /// A live image descends from it (it may itself be live, exited or retired). Ordered by
    /// when it was last seen; evicted only when nothing else is left.
    Ancestor,
}

#[derive(Debug, Default)]
pub(super) struct Order {
    ended: BTreeMap<Stamp, Key>,
    leaves: BTreeMap<Stamp, Key>,
    ancestors: BTreeMap<Stamp, Key>,
}

impl Order {
    fn set(&mut self, class: Class) -> &mut BTreeMap<Stamp, Key> {
        match class {
            Class::Ended => &mut self.ended,
            Class::Leaf => &mut self.leaves,
            Class::Ancestor => &mut self.ancestors,
        }
    }

    pub(super) fn insert(&mut self, class: Class, stamp: Stamp, key: Key) {
        self.set(class).insert(stamp, key);
    }

    pub(super) fn remove(&mut self, class: Class, stamp: Stamp) {
        self.set(class).remove(&stamp);
    }

    /// The ended image that ended first, with when it ended.
    pub(super) fn oldest_ended(&self) -> Option<(u64, Key)> {
        self.ended
            .first_key_value()
            .map(|(&(at, _), &key)| (at, key))
    }

    /// The next image to evict, never `protect`: ended first, then least recently seen
    /// leaves, then least recently seen ancestors. Looks at most two entries per set.
    pub(super) fn victim(&self, protect: Option<Key>) -> Option<Key> {
        [&self.ended, &self.leaves, &self.ancestors]
            .into_iter()
            .find_map(|set| set.values().take(2).copied().find(|k| Some(*k) != protect))
    }

    /// Images in each set: ended, leaves, ancestors.
    #[cfg(test)]
    pub(super) fn lens(&self) -> (usize, usize, usize) {
        (self.ended.len(), self.leaves.len(), self.ancestors.len())
    }

    #[cfg(test)]
    pub(super) fn get(&self, class: Class, stamp: Stamp) -> Option<Key> {
        match class {
            Class::Ended => self.ended.get(&stamp).copied(),
            Class::Leaf => self.leaves.get(&stamp).copied(),
            Class::Ancestor => self.ancestors.get(&stamp).copied(),
        }
    }
}
