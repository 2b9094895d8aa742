//! A read cache in front of the metadata database, for the hot path (authenticate,
//! decide, resolve): each entry is tagged with the database generation it was read at,
//! and every write transaction bumps the generation both before and after it commits.
//! A reader stores what it read only if the generation did not move while it read, so
//! an entry is never newer-tagged than the data it holds, and every commit invalidates
//! everything read before it. Within one process a revocation, suspension or lifecycle
//! change is therefore seen by the next request. (Several nodes sharing one database
//! would need a shared generation; see ARCHITECTURE.md.)

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Entries kept per map before it is emptied (bounds memory under key churn).
const MAX_ENTRIES: usize = 65_536;

/// The generation counter.
#[derive(Debug, Default)]
pub(crate) struct Generation(AtomicU64);

impl Generation {
    pub(crate) fn current(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
    pub(crate) fn bump(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

/// One cached map.
#[derive(Debug)]
pub(crate) struct Cached<K, V> {
    map: RwLock<HashMap<K, (u64, V)>>,
}

impl<K, V> Default for Cached<K, V> {
    fn default() -> Self {
        Self {
            map: RwLock::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash, V: Clone> Cached<K, V> {
    /// The value cached for `key` at generation `g`.
    pub(crate) fn get(&self, key: &K, g: u64) -> Option<V> {
        let map = self.map.read().ok()?;
        map.get(key)
            .filter(|(at, _)| *at == g)
            .map(|(_, v)| v.clone())
    }

    /// Stores `v`, read at generation `g`, unless the generation has moved since.
    pub(crate) fn put(&self, generation: &Generation, g: u64, key: K, v: V) {
        let Ok(mut map) = self.map.write() else {
            return;
        };
        if generation.current() != g {
            return;
        }
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(key, (g, v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bump_invalidates_and_a_read_across_a_bump_is_not_stored() {
        let generation = Generation::default();
        let c: Cached<&str, u32> = Cached::default();
        let g = generation.current();
        c.put(&generation, g, "a", 1);
        assert_eq!(c.get(&"a", generation.current()), Some(1));
        generation.bump();
        assert_eq!(
            c.get(&"a", generation.current()),
            None,
            "stale after a write"
        );
        let g = generation.current();
        generation.bump(); // a write lands while the reader reads
        c.put(&generation, g, "a", 2);
        assert_eq!(
            c.get(&"a", generation.current()),
            None,
            "a read that raced a write is dropped"
        );
    }
}
