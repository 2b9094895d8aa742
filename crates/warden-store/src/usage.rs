//! Who used what, as the ledger records it: kept by the dashboard's [`crate::tally`]
//! from each entry it can decrypt (so only with an auditor key), for the models page
//! (who accessed each version in the last 30 days) and the access review (when each
//! principal, grant and token scope was last exercised).
//!
//! Only allowed actions count as a use: a refused attempt exercises no grant. Every map
//! is bounded ([`MAX_KEYS`]); what does not fit any more is counted in
//! [`Usage::dropped`], so a review can say its figures are incomplete rather than
//! wrong.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Microseconds in a day.
pub const DAY_MICROS: u64 = 86_400_000_000;
/// Days of per-version accesses kept (the models page shows 30).
pub const VERSION_DAYS: u64 = 31;
/// Most keys in each map.
pub const MAX_KEYS: usize = 200_000;

/// The fields of a decrypted event that say who did what (the rest is skipped).
#[derive(Debug, Default, serde::Deserialize)]
pub struct Seen<'a> {
    #[serde(default, borrow)]
    pub user: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub model: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub version: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub action: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub decision: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub credential: Option<Cow<'a, str>>,
}

/// Accesses to one model version by one user on one day.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub granted: u64,
    pub denied: u64,
    /// When the last of them was (microseconds since the Unix epoch).
    pub last: u64,
}

/// `(model, version, user)`.
pub type VersionUser = (String, String, String);

/// Uses by principal, credential and model version.
#[derive(Debug, Default)]
pub struct Usage {
    /// Principal → `(action, model)` → last allowed use; `model` is empty when the
    /// entry names none.
    actions: HashMap<String, HashMap<(String, String), u64>>,
    action_keys: usize,
    /// `(credential, action)` → last allowed use.
    credentials: HashMap<(String, String), u64>,
    /// Principal → last entry naming it as the actor, allowed or not.
    seen: HashMap<String, u64>,
    /// UTC day → model accesses (granted and denied) by version and user.
    versions: BTreeMap<u64, HashMap<VersionUser, Counts>>,
    version_keys: usize,
    dropped: u64,
    /// The newest entry's time: per-version days are kept up to it.
    newest: u64,
}

fn bump<K: std::hash::Hash + Eq>(map: &mut HashMap<K, u64>, key: K, t: u64, dropped: &mut u64) {
    let full = map.len() >= MAX_KEYS;
    match map.get_mut(&key) {
        Some(v) => *v = (*v).max(t),
        None if full => *dropped += 1,
        None => {
            map.insert(key, t);
        }
    }
}

impl Usage {
    /// Counts one entry of `kind` at `t` (microseconds) whose event is `ev`.
    pub fn add(&mut self, kind: &str, t: u64, ev: &Seen<'_>) {
        self.newest = self.newest.max(t);
        let Some(user) = ev.user.as_deref() else {
            return;
        };
        bump(&mut self.seen, user.to_owned(), t, &mut self.dropped);
        let refused = kind == "model.denied"
            || kind == "auth.failure"
            || ev.decision.as_deref() == Some("deny");
        if kind == "model.access" || kind == "model.denied" {
            let model = ev.model.as_deref().unwrap_or_default();
            if !model.is_empty() {
                self.version(
                    t,
                    (
                        model.to_owned(),
                        ev.version.as_deref().unwrap_or_default().to_owned(),
                        user.to_owned(),
                    ),
                    kind == "model.access",
                );
            }
        }
        if refused {
            return;
        }
        let Some(action) = ev.action.as_deref() else {
            return;
        };
        let model = ev.model.as_deref().unwrap_or_default();
        let full = self.action_keys >= MAX_KEYS;
        let of = self.actions.entry(user.to_owned()).or_default();
        match of.get_mut(&(action.to_owned(), model.to_owned())) {
            Some(v) => *v = (*v).max(t),
            None if full => self.dropped += 1,
            None => {
                self.action_keys += 1;
                of.insert((action.to_owned(), model.to_owned()), t);
            }
        }
        if let Some(c) = ev.credential.as_deref() {
            bump(
                &mut self.credentials,
                (c.to_owned(), action.to_owned()),
                t,
                &mut self.dropped,
            );
        }
    }

    fn version(&mut self, t: u64, key: VersionUser, granted: bool) {
        let day = self.versions.entry(t / DAY_MICROS).or_default();
        let c = match day.get_mut(&key) {
            Some(c) => c,
            None if self.version_keys >= MAX_KEYS => {
                self.dropped += 1;
                return;
            }
            None => {
                self.version_keys += 1;
                day.entry(key).or_default()
            }
        };
        if granted {
            c.granted += 1;
        } else {
            c.denied += 1;
        }
        c.last = c.last.max(t);
    }

    /// Forgets per-version accesses of days before the last [`VERSION_DAYS`] up to the
    /// newest entry's.
    pub fn prune(&mut self) {
        let first = (self.newest / DAY_MICROS).saturating_sub(VERSION_DAYS - 1);
        let keep = self.versions.split_off(&first);
        let gone: usize = self.versions.values().map(HashMap::len).sum();
        self.version_keys = self.version_keys.saturating_sub(gone);
        self.versions = keep;
    }

    /// Accesses by version and user from `since` (microseconds; whole UTC days).
    #[must_use]
    pub fn version_users(&self, since: u64) -> BTreeMap<VersionUser, Counts> {
        self.version_users_of(since, |_, _| true)
    }

    /// [`Usage::version_users`] of the versions `of(model, version)` picks (the
    /// registry's, say: the ledger also names models the registry does not hold).
    #[must_use]
    pub fn version_users_of(
        &self,
        since: u64,
        of: impl Fn(&str, &str) -> bool,
    ) -> BTreeMap<VersionUser, Counts> {
        let mut out: BTreeMap<VersionUser, Counts> = BTreeMap::new();
        for day in self.versions.range(since / DAY_MICROS..).map(|(_, d)| d) {
            for (k, c) in day {
                if !of(&k.0, &k.1) {
                    continue;
                }
                let o = out.entry(k.clone()).or_default();
                o.granted += c.granted;
                o.denied += c.denied;
                o.last = o.last.max(c.last);
            }
        }
        out
    }

    /// When `principal` last took `action` (on `model`, or on any model when `None`).
    #[must_use]
    pub fn last_action(&self, principal: &str, action: &str, model: Option<&str>) -> Option<u64> {
        self.actions
            .get(principal)?
            .iter()
            .filter(|((a, m), _)| a == action && model.is_none_or(|want| m == want))
            .map(|(_, t)| *t)
            .max()
    }

    /// The models `principal` took `action` on since `since`.
    #[must_use]
    pub fn models_used(&self, principal: &str, action: &str, since: u64) -> BTreeSet<String> {
        self.actions
            .get(principal)
            .into_iter()
            .flatten()
            .filter(|((a, m), t)| a == action && !m.is_empty() && **t >= since)
            .map(|((_, m), _)| m.clone())
            .collect()
    }

    /// When `credential` (`tok:<id>`, …) was last used for `action`.
    #[must_use]
    pub fn credential_last(&self, credential: &str, action: &str) -> Option<u64> {
        self.credentials
            .get(&(credential.to_owned(), action.to_owned()))
            .copied()
    }

    /// When `principal` last appeared as the actor of an entry.
    #[must_use]
    pub fn last_seen(&self, principal: &str) -> Option<u64> {
        self.seen.get(principal).copied()
    }

    /// When `principal` last took any allowed action.
    #[must_use]
    pub fn last_use(&self, principal: &str) -> Option<u64> {
        self.actions.get(principal)?.values().copied().max()
    }

    /// Uses not counted because a map was full.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn seen<'a>(user: &'a str, action: &'a str, model: &'a str, decision: &'a str) -> Seen<'a> {
        Seen {
            user: Some(user.into()),
            model: Some(model.into()),
            version: Some("1".into()),
            action: Some(action.into()),
            decision: Some(decision.into()),
            credential: Some("tok:abc".into()),
        }
    }

    #[test]
    fn a_refused_attempt_is_not_a_use_but_is_an_access_to_the_version() {
        let mut u = Usage::default();
        u.add("model.denied", 5, &seen("eve", "load", "m", "deny"));
        assert_eq!(u.last_action("eve", "load", None), None);
        assert_eq!(u.credential_last("tok:abc", "load"), None);
        assert_eq!(u.last_seen("eve"), Some(5));
        let v = u.version_users(0);
        let c = v.get(&("m".into(), "1".into(), "eve".into())).unwrap();
        assert_eq!((c.granted, c.denied), (0, 1));
        u.add("model.access", 9, &seen("eve", "load", "m", "allow"));
        assert_eq!(u.last_action("eve", "load", Some("m")), Some(9));
        assert_eq!(u.last_action("eve", "load", Some("other")), None);
        assert_eq!(u.credential_last("tok:abc", "load"), Some(9));
    }

    #[test]
    fn per_version_accesses_older_than_the_window_are_forgotten() {
        let mut u = Usage::default();
        u.add("model.access", 0, &seen("a", "load", "m", "allow"));
        u.add(
            "model.access",
            40 * DAY_MICROS,
            &seen("b", "load", "m", "allow"),
        );
        u.prune();
        let v = u.version_users(0);
        assert_eq!(v.len(), 1);
        assert!(v.contains_key(&("m".into(), "1".into(), "b".into())));
        // What a principal last did is kept whatever its age.
        assert_eq!(u.last_action("a", "load", None), Some(0));
    }
}
