//! Principals under suspicion: named by an open incident of HIGH severity or more. The
//! inference gateway refuses them ("Suspicious activity detected", 403) until the
//! incident is acknowledged or `HOLD` has passed. Kept by the process that responds to
//! incidents (on a cluster, the sequencer's; see ARCHITECTURE.md).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long an unacknowledged incident keeps its principal refused.
pub const HOLD: Duration = Duration::from_secs(3600);
/// Principals kept before expired ones are dropped.
const MAX: usize = 10_000;

/// Why a principal is refused: the incident (ledger index) and its detector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suspect {
    pub incident: u64,
    pub detector: String,
}

#[derive(Debug, Default)]
pub(crate) struct Suspicion {
    flagged: Mutex<HashMap<String, (Suspect, Instant)>>,
}

impl Suspicion {
    pub(crate) fn flag(&self, principal: &str, incident: u64, detector: &str) {
        let mut m = self.flagged.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if m.len() > MAX {
            m.retain(|_, (_, until)| *until > now);
        }
        m.insert(
            principal.to_owned(),
            (
                Suspect {
                    incident,
                    detector: detector.to_owned(),
                },
                now + HOLD,
            ),
        );
    }

    /// An acknowledged incident no longer holds its principal.
    pub(crate) fn clear(&self, incident: u64) {
        let mut m = self.flagged.lock().unwrap_or_else(PoisonError::into_inner);
        m.retain(|_, (s, _)| s.incident != incident);
    }

    pub(crate) fn get(&self, principal: &str) -> Option<Suspect> {
        let m = self.flagged.lock().unwrap_or_else(PoisonError::into_inner);
        m.get(principal)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(s, _)| s.clone())
    }
}

impl crate::SecureModelManager {
    /// The open HIGH (or worse) incident naming `principal`, if any.
    #[must_use]
    pub fn suspect(&self, principal: &str) -> Option<Suspect> {
        self.suspicion.get(principal)
    }
}
