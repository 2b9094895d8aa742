//! The detectors' learnt state as data: what a detecting process saves so that the next
//! one (the same service after a restart, or on a cluster the node that takes the
//! sequencer lease) resumes from it instead of starting over. A principal's networks,
//! hours and busiest windows, and the failure windows of an attack in progress, then
//! survive the change: a brute force split across a failover is still one brute force.
//!
//! Thresholds are not part of it: they are the configuration of the process that
//! resumes. Encoding is the caller's (the state is `serde` data); it names people and
//! addresses, so whoever keeps it seals it.

use super::{DETECTORS, Detector, Principal, Window};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Layout version of the saved state.
const VERSION: u32 = 1;

/// The state a detector saves, borrowed from it ([`Detector::saved`]).
#[derive(Debug, Serialize)]
pub struct Saved<'a> {
    version: u32,
    through: Option<u64>,
    principals: &'a HashMap<String, Principal>,
    auth_failures: &'a HashMap<String, Window>,
    /// (detector, key, quiet until), microseconds.
    quiet: Vec<(&'a str, &'a str, u64)>,
}

/// A saved state, read back ([`Detector::resume`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    version: u32,
    through: Option<u64>,
    principals: HashMap<String, Principal>,
    auth_failures: HashMap<String, Window>,
    quiet: Vec<(String, String, u64)>,
}

impl State {
    /// Ledger index of the last event the state had seen.
    #[must_use]
    pub fn through(&self) -> Option<u64> {
        self.through
    }
}

impl Detector {
    /// Ledger index of the last event observed (or resumed from).
    #[must_use]
    pub fn through(&self) -> Option<u64> {
        self.through
    }

    /// The learnt state, to be encoded and kept.
    #[must_use]
    pub fn saved(&self) -> Saved<'_> {
        Saved {
            version: VERSION,
            through: self.through,
            principals: &self.principals,
            auth_failures: &self.auth_failures,
            quiet: self
                .quiet_until
                .iter()
                .map(|((d, k), t)| (*d, k.as_str(), *t))
                .collect(),
        }
    }

    /// A detector with `cfg` that resumes from `state`. Cool-downs of detectors this
    /// build does not know are dropped.
    pub fn resume(cfg: super::Config, state: State) -> Result<Self, String> {
        if state.version != VERSION {
            return Err(format!(
                "detector state version {} (this build reads {VERSION})",
                state.version
            ));
        }
        let quiet_until = state
            .quiet
            .into_iter()
            .filter_map(|(d, k, t)| DETECTORS.iter().find(|n| **n == d).map(|n| ((*n, k), t)))
            .collect();
        Ok(Self {
            cfg,
            principals: state.principals,
            auth_failures: state.auth_failures,
            quiet_until,
            through: state.through,
            inference: super::inference::Watch::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::{Category, Config, Detector, Signal};
    use std::net::IpAddr;

    fn request(i: u64, ip: [u8; 4]) -> Signal<'static> {
        Signal {
            index: i,
            // Every hour of the day is a working hour: only the network can be new.
            time_micros: 1_000_000_000_000 + i * 3_600_000_000,
            category: Category::Read,
            principal: Some("alice"),
            token: Some("tok:a"),
            ip: Some(IpAddr::from(ip)),
            model: Some("m"),
            version: Some("1"),
            file: None,
            reason: None,
            count: 1,
            shape: None,
            bytes: None,
        }
    }

    fn failure(i: u64) -> Signal<'static> {
        Signal {
            index: i,
            time_micros: 2_000_000_000_000 + i * 1_000_000,
            category: Category::AuthFailure,
            principal: None,
            token: None,
            ip: Some(IpAddr::from([198, 51, 100, 7])),
            model: None,
            version: None,
            file: None,
            reason: None,
            count: 1,
            shape: None,
            bytes: None,
        }
    }

    fn round_trip(d: &Detector) -> Detector {
        let bytes = serde_json::to_vec(&d.saved()).expect("encodes");
        let state = serde_json::from_slice(&bytes).expect("decodes");
        Detector::resume(Config::default(), state).expect("resumes")
    }

    /// A principal learnt on one side of a restart is known on the other: its first
    /// request from a network it never used raises `new_network`; a detector that
    /// started over would learn the network silently.
    #[test]
    fn a_resumed_detector_keeps_what_principals_use() {
        let mut d = Detector::new(Config::default());
        for i in 0..60 {
            assert!(d.observe(&request(i, [10, 0, 0, 1])).is_empty());
        }
        let mut resumed = round_trip(&d);
        let found = resumed.observe(&request(60, [203, 0, 113, 9]));
        assert_eq!(
            found
                .iter()
                .map(|i| i.detector.as_str())
                .collect::<Vec<_>>(),
            ["new_network"]
        );
        let mut fresh = Detector::new(Config::default());
        assert!(fresh.observe(&request(60, [203, 0, 113, 9])).is_empty());
    }

    /// Failures on both sides of a resume add up to one brute force, and the incident's
    /// cool-down survives it too (the same attack is not raised again).
    #[test]
    fn a_resumed_detector_keeps_failure_windows_and_cool_downs() {
        let mut d = Detector::new(Config::default());
        for i in 0..12 {
            assert!(d.observe(&failure(i)).is_empty());
        }
        let mut d = round_trip(&d);
        assert_eq!(d.through(), Some(11));
        let mut raised = Vec::new();
        for i in 12..24 {
            raised.extend(d.observe(&failure(i)));
        }
        assert_eq!(raised.len(), 1, "{raised:?}");
        assert_eq!(raised.first().map(|i| i.evidence.len()), Some(20));
        let mut d = round_trip(&d);
        for i in 24..40 {
            assert!(d.observe(&failure(i)).is_empty(), "cool-down kept");
        }
    }

    #[test]
    fn another_layout_is_refused() {
        let d = Detector::new(Config::default());
        let mut v = serde_json::to_value(d.saved()).expect("encodes");
        v["version"] = 2.into();
        let state = serde_json::from_value(v).expect("decodes");
        assert!(Detector::resume(Config::default(), state).is_err());
    }
}
