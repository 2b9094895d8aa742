//! What the engine keeps between evaluations: decisions for the current second, the
//! entity slices of recent principal–resource pairs, and Cedar `ip` values.
//!
//! Every cache is bounded, and none ever frees its contents while holding its lock:
//! a full or outdated map is swapped for an empty one under the lock and dropped after
//! it is released, so no reader waits while thousands of entries are freed.

use crate::{AccessRequest, Decision, PrincipalFacts, ResourceFacts};
use cedar_policy::{Entities, RestrictedExpression};
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

/// Decisions kept for one second.
const DECISIONS: usize = 16_384;
/// Entity slices kept.
const SLICES: usize = 4_096;
/// Addresses whose Cedar `ip` value is kept.
const ADDRESSES: usize = 65_536;

/// A bounded map: inserting into a full map first swaps it for an empty one, and the
/// old contents are returned for the caller to drop once the lock is released.
#[derive(Debug)]
struct Bounded<K, V> {
    map: HashMap<K, V>,
    cap: usize,
}

impl<K: Hash + Eq, V> Bounded<K, V> {
    fn new(cap: usize) -> Self {
        Self {
            map: HashMap::new(),
            cap,
        }
    }

    #[must_use]
    fn insert(&mut self, k: K, v: V) -> HashMap<K, V> {
        let old = if self.map.len() >= self.cap {
            std::mem::take(&mut self.map)
        } else {
            HashMap::new()
        };
        self.map.insert(k, v);
        old
    }
}

/// Decisions by their complete request (every fact a policy can see, the time in
/// seconds included): a decision is a pure function of its request and the policy set,
/// so a repeated request within the same second gets the same answer without
/// re-evaluation. Only the current second's decisions are kept, since a request
/// stamped with an earlier second does not come again; moving to a new second swaps
/// the map, so the map stays as small as one second's distinct requests.
#[derive(Debug)]
pub(crate) struct Decisions {
    inner: RwLock<(i64, Bounded<AccessRequest, Decision>)>,
}

impl Decisions {
    pub(crate) fn new() -> Self {
        Self {
            inner: RwLock::new((i64::MIN, Bounded::new(DECISIONS))),
        }
    }

    pub(crate) fn get(&self, req: &AccessRequest) -> Option<Decision> {
        let g = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        if g.0 != req.context.now {
            return None;
        }
        g.1.map.get(req).cloned()
    }

    /// Keeps `d` for `req`; a request from a second already past is not kept.
    pub(crate) fn put(&self, req: &AccessRequest, d: &Decision) {
        let now = req.context.now;
        let stale = {
            let mut g = self.inner.write().unwrap_or_else(PoisonError::into_inner);
            if now < g.0 {
                return;
            }
            let outdated = if now > g.0 {
                g.0 = now;
                std::mem::take(&mut g.1.map)
            } else {
                HashMap::new()
            };
            (outdated, g.1.insert(req.clone(), d.clone()))
        };
        drop(stale);
    }
}

/// The principal and resource facts an entity slice is built from.
type SliceKey = (PrincipalFacts, ResourceFacts);

/// Entity slices (the principal and resource entities Cedar evaluates against) by the
/// facts they are built from. They do not depend on the time, the address or the
/// action, so a principal's slice for a model serves every later second's fresh
/// decisions; building and closing one costs about a third of an evaluation.
#[derive(Debug)]
pub(crate) struct Slices {
    inner: RwLock<Bounded<SliceKey, Arc<Entities>>>,
}

impl Slices {
    pub(crate) fn new() -> Self {
        Self {
            inner: RwLock::new(Bounded::new(SLICES)),
        }
    }

    pub(crate) fn get(&self, p: &PrincipalFacts, r: &ResourceFacts) -> Option<Arc<Entities>> {
        let g = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        // The key is owned, so a lookup clones the facts (a few short strings): far
        // less than the slice it saves building.
        if g.map.is_empty() {
            return None;
        }
        g.map.get(&(p.clone(), r.clone())).cloned()
    }

    pub(crate) fn put(&self, p: &PrincipalFacts, r: &ResourceFacts, e: Arc<Entities>) {
        let stale = self
            .inner
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((p.clone(), r.clone()), e);
        drop(stale);
    }
}

/// Cedar builds an `ip` value by parsing text (about 4 µs); clients repeat, so the
/// built expression is kept per address.
#[derive(Debug)]
pub(crate) struct Addresses {
    inner: Mutex<Bounded<IpAddr, RestrictedExpression>>,
}

impl Addresses {
    pub(crate) fn new() -> Self {
        Self {
            inner: Mutex::new(Bounded::new(ADDRESSES)),
        }
    }

    pub(crate) fn expr(&self, ip: IpAddr) -> RestrictedExpression {
        if let Some(e) = self
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map
            .get(&ip)
        {
            return e.clone();
        }
        let e = RestrictedExpression::new_ip(ip.to_string());
        let stale = self
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(ip, e.clone());
        drop(stale);
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_map_is_swapped_out_and_handed_back_to_drop_outside_the_lock() {
        let mut b = Bounded::new(2);
        assert!(b.insert(1, 'a').is_empty());
        assert!(b.insert(2, 'b').is_empty());
        let old = b.insert(3, 'c');
        assert_eq!(old.len(), 2);
        assert_eq!(b.map.len(), 1);
        assert_eq!(b.map.get(&3), Some(&'c'));
    }
}
